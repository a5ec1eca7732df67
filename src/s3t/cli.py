"""``s3t`` command line: a thin layer over the public API (``s3t.S3T``).

Each command opens the library object, makes one call and prints. s3t errors become a
clean message and exit code 2 in one place (:func:`main`); read commands take ``--json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from .errors import S3TError

app = typer.Typer(
    help="s3t — exact machine unlearning (Sequence-aware Sharded Sliced Training).\n\n"
    "Train an ensemble whose every checkpoint has a known data lineage; forget records in "
    "milliseconds by serving only checkpoints that never saw them; prove it with an audit.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
from .cli_certificate import app as certificate_app
from .cli_common import DbOpt, JsonOpt, WorkspaceOpt, console, out
from .cli_common import emit as _emit
from .cli_common import progress as _progress

app.add_typer(certificate_app, name="certificate")
from .cli_config import app as config_app, config_options  # noqa: E402  (every config field as an option)

app.add_typer(config_app, name="config")
from .cli_tune import register as _register_tune; _register_tune(app)  # noqa: E402,E702  (s3t tune)
from .cli_generate import register as _register_generate; _register_generate(app)  # noqa: E402,E702  (s3t generate)


CHAT_MODEL = "SmolLM2-135M-Instruct"  # --task causal-lm's model when neither --model nor --config names one
DEFAULT_DATASET = {"classification": "movie_reviews", "causal-lm": "fictitious_people"}
TASK_DATASETS = {"classification": "movie_reviews | trec", "causal-lm": "fictitious_people | movie_dialog"}
TASK_COLUMNS = {"classification": "text, label", "causal-lm": "prompt, response"}


def _task_defaults(cfg, settings: dict):
    """--task causal-lm with the encoder default as its model (no --model, none in --config): the built-in
    chat model instead (an encoder cannot be tuned as a causal LM)."""
    from dataclasses import replace

    from .config import TrainConfig

    if cfg.train.task == "causal-lm" and "train.model" not in settings and cfg.train.model == TrainConfig().model:
        cfg = replace(cfg, train=replace(cfg.train, model=CHAT_MODEL))
    return cfg


def _task_records(task: str, data, source: str):
    """The training data as ``task``'s records (what fit converts it to), or a DataError that says which
    task the data is for: a chat dataset refused by classification and text/label data by causal-lm."""
    from .data.chat import is_chat_records
    from .errors import DataError
    from .tasks import TASKS, task_spec

    other = next(t for t in TASKS if t != task)
    fix = (f"train it with --task {other}, or give {TASK_COLUMNS[task]} data (built-in: {TASK_DATASETS[task]})")
    try:
        records = task_spec(task).to_records(data)
    except DataError as exc:
        try:
            task_spec(other).to_records(data)
        except DataError:
            raise exc from None
        raise DataError(f"{source} holds {other} records ({TASK_COLUMNS[other]}), not {task} records "
                        f"({TASK_COLUMNS[task]}): {fix}") from None
    if is_chat_records(records) != (task == "causal-lm"):
        raise DataError(f"{source} holds {other} records ({TASK_COLUMNS[other]}), not {task} records "
                        f"({TASK_COLUMNS[task]}): {fix}")
    return records


@app.command()
@config_options
def train(
    workspace: Path = WorkspaceOpt,
    data: Optional[Path] = typer.Option(None, "--data", help="Training data: CSV or JSONL with text,label[,id,subject] "
                                        "(--task classification) or prompt,response[,id,subject] (--task causal-lm)."),
    validation: Optional[Path] = typer.Option(None, "--validation", help="Validation data (same format); used to break ties."),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="Built-in dataset when --data is not given: "
                                          "movie_reviews (default) | trec for --task classification; fictitious_people "
                                          "(default) | movie_dialog for --task causal-lm."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Use a seeded subset of this many rows of the built-in dataset "
                                        "(fictitious_people: the first this many people, 10 facts each)."),
    config: Optional[Path] = typer.Option(None, "--config", help="S3T config JSON (plan/train/serve, e.g. from `s3t config "
                                          "show -w WS --json`); the options below override it field by field."),
    subject_priors: Optional[Path] = typer.Option(
        None, "--subject-priors", help="CSV with columns subject,prior: how likely each person is to ask to be forgotten. "
        "Summed into each slice's prior after placement; each shard then orders its slices with BMS (--selection bms) so "
        "likely-deleted slices come last. Subjects not listed get the mean of the listed priors."),
    db: Optional[str] = DbOpt,
    settings: Optional[dict] = None,
) -> None:
    """Train an S3T ensemble into a new workspace.

    Every config field is an option (plan, training, LoRA, serving: see the panels below); they
    override --config. `s3t config show -w WS` prints what a workspace was trained with.

    A chat model: --task causal-lm tunes SmolLM2-135M-Instruct (unless --model names another
    Llama-family chat model) on prompt/response records; answer with `s3t generate`.

    Example: s3t train -w ws --limit 3000 -m 3 -L 3 -B 3 --epochs 1 --lora-rank 4 --executor ray

    Example: s3t train -w chat --task causal-lm --dataset fictitious_people --limit 12 -m 2 -L 2 -B 1
    """
    from .config import S3TConfig, with_settings
    from .data import load_builtin
    from .estimator import S3T

    cfg = _task_defaults(with_settings(S3TConfig.load(config) if config else S3TConfig(), settings or {}), settings or {})
    task = cfg.train.task
    if data is None:
        name = dataset or DEFAULT_DATASET[task]
        splits = load_builtin(name, limit=limit, seed=cfg.plan.seed)
        train_data, val_data = _task_records(task, splits.train, f"--dataset {name}"), splits.validation
    else:
        if dataset is not None:
            raise typer.BadParameter("give --data or --dataset, not both", param_hint="--dataset")
        train_data, val_data = _task_records(task, data, f"--data {data}"), validation
    priors = None
    if subject_priors is not None:
        import pandas as pd

        table = pd.read_csv(subject_priors, dtype={"subject": str})
        if not {"subject", "prior"} <= set(table.columns):
            raise typer.BadParameter(f"needs columns subject,prior; got {list(table.columns)}", param_hint="--subject-priors")
        priors = dict(zip(table["subject"], table["prior"].astype(float)))
    bar, callback = _progress()
    with bar:
        est = S3T(cfg, workspace=workspace, db=db).fit(train_data, validation=val_data, progress=callback,
                                                       subject_priors=priors)
    st = est.status()
    console.print(f"[green]trained[/] {st['checkpoints']} checkpoints; served prefix per shard: {st['served']}")
    pl = est.placement_
    console.print(f"placement {pl['placement']}: slice sizes {pl['slice_min']}..{pl['slice_max']} records"
                  + (f"; {len(pl['split_subjects'])} subject(s) larger than a slice were split" if pl["split_subjects"] else ""))


@app.command()
def export(
    out_dir: Path = typer.Argument(..., help="New (or empty) directory for the export."),
    workspace: Path = WorkspaceOpt,
    audit: bool = typer.Option(True, "--audit/--no-audit", help="Run the audit and record its result in the model card."),
    as_json: bool = JsonOpt,
    db: Optional[str] = DbOpt,
) -> None:
    """Export the served shards as standard peft LoRA adapters (PeftModel.from_pretrained on the
    base model loads each), with each shard's classification head, ensemble.json (how members
    combine) and a model card README.md (plan, served lineage, deletions applied, audit result).

    Example: s3t export -w ws exported/
    """
    from .estimator import S3T
    from .train.export import export_served

    card = export_served(S3T.load(workspace, db=db), out_dir, run_audit=audit)
    _emit(card, as_json, lambda d: out.print(
        f"[green]exported[/] {len(d['served'])} of {d['shards']} shards to {out_dir} (manifest v{d['manifest_version']}, "
        f"{d['deletions']['records']} record(s) forgotten; audit: "
        f"{'not run' if d['audit'] is None else 'passed' if d['audit']['ok'] else 'FAILED'})", soft_wrap=True))


@app.command()
def predict(
    texts: list[str] = typer.Argument(None, help="Texts to classify."),
    workspace: Path = WorkspaceOpt,
    file: Optional[Path] = typer.Option(None, "--file", help="Read texts from a file, one per line."),
    as_json: bool = JsonOpt,
    db: Optional[str] = DbOpt,
) -> None:
    """Classify texts with the served ensemble."""
    from .estimator import S3T

    items = list(texts or [])
    if file:
        items += [line for line in file.read_text().splitlines() if line.strip()]
    if not items:
        raise typer.BadParameter("give texts as arguments or --file")
    est = S3T.load(workspace, db=db)
    if est.config.train.task != "classification":
        from .errors import ConfigError

        raise ConfigError(f"workspace {workspace} holds a {est.config.train.task} model (train.task "
                          f"{est.config.train.task!r}); `s3t predict` classifies texts with a classification workspace "
                          f"only: use `s3t generate -w {workspace} PROMPT...`")
    proba = est.predict_proba(items)
    rows = [{"text": t, "label": str(est.classes_[p.argmax()]), "probabilities": {str(c): float(v) for c, v in zip(est.classes_, p)}}
            for t, p in zip(items, proba)]

    def render(rows):
        table = Table("label", "p", "text")
        for r in rows:
            table.add_row(r["label"], f"{max(r['probabilities'].values()):.3f}", r["text"][:80])
        out.print(table)

    _emit(rows, as_json, render)


@app.command()
def forget(
    record_ids: list[str] = typer.Argument(None, help="Ids of the training records to forget."),
    workspace: Path = WorkspaceOpt,
    subject: Optional[str] = typer.Option(None, "--subject", help="Forget every record of this subject instead."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only show what the request would change "
                                 "(records, shards, served prefixes); store nothing."),
    as_json: bool = JsonOpt,
    db: Optional[str] = DbOpt,
) -> None:
    """Forget records exactly: durable, served within milliseconds, with a hash-chained receipt.

    Example: s3t forget mr-17 mr-42 -w ws   (or --subject user-42; --dry-run to preview)
    """
    from .estimator import S3T

    est = S3T.load(workspace, db=db)
    receipt = est.forget(record_ids=record_ids or (None if subject else []), subject=subject or None, dry_run=dry_run)

    def render(d):
        note = (" [yellow](dry run: nothing was stored)[/]" if receipt.dry_run
                else "" if receipt.created else " [yellow](already recorded: original receipt)[/]")
        out.print(f"request {d['request_id']}{note}\n  records: {len(d['record_ids'])}  affected shards: {d['affected_shards']}\n"
                  f"  served prefix before: {d['served_before']}\n  served prefix after:  {d['served_after']}\n  receipt hash: {d['hash']}")

    _emit(receipt.to_dict(), as_json, render)


@app.command()
def status(workspace: Path = WorkspaceOpt, as_json: bool = JsonOpt, db: Optional[str] = DbOpt) -> None:
    """Shards, sequences and the served prefix of each shard."""
    from .estimator import S3T

    st = S3T.load(workspace, db=db).status()

    def render(st):
        table = Table("shard", "served stage", "sequence", "checkpoint", "val acc")
        for shard, d in st["served_detail"].items():
            table.add_row(shard, str(0 if d is None else d["stage"]), "-" if d is None else str(d["sequence"]),
                          "dead" if d is None else d["checkpoint"], "-" if not d or d["val_accuracy"] is None else f"{d['val_accuracy']:.3f}")
        out.print(table)
        out.print(f"m={st['shards']} L={st['slices']} B={st['budget']} ({st['selection']}); live shards {st['live_shards']}; "
                  f"deleted records {st['deleted_records']} in {st['requests']} request(s); manifest v{st['manifest_version']}")

    _emit(st, as_json, render)


@app.command()
def audit(workspace: Path = WorkspaceOpt, as_json: bool = JsonOpt, db: Optional[str] = DbOpt) -> None:
    """Check lineages, checkpoint hashes, erasure and the receipt chain. Exit 1 on any failure."""
    from .audit import audit as run_audit
    from .store.workspace import Workspace

    report = run_audit(Workspace(workspace, db_url=db))

    def render(r):
        for c in report.checks:
            out.print(f"{'[green]ok  [/]' if c.ok else '[red]FAIL[/]'} {c.name:9s} {c.detail}")
        out.print("[green]audit passed[/]" if report.ok else "[red]audit FAILED[/]")

    _emit(report.to_dict(), as_json, render)
    if not report.ok:
        raise typer.Exit(1)


@app.command()
def retrain(workspace: Path = WorkspaceOpt, as_json: bool = JsonOpt, db: Optional[str] = DbOpt,
            restore: Optional[str] = typer.Option(
                None, "--restore", help="progressive (dead shards first, each step swapped in at once) | naive "
                "(everything, swapped in at the end). Default: the workspace's serve.restore."),
            wait: float = typer.Option(
                0.0, "--wait", min=0.0, help="Seconds to wait for the fleet's retrain lease when a serving replica "
                "holds it (its background retrain is running); default: stop at once with an error, changing nothing.")
            ) -> None:
    """Retrain every stage cut by deletions, without the deleted records, and swap it in.

    Until this runs, each hit shard serves a shorter prefix that never saw the records; after
    it, the system is as if the records had never been in the training data.

    It also finishes a fit that was interrupted (crash, Ctrl-C): the stages not yet trained are
    trained with the same seeds, so the result is bit-identical to an uninterrupted fit.

    Like a serving replica's background retrain, it holds the ledger's `retrain` lease while it
    runs (so it never runs beside one, and its writes are fenced by the lease).

    Example: s3t retrain --workspace ws
    """
    from .estimator import S3T
    from .store.lease import fleet_retrain

    est = S3T.load(workspace, db=db)
    bar, callback = _progress()
    with fleet_retrain(est.ws_.ledger, wait=wait), bar:
        report = est.retrain(progress=callback, restore=restore)

    def render(d):
        out.print(f"retrained {len(d['checkpoints'])} checkpoint(s) for {len(d['requests'])} request(s) in {d['seconds']:.1f}s; "
                  f"rebuilt slices {d['rebuilt_slices']}\n  served prefix before: {d['served_before']}\n"
                  f"  served prefix after:  {d['served_after']}", soft_wrap=True)
        if d.get("swaps"):
            first = d["swaps"][0]
            out.print(f"  progressive restore: {len(d['swaps'])} swap(s); first after {first['seconds']:.1f}s "
                      f"serving {first['served']}", soft_wrap=True)

    _emit(report.to_dict(), as_json, render)


@app.command()
def verify(
    request: str = typer.Option(..., "--request", help="Request id from a forget receipt."),
    workspace: Path = WorkspaceOpt,
    as_json: bool = JsonOpt,
    db: Optional[str] = DbOpt,
) -> None:
    """Exactness certificate: retrain the request's shards from scratch without the deleted
    records and compare every live checkpoint's weights bit for bit. Exit 1 on any mismatch."""
    from .estimator import S3T

    report = S3T.load(workspace, db=db).verify(request)

    def render(d):
        for m in d["mismatches"]:
            out.print(f"[red]MISMATCH[/] {m}", soft_wrap=True)
        for m in d.get("incomparable", []):
            out.print(f"[yellow]NOT COMPARED[/] {m}", soft_wrap=True)
        verdict = "[green]verified[/]" if d["ok"] else "[red]NOT verified[/]"
        out.print(f"{verdict}: {d['compared']} checkpoint(s) of shard(s) {d['shards']} compared with training from scratch "
                  f"({d['seconds']:.1f}s)")

    _emit(report.to_dict(), as_json, render)
    if not report.ok:
        raise typer.Exit(1)


