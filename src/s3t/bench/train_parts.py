"""Training side of the benchmark: the fits every part uses, P3 (accuracy), P5 (cost), P7 (growth).

S3T is trained through its public estimator (``S3T.fit``), SISA and the full fine-tune
through :mod:`s3t.baselines`; all share the model, data, LoRA settings, epochs, batch
size and pinned thread count, and run one after another in this process. With settings
chosen by ``s3t tune`` (``BenchConfig.tuned``, see :mod:`s3t.bench.tuned`), each method's fits
use its own chosen lr, LoRA rank/alpha and epochs instead; everything else stays shared.

P3 measures test accuracy before any deletion on every dataset of ``BenchConfig.p3_datasets``:
the main dataset's fits (which the later parts use too), and four more fits per other dataset.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..config import LoraSettings, PlanConfig, S3TConfig, TrainConfig
from ..plan import assign_shards, cyclic
from .config import BenchConfig
from .resume import RunState
from .plan_parts import cache_saving_model, padded_fraction, random_batches


@dataclass
class Context:
    cfg: BenchConfig
    backbone: Any
    splits: Any
    tmp: Path
    warm_load_seconds: float
    warm_load_cpu: float
    say: Callable[[str], None] = print
    state: RunState | None = None  # finished pieces kept for a re-run (None: keep nothing)
    fits: dict[str, Any] = field(default_factory=dict)
    tag: str = ""  # prefix of the fits' names and kept pieces (another dataset's P3 fits: "trec-")

    def part(self, name: str, fn: Callable[..., Any], *args: Any) -> Any:
        return fn(*args) if self.state is None else self.state.part(name, fn, *args)

    @property
    def n_labels(self) -> int:
        return len(self.splits.train.label_names)


class Clock:
    """Wall and CPU seconds since creation: this process's and its finished child processes'
    (the worker processes of a fit with ``workers > 1``). With one torch thread, CPU seconds
    are the work done, much less disturbed by other processes than wall time on a shared machine."""

    def __init__(self) -> None:
        self.wall0, self.cpu0 = time.perf_counter(), cpu_seconds()

    def wall(self) -> float:
        return time.perf_counter() - self.wall0

    def cpu(self) -> float:
        return cpu_seconds() - self.cpu0


def cpu_seconds() -> float:
    """User + system CPU seconds of this process (all its threads) and of its finished children."""
    import resource

    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


class Ticker:
    """A fit's progress callback that reports every 10% through ``say`` (a long run stays legible in a log)."""

    def __init__(self, say: Callable[[str], None], name: str) -> None:
        self.say, self.name, self.done, self.shown, self.start = say, name, 0, 0, time.perf_counter()

    def __call__(self, desc: str, n: int, total: int) -> None:
        self.done += n
        tenth = 10 * self.done // max(1, total)
        if tenth > self.shown:
            self.shown = tenth
            self.say(f"  {self.name}: {desc} {10 * tenth}% ({self.done}/{total} examples, "
                     f"{time.perf_counter() - self.start:.0f}s)")


def s3t_config(cfg: BenchConfig, budget: int, cache: bool = True, settings: dict[str, Any] | None = None) -> S3TConfig:
    """The config of a bench fit; ``settings`` (``lr``, ``rank``, ``alpha``, ``epochs``, e.g. chosen by
    ``s3t tune``) replace the bench's shared ones."""
    st = {"lr": cfg.lr, "rank": cfg.rank, "alpha": cfg.alpha, "epochs": cfg.epochs, **(settings or {})}
    return S3TConfig(
        plan=PlanConfig(shards=cfg.shards, slices=cfg.slices, budget=budget, selection="cyclic", seed=cfg.seed),
        train=TrainConfig(model=cfg.model, epochs=int(st["epochs"]), lr=float(st["lr"]), batch_size=cfg.batch_size,
                          threads=cfg.threads, workers=cfg.workers, cache=cache, val_limit=cfg.val_limit,
                          lora=LoraSettings(rank=int(st["rank"]), alpha=st["alpha"])),
    )


