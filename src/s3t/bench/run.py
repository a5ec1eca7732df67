"""``run_bench``: every part of the benchmark in one process, results.json + PNGs + summary.md.

Order: P2 (pure simulation) → fits (S3T B=L and B=1, SISA, full) → P3 → P5 → P7 →
P1 (forget latency on workspace copies) → P4 (accuracy under deletions) → P6 (predict
speed, incl. the short prefixes P4 left behind) → one real SISA forget as a check of the
latency estimate. Scratch workspaces live in a temporary directory removed at the end.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from .config import BenchConfig
from .plan_parts import p2_deletion_rate
from .report import markdown_table, plots, summary_rows


def machine(cfg: BenchConfig) -> dict[str, Any]:
    import peft
    import torch
    import transformers

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
        "workers": 1, "load_average_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
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
              **overrides: Any) -> dict[str, Any]:
    """Run the benchmark (``quick`` preset or full) and write its results into ``out_dir``.

    ``overrides`` replace :class:`BenchConfig` fields (e.g. ``model=`` a local tiny encoder
    and ``limit=`` for tests). Returns the results dict also written to ``results.json``.
    """
    from ..data import load_builtin
    from ..train.backbone import load_backbone, set_determinism
    from .serve_parts import close_copy, p1_forget, p4_accuracy, p6_throughput, sisa_real_forget
    from .train_parts import Context, p3_accuracy, p5_cost, p7_growth, train_all

    say = say or (lambda msg: print(msg, flush=True))
    cfg = BenchConfig.quick(**overrides) if quick else BenchConfig.full(**overrides)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0, cpu0 = time.perf_counter(), _cpu_seconds()
    set_determinism(cfg.threads)
    results: dict[str, Any] = {"mode": cfg.mode, "config": cfg.to_dict(), "machine": machine(cfg)}
    say(f"s3t bench ({cfg.mode}): model {cfg.model}, m={cfg.shards} L={cfg.slices}, {cfg.epochs} epoch(s), "
        f"{cfg.threads} thread(s)")
    say("P2: deletion-rate simulations ...")
    start = time.perf_counter()
    results["P2"] = p2_deletion_rate(cfg)
    p2_seconds = time.perf_counter() - start
    backbone = load_backbone(cfg.model)
    start, cpu_start = time.perf_counter(), time.process_time()
    load_backbone(cfg.model)  # a warm load: what S3T.fit spends loading its own copy
    warm, warm_cpu = time.perf_counter() - start, time.process_time() - cpu_start
    splits = load_builtin(cfg.dataset, seed=cfg.seed, limit=cfg.limit, fractions=cfg.fractions)
    results["data"] = {"dataset": cfg.dataset, "train": len(splits.train), "validation": len(splits.validation),
                       "test": len(splits.test), "warm_backbone_load_seconds": warm}
    tmp = Path(tempfile.mkdtemp(prefix="s3t-bench-"))
    results["machine"]["fsync_ms"] = fsync_latency(tmp)
    timings: dict[str, float] = {"P2": p2_seconds}
    results["timings"] = timings

    def timed(name: str, fn, *args):
        start = time.perf_counter()
        value = fn(*args)
        timings[name] = time.perf_counter() - start
        return value

    short = None
    try:
        ctx = Context(cfg, backbone, splits, tmp, warm, warm_cpu, say)
        timed("fits", train_all, ctx)
        say("P3: test accuracy ...")
        results["P3"] = timed("P3", p3_accuracy, ctx)
        results["P5"] = timed("P5", p5_cost, ctx)
        results["P7"] = timed("P7", p7_growth, ctx)
        say(f"P1: {cfg.deletions} single-record forgets on workspace copies ...")
        results["P1"] = timed("P1", p1_forget, ctx)
        say("P4: accuracy as deletions accumulate ...")
        results["P4"], short = timed("P4", p4_accuracy, ctx)
        say("P6: predict throughput and latency ...")
        results["P6"] = timed("P6", p6_throughput, ctx, short)
        say("P1 check: one real SISA forget ...")
        results["P1"]["sisa_real_forget"] = timed("P1_sisa_real_forget", sisa_real_forget, ctx)
        results["fits"] = {k: {kk: vv for kk, vv in v.items() if kk not in ("est", "model")}
                           for k, v in ctx.fits.items() if isinstance(v, dict) and k != "sisa_test_logits"}
        for k in ("s3t_B1", f"s3t_B{cfg.slices}"):
            ctx.fits[k]["est"].ws_.ledger.close()
    finally:
        if short is not None:
            close_copy(short)
        shutil.rmtree(tmp, ignore_errors=True)
    results["machine"]["load_average_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    results["total_seconds"] = time.perf_counter() - t0
    results["cpu_seconds"] = _cpu_seconds() - cpu0  # with 1 thread ≈ the wall time on an idle core
    results["summary"] = summary_rows(results)
    results["plots"] = plots(results, out)
    (out / "results.json").write_text(json.dumps(results, indent=2, default=_json_default) + "\n")
    (out / "summary.md").write_text(markdown_table(results["summary"]) + "\n")
    say(f"bench finished in {results['total_seconds']:.0f}s wall ({results['cpu_seconds']:.0f}s CPU); results in {out}")
    return results


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process (all its threads)."""
    import resource

    use = resource.getrusage(resource.RUSAGE_SELF)
    return use.ru_utime + use.ru_stime


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, (set, tuple)):
        return list(obj)
    return str(obj)
