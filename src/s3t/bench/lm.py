"""P9 — the generative path on a real chat model: training cost, generation speed, forget latency.

On SmolLM2-135M-Instruct tuned on the fictitious people (:mod:`s3t.data.people`):

- **training CPU per sequence**, S3T (stage k trains group k on slices 1..k, from the cached
  pristine trunk) vs SISA (every stage trains every layer) on the same shards and slices;
- **generation speed**: tokens per second of the served ensemble (m members, shared pristine
  trunk, KV caches) vs one member alone, measured alternately on the same prompts so the
  machine's load hits both; ``m x`` one member's time is the cost without a shared trunk;
- **forget latency**: forgetting people one after another (durable, exact; the answer that
  follows comes from the new manifest).

Everything runs in one process with one pinned thread count; numbers are ratios side by side.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np


@dataclass(frozen=True)
class LMBenchConfig:
    model: str = "SmolLM2-135M-Instruct"
    people: int = 12
    facts: int = 4
    shards: int = 2
    slices: int = 3
    budget: int = 2
    epochs: int = 1
    lr: float = 5e-3
    rank: int = 8
    batch_size: int = 8
    max_length: int = 64
    threads: int = 1
    new_tokens: int = 16
    prompts: int = 4
    rounds: int = 3
    forgets: int = 3
    seed: int = 0

    @classmethod
    def quick(cls, **kw) -> "LMBenchConfig":
        return cls(**kw)

    @classmethod
    def full(cls, **kw) -> "LMBenchConfig":
        return cls(**{"people": 40, "facts": 6, "shards": 3, "budget": 3, "epochs": 2, "prompts": 8, "rounds": 5,
                      "forgets": 6, **kw})


def _s3t_config(cfg: LMBenchConfig, budget: int):
    from ..config import LoraSettings, PlanConfig, S3TConfig, TrainConfig

    return S3TConfig(plan=PlanConfig(shards=cfg.shards, slices=cfg.slices, budget=budget, seed=cfg.seed),
                     train=TrainConfig(task="causal-lm", model=cfg.model, epochs=cfg.epochs, lr=cfg.lr,
                                       batch_size=cfg.batch_size, max_length=cfg.max_length, threads=cfg.threads,
                                       workers=1, lora=LoraSettings(rank=cfg.rank, alpha=2 * cfg.rank)))


def _cpu() -> float:
    return time.process_time()


def training_cost(cfg: LMBenchConfig, rows: list[dict], work: Path, backbone) -> tuple[dict[str, Any], Any]:
    """CPU seconds per trained sequence, S3T vs SISA, on the same placement of the same records."""
    from .. import S3T
    from ..baselines.sisa import SISA

    s3t_cfg = _s3t_config(cfg, cfg.budget)
    est = S3T(s3t_cfg, workspace=work / "s3t")
    start = _cpu()  # S3T.fit loads its own copy of the model (well under a second of this)
    est.fit(rows)
    s3t_cpu = _cpu() - start
    sisa = SISA(_s3t_config(cfg, 1), backbone=backbone)
    start = _cpu()
    sisa.fit(rows)
    sisa_cpu = _cpu() - start
    sequences = {"s3t": cfg.shards * cfg.budget, "sisa": cfg.shards}
    return {
        "cpu_seconds": {"s3t": s3t_cpu, "sisa": sisa_cpu},
        "sequences": sequences,
        "checkpoints": {"s3t": len(est.ws_.ledger.checkpoints()), "sisa": cfg.shards * cfg.slices},
        "cpu_per_sequence": {"s3t": s3t_cpu / sequences["s3t"], "sisa": sisa_cpu / sequences["sisa"]},
        "ratio_s3t_to_sisa_per_sequence": (s3t_cpu / sequences["s3t"]) / (sisa_cpu / sequences["sisa"]),
    }, est


def generation_speed(cfg: LMBenchConfig, est, prompts: list[str]) -> dict[str, Any]:
    """Tokens/s of the ensemble vs one member alone, alternating rounds on the same prompts."""
    from ..serve.generate import EnsembleLM

    lm = est.ensemble_lm()

    class One:  # the same ensemble object with one member: a single model's cost
        def __init__(self, ens, shard):
            self.backbone, self.manifest_version = ens.backbone, ens.manifest_version
            self.members = {shard: ens.members[shard]}

    single = EnsembleLM(One(est.ensemble_, min(est.ensemble_.members)))
    seconds: dict[str, list[float]] = {"ensemble": [], "single": []}
    tokens: dict[str, list[int]] = {"ensemble": [], "single": []}
    for round_ in range(cfg.rounds):
        for name, engine in (("ensemble", lm), ("single", single))[:: 1 if round_ % 2 == 0 else -1]:
            start = time.perf_counter()
            out = [engine.generate_one(p, max_new_tokens=cfg.new_tokens) for p in prompts]
            seconds[name].append(time.perf_counter() - start)
            tokens[name].append(sum(max(1, len(g.tokens)) for g in out))
    rate = {k: float(np.median([t / s for t, s in zip(tokens[k], seconds[k])])) for k in seconds}
    m = len(est.ensemble_.members)
    return {"members": m, "tokens_per_second": rate, "rounds": cfg.rounds, "prompts": len(prompts),
            "max_new_tokens": cfg.new_tokens, "seconds": seconds, "tokens": tokens,
            "slowdown_vs_single": rate["single"] / rate["ensemble"],
            "m_forward_limit": float(m)}


def forget_latency(cfg: LMBenchConfig, est, subjects: list[str], prompt: str) -> dict[str, Any]:
    times = []
    for subject in subjects[: cfg.forgets]:
        start = time.perf_counter()
        est.forget(subject=subject)
        times.append(1000 * (time.perf_counter() - start))
    est.flush()
    after = est.generate([prompt], max_new_tokens=4, details=True)[0]
    return {"forgets": len(times), "ms": times, "p50_ms": float(np.percentile(times, 50)),
            "max_ms": float(max(times)), "served_after": after.served, "audit_ok": bool(est.audit().ok)}


def plot(result: dict[str, Any], path: Path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    cost = result["training"]["cpu_per_sequence"]
    axes[0].bar(["S3T", "SISA"], [cost["s3t"], cost["sisa"]], color=["#2b6cb0", "#a0aec0"])
    axes[0].set_title("training CPU s per sequence")
    gen = result["generation"]
    rate = gen["tokens_per_second"]
    axes[1].bar([f"ensemble (m={gen['members']})", "one member", f"1/m x one"],
                [rate["ensemble"], rate["single"], rate["single"] / gen["members"]],
                color=["#2b6cb0", "#a0aec0", "#e2e8f0"])
    axes[1].set_title("generation tokens/s")
    fl = result["forget"]
    axes[2].bar(range(1, len(fl["ms"]) + 1), fl["ms"], color="#2f855a")
    axes[2].set_title("forget a person: ms")
    axes[2].set_xlabel("request")
    fig.suptitle(f"P9: causal LM ({result['config']['model']}, {result['data']['train']} records)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def run_p9(out_dir: str | Path, quick: bool = True, say: Callable[[str], None] | None = None, **overrides) -> dict:
    """Run P9 and write ``results.json`` and ``p9.png`` into ``out_dir``."""
    import shutil

    from ..data import fictitious_people
    from ..train.backbone import load_backbone, set_determinism

    say = say or (lambda msg: print(msg, flush=True))
    cfg = LMBenchConfig.quick(**overrides) if quick else LMBenchConfig.full(**overrides)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    work = out / "work"
    shutil.rmtree(work, ignore_errors=True)
    set_determinism(cfg.threads)
    t0, cpu0 = time.perf_counter(), _cpu()
    rows = fictitious_people(n_people=cfg.people, facts_per_person=cfg.facts, seed=cfg.seed)
    backbone = load_backbone(cfg.model, "causal-lm")
    say(f"P9: {len(rows)} chat records, m={cfg.shards} L={cfg.slices} B={cfg.budget}, S3T vs SISA training ...")
    training, est = training_cost(cfg, rows, work, backbone)
    prompts = [r["prompt"] for r in rows[:: max(1, len(rows) // cfg.prompts)]][: cfg.prompts]
    say("P9: generation speed, ensemble vs one member ...")
    generation = generation_speed(cfg, est, prompts)
    say("P9: forgetting people ...")
    subjects = sorted({r["subject"] for r in rows})[1:]
    forget = forget_latency(cfg, est, subjects, rows[0]["prompt"])
    est.ws_.ledger.close()
    result = {"config": asdict(cfg), "data": {"dataset": "fictitious_people", "train": len(rows)},
              "training": training, "generation": generation, "forget": forget,
              "total_seconds": time.perf_counter() - t0, "cpu_seconds": _cpu() - cpu0}
    result["plot"] = plot(result, out / "p9.png")
    (out / "results.json").write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    shutil.rmtree(work, ignore_errors=True)
    say(f"P9 finished in {result['total_seconds']:.0f}s: S3T {training['cpu_per_sequence']['s3t']:.1f} s CPU per "
        f"sequence vs SISA {training['cpu_per_sequence']['sisa']:.1f}; ensemble {generation['tokens_per_second']['ensemble']:.1f} "
        f"tokens/s vs one member {generation['tokens_per_second']['single']:.1f}; forget p50 {forget['p50_ms']:.0f} ms")
    return result