def method_config(cfg: BenchConfig, method: str, budget: int, cache: bool = True) -> S3TConfig:
    """The config ``method`` ("s3t", "sisa", "full") trains with on ``cfg.dataset``: its tuned settings
    when the run has them for this dataset, else the bench's shared ones."""
    from .tuned import method_settings

    return s3t_config(cfg, budget, cache, settings=method_settings(cfg, method))


def fit_s3t(ctx: Context, budget: int, train, name: str) -> dict:
    """Fit S3T into the workspace ``ctx.tmp / name``; its training time is the fit's wall time
    minus one warm backbone load (``S3T.fit`` loads the backbone itself).

    With a run state, a finished fit is reloaded, and a fit that was cut off is finished
    (``S3T.retrain`` trains exactly the stages it lacks). A finished-after-interruption fit
    reports its stages' own timers (``resumed: True``): the cut-off attempt's clock is lost.
    """
    from ..errors import NotFittedError, WorkspaceError
    from ..estimator import S3T

    path, key = ctx.tmp / name, f"fit-{name}"
    if ctx.state is not None and ctx.state.has(key):
        ctx.say(f"  {name}: fitted in the interrupted run, reloaded")
        return {**ctx.state.load(key), "est": _load(path, ctx)}
    est = None
    if ctx.state is not None and path.exists():
        try:
            est = _load(path, ctx)
        except (NotFittedError, WorkspaceError):  # cut off before its ledger was set up: start again
            shutil.rmtree(path)
    if est is not None:
        ctx.say(f"  {name}: finishing the fit cut off in the interrupted run ...")
        est.retrain(progress=Ticker(ctx.say, name))
        cps = est.ws_.ledger.checkpoints()
        stage_sum = float(sum(c.seconds for c in cps))
        t = est.train_timings_
        # validation share of the stages trained now, applied to all of them
        val = stage_sum * t["validation_seconds"] / t["stage_seconds"] if t["stage_seconds"] else 0.0
        meta = {"budget": budget, "n_train": len(train), "wall": stage_sum, "seconds": stage_sum,
                "cpu_seconds": stage_sum, "validation_seconds": val, "resumed": True}
    else:
        validation = ctx.splits.validation if ctx.cfg.validation else None
        clock = Clock()
        est = S3T(method_config(ctx.cfg, "s3t", budget), workspace=path).fit(train, validation=validation,
                                                                             progress=Ticker(ctx.say, name))
        wall, cpu = clock.wall(), clock.cpu()
        cps = est.ws_.ledger.checkpoints()
        meta = {"budget": budget, "n_train": len(train), "wall": wall,
                "seconds": max(1e-9, wall - ctx.warm_load_seconds), "cpu_seconds": max(1e-9, cpu - ctx.warm_load_cpu),
                "validation_seconds": est.train_timings_["validation_seconds"], "resumed": False}
    meta.update(checkpoints=len(cps), stage_sum=float(sum(c.seconds for c in cps)),
                examples=int(sum(c.n_examples for c in cps)) * est.config.train.epochs)
    if ctx.state is not None:
        meta = ctx.state.save(key, meta)
    return {**meta, "est": est}


def _load(path: Path, ctx: Context):
    from ..estimator import S3T

    est = S3T.load(path)
    est._backbone = ctx.backbone  # share the loaded encoder
    return est


def _baseline(ctx: Context, name: str, cls, train) -> dict:
    """Fit a baseline (``SISA`` or ``FullRetrain``) on ``train``, or restore it from the run state."""
    base = method_config(ctx.cfg, cls.name, 1)
    path = None if ctx.state is None else ctx.state.file(f"{name}.pt")
    if path is not None and path.exists() and ctx.state.has(f"fit-{name}"):
        ctx.say(f"  {name}: fitted in the interrupted run, restored")
        return {**ctx.state.load(f"fit-{name}"), "model": cls.restore(base, train, path, backbone=ctx.backbone)}
    clock = Clock()
    model = cls(base, backbone=ctx.backbone).fit(train)
    stages = model.stage_seconds_ if cls.name == "sisa" else {0: [model.seconds_]}
    meta = {"seconds": clock.wall(), "cpu_seconds": clock.cpu(), "stage_sum": float(sum(sum(v) for v in stages.values()))}
    if path is not None:
        model.save(path)
        meta = ctx.state.save(f"fit-{name}", meta)
    ctx.say(f"  {meta['seconds']:.1f}s ({meta['cpu_seconds']:.1f}s CPU)")
    return {**meta, "model": model}


