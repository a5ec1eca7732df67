"""Config on the command line: every config field as an option of a command (generated from the
dataclass metadata, in one place), and ``s3t config show``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from .cli_common import DbOpt, JsonOpt, WorkspaceOpt, emit, out

app = typer.Typer(help="A workspace's configuration.\n\nExample: s3t config show -w ws", no_args_is_help=True)

_PANELS = {"plan": "Plan (plan.*)", "train": "Training (train.*)", "train.lora": "LoRA (train.lora.*)",
           "serve": "Serving (serve.*, stored with the workspace)"}


def config_options(func):
    """Give a command one option per config field (every field of PlanConfig, TrainConfig,
    LoraSettings and ServeConfig), generated from the dataclasses' metadata: flag, short alias,
    type, help. The command receives the ones given as ``settings={"plan.shards": 4, ...}``."""
    import functools
    import inspect

    from .config import settings

    fields = settings()
    params = [p for p in inspect.signature(func).parameters.values() if p.name != "settings"]
    annotations = {k: v for k, v in func.__annotations__.items() if k != "settings"}
    for st in fields:
        kind = str if st.sequence or st.optional else st.kind
        decls = [f"{st.flag}/--no-{st.flag[2:]}"] if kind is bool else [st.flag] + ([st.short] if st.short else [])
        form = (f" Comma-separated {st.kind.__name__} values." if st.sequence else "") + (" 'none' = None." if st.optional else "")
        default = ",".join(map(str, st.default)) if st.sequence and st.default is not None else st.default
        help_text = f"{st.help}{form} (config: {st.path}; default: {default})"
        option = typer.Option(None, *decls, help=help_text, rich_help_panel=_PANELS[st.path.rsplit(".", 1)[0]])
        params.append(inspect.Parameter(st.dest, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=Optional[kind]))
        annotations[st.dest] = Optional[kind]

    @functools.wraps(func)
    def wrapper(**kwargs):
        given = {st.path: st.parse(kwargs.pop(st.dest)) for st in fields if kwargs.get(st.dest) is not None}
        for st in fields:
            kwargs.pop(st.dest, None)
        return func(**kwargs, settings=given)

    wrapper.__signature__ = inspect.Signature(params)
    wrapper.__annotations__ = annotations
    return wrapper


@app.command("show")
def config_show(workspace: Path = WorkspaceOpt, as_json: bool = JsonOpt, db: Optional[str] = DbOpt) -> None:
    """Print the config a workspace was trained with and serves by: every field of plan, train,
    train.lora and serve (fields its s3t.json lacks have their defaults), the `s3t train` option
    that sets it, whether it differs from the default, and the digest its checkpoints record.
    --json prints the config itself, ready for `s3t train --config`.

    Example: s3t config show -w ws
    """
    from .config import settings
    from .store.workspace import Workspace

    cfg = Workspace(workspace, db_url=db).load_config()

    def render(d):
        table = Table("field", "value", "option", "", title=f"{workspace} config")
        for st in settings():
            node = d
            for part in st.path.split("."):
                node = node[part]
            default = list(st.default) if isinstance(st.default, tuple) else st.default
            table.add_row(st.path, json.dumps(node), st.flag, "" if node == default else "[yellow]set[/]")
        out.print(table)
        out.print(f"training_config_sha256 (in every checkpoint's metadata; serving settings, executor, workers and "
                  f"ray_address left out): {cfg.training_digest()}", soft_wrap=True)

    emit(cfg.to_dict(), as_json, render)
