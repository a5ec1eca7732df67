"""``run_bench``: every part of the benchmark in one process, results.json + PNGs + summary.md.

Order: P2 (pure simulation) → fits (S3T B=L and B=1, SISA, full) → P3 (and the same four fits
with P3 on every other dataset of ``p3_datasets``) → P5 → P7 →
P1 (forget latency on workspace copies) → P4 (accuracy under deletions) → P6 (predict
speed, incl. the short prefixes P4 left behind) → one real SISA forget as a check of the
latency estimate. Workspaces, fitted baselines and each finished part are kept in
``OUT/work`` (:mod:`s3t.bench.resume`) until the run completes, so an interrupted run
continues where it stopped.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from ..errors import ConfigError
from .config import BenchConfig
from .plan_parts import p2_deletion_rate
from .resume import RunState, to_json
from .train_parts import cpu_seconds
from .report import markdown_table, plots, summary_rows


def machine(cfg: BenchConfig) -> dict[str, Any]:
    import peft
    import torch
    import transformers

    from ..train.device import device_identity, resolve_device

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cpu = platform.processor()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {
        "cpu_count": os.cpu_count(), "usable_cores": cores, "cpu": cpu, "platform": platform.platform(),
        "python": sys.version.split()[0], "torch": torch.__version__, "transformers": transformers.__version__,
        "peft": peft.__version__, "torch_threads": torch.get_num_threads(), "threads_config": cfg.threads,
        "workers": getattr(cfg, "workers", 1), "compute": device_identity(resolve_device("auto")),
        "load_average_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }


def fsync_latency(directory: Path, n: int = 30) -> dict[str, float]:
    """Latency of writing + fsyncing a small file in ``directory`` (ms): the floor under a durable forget."""
    import numpy as np

    path, times = directory / ".fsync-probe", []
    for _ in range(n):
        start = time.perf_counter()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        try:
            os.write(fd, b"s3t" * 64)
            os.fsync(fd)
        finally:
            os.close(fd)
        times.append(1000 * (time.perf_counter() - start))
    path.unlink(missing_ok=True)
    return {"p50": float(np.percentile(times, 50)), "p99": float(np.percentile(times, 99))}


def run_bench(out_dir: str | Path, quick: bool = True, say: Callable[[str], None] | None = None,
              restart: bool = False, keep_work: bool = False, only: str | None = None,
              tuned: str | Path | dict[str, Any] | None = None, **overrides: Any) -> dict[str, Any]:
    """Run the benchmark (``quick`` preset or full) and write its results into ``out_dir``.

    ``overrides`` replace :class:`BenchConfig` fields (e.g. ``model=`` a local tiny encoder
    and ``limit=`` for tests). Finished parts and fits are kept in ``out_dir/work`` while the
    run lasts, so running the same call again after an interruption continues it
    (``restart=True`` discards them instead; ``keep_work=True`` keeps them at the end).
    ``only="P8"`` runs the deletion-traffic part alone (its own fits), ``only="P3"`` the fits and
    test accuracy of every dataset in ``p3_datasets``, ``only="P4"`` those and then P4 on the main
    dataset's fits; ``workers`` (those two only) trains S3T's shards in that many processes. ``tuned``: a ``s3t tune --bench`` result (its
    JSON file or dict): each method trains with its chosen settings, on datasets it was tuned for
    (checked to be this run's split). Returns the results dict also written to ``results.json``.
    """
    from ..train.backbone import set_determinism
    from .serve_parts import close_copy, p1_forget, p4_accuracy, p6_throughput, replay_stream, sisa_real_forget
    from .traffic import p8_traffic
    from .train_parts import Context, p3_all, p5_cost, p7_growth, train_all

    say = say or (lambda msg: print(msg, flush=True))
    if tuned is not None:
        from .tuned import bench_tuned

        overrides["tuned"] = bench_tuned(json.loads(Path(tuned).read_text()) if isinstance(tuned, (str, Path)) else tuned)
    if only not in (None, "P3", "P4", "P8"):
        raise ConfigError(f"only must be None, 'P3', 'P4' or 'P8'; got {only!r}")
    cfg = BenchConfig.quick(**overrides) if quick else BenchConfig.full(**overrides)
    if cfg.workers != 1 and only not in ("P3", "P4"):
        raise ConfigError(f"workers={cfg.workers}: only `--only P3` and `--only P4` may train S3T with several worker "
                          "processes; the other parts compare training cost and latency with SISA and the full "
                          "fine-tune, which train in one process")
    if only in ("P3", "P4") and cfg.dataset not in cfg.p3_datasets:  # P3 alone: the first of its datasets is the main one
        cfg = replace(cfg, dataset=cfg.p3_datasets[0])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = RunState(out, cfg.to_dict(), restart=restart, say=say)
    t0, cpu0 = time.perf_counter(), cpu_seconds()
    set_determinism(cfg.threads)
    results: dict[str, Any] = {"mode": cfg.mode, "config": cfg.to_dict(), "machine": machine(cfg)}
    say(f"s3t bench ({cfg.mode}): model {cfg.model}, m={cfg.shards} L={cfg.slices}, {cfg.epochs} epoch(s), "
        f"{cfg.threads} thread(s)")
    timings: dict[str, float] = {}
    if only == "P8":
        return _p8_only(cfg, out, state, results, say, t0, cpu0, keep_work)
    if only in ("P3", "P4"):
        return _p3_only(cfg, out, state, results, say, t0, cpu0, keep_work, p4=only == "P4")
    say("P2: deletion-rate simulations ...")
    results["P2"] = state.part("P2", p2_deletion_rate, cfg, timings=timings)
    backbone, splits, warm, warm_cpu = _model_and_data(cfg, results)
    results["machine"]["fsync_ms"] = fsync_latency(state.root)
    results["timings"] = timings
    ctx = Context(cfg, backbone, splits, state.root, warm, warm_cpu, say, state=state)
    short = None
    try:
        train_all(ctx)
        fits = {k: {kk: vv for kk, vv in v.items() if kk not in ("est", "model")}
                for k, v in ctx.fits.items() if isinstance(v, dict) and k != "sisa_test_logits"}
        timings["fits"] = sum(v["seconds"] for v in fits.values())
        say("P3: test accuracy ...")
        results["P3"] = p3_all(ctx, timings)
        results["P5"] = state.part("P5", p5_cost, ctx, timings=timings)
        results["P7"] = state.part("P7", p7_growth, ctx, timings=timings)
        say(f"P1: {cfg.deletions} single-record forgets on workspace copies ...")
        results["P1"] = state.part("P1", p1_forget, ctx, timings=timings)
        say("P4: accuracy as deletions accumulate ...")
        if state.has("P4"):
            results["P4"] = state.part("P4", p4_accuracy, ctx, timings=timings)  # kept: not recomputed
            if not state.has("P6"):  # P6 measures the short prefixes P4's last stream left: replay it
                short = replay_stream(ctx, results["P4"]["orders"][-1][: results["P4"]["max_deletions"]])
        else:
            start = time.perf_counter()
            p4, short = p4_accuracy(ctx)
            results["P4"] = state.save("P4", {"value": p4, "seconds": time.perf_counter() - start})["value"]
            timings["P4"] = time.perf_counter() - start
        say("P6: predict throughput and latency ...")
        results["P6"] = state.part("P6", p6_throughput, ctx, short, timings=timings)
        say("P8: deletion traffic ...")
        results["P8"] = state.part("P8", p8_traffic, ctx, timings=timings)
        say("P1 check: one real SISA forget ...")
        results["P1"]["sisa_real_forget"] = state.part("P1_sisa_real_forget", sisa_real_forget, ctx, timings=timings)
        results["fits"] = fits
        for k in ("s3t_B1", f"s3t_B{cfg.slices}"):
            ctx.fits[k]["est"].ws_.ledger.close()
    finally:
        if short is not None:
            close_copy(short)
    results["resumed"] = state.resumed
    results["machine"]["load_average_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    return _write(results, out, state, say, t0, cpu0, keep_work, "bench")


def _p4_closed(ctx) -> dict[str, Any]:
    """P4's results, its last stream's workspace copy closed (only P6 measures it)."""
    from .serve_parts import close_copy, p4_accuracy

    p4, last = p4_accuracy(ctx)
    close_copy(last)
    return p4


def _model_and_data(cfg: BenchConfig, results: dict[str, Any]):
    """The backbone, the time of a second (warm) load — what S3T.fit spends loading its own copy — and the
    dataset's splits, recorded in ``results["data"]``: (backbone, splits, warm wall s, warm CPU s)."""
    from ..data import load_builtin
    from ..train.backbone import load_backbone
    from .train_parts import s3t_config

    train = s3t_config(cfg, 1).train  # where every method trains ('auto': the GPU where there is one)
    backbone = load_backbone(cfg.model, device=train.device)
    start, cpu_start = time.perf_counter(), time.process_time()
    load_backbone(cfg.model, device=train.device)
    warm, warm_cpu = time.perf_counter() - start, time.process_time() - cpu_start
    splits = load_builtin(cfg.dataset, seed=cfg.seed, limit=cfg.limit, fractions=cfg.fractions)
    results["data"] = {"dataset": cfg.dataset, "train": len(splits.train), "validation": len(splits.validation),
                       "test": len(splits.test), "warm_backbone_load_seconds": warm}
    return backbone, splits, warm, warm_cpu


def _write(results: dict[str, Any], out: Path, state: RunState, say, t0: float, cpu0: float, keep_work: bool,
           what: str) -> dict[str, Any]:
    """Totals, the summary table and the plots; results.json and summary.md; the kept pieces go."""
    results["total_seconds"] = time.perf_counter() - t0
    results["cpu_seconds"] = cpu_seconds() - cpu0  # with 1 thread ≈ the wall time on an idle core
    results["summary"] = summary_rows(results)
    results["plots"] = plots(results, out)
    (out / "results.json").write_text(to_json(results))
    (out / "summary.md").write_text(markdown_table(results["summary"]) + "\n")
    state.finish(keep=keep_work)
    say(f"{what} finished in {results['total_seconds']:.0f}s wall ({results['cpu_seconds']:.0f}s CPU); results in {out}")
    return results


def _p8_only(cfg: BenchConfig, out: Path, state: RunState, results: dict[str, Any], say, t0: float, cpu0: float,
             keep_work: bool) -> dict[str, Any]:
    """``s3t bench --only P8``: the data, the backbone, then P8 alone."""
    from ..data import load_builtin
    from ..train.backbone import backbone_for
    from .traffic import p8_traffic
    from .train_parts import Context, s3t_config

    backbone = backbone_for(s3t_config(cfg, 1).train)
    splits = load_builtin(cfg.dataset, seed=cfg.seed, limit=cfg.limit, fractions=cfg.fractions)
    results["data"] = {"dataset": cfg.dataset, "train": len(splits.train), "test": len(splits.test)}
    ctx = Context(cfg, backbone, splits, state.root, 0.0, 0.0, say, state=state)
    results["P8"] = state.part("P8", p8_traffic, ctx)
    return _write(results, out, state, say, t0, cpu0, keep_work, "P8")


def _p3_only(cfg: BenchConfig, out: Path, state: RunState, results: dict[str, Any], say, t0: float, cpu0: float,
             keep_work: bool, p4: bool = False) -> dict[str, Any]:
    """``s3t bench --only P3``: the four fits and their test accuracy on every dataset of ``p3_datasets``;
    ``--only P4`` (``p4=True``): then the main dataset's accuracy as deletions accumulate, on its fits."""
    from .train_parts import Context, p3_all, train_all

    backbone, splits, warm, warm_cpu = _model_and_data(cfg, results)
    timings: dict[str, float] = {}
    results["timings"] = timings
    ctx = Context(cfg, backbone, splits, state.root, warm, warm_cpu, say, state=state)
    train_all(ctx)
    try:
        say("P3: test accuracy ...")
        results["P3"] = p3_all(ctx, timings)
        results["fits"] = {k: {kk: vv for kk, vv in v.items() if kk not in ("est", "model")}
                           for k, v in ctx.fits.items() if isinstance(v, dict) and k != "sisa_test_logits"}
        if p4:
            say("P4: accuracy as deletions accumulate ...")
            results["P4"] = state.part("P4", _p4_closed, ctx, timings=timings)
    finally:
        for b in (cfg.slices, 1):
            ctx.fits[f"s3t_B{b}"]["est"].ws_.ledger.close()
    return _write(results, out, state, say, t0, cpu0, keep_work, "P3 and P4" if p4 else "P3")