def train_all(ctx: Context) -> None:
    """S3T with B=L and B=1, SISA and the full fine-tune on the same training set (each with its
    tuned settings when the run has them: checked first to come from this very split)."""
    from ..baselines import SISA, FullRetrain
    from .tuned import check_tuned

    cfg, train, tag = ctx.cfg, ctx.splits.train, ctx.tag
    check_tuned(cfg, ctx.splits)
    for b in (cfg.slices, 1):
        ctx.say(f"training S3T m={cfg.shards} L={cfg.slices} B={b} on {len(train)} {cfg.dataset} records ...")
        ctx.fits[f"s3t_B{b}"] = fit_s3t(ctx, b, train, f"{tag}s3t-B{b}")
        ctx.say(f"  {ctx.fits[f's3t_B{b}']['seconds']:.1f}s ({ctx.fits[f's3t_B{b}']['cpu_seconds']:.1f}s CPU)")
    ctx.say("training SISA (all layers at every stage) ...")
    ctx.fits["sisa"] = _baseline(ctx, f"{tag}sisa", SISA, train)
    ctx.say("training the full fine-tune (one all-layer model on all data) ...")
    ctx.fits["full"] = _baseline(ctx, f"{tag}full", FullRetrain, train)
    ctx.fits["sisa_test_logits"] = {}  # per SISA checkpoint, filled when first needed (P3, P4)


def p3_accuracy(ctx: Context) -> dict:
    """Test accuracy before any deletion, and the settings each method trained with."""
    from .tuned import method_settings

    cfg, test = ctx.cfg, ctx.splits.test
    out = {f"s3t_B{b}": ctx.fits[f"s3t_B{b}"]["est"].score(test) for b in (cfg.slices, 1)}
    out["sisa"] = sisa_accuracy(ctx, ctx.fits["sisa"]["model"].served_stages([]))
    out["full"] = ctx.fits["full"]["model"].score(test)
    out["n_test"] = len(test)
    out["n_train"] = len(ctx.splits.train)
    out["n_classes"] = ctx.n_labels
    out["dataset"] = cfg.dataset
    out["epochs"] = cfg.epochs
    settings = {}
    for method in ("s3t", "sisa", "full"):
        tuned = method_settings(cfg, method)
        settings[method] = {**{k: getattr(cfg, k) for k in ("lr", "rank", "alpha", "epochs")}, **(tuned or {}),
                            "source": "tuned" if tuned else "default"}
    out["settings"] = settings
    out["tuned"] = any(v["source"] == "tuned" for v in settings.values())
    out["fit_cpu_seconds"] = {k: ctx.fits[k]["cpu_seconds"] for k in (f"s3t_B{cfg.slices}", "s3t_B1", "sisa", "full")}
    return out


def p3_dataset(ctx: Context, name: str) -> dict:
    """P3 on another dataset ``name``: its own split (the run's limit, fractions and seed) and four fits,
    kept under the tag ``name-`` (their ledgers are closed and the models dropped afterwards)."""
    from dataclasses import replace

    from ..data import load_builtin

    cfg = replace(ctx.cfg, dataset=name)
    splits = load_builtin(name, seed=cfg.seed, limit=cfg.limit, fractions=cfg.fractions)
    sub = Context(cfg, ctx.backbone, splits, ctx.tmp, ctx.warm_load_seconds, ctx.warm_load_cpu, ctx.say,
                  state=ctx.state, tag=f"{name}-")
    train_all(sub)
    try:
        out = p3_accuracy(sub)
    finally:
        for b in (cfg.slices, 1):
            sub.fits[f"s3t_B{b}"]["est"].ws_.ledger.close()
    return out


