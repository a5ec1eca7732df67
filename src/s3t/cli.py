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

app.add_typer(certificate_app, name="certificate")
from .cli_config import app as config_app, config_options  # noqa: E402  (every config field as an option)

app.add_typer(config_app, name="config")
from .cli_tune import register as _register_tune; _register_tune(app)  # noqa: E402,E702  (s3t tune)
from .cli_generate import register as _register_generate; _register_generate(app)  # noqa: E402,E702  (s3t generate)


def _progress():
    """A rich progress bar driven by the estimator's (description, increment, total) callback."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("examples"),
                   TimeElapsedColumn(), TimeRemainingColumn(), console=console)
    tasks: dict[str, int] = {}

    done: dict[str, int] = {}

    def callback(desc: str, n: int, total: int) -> None:
        if desc not in tasks:
            tasks[desc] = bar.add_task(desc, total=total)
            done[desc] = 0
        bar.update(tasks[desc], advance=n)
        if not console.is_terminal:  # logs and CI: a plain line every 10%
            before, done[desc] = done[desc], done[desc] + n
            if total and (10 * done[desc]) // total > (10 * before) // total:
                console.print(f"{desc}: {100 * done[desc] // total}% ({done[desc]}/{total} examples)")

    return bar, callback


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


@app.command()
def simulate(
    shards: int = typer.Option(5, "--shards", "-m"),
    slices: int = typer.Option(6, "--slices", "-L"),
    budget: int = typer.Option(6, "--budget", "-B"),
    selection: str = typer.Option("cyclic", "--selection", help="cyclic | bms | bms_relaxed (BMS with distinct first "
                                  "slices only: likely-deleted slices can go last in every sequence)."),
    priors: Optional[str] = typer.Option(None, "--priors", help="Comma-separated per-slice deletion priors (bms and the "
                                         "request stream; with --subjects, sequence selection only)."),
    subjects: Optional[int] = typer.Option(
        None, "--subjects", "-K", help="Requests name whole subjects (people), K of them: count deletions in subjects "
        "and compare record placement with subject placement side by side."),
    zipf: Optional[float] = typer.Option(
        None, "--zipf", help="Zipf exponent a of the subject sizes (size ∝ 1/rank^a); 0 = equal sizes. Default 1.0."),
    records: Optional[int] = typer.Option(None, "--records", "-N", help="Records N shared by the subjects (default 40·K)."),
    placement: Optional[str] = typer.Option(
        None, "--placement", help="record | subject: the placement whose result heads the output and the JSON top "
        "level (both are simulated). Default subject."),
    trials: int = typer.Option(500, "--trials"),
    seed: int = typer.Option(0, "--seed"),
    as_json: bool = JsonOpt,
) -> None:
    """Deletion rate: expected deletions before every shard is dead (simulated vs m·L·H(m·min(B,L))),
    and the mean served-prefix fraction over the first half of that many deletions.

    Without --subjects each request deletes one record. Real erasure requests name a person who
    owns many records: with --subjects K each request deletes a whole subject, and the counts are
    in subjects. Record placement scatters a person's records over nearly every slice, so a large
    subject kills every shard at once; subject placement keeps each person in one slice (a subject
    larger than a slice is split over the fewest slices of one shard), so the formula counts subjects.

    Examples: s3t simulate -m 5 -L 10 -B 10 --selection bms_relaxed --priors 1,1,1,1,1,1,16,16,1,1

    s3t simulate -m 4 -L 4 -B 4 --subjects 100 --zipf 1.0 --records 4000
    """
    from .errors import ConfigError
    from .plan import deletion_rate, select_sequences, simulate as run
    from .plan.subject_rate import pack_subjects, subject_deletion_rate, zipf_sizes

    pri = [float(x) for x in priors.split(",")] if priors else None
    seqs = select_sequences(selection, slices, budget, pri)
    if subjects is None:
        if zipf is not None or records is not None or placement not in (None, "record"):
            raise ConfigError(f"--zipf, --records and --placement subject need --subjects K; got --zipf {zipf}, "
                              f"--records {records}, --placement {placement}")
        res = run(shards, slices, seqs, trials=trials, seed=seed, priors=pri).to_dict()
        res.update({"shards": shards, "slices": slices, "budget": budget, "selection": selection})

        def render(r):
            out.print(f"m={shards} L={slices} B={budget} {selection}: deletion rate {r['deletion_rate']:.1f} "
                      f"(conditional Monte Carlo, {trials} trials; plain count {r['deletion_rate_plain']:.1f} ± "
                      f"{r['std_plain'] / trials ** 0.5:.1f}); theory m·L·H(m·min(B,L)) = {r['theory']:.1f}; "
                      f"mean served-prefix fraction over the first {r['horizon']} requests {r['mean_prefix_fraction']:.3f}",
                      soft_wrap=True)

        _emit(res, as_json, render)
        return

    head = placement or "subject"
    if head not in ("record", "subject"):
        raise ConfigError(f"--placement must be record or subject; got {head!r}")
    a = 1.0 if zipf is None else zipf
    n = 40 * subjects if records is None else records
    if subjects < 1 or n < subjects or not a >= 0:
        raise ConfigError(f"--subjects must be >= 1, --records >= --subjects and --zipf >= 0; got --subjects "
                          f"{subjects}, --records {n}, --zipf {a}")
    sizes = zipf_sizes(subjects, n, a, seed=seed)
    cover, load = pack_subjects(sizes, shards, slices, seed)
    by = {"subject": run(shards, slices, seqs, trials=trials, seed=seed, subject_sizes=sizes, placement="subject")}
    # the same horizon for both, so the served-prefix fractions compare
    by["record"] = run(shards, slices, seqs, trials=trials, seed=seed, subject_sizes=sizes, placement="record",
                       horizon=by["subject"].horizon)
    split = sorted((len(c) for c in cover if len(c) > 1), reverse=True)
    res = {**by[head].to_dict(), "shards": shards, "slices": slices, "budget": budget, "selection": selection,
           "records": n, "zipf": a, "largest_subject": max(sizes), "smallest_subject": min(sizes),
           "slice_capacity": -(-n // (shards * slices)), "split_subjects": split,
           "record_requests_theory": deletion_rate(shards, slices, budget),
           "even_spread_theory": (subject_deletion_rate(shards, slices, budget, subjects)
                                  if subjects >= shards * slices else None),
           "by_placement": {k: v.to_dict() for k, v in by.items()}}

    def render_subjects(r):
        out.print(f"m={shards} L={slices} B={budget} {selection}; {subjects} subjects, {n} records, Zipf a={a:g} "
                  f"(largest {r['largest_subject']}, smallest {r['smallest_subject']} records; a slice holds "
                  f"~{r['slice_capacity']})", soft_wrap=True)
        table = Table(title=f"Subject deletions until every shard is dead ({trials} trials)")
        for col in ("placement", "subjects deleted", "exact, this packing", "even-spread form",
                    f"served-prefix fraction, first {r['horizon']}"):
            table.add_column(col, justify="left" if col == "placement" else "right")
        even = r["even_spread_theory"]
        for name in ("record", "subject"):
            d = r["by_placement"][name]
            table.add_row(name + (" *" if name == head else ""), f"{d['deletion_rate']:.1f} ± {d['std'] / trials ** 0.5:.1f}",
                          "-" if d["theory"] is None else f"{d['theory']:.1f}",
                          "-" if name == "record" or even is None else f"{even:.1f}", f"{d['mean_prefix_fraction']:.3f}")
        out.print(table)
        ml, mid = shards * slices, sorted(sizes)[len(sizes) // 2]
        reach = [ml * (1 - (1 - 1 / ml) ** k) for k in (mid, max(sizes))]
        out.print(f"Record placement scatters a subject of n records over ~m·L·(1-(1-1/(m·L))^n) slices: the median "
                  f"subject ({mid} records) hits ~{reach[0]:.1f} of {ml}, the largest ~{reach[1]:.1f}. Subject placement "
                  f"cuts one slice per subject" + (f" ({len(split)} subject(s) larger than a slice split over "
                                              f"{', '.join(map(str, split))} slices of one shard)" if split else "")
                  + f". For comparison, record requests: m·L·H(m·min(B,L)) = {r['record_requests_theory']:.1f} records.",
                  soft_wrap=True)

    _emit(res, as_json, render_subjects)


@app.command()
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


@app.command()
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
                           forget_batch=forget_batch),
                host=host, port=port, log_level="info")


@app.command()
def bench(
    out_dir: Path = typer.Option(..., "--out", help="Directory for results.json, summary.md and the PNG plots."),
    quick: bool = typer.Option(False, "--quick", help="Reduced run (a few minutes on 2 cores) instead of the full benchmark (hours)."),
    as_json: bool = JsonOpt,
    model: Optional[str] = typer.Option(None, "--model", help="Override the encoder (built-in name or local HF directory)."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Override the number of dataset rows used."),
    deletions: Optional[int] = typer.Option(None, "--deletions", help="Override the number of single-record forgets timed in P1 (default 200)."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="Override the torch thread count every method uses "
                                          "(quick 1, full 2); use 1 when another job shares a 2-core machine."),
    restart: bool = typer.Option(False, "--restart", help="Discard the pieces an interrupted run kept in OUT/work and start over."),
    keep_work: bool = typer.Option(False, "--keep-work", help="Keep OUT/work (fitted workspaces, baselines, per-part "
                                   "results) when the run completes."),
    tuned: Optional[Path] = typer.Option(None, "--tuned", exists=True, dir_okay=False, help="A `s3t tune --bench` result "
                                         "(JSON): each method trains with its validation-chosen settings (checked to be "
                                         "this run's split)."),
    only: Optional[str] = typer.Option(None, "--only", help="Run one part alone: P3 (test accuracy), P8 (deletion "
                                       "traffic: a stream of subject deletions with the background retrain running, "
                                       "every method) or P9 (the chat model: training CPU per sequence vs SISA, "
                                       "generation tokens/s of the ensemble vs one member, forget latency)."),
) -> None:
    """Benchmark S3T side by side with SISA and full retraining in one run: forget latency (P1),
    deletion rate (P2), accuracy before / during deletions (P3, P4), training cost (P5, P7),
    predict speed (P6) and deletion traffic by person (P8: availability, longest dark period,
    accuracy over time, CPU per deletion). Writes results.json, summary.md and PNG plots; prints
    the table. `--only P8` runs the deletion-traffic part alone; `--only P9` the causal-LM part
    (SmolLM2-135M-Instruct on the fictitious people; --model overrides the chat model).

    The full run takes hours. Every finished fit and part is kept in OUT/work as it completes:
    if the run stops (crash, Ctrl-C, machine taken away), run the same command again and it
    continues where it stopped (a fit cut off half-way keeps the stages it had trained).

    Example: s3t bench --out results/bench-quick --quick
    """
    from .bench import run_bench

    if only == "P9":
        from .bench.lm import run_p9

        result = run_p9(out_dir, quick=quick, say=lambda msg: console.print(msg, soft_wrap=True),
                        **({"model": model} if model else {}), **({"threads": threads} if threads else {}))
        _emit(result, as_json, lambda r: console.print_json(data={k: r[k] for k in ("training", "generation", "forget")}))
        return
    results = run_bench(out_dir, quick=quick, say=lambda msg: console.print(msg, soft_wrap=True), model=model, limit=limit,
                        deletions=deletions, threads=threads, restart=restart, keep_work=keep_work, only=only,
                        tuned=tuned)

    def render(r):
        table = Table("part", "metric", "measured", "target", "met", title=f"s3t bench ({r['mode']})")
        for row in r["summary"]:
            met = {True: "[green]yes[/]", False: "[red]no[/]", None: ""}[row["met"]]
            table.add_row(row["part"], row["metric"], row["value"], row["target"], met)
        out.print(table)
        out.print(f"results: {out_dir / 'results.json'}; plots: {', '.join(r['plots'])}")

    _emit(results, as_json, render)


@app.command()
def evaluate(
    out_dir: Path = typer.Option(..., "--out", help="Directory for results.json, summary.md and the PNG plots."),
    task: str = typer.Option("classification", "--task", help="'classification' (an encoder on TREC: s3t, SISA, "
                             "Retrain and six approximate methods) or 'causal-lm' (a chat model on fictitious people: "
                             "s3t, Retrain, GA, NPO; TOFU-style forget quality)."),
    quick: bool = typer.Option(False, "--quick", help="Reduced run. classification: 195 training questions, m=2, L=3, "
                               "1 epoch, 5 sequential requests, under 5 minutes on 2 cores (full: 1,500 questions, m=4, "
                               "2 epochs, about an hour). causal-lm: 16 people x 10 facts, 2 forgotten, m=2, L=2, B=1, "
                               "4 epochs, about 30 minutes on 2 busy cores (full: 40 x 10, 4 forgotten, L=3, hours)."),
    as_json: bool = JsonOpt,
    model: Optional[str] = typer.Option(None, "--model", help="Override the model (built-in name or local HF directory): "
                                        "an encoder for classification, a Llama-family chat model for causal-lm."),
    limit: Optional[int] = typer.Option(None, "--limit", help="classification: override the number of dataset rows used."),
    sequential: Optional[int] = typer.Option(None, "--sequential", help="classification: successive forget requests in "
                                             "the sequential scenario (default 10, quick 5; 0 skips it)."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="Override the torch thread count every method "
                                          "uses (classification: quick 2, full 1; causal-lm: 1); use 1 when another "
                                          "job shares a 2-core machine."),
    people: Optional[int] = typer.Option(None, "--people", min=2, help="causal-lm: fictitious people generated."),
    facts: Optional[int] = typer.Option(None, "--facts", min=1, max=12, help="causal-lm: facts per person."),
    forget_people: Optional[int] = typer.Option(None, "--forget-people", min=1, help="causal-lm: people forgotten "
                                                "(one request each)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1, help="causal-lm: training epochs of every fit."),
    lr: Optional[float] = typer.Option(None, "--lr", min=0.0, help="causal-lm: training learning rate of every fit."),
    slices: Optional[int] = typer.Option(None, "--slices", "-L", min=1, help="causal-lm: s3t slices per shard "
                                         "(divides the model's layers: 30 for SmolLM2)."),
) -> None:
    """Which unlearning method to use? Compare exact unlearning (s3t, Retrain = retraining without
    the forget set) with approximate methods on the same model and data.

    --task classification (default): s3t, SISA and Retrain against FT, GA, RL, l1-sparse, SalUn
    and NPO on TREC. Forget sets: random 1% and 10%, one whole class, one subject, the most
    memorised records (worst case), and a stream of successive requests. Metrics: UA (1 - forget
    accuracy), RA (retained accuracy), TA (test accuracy), MIA-efficacy (share of forget records a
    membership-inference attack calls non-members), RTE (run time of the unlearning step), and
    each method's gap to Retrain. Writes results.json, summary.md and PNG plots.

    --task causal-lm: a chat model (SmolLM2-135M-Instruct) tuned on fictitious people forgets some
    of them: s3t (forget -> surviving prefixes, and after its retrain), Retrain (a full fit without
    them), GA and NPO (on the response tokens). Forget quality = KS-test p-value between the
    method's and Retrain's truth-ratio distributions on the forget set (TOFU); utility = answer
    probability, token accuracy and ROUGE-L on retained people, perplexity on held-out
    movie_dialog chat; forget time per method. Writes results.json, summary.md and lm_eval.png.

    Example: s3t evaluate --out results/evaluate-quick --quick

    Example: s3t evaluate --task causal-lm --out results/lm-eval --quick --threads 1
    """
    from .errors import ConfigError

    say = lambda msg: console.print(msg, soft_wrap=True)  # noqa: E731
    if task not in ("classification", "causal-lm"):
        raise ConfigError(f"--task must be 'classification' or 'causal-lm'; got {task!r}")
    lm_only = {"--people": people, "--facts": facts, "--forget-people": forget_people, "--epochs": epochs,
               "--slices": slices, "--lr": lr}
    wrong = [k for k, v in ({"--limit": limit, "--sequential": sequential} if task == "causal-lm" else lm_only).items()
             if v is not None]
    if wrong:
        raise ConfigError(f"{', '.join(wrong)} do(es) not apply to --task {task}")
    if task == "causal-lm":
        from .evaluate import run_evaluate_lm

        results = run_evaluate_lm(out_dir, quick=quick, say=say, model=model, threads=threads, people=people,
                                  facts=facts, forget_people=forget_people, epochs=epochs, slices=slices, lr=lr)

        def render_lm(r):
            table = Table("method", "forget quality (KS p)", "forget answer prob", "retained answer prob",
                          "chat perplexity", "forget time s", title=f"causal-lm: {len(r['data']['forget_ids'])} "
                          f"facts of {', '.join(r['data']['forgotten_people'])} forgotten")
            for method, row in r["rows"].items():
                table.add_row(method, f"{row['forget_quality']['p_value']:.3g}",
                              f"{row['forget'].get('answer_prob', float('nan')):.3f}",
                              f"{row['retain'].get('answer_prob', float('nan')):.3f}",
                              f"{row['chat']['perplexity']:.1f}", f"{row['RTE']:.3f}")
            out.print(table)
            out.print(f"results: {out_dir / 'results.json'}, {out_dir / 'summary.md'}; plot: {', '.join(r['plots'])}")

        _emit(results, as_json, render_lm)
        return
    from .evaluate import run_evaluate

    results = run_evaluate(out_dir, quick=quick, say=say, model=model, limit=limit, sequential_requests=sequential,
                           threads=threads)

    def render(r):
        for name, sc in r["scenarios"].items():
            table = Table("method", "UA", "RA", "TA", "MIA", "avg gap", "RTE s", title=f"{name} ({sc['forget_size']} records)")
            for method, row in sc["rows"].items():
                table.add_row(method, *(f"{100 * row[k]:.1f}" for k in ("UA", "RA", "TA", "MIA")),
                              f"{100 * sc['gaps'][method]['avg']:.1f}", f"{row['RTE']:.3f}")
            out.print(table)
        out.print(f"results: {out_dir / 'results.json'}, {out_dir / 'summary.md'}; plots: {', '.join(r['plots'])}")

    _emit(results, as_json, render)


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