@app.command("rotate-secret")
def rotate_secret(workspace: Path = WorkspaceOpt, as_json: bool = JsonOpt, db: Optional[str] = DbOpt) -> None:
    """Make a new workspace secret and re-key the ledger's text fingerprints with it, in one transaction.

    The secret (WORKSPACE/secret, mode 0600) keys the fingerprints of the texts still held;
    forgotten records keep none. With S3T_SECRET set, set the new value first: the command
    re-keys with it. Back up the new secret afterwards.

    Example: s3t rotate-secret -w ws
    """
    from .store.secret import rotate_secret as rotate
    from .store.workspace import Workspace

    report = rotate(Workspace(workspace, db_url=db))
    _emit(report.to_dict(), as_json, lambda d: out.print(
        f"[green]rotated[/] the workspace secret ({d['source']}): {d['rekeyed']} live fingerprint(s) re-keyed; "
        "back up the new secret"))


from .cli_measure import register as _register_measure; _register_measure(app)  # noqa: E402,E702  (simulate, bench, evaluate)
from .cli_serve import register as _register_serve; _register_serve(app)  # noqa: E402,E702  (demo, serve)


def main() -> None:
    """Entry point: s3t errors become one clean line and exit code 2."""
    try:
        code = app(standalone_mode=False)
    except S3TError as exc:
        console.print(f"[red]error:[/] {exc}")
        sys.exit(2)
    except Exception as exc:  # click usage errors etc.
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Exit):
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Abort):
            sys.exit(1)
        raise
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