def p3_all(ctx: Context, timings: dict[str, float] | None = None) -> dict:
    """P3 of the main dataset (``ctx``'s fits, already trained) at the top level, as before, and every
    dataset of ``p3_datasets`` (the main one included) under ``datasets``."""
    keep = ctx.state.part if ctx.state is not None else (lambda name, fn, *a, timings=None: fn(*a))
    p3 = keep("P3", p3_accuracy, ctx, timings=timings)
    p3["datasets"] = {ctx.cfg.dataset: {k: v for k, v in p3.items() if k != "datasets"}}
    for name in ctx.cfg.p3_datasets:
        if name != ctx.cfg.dataset:
            ctx.say(f"P3 on {name} ...")
            p3["datasets"][name] = keep(f"P3_{name}", p3_dataset, ctx, name, timings=timings)
    return p3


def sisa_accuracy(ctx: Context, stages: dict[int, int]) -> float | None:
    """Test accuracy of SISA serving ``stages`` (per shard; 0 = dead); None when no shard is live.

    Each checkpoint's test logits are computed once, when first needed (P3, then P4).
    """
    from ..baselines.runner import aggregate

    sisa, memo = ctx.fits["sisa"]["model"], ctx.fits["sisa_test_logits"]
    texts = list(ctx.splits.test.texts)
    for s, k in stages.items():
        if k > 0 and (s, k) not in memo:
            memo.update(sisa.checkpoint_logits(texts, {s: k}))
    live = [memo[(s, k)] for s, k in sorted(stages.items()) if k > 0]
    if not live:
        return None
    pred = aggregate(live, "logits").argmax(-1)
    return float((pred == np.array(ctx.splits.test.labels)).mean())


def _shard0(cfg: BenchConfig, train) -> tuple[dict[int, tuple[str, ...]], list[tuple[str, str, int]]]:
    """Shard 0 of ``train`` as S3T and SISA split it: slice -> record ids, and its (id, text, label) rows."""
    where = assign_shards(list(train.ids), cfg.shards, cfg.slices, cfg.seed)
    members = {j: tuple(i for i, a in zip(train.ids, where) if a == (0, j)) for j in range(cfg.slices)}
    keep = {i for m in members.values() for i in m}
    return members, [(i, t, y) for i, t, y in zip(train.ids, train.texts, train.labels) if i in keep]


def _add_rows(runner, rows: list[tuple[str, str, int]]) -> None:
    runner.add_records([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows])


def p5a_pair(ctx: Context) -> dict:
    """P5a side by side: one S3T sequence and one SISA sequence on shard 0, alternated ``pair_repeats``
    times in this process, each from a fresh runner (S3T pays for building its trunk cache every time).
    Both see the same machine conditions, unlike the two fits, which run hours apart in the full run."""
    from ..baselines.runner import AllLayerRunner
    from ..train.trainer import SliceData, StageRunner

    cfg = ctx.cfg
    members, rows = _shard0(cfg, ctx.splits.train)
    conf = s3t_config(cfg, 1)
    prefixes = [tuple(range(k)) for k in range(1, cfg.slices + 1)]  # the identity sequence, as SISA trains it
    runs: dict[str, list[dict[str, float]]] = {"s3t": [], "sisa": []}
    for _ in range(cfg.pair_repeats):
        for name in ("s3t", "sisa"):
            clock = Clock()
            runner = (StageRunner(ctx.backbone, conf, ctx.n_labels) if name == "s3t"
                      else AllLayerRunner(ctx.backbone, conf, ctx.n_labels, stages=cfg.slices))
            _add_rows(runner, rows)
            stages: list[float] = []
            runner.train_prefixes(0, prefixes, {j: SliceData(j, members[j]) for j in members},
                                  lambda spec, result, lineage, stages=stages: stages.append(result.seconds))
            runs[name].append({"cpu_seconds": clock.cpu(), "seconds": clock.wall(), "stage_sum": float(sum(stages))})
            del runner
    med = {name: {k: float(np.median([r[k] for r in rs])) for k in rs[0]} for name, rs in runs.items()}
    return {"shard_records": len(rows), "repeats": cfg.pair_repeats, "runs": runs, "median": med,
            "ratio_cpu": med["s3t"]["cpu_seconds"] / med["sisa"]["cpu_seconds"],
            "ratio_stage_sum": med["s3t"]["stage_sum"] / med["sisa"]["stage_sum"],
            "pair_ratios_cpu": [a["cpu_seconds"] / b["cpu_seconds"] for a, b in zip(runs["s3t"], runs["sisa"])]}


