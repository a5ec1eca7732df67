"""``s3t tune``: per-method lr × LoRA rank × epochs (× the stage options) chosen on validation data
(see :mod:`s3t.tune`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from .cli_common import JsonOpt, console, emit, out
from .cli_config import config_options
from .store.atomic import atomic_write_bytes

GRID_FIELDS = {"train.lr": "--grid-lr", "train.epochs": "--grid-epochs", "train.lora.rank": "--grid-rank",
               "train.lora.alpha": "--alpha-per-rank", "train.first_stage_epochs": "--grid-first-stage-epochs",
               "train.warmup": "--grid-warmup", "train.head_init": "--grid-head-init"}
STAGE_NEUTRAL = {"first_stage_epochs": None, "warmup": 0.0, "head_init": "warm"}  # as s3t.tune.NEUTRAL (torch-free here)
BENCH_FIELDS = {"train.model": "model", "train.threads": "threads"}  # config options a --bench tune passes on


def _numbers(text: Optional[str], kind: type, flag: str) -> Optional[tuple]:
    if text is None:
        return None
    try:
        return tuple(kind(v) for v in text.split(",") if v.strip())
    except ValueError as exc:
        raise typer.BadParameter(f"comma-separated {kind.__name__} values; got {text!r}", param_hint=flag) from exc


def _first_stage(text: Optional[str]) -> Optional[tuple]:
    if text is None:
        return None
    vals = [v.strip().lower() for v in text.split(",") if v.strip()]
    try:
        return tuple(None if v in ("none", "0") else int(v) for v in vals)
    except ValueError as exc:
        raise typer.BadParameter(f"comma-separated ints or 'none'; got {text!r}", param_hint="--grid-first-stage-epochs") from exc


def _words(text: Optional[str]) -> Optional[tuple]:
    return None if text is None else tuple(v.strip().lower() for v in text.split(",") if v.strip())


@config_options
def tune_command(
    out_file: Path = typer.Option(..., "--out", help="The tune result (JSON): every grid point's validation accuracy, loss "
                                  "and CPU seconds, the chosen settings per method (per dataset)."),
    bench: Optional[str] = typer.Option(None, "--bench", help="Tune for `s3t bench`: 'quick' or 'full' gives the base "
                                        "settings and the exact split the bench trains and tests on (its result is what "
                                        "run_bench(tuned=...) and --p3 take)."),
    dataset: Optional[list[str]] = typer.Option(None, "--dataset", help="Built-in dataset(s), repeatable (default: "
                                                "movie_reviews; with --bench: the bench's P3 datasets, movie_reviews and trec)."),
    data: Optional[Path] = typer.Option(None, "--data", help="Training data (CSV or JSONL with text,label[,id,subject]) "
                                        "instead of a built-in dataset; needs --validation."),
    validation: Optional[Path] = typer.Option(None, "--validation", help="Validation data (same format) the choice is made on."),
    limit: Optional[int] = typer.Option(None, "--limit", help="A seeded subset of this many rows of the built-in dataset(s)."),
    fractions: Optional[str] = typer.Option(None, "--fractions", help="Train,validation,test fractions of the built-in "
                                            "split, e.g. 0.6,0.15,0.25 (default: as `s3t train`, or the bench preset's)."),
    config: Optional[Path] = typer.Option(None, "--config", help="Base S3T config JSON (not with --bench); the options "
                                          "below override it field by field, the grid sets lr, epochs, LoRA rank/alpha "
                                          "and the stage options (first_stage_epochs, warmup, head_init)."),
    workspace: Optional[Path] = typer.Option(None, "--workspace", "-w", help="Leave out the records this workspace has "
                                             "forgotten (tuning on its data again)."),
    method: Optional[list[str]] = typer.Option(None, "--method", help="s3t, sisa, full (repeatable; default: all three)."),
    grid_lr: Optional[str] = typer.Option(None, "--grid-lr", help="Learning rates (default 0.002,0.005,0.01)."),
    grid_rank: Optional[str] = typer.Option(None, "--grid-rank", help="LoRA ranks (default 8,16)."),
    grid_epochs: Optional[str] = typer.Option(None, "--grid-epochs", help="Epochs per stage (default 1,2)."),
    grid_first_stage_epochs: Optional[str] = typer.Option(
        None, "--grid-first-stage-epochs", help="S3T only: epochs of stage 1 (the top layer group, trained on the "
        "first slice only), e.g. none,4; 'none' = the point's epochs (default: none). SISA and the full fine-tune do "
        "not have this option, so values other than none need --method s3t (or per-method grids of the same budget, "
        "from Python). The budget counts the epochs actually trained: stage 1 at 4 and the others at 2 is 2 + 2/L."),
    grid_warmup: Optional[str] = typer.Option(
        None, "--grid-warmup", help="Warm-up fractions in [0, 1) of each stage's steps (linear warm-up, then the "
        "linear decay), e.g. 0,0.1 (default 0). Every method: all train their stages with this schedule."),
    grid_head_init: Optional[str] = typer.Option(
        None, "--grid-head-init", help="S3T only: the head at stage k > 1, 'warm' (the parent's) and/or 'fresh' "
        "(a new seeded head), e.g. warm,fresh (default warm); values other than warm need --method s3t."),
    alpha_per_rank: float = typer.Option(2.0, "--alpha-per-rank", help="LoRA alpha = this × rank (default 2: the default "
                                         "config's 16/8)."),
    shard: int = typer.Option(0, "--shard", help="The shard whose records every grid point trains on."),
    config_out: Optional[Path] = typer.Option(None, "--config-out", help="Write the base config with S3T's chosen settings "
                                              "here: a file `s3t train --config` takes (one dataset only)."),
    p3: Optional[Path] = typer.Option(None, "--p3", help="With --bench: then measure P3 (test accuracy before any deletion) "
                                      "with the defaults and with the chosen settings into this directory "
                                      "(defaults/, tuned/, p3_tuned.json, p3_before_after.png)."),
    merge: Optional[list[Path]] = typer.Option(None, "--merge", exists=True, dir_okay=False, help="Train nothing: "
                                               "unite tune results made in parallel (one per dataset or per method, "
                                               "same settings otherwise; repeatable) into --out."),
    as_json: bool = JsonOpt,
    settings: Optional[dict] = None,
) -> None:
    """Choose lr × LoRA rank × epochs per method (s3t, SISA, full fine-tune) on the validation split.

    Every grid point trains the method on one shard's records and scores the model it would
    serve on the validation records; the highest validation accuracy wins (then the lower
    validation loss, then the cheaper point). Every method gets the same grid budget
    (points × epochs trained). The test split is never read, and -w leaves out forgotten records.
    Nothing is lost on a crash: every finished point goes to OUT.points.jsonl at once, and the
    same command run again continues from it (points of other data or settings are not reused);
    the file is removed when OUT is written.
    Optional stage-option axes: --grid-warmup (every method), --grid-first-stage-epochs and
    --grid-head-init (S3T only: with them, tune S3T alone, --method s3t).

    Examples: s3t tune --out tune.json --limit 3000 -m 3 -L 3 --config-out tuned.json, then
    s3t train -w ws --limit 3000 --config tuned.json; for the bench:
    s3t tune --bench quick --out tune.json --p3 results/p3-tuned; stage options for S3T:
    s3t tune --method s3t --grid-lr 0.01 --grid-rank 8 --grid-epochs 2 --grid-first-stage-epochs none,4
    --grid-warmup 0,0.1 --grid-head-init warm,fresh --out stage.json; in parallel, then united:
    s3t tune --bench full --dataset trec --method sisa --out trec-sisa.json (one per dataset and method),
    s3t tune --merge trec-s3t.json --merge trec-sisa.json ... --out tune.json
    """
    from .config import S3TConfig, with_settings
    from .tune import METHODS, Grid

    settings = settings or {}
    if merge:
        return _merge(merge, out_file, as_json, settings, bench, dataset, data, validation, limit, fractions, config,
                      workspace, method, grid_lr, grid_rank, grid_epochs, grid_first_stage_epochs, grid_warmup,
                      grid_head_init, config_out, p3, shard != 0, alpha_per_rank != 2.0)
    grid_given = sorted(GRID_FIELDS[k] for k in settings if k in GRID_FIELDS)
    if grid_given:
        raise typer.BadParameter(f"lr, epochs and LoRA rank/alpha are chosen by the grid: use {', '.join(grid_given)}")
    from .errors import ConfigError

    default = Grid()
    try:
        grid = Grid(lrs=_numbers(grid_lr, float, "--grid-lr") or default.lrs,
                    ranks=_numbers(grid_rank, int, "--grid-rank") or default.ranks,
                    epochs=_numbers(grid_epochs, int, "--grid-epochs") or default.epochs, alpha_per_rank=alpha_per_rank,
                    first_stage_epochs=_first_stage(grid_first_stage_epochs) or default.first_stage_epochs,
                    warmup=_numbers(grid_warmup, float, "--grid-warmup") or default.warmup,
                    head_init=_words(grid_head_init) or default.head_init)
    except ConfigError as exc:
        raise typer.BadParameter(str(exc)) from exc
    methods = [m.strip() for item in (method or list(METHODS)) for m in item.split(",") if m.strip()]
    others = [m for m in methods if m != "s3t"]
    if grid.varies() and others:
        flags = ", ".join(GRID_FIELDS[f"train.{k}"] for k in grid.varies())
        raise typer.BadParameter(f"{flags} vary S3T-only stage options; SISA and the full fine-tune have no such option "
                                 f"and every method must get the same budget: tune S3T alone (--method s3t)",
                                 param_hint="--method")
    fracs = _numbers(fractions, float, "--fractions")
    say = lambda msg: console.print(msg, soft_wrap=True)  # noqa: E731
    if p3 is not None and bench is None:
        raise typer.BadParameter("--p3 measures the bench's P3: give --bench quick or --bench full", param_hint="--p3")
    if p3 is not None and (grid.varies() or grid.warmup != default.warmup):
        raise typer.BadParameter("the bench applies the chosen lr, LoRA rank/alpha and epochs only, not the stage "
                                 "options: --p3 would measure other settings than those chosen", param_hint="--p3")
    from .tune_journal import TuneJournal

    try:
        journal = TuneJournal(out_file.with_name(out_file.name + ".points.jsonl"))
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--out") from exc
    if len(journal):
        say(f"continuing: {len(journal)} finished point(s) in {journal.path} (reused where data and settings match)")
    if bench is not None:
        result = _tune_bench(bench, settings, dataset, data, config, workspace, limit, fracs, grid, methods, shard, say,
                             journal)
    else:
        base = with_settings(S3TConfig.load(config) if config else S3TConfig(), settings)
        result = _tune_data(base, dataset, data, validation, workspace, limit, fracs, grid, methods, shard, say, journal)
    atomic_write_bytes(out_file, (json.dumps(result, indent=2) + "\n").encode())
    journal.remove()
    if config_out is not None:
        if len(result["datasets"]) != 1 or "s3t_config" not in next(iter(result["datasets"].values())):
            raise typer.BadParameter("needs one dataset and the s3t method", param_hint="--config-out")
        S3TConfig.from_dict(next(iter(result["datasets"].values()))["s3t_config"]).save(config_out)
        console.print(f"s3t config with the chosen settings written to {config_out} (s3t train --config {config_out})")
    if p3 is not None:
        from .bench.tuned import p3_before_after

        result["p3"] = p3_before_after(bench, result, p3, say=say, model=settings.get("train.model"),
                                       threads=settings.get("train.threads"), limit=limit, fractions=fracs)

    def render(r):
        from rich.table import Table

        for name, d in r["datasets"].items():
            table = Table("method", "lr", "rank", "epochs", "stage options", "val acc", "val loss", "grid CPU s",
                          title=f"{name}: chosen on {d['data']['validation_records']} validation records "
                                f"(shard {d['shard']}, {d['data']['shard_records']} training records; "
                                f"{d['budget_epochs']:g} epochs per method)")
            for m, x in d["methods"].items():
                c = x["chosen"]
                opts = ", ".join(f"{k} {v}" for k, v in c.items() if k in STAGE_NEUTRAL and v != STAGE_NEUTRAL[k])
                table.add_row(m, f"{c['lr']:g}", str(c["rank"]), str(c["epochs"]), opts or "-",
                              f"{c['val_accuracy']:.3f}", f"{c['val_loss']:.3f}", f"{x['cpu_seconds']:.0f}")
            out.print(table)
        out.print(f"tuning took {r['cpu_seconds']:.0f} CPU s; result in {out_file}")
        if "p3" in r:
            out.print(f"P3 before/after in {p3}: {r['p3']['summary']}", soft_wrap=True)

    emit(result, as_json, render)


def _merge(paths: list[Path], out_file: Path, as_json: bool, settings: dict, *others) -> None:
    """``s3t tune --merge A --merge B --out C``: C = A and B united (:func:`s3t.tune_merge.merge_tune_results`)."""
    from .tune_merge import merge_tune_results

    if settings or any(others):
        raise typer.BadParameter("--merge trains nothing: give only --merge (twice or more), --out and --json")
    try:
        parts = [json.loads(p.read_text()) for p in paths]
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"not JSON: {exc}", param_hint="--merge") from exc
    result = merge_tune_results(parts)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    out_file.write_text(json.dumps(result, indent=2) + "\n")
    emit(result, as_json, lambda r: out.print(
        f"{len(paths)} tune results united into {out_file}: "
        + "; ".join(f"{name} ({', '.join(d['methods'])})" for name, d in r["datasets"].items())))


def _tune_bench(preset, settings, dataset, data, config, workspace, limit, fracs, grid, methods, shard, say, journal) -> dict:
    from .bench.config import BenchConfig
    from .bench.tuned import tune_bench

    if preset not in ("quick", "full"):
        raise typer.BadParameter(f"'quick' or 'full'; got {preset!r}", param_hint="--bench")
    other = sorted(k for k in settings if k not in BENCH_FIELDS)
    if data is not None or config is not None or workspace is not None or other:
        raise typer.BadParameter("--bench takes the bench preset's data and settings: only --dataset, --limit, "
                                 f"--fractions, --model and --threads apply (got {', '.join(other) or 'data/config/-w'})",
                                 param_hint="--bench")
    overrides = {BENCH_FIELDS[k]: v for k, v in settings.items()}
    cfg = (BenchConfig.quick if preset == "quick" else BenchConfig.full)(limit=limit, fractions=fracs, **overrides)
    return tune_bench(cfg, datasets=dataset or None, grid=grid, methods=methods, shard=shard, say=say, journal=journal)


def _tune_data(base, dataset, data, validation, workspace, limit, fracs, grid, methods, shard, say, journal) -> dict:
    import time

    from .data import load_builtin
    from .tune import tune

    exclude: set[str] = set()
    if workspace is not None:
        from .store.workspace import Workspace

        ws = Workspace(workspace)
        try:
            exclude = ws.ledger.deleted_ids()
        finally:
            ws.ledger.close()
    if data is not None:
        if validation is None:
            raise typer.BadParameter("the choice is made on validation data: give --validation too", param_hint="--data")
        sets = {data.name: (data, validation)}
    else:
        kw = {"fractions": fracs} if fracs else {}
        sets = {}
        for name in dataset or ["movie_reviews"]:
            splits = load_builtin(name, limit=limit, seed=base.plan.seed, **kw)
            sets[name] = (splits.train, splits.validation)  # the test split goes no further
    t_cpu, t_wall = time.process_time(), time.perf_counter()
    result = {"kind": "s3t-tune", "datasets": {}}
    for name, (train, val) in sets.items():
        say(f"tuning on {name} ...")
        result["datasets"][name] = tune(train, val, base, grid=grid, methods=methods, shard=shard, exclude=exclude, say=say,
                                          journal=journal)
    result["cpu_seconds"] = time.process_time() - t_cpu
    result["seconds"] = time.perf_counter() - t_wall
    return result


def register(app: typer.Typer) -> None:
    """Add ``s3t tune`` to the ``s3t`` app."""
    app.command("tune")(tune_command)
