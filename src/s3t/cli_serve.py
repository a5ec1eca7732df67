"""``s3t demo`` and ``s3t serve``: the guided demo and the HTTP service."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from .cli_common import DbOpt, JsonOpt, WorkspaceOpt, console, out, progress as _progress


def demo(
    workspace: Path = typer.Option(Path("s3t-demo"), "--workspace", "-w", help="Where to put the demo workspace (replaced)."),
    task: str = typer.Option("classification", "--task", help="classification: MiniLM on movie-review snippets | "
                             "causal-lm: the SmolLM2 chat model on fictitious people."),
    limit: Optional[int] = typer.Option(None, "--limit", help="classification: rows of the movie-review dataset to use "
                                        "(default 6000; 0 = all). causal-lm: fictitious people (default 12)."),
    as_json: bool = JsonOpt,
) -> None:
    """Train, forget, show it is exact, audit.

    --task classification (default): train on the movie-review snippets, forget a person and a batch
    of records, audit (about 10 minutes on 2 cores). --task causal-lm: tune the SmolLM2 chat model on
    fictitious people, ask about a person, forget that person, ask again, audit (2 to 4 minutes).
    """
    import shutil

    from .demo import DemoOptions, run_demo

    if task not in ("classification", "causal-lm"):
        raise typer.BadParameter(f"classification | causal-lm; got {task!r}", param_hint="--task")
    if workspace.exists():
        shutil.rmtree(workspace)
    bar, callback = _progress()
    lines: list[str] = []

    def say(msg: str) -> None:
        lines.append(msg)
        (bar.console if bar.live.is_started else console).print(msg, soft_wrap=True)

    with bar:
        if task == "causal-lm":
            from .demo_lm import LMDemoOptions, run_lm_demo

            result = run_lm_demo(LMDemoOptions(workspace=workspace, **({"people": limit} if limit else {})), say=say,
                                 progress=callback)
        else:
            result = run_demo(DemoOptions(workspace=workspace, limit=6000 if limit is None else (limit or None)), say=say,
                              progress=callback)
    if as_json:
        out.print_json(json.dumps(result, default=str))
    if not result["audit"]["ok"]:
        raise typer.Exit(1)


def serve(
    workspace: Path = WorkspaceOpt,
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on (loopback by default)."),
    port: int = typer.Option(8000, "--port", help="TCP port."),
    db: Optional[str] = DbOpt,
    background: bool = typer.Option(True, "--background/--no-background", help="Retrain cut stages in a background thread after forgets."),
    protect_predict: bool = typer.Option(
        False, "--protect-predict/--open-predict",
        help="POST /predict needs the read (or forget) token too; by default it is open, like /healthz.",
    ),
    retrain_policy: Optional[str] = typer.Option(
        None, "--retrain", help="When to retrain after forgets: immediate (every forget) | accuracy (a shard is dead, or the "
        "served accuracy fell more than serve.retrain_delta below the fitted one) | interval (at most every "
        "serve.retrain_every s). Default: the workspace's serve.retrain. Forgets are exact at once in every case."),
    restore: Optional[str] = typer.Option(
        None, "--restore", help="progressive (dead shards get stage 1 first, then best sequences grow stage by stage, each "
        "swapped in at once) | naive (everything, swapped in at the end). Default: the workspace's serve.restore."),
    lease_ttl: Optional[float] = typer.Option(
        None, "--lease-ttl", min=1.0, help="Replicas on one ledger: seconds the fleet's retrain lease lasts unless its "
        "holder renews it (every ttl/4); a dead holder's lease is taken over after this. Default: S3T_LEASE_TTL, else 20."),
    forget_batch: Optional[int] = typer.Option(
        None, "--forget-batch", min=1, help="Most concurrent forgets committed in one transaction (group commit; each "
        "keeps its own receipt). 1 commits every forget alone. Default: the workspace's serve.forget_batch (256)."),
    erasure_interval: Optional[float] = typer.Option(
        None, "--erasure-interval", min=0.0, max=3600.0, help="Least seconds between two physical erasures of the "
        "ledger's files after forgets (PostgreSQL: VACUUM FULL of the text tables; each run covers every forget "
        "committed before it). Default: the workspace's serve.erasure_interval (none: 1 on PostgreSQL, 0 on SQLite)."),
) -> None:
    """Serve predict / forget / status / audit and the dashboard over HTTP (FastAPI + uvicorn); API docs at /docs.

    POST /forget needs `Authorization: Bearer TOKEN`: S3T_TOKEN, else WORKSPACE/token. Reads that name
    requests, records or subjects (GET /forget/{id}, /status, /audit, /dashboard/data) need the read
    token, S3T_READ_TOKEN, else WORKSPACE/read_token, or the forget token. Token files are generated
    with mode 0600 on first start. Example: s3t serve -w ws --port 8000
    """
    import logging

    import uvicorn

    from .service import create_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(create_app(workspace, db=db, background=background, protect_predict=protect_predict,
                           retrain_policy=retrain_policy, restore=restore, lease_ttl=lease_ttl,
                           forget_batch=forget_batch, erasure_interval=erasure_interval),
                host=host, port=port, log_level="info")


def register(app: typer.Typer) -> None:
    """Add ``s3t demo`` and ``s3t serve`` to the ``s3t`` app."""
    for command in (demo, serve):
        app.command()(command)