def p5b_cache(ctx: Context) -> dict:
    """One shard's B=L prefix trie trained with the trunk cache and without it (full forward every step),
    on ``cache_fraction`` of the training set: wall times, the test accuracy of the first sequence's
    final checkpoint in each mode, and the largest weight difference over all final checkpoints."""
    from ..train.batches import tokenize
    from ..train.stage import Examples, accuracy, build_model
    from ..train.trainer import SliceData, StageRunner, trie

    cfg = ctx.cfg
    train = ctx.splits.train
    if cfg.cache_fraction < 1:
        n = max(cfg.shards * cfg.slices, round(cfg.cache_fraction * len(train)))
        train = train.subset(np.sort(np.random.default_rng(cfg.seed).permutation(len(train))[:n]))
    members, rows = _shard0(cfg, train)
    test = ctx.splits.test
    max_length = s3t_config(cfg, 1).train.max_length
    test_ex = Examples(list(test.labels), tokens=tokenize(ctx.backbone.tokenizer, list(test.texts), max_length),
                       pad_id=int(ctx.backbone.tokenizer.pad_token_id or 0))
    prefixes = trie(cyclic(cfg.slices, cfg.slices))
    out: dict[str, Any] = {"shard": 0, "train_records": len(train), "shard_records": len(rows), "prefixes": len(prefixes)}
    for cache in (True, False):
        conf = s3t_config(cfg, cfg.slices, cache=cache)
        runner = StageRunner(ctx.backbone, conf, ctx.n_labels)
        _add_rows(runner, rows)
        finals: dict[tuple[int, ...], Any] = {}

        def keep_final(spec, result, lineage, finals=finals) -> None:
            if spec.stage == cfg.slices:
                finals[spec.prefix] = (spec, result.state)

        clock = Clock()
        runner.train_prefixes(0, prefixes, {j: SliceData(j, members[j]) for j in members}, keep_final)
        seconds, cpu = clock.wall(), clock.cpu()
        spec, state = finals[min(finals)]  # test accuracy of one final checkpoint (the first sequence)
        model = build_model(ctx.backbone.model, conf.train, spec, ctx.n_labels)
        model.load_state(state)
        out["cache" if cache else "no_cache"] = {"seconds": seconds, "cpu_seconds": cpu,
                                                 "accuracy": accuracy(model.eval(), 0, test_ex),
                                                 "states": {k: v[1] for k, v in finals.items()}}
        del runner
    a, b = out["cache"].pop("states"), out["no_cache"].pop("states")
    out["max_abs_weight_diff"] = max(float((a[p][k] - b[p][k]).abs().max()) for p in a for k in a[p])
    out["saving"] = 1 - out["cache"]["cpu_seconds"] / out["no_cache"]["cpu_seconds"]
    out["saving_wall"] = 1 - out["cache"]["seconds"] / out["no_cache"]["seconds"]
    out["expected_saving_layer_count"] = cache_saving_model(ctx.backbone.n_layers, cfg.slices, cfg.slices, cfg.epochs)
    out["accuracy_gap_pts"] = 100 * abs(out["cache"]["accuracy"] - out["no_cache"]["accuracy"])
    return out


