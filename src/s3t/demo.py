"""The end-to-end demo: train on the movie-review snippets, forget a person and records, show it is exact.

Sized to finish in about 10 minutes on 2 CPU cores (see ``DEMO_CONFIG``); every number
it prints is measured in the run.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .config import LoraSettings, PlanConfig, S3TConfig, TrainConfig

DEMO_CONFIG = S3TConfig(
    plan=PlanConfig(shards=4, slices=3, budget=3, selection="cyclic", seed=0),
    train=TrainConfig(epochs=1, lr=2e-3, batch_size=32, lora=LoraSettings(rank=8, alpha=16)),
)


@dataclass
class DemoOptions:
    workspace: Path
    dataset: str = "movie_reviews"
    limit: int | None = 6000
    forget_count: int = 8
    config: S3TConfig = DEMO_CONFIG
    reference: bool = True
    seed: int = 0
    records_per_person: int = 40
    zipf: float = 1.0


Say = Callable[[str], None]


def reference_accuracy(model, train, validation, test, config: S3TConfig) -> dict[str, float]:
    """A single LoRA model on ALL training data (adapters on every layer), for comparison."""
    import os
    from dataclasses import replace

    from .train.stage import StageSpec, accuracy, train_stage
    from .train.trainer import StageRunner

    # the reference needs no bit-reproducibility: give it every core
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    config = replace(config, train=replace(config.train, threads=cores))
    runner = StageRunner(model._backbone, config, len(train.label_names))
    for rs in (train, validation, test):
        runner.add_records(rs.ids, rs.texts, rs.labels)
    n_layers = model._backbone.n_layers
    spec = StageSpec(shard=-1, prefix=(0,), seed=config.plan.seed, groups=(tuple(range(n_layers)),))
    start = time.perf_counter()
    result = train_stage(model._backbone.model, config.train, spec, len(train.label_names), None,
                         runner.examples(("ref-train",), train.ids, 0))
    return {
        "validation": accuracy(result.model, 0, runner.examples(("ref-val",), validation.ids, 0)),
        "test": accuracy(result.model, 0, runner.examples(("ref-test",), test.ids, 0)),
        "seconds": time.perf_counter() - start,
    }


def forget_person(model, train, rng: random.Random, say: Say) -> dict[str, Any]:
    """Forget one person (every record they own): one slice is cut, every shard stays live."""
    from .plan import place

    plan = model.config.plan
    sizes: dict[str, list[str]] = {}
    for rid, subj in zip(train.ids, train.subjects):
        sizes.setdefault(subj, []).append(rid)
    person = rng.choice(sorted(sizes))
    ids = set(sizes[person])
    spread = place(list(train.ids), list(train.subjects), plan.shards, plan.slices, plan.seed, "record")
    by_record = len({pair for rid, pair in zip(train.ids, spread.pairs) if rid in ids})
    t = time.perf_counter()
    receipt = model.forget(subject=person)
    ms = 1000 * (time.perf_counter() - t)
    live = sum(1 for v in receipt.after.values() if v > 0)
    say(f"forgot person {person} ({len(ids)} records) in {ms:.1f} ms: served prefix per shard {receipt.before} -> "
        f"{receipt.after}; {live} of {plan.shards} shards live (placed record by record, their records would sit in "
        f"{by_record} of {plan.shards * plan.slices} slices)")
    model.predict(["a fine film"])  # the model answers at once
    return {"subject": person, "records": len(ids), "record_ids": sorted(ids), "forget_ms": ms,
            "after": receipt.after, "live_shards": live, "slices_if_record_placed": by_record,
            "request_id": receipt.request_id}


def run_demo(opts: DemoOptions, say: Say = print, progress=None) -> dict[str, Any]:
    from .data import load_builtin
    from .data.subjects import describe, with_subjects
    from .estimator import S3T

    t0 = time.perf_counter()
    splits = load_builtin(opts.dataset, seed=opts.seed, limit=opts.limit)
    say(f"dataset {splits.name}: train {len(splits.train)}, validation {len(splits.validation)}, test {len(splits.test)}")
    # the snippets name no author: give them synthetic owners (~40 records a person, Zipf sizes)
    k = max(2, len(splits.train) // opts.records_per_person)
    train = with_subjects(splits.train, k, opts.zipf, opts.seed)
    people = describe(k, len(train), opts.zipf, opts.seed)
    say(f"owners: {k} synthetic people, Zipf a={opts.zipf} sizes (largest {people['largest']}, median "
        f"{people['median']} records)")
    plan = opts.config.plan
    say(f"plan: m={plan.shards} shards x L={plan.slices} slices, B={plan.budget} {plan.selection} sequences, "
        f"{opts.config.train.epochs} epoch(s) per stage")
    model = S3T(opts.config, workspace=opts.workspace)
    t = time.perf_counter()
    model.fit(train, validation=splits.validation, progress=progress)
    out: dict[str, Any] = {"fit_seconds": time.perf_counter() - t, "checkpoints": model.status()["checkpoints"],
                           "people": people, "placement": model.placement_}
    say(f"placement {model.placement_['placement']}: each person's records in one slice; slice sizes "
        f"{model.placement_['slice_min']}..{model.placement_['slice_max']}")
    out["before"] = {"validation": model.score(splits.validation), "test": model.score(splits.test),
                     "served": model.status()["served"]}
    say(f"trained {out['checkpoints']} checkpoints in {out['fit_seconds']:.0f}s; served prefixes {out['before']['served']}")
    say(f"S3T ensemble accuracy: validation {out['before']['validation']:.3f}, test {out['before']['test']:.3f}")
    if opts.reference:
        ref = reference_accuracy(model, splits.train, splits.validation, splits.test, opts.config)
        out["reference"] = ref
        say(f"single full-data LoRA model (reference, {ref['seconds']:.0f}s): validation {ref['validation']:.3f}, "
            f"test {ref['test']:.3f}")

    rng = random.Random(opts.seed)
    out["person"] = forget_person(model, train, rng, say)
    doomed = rng.sample([i for i in train.ids if i not in set(out["person"]["record_ids"])], opts.forget_count)
    t = time.perf_counter()
    receipt = model.forget(record_ids=doomed)
    out["forget_ms"] = 1000 * (time.perf_counter() - t)
    out["receipt"] = receipt.to_dict()
    say(f"forgot {len(doomed)} records in {out['forget_ms']:.1f} ms (request {receipt.request_id}, "
        f"receipt {receipt.hash[:16]}…)")
    say(f"served prefix per shard: before {receipt.before} -> after {receipt.after}")
    again = model.forget(record_ids=list(reversed(doomed)))
    say(f"same request again: original receipt returned ({'yes' if again.hash == receipt.hash and not again.created else 'NO'})")
    out["after"] = {"validation": model.score(splits.validation), "test": model.score(splits.test)}
    say(f"S3T ensemble accuracy after forgetting: validation {out['after']['validation']:.3f}, test {out['after']['test']:.3f}")
    report = model.audit()
    out["audit"] = report.to_dict()
    for c in report.checks:
        say(f"audit {c.name:9s} {'ok ' if c.ok else 'FAIL'} {c.detail}")
    out["total_seconds"] = time.perf_counter() - t0
    say(f"demo finished in {out['total_seconds']:.0f}s; workspace: {opts.workspace}")
    return out