def p5_cost(ctx: Context) -> dict:
    from ..train.batches import bucket_batches, tokenize

    cfg, m, L = ctx.cfg, ctx.cfg.shards, ctx.cfg.slices
    s3t, sisa = ctx.fits[f"s3t_B{L}"], ctx.fits["sisa"]
    per_seq = {"s3t_cpu": s3t["cpu_seconds"] / (m * L), "sisa_cpu": sisa["cpu_seconds"] / m,
               "s3t": s3t["seconds"] / (m * L), "sisa": sisa["seconds"] / m,
               "s3t_stage_sum": s3t["stage_sum"] / (m * L), "sisa_stage_sum": sisa["stage_sum"] / m}
    per_seq["ratio_cpu"] = per_seq["s3t_cpu"] / per_seq["sisa_cpu"]
    per_seq["ratio"] = per_seq["s3t"] / per_seq["sisa"]
    per_seq["ratio_stage_sum"] = per_seq["s3t_stage_sum"] / per_seq["sisa_stage_sum"]
    # scoring every checkpoint on the validation records (serving tie-breaks) is work SISA does not do
    val = s3t.get("validation_seconds", 0.0)
    per_seq["s3t_validation_seconds"] = val / (m * L)
    per_seq["s3t_cpu_without_validation"] = (s3t["cpu_seconds"] - val) / (m * L)
    per_seq["ratio_cpu_without_validation"] = per_seq["s3t_cpu_without_validation"] / per_seq["sisa_cpu"]
    # stage k reads k slices through the top k·N/L layers; SISA every layer: Σk·(k/L) / Σk
    per_seq["ideal_layer_ratio"] = (2 * L + 1) / (3 * L)
    per_seq["s3t_outside_stages_seconds"] = s3t["seconds"] - s3t["stage_sum"]
    per_seq["note"] = ("process CPU (and wall) time of S3T.fit — tokenising, trunk cache, stages, ledger, checkpoint "
                       "files — vs SISA.fit; stage sums = the stages' own wall timers")
    ctx.say("P5a: one S3T and one SISA sequence on shard 0, side by side ...")
    pair = ctx.part("P5a_pair", p5a_pair, ctx)
    ctx.say("P5b: one shard's B=L trie with and without the trunk cache ...")
    cache = ctx.part("P5b", p5b_cache, ctx)
    texts = list(ctx.splits.train.texts)
    start = time.perf_counter()
    toks = tokenize(ctx.backbone.tokenizer, texts, s3t_config(cfg, 1).train.max_length)
    tok_seconds = time.perf_counter() - start
    lengths = [len(t) for t in toks]
    passes = s3t["examples"] / len(texts)  # how often each record is read by the B=L fit
    cpu = {
        "tokenize_once_seconds": tok_seconds,
        "tokenize_every_pass_seconds": tok_seconds * passes,
        "passes_over_train_in_s3t_fit": passes,
        "padded_fraction_bucketed": padded_fraction(lengths, bucket_batches(lengths, cfg.batch_size)),
        "padded_fraction_random": padded_fraction(lengths, random_batches(len(lengths), cfg.batch_size, cfg.seed)),
        "mean_tokens": float(np.mean(lengths)), "p95_tokens": float(np.percentile(lengths, 95)),
        "note": "tokenise once and length-bucketed dynamic padding are used by S3T, SISA and the full fine-tune alike",
    }
    prefix_sharing = {"trie_checkpoints_per_shard": s3t["checkpoints"] // m, "stages_without_sharing": L * L,
                      "saving": 1 - (s3t["checkpoints"] / m) / (L * L),
                      "note": "cyclic sequences with B <= L start with distinct slices, so they share no prefix"}
    return {"per_sequence": per_seq, "pair": pair, "cache": cache, "prefix_sharing": prefix_sharing, "cpu": cpu}


def p7_growth(ctx: Context) -> dict:
    """S3T (B=1) training time vs number of records, and vs B at the full size."""
    cfg, train = ctx.cfg, ctx.splits.train
    rng = np.random.default_rng(cfg.seed)
    sizes = []
    for f in cfg.size_fractions:
        n = max(cfg.shards * cfg.slices, round(f * len(train)))
        if n >= len(train):
            fit = ctx.fits["s3t_B1"]
        else:
            ctx.say(f"P7: S3T B=1 on {n} records ...")
            fit = fit_s3t(ctx, 1, train.subset(np.sort(rng.permutation(len(train))[:n])), f"s3t-B1-n{n}")
            fit["est"].ws_.ledger.close()
        sizes.append({"records": fit["n_train"], **{k: fit[k] for k in ("seconds", "cpu_seconds", "checkpoints")}})
    budgets = [{"budget": b, **{k: ctx.fits[f"s3t_B{b}"][k] for k in ("seconds", "cpu_seconds", "checkpoints")}}
               for b in (1, cfg.slices)]
    return {"vs_records": sizes, "vs_budget": budgets, "budget_for_records": 1}
