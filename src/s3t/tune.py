"""``s3t tune``: learning rate × LoRA rank × epochs (× stage options) chosen on validation data,
fairly for every method.

S3T, SISA and the full fine-tune do not train alike: S3T's top layer group sees only the
first slice of its sequence, SISA trains every layer at every stage, the full fine-tune trains
once on everything. One shared step size therefore favours one of them. :func:`tune` gives each
method its own small grid and picks, per method, the setting whose model scores best on the
**validation split**:

- every grid point is one training of the method on **one shard's data** (shard 0 by default,
  placed exactly as a fit places it): S3T trains one sequence (its first cyclic order, stage 1
  to L, layer group by layer group), SISA the shard's L stages (all layers), the full fine-tune
  one model on the shard's records; the model that would be served (stage L, or the one model)
  is scored on the validation records;
- the choice is the highest validation accuracy, ties broken by the lower validation loss, then
  by the cheaper point (fewer epochs, lower rank, lower learning rate);
- every method gets the same budget: the sum over its grid points of the epochs trained per stage
  (:meth:`Grid.budget_for`; a point whose stage 1 trains longer counts the extra stage-1 epochs,
  divided by the L stages); :func:`tune` refuses grids whose budgets differ;
- the stage options of issue 18 are optional axes (:class:`Grid`): ``warmup`` for every method,
  ``first_stage_epochs`` and ``head_init`` for S3T only: a SISA or full fine-tune grid that varies
  them is refused (not varied, not dropped silently), so with them S3T is tuned alone or every
  method gets its own grid with the same budget;
- only the training records of the shard and the validation records are read. Test data is
  never an argument, and ``exclude`` (e.g. the records a workspace has forgotten) is removed
  from both before anything is tokenised.

The result (a JSON-ready dict) holds every grid point's validation accuracy and loss, its CPU
and wall seconds, the chosen settings per method, digests of the record ids used, and for S3T
the base config with the chosen settings (``s3t_config``), a file ``s3t train --config``
accepts. Only existing config fields are set: ``train.lr``, ``train.epochs``,
``train.lora.rank``, ``train.lora.alpha`` (= ``alpha_per_rank`` × rank) and the stage options
``train.first_stage_epochs``, ``train.warmup``, ``train.head_init`` (the grid owns them: a point
that does not vary them sets their neutral values 0, 0.0, "warm", so a base config's values never
reach SISA or the full fine-tune).

This module's grid description is torch-free; :func:`tune` loads the training stack.

Example
-------
>>> from s3t.tune import Grid
>>> g = Grid(lrs=(2e-3, 1e-2), ranks=(8,), epochs=(1, 2))
>>> [(p.lr, p.rank, p.epochs) for p in g.points()]
[(0.002, 8, 1), (0.002, 8, 2), (0.01, 8, 1), (0.01, 8, 2)]
>>> g.budget
6
>>> s = Grid(lrs=(1e-2,), ranks=(8,), epochs=(2,), first_stage_epochs=(None, 4), head_init=("warm", "fresh"))
>>> [(p.first_stage_epochs, p.head_init) for p in s.points()]
[(None, 'warm'), (None, 'fresh'), (4, 'warm'), (4, 'fresh')]
>>> s.budget_for(3)  # 2 + 2 + (2 + 2/3) + (2 + 2/3)
9.333333333333334
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Any, Callable, Iterable, Mapping, Sequence

from .config import S3TConfig, with_settings
from .errors import ConfigError

METHODS = ("s3t", "sisa", "full")


@dataclass(frozen=True)
class Point:
    """One setting of the grid. ``first_stage_epochs`` None: stage 1 trains ``epochs`` like the others."""

    lr: float
    rank: int
    alpha: float
    epochs: int
    first_stage_epochs: int | None = None
    warmup: float = 0.0
    head_init: str = "warm"

    def settings(self) -> dict[str, Any]:
        """The config fields it sets (by path, for :func:`s3t.config.with_settings`): every field the
        grid owns, the stage options included (at their neutral values when the grid does not vary them)."""
        return {"train.lr": self.lr, "train.epochs": self.epochs, "train.lora.rank": self.rank,
                "train.lora.alpha": self.alpha, "train.first_stage_epochs": self.first_stage_epochs or 0,
                "train.warmup": self.warmup, "train.head_init": self.head_init}

    def budget(self, stages: int) -> Fraction:
        """Epochs this point trains, per stage on average over a sequence of ``stages`` stages: ``epochs``,
        plus ``(first_stage_epochs - epochs) / stages`` when stage 1 trains longer (or shorter)."""
        extra = (self.first_stage_epochs - self.epochs) if self.first_stage_epochs else 0
        return Fraction(self.epochs) + Fraction(extra, stages)

    @property
    def stage_options(self) -> dict[str, Any]:
        """The stage options that differ from their neutral values (empty for a plain lr/rank/epochs point)."""
        return {k: getattr(self, k) for k, v in NEUTRAL.items() if getattr(self, k) != v}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# the stage options' neutral values (the config's defaults): what every point of a grid that does not vary
# them trains with, and all that SISA and the full fine-tune ever train with for the S3T-only ones
NEUTRAL: dict[str, Any] = {"first_stage_epochs": None, "warmup": 0.0, "head_init": "warm"}
S3T_ONLY = ("first_stage_epochs", "head_init")
HEAD_INITS = ("warm", "fresh")


def _tuple(name: str, values: Iterable[Any], kind: type) -> tuple:
    vals = tuple(values)
    if not vals:
        raise ConfigError(f"grid {name} must not be empty")
    if len(set(vals)) != len(vals):
        raise ConfigError(f"grid {name} must not repeat values; got {list(vals)}")
    for v in vals:
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0
        if kind is int:
            ok = ok and float(v).is_integer()
        if not ok:
            raise ConfigError(f"grid {name} must hold positive {kind.__name__}s; got {v!r}")
    return tuple(kind(v) for v in vals)


def _first_stage(values: Iterable[Any]) -> tuple:
    """None (or 0, the config's spelling) = the point's epochs; else a positive int."""
    vals = tuple(None if v == 0 and not isinstance(v, bool) else v for v in values)
    if not vals:
        raise ConfigError("grid first_stage_epochs must not be empty")
    if len(set(vals)) != len(vals):
        raise ConfigError(f"grid first_stage_epochs must not repeat values; got {list(values)}")
    for v in vals:
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or v < 1
                              or not float(v).is_integer()):
            raise ConfigError(f"grid first_stage_epochs must hold positive ints or None (= epochs); got {v!r}")
    return tuple(None if v is None else int(v) for v in vals)


def _warmups(values: Iterable[Any]) -> tuple:
    vals = tuple(values)
    if not vals:
        raise ConfigError("grid warmup must not be empty")
    if len(set(vals)) != len(vals):
        raise ConfigError(f"grid warmup must not repeat values; got {list(vals)}")
    for v in vals:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < 1:
            raise ConfigError(f"grid warmup must hold fractions in [0, 1); got {v!r}")
    return tuple(float(v) for v in vals)


def _head_inits(values: Iterable[Any]) -> tuple:
    vals = (values,) if isinstance(values, str) else tuple(values)
    if not vals or len(set(vals)) != len(vals) or any(v not in HEAD_INITS for v in vals):
        raise ConfigError(f"grid head_init must hold distinct values of {list(HEAD_INITS)}; got {list(vals)}")
    return vals


@dataclass(frozen=True)
class Grid:
    """learning rates × LoRA ranks × epochs (× the stage options); LoRA alpha = ``alpha_per_rank`` × rank
    (the default config's 16 / 8 = 2, so the adapters' scaling stays the same whatever the rank).

    The stage options (issue 18) are optional axes, by default one neutral value each, so the default
    grid is the plain lr × rank × epochs grid:

    - ``first_stage_epochs``: epochs of stage 1 (S3T's top layer group, trained on the first slice
      only); None = the point's ``epochs``. **S3T only.**
    - ``warmup``: fraction of each stage's steps with a linear learning-rate warm-up (then the linear
      decay). Every method trains its stages with the same schedule, so it is an axis **for every method**.
    - ``head_init``: ``"warm"`` (stage k > 1 starts from its parent's head) or ``"fresh"``. **S3T only.**

    S3T-only rule: SISA trains every layer at every stage (its baseline is the warm-started chain)
    and the full fine-tune has one stage (``first_stage_epochs`` would replace its epochs), so a
    grid that varies ``first_stage_epochs`` or ``head_init`` away from None / "warm" is an S3T grid:
    :func:`grids_for` refuses it for SISA and the full fine-tune instead of varying or dropping the
    option silently. Tune S3T alone with it (a stage design study), or give each method its own
    grid with the same budget.

    Budget: the epochs actually trained, per stage on average (:meth:`Point.budget`); a point whose
    stage 1 trains 4 epochs and its other stages 2 costs 2 + 2/L, not 2. With first_stage_epochs
    unset this is the old count, the sum of the points' epochs, whatever L.
    """

    lrs: tuple[float, ...] = (2e-3, 5e-3, 1e-2)
    ranks: tuple[int, ...] = (8, 16)
    epochs: tuple[int, ...] = (1, 2)
    alpha_per_rank: float = 2.0
    first_stage_epochs: tuple[int | None, ...] = (None,)
    warmup: tuple[float, ...] = (0.0,)
    head_init: tuple[str, ...] = ("warm",)

    def __post_init__(self) -> None:
        object.__setattr__(self, "lrs", _tuple("lrs", self.lrs, float))
        object.__setattr__(self, "ranks", _tuple("ranks", self.ranks, int))
        object.__setattr__(self, "epochs", _tuple("epochs", self.epochs, int))
        object.__setattr__(self, "first_stage_epochs", _first_stage(self.first_stage_epochs))
        object.__setattr__(self, "warmup", _warmups(self.warmup))
        object.__setattr__(self, "head_init", _head_inits(self.head_init))
        a = self.alpha_per_rank
        if isinstance(a, bool) or not isinstance(a, (int, float)) or a <= 0:
            raise ConfigError(f"grid alpha_per_rank must be > 0; got {a!r}")
        same = sorted({f for f in self.first_stage_epochs if f in self.epochs})
        if None in self.first_stage_epochs and same:
            raise ConfigError(f"grid first_stage_epochs {same} equal(s) epochs {same}: the same training as None "
                              "(stage 1 trains the point's epochs); leave it out")

    def points(self) -> list[Point]:
        """Every combination, learning rate outermost, then rank, epochs, first_stage_epochs (None first),
        warmup, head_init (warm first); all ascending."""
        return [Point(lr, r, float(self.alpha_per_rank * r), e, f, w, h)
                for lr in sorted(self.lrs) for r in sorted(self.ranks) for e in sorted(self.epochs)
                for f in sorted(self.first_stage_epochs, key=lambda v: -1 if v is None else v)
                for w in sorted(self.warmup) for h in sorted(self.head_init, key=HEAD_INITS.index)]

    def varies(self) -> list[str]:
        """The S3T-only stage options this grid sets away from their neutral values."""
        return [k for k in S3T_ONLY if getattr(self, k) != (NEUTRAL[k],)]

    def budget_for(self, stages: int) -> int | float:
        """Epochs trained over the whole grid for sequences of ``stages`` stages: Σ over points of
        :meth:`Point.budget` (an int when whole)."""
        if not isinstance(stages, int) or isinstance(stages, bool) or stages < 1:
            raise ConfigError(f"stages must be an integer >= 1; got {stages!r}")
        total = sum((p.budget(stages) for p in self.points()), Fraction(0))
        return int(total) if total.denominator == 1 else float(total)

    @property
    def budget(self) -> int:
        """Epochs trained over the whole grid: Σ over points of the point's epochs. Refused when
        ``first_stage_epochs`` is set (the count then depends on the stages: :meth:`budget_for`)."""
        if self.first_stage_epochs != (None,):
            raise ConfigError("with first_stage_epochs the budget depends on the number of stages: use budget_for(L)")
        return int(self.budget_for(1))

    def to_dict(self, stages: int | None = None) -> dict[str, Any]:
        d = {"lrs": list(self.lrs), "ranks": list(self.ranks), "epochs": list(self.epochs),
             "alpha_per_rank": self.alpha_per_rank}
        if self.first_stage_epochs != (None,) or self.warmup != (0.0,) or self.head_init != ("warm",):
            d.update(first_stage_epochs=list(self.first_stage_epochs), warmup=list(self.warmup),
                     head_init=list(self.head_init))
        d["points"] = len(self.points())
        if stages is not None:
            d["budget_epochs"], d["stages"] = self.budget_for(stages), stages
        elif self.first_stage_epochs == (None,):
            d["budget_epochs"] = self.budget
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Grid":
        return cls(lrs=tuple(d["lrs"]), ranks=tuple(d["ranks"]), epochs=tuple(d["epochs"]),
                   alpha_per_rank=d.get("alpha_per_rank", 2.0),
                   first_stage_epochs=tuple(d.get("first_stage_epochs", (None,))),
                   warmup=tuple(d.get("warmup", (0.0,))), head_init=tuple(d.get("head_init", ("warm",))))


def grids_for(methods: Sequence[str], grid: Grid | Mapping[str, Grid] | None = None,
              stages: int | None = None) -> dict[str, Grid]:
    """One grid per method (the same ``grid`` for all, or a mapping per method); refuses an unknown
    method, a method without a grid, a SISA or full fine-tune grid that varies an S3T-only stage
    option (``first_stage_epochs``, ``head_init``), or budgets that differ between methods (counted
    for sequences of ``stages`` stages, :meth:`Grid.budget_for`; needed only with first_stage_epochs)."""
    methods = list(dict.fromkeys(methods))
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ConfigError(f"methods must be some of {list(METHODS)}; got {list(methods)}")
    if grid is None or isinstance(grid, Grid):
        g = grid or Grid()
        grids = {m: g for m in methods}
    else:
        missing = [m for m in methods if m not in grid]
        if missing:
            raise ConfigError(f"no grid for method(s) {missing}")
        grids = {m: grid[m] for m in methods}
    for m, g in grids.items():
        if m != "s3t" and g.varies():
            raise ConfigError(
                f"{' and '.join(g.varies())} {'are S3T-only options' if len(g.varies()) > 1 else 'is an S3T-only option'}"
                f" (SISA trains every layer at every stage, warm-started; the full fine-tune has one stage): not "
                f"varied for {m}. Tune S3T alone with it (--method s3t), or give {m} its own grid with the same budget")
    budgets = {m: (g.budget if stages is None else g.budget_for(stages)) for m, g in grids.items()}
    if len(set(budgets.values())) > 1:
        raise ConfigError(f"every method must get the same tuning budget (epochs trained over the grid); got {budgets}")
    return grids


def choose(rows: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
    """The best grid point: highest validation accuracy, then lowest validation loss, then the
    cheapest (fewer epochs trained, fewer epochs per stage, lower rank, lower learning rate), then
    the closer to the defaults (less warm-up, the warm head)."""
    if not rows:
        raise ConfigError("no grid point to choose from")
    return min(rows, key=lambda r: (-r["val_accuracy"], r["val_loss"], r.get("budget_epochs", r["epochs"]), r["epochs"],
                                    r["rank"], r["lr"], r.get("warmup", 0.0), r.get("head_init", "warm") != "warm"))


def _point(row: Point | Mapping[str, Any]) -> Point:
    if isinstance(row, Point):
        return row
    fse = row.get("first_stage_epochs")
    return Point(float(row["lr"]), int(row["rank"]), float(row["alpha"]), int(row["epochs"]),
                 None if not fse else int(fse), float(row.get("warmup", 0.0)), str(row.get("head_init", "warm")))


def apply(config: S3TConfig, point: Point | Mapping[str, Any]) -> S3TConfig:
    """``config`` with a point's (or a chosen row's) lr, epochs, LoRA rank and alpha, and its stage
    options: the grid owns ``train.first_stage_epochs``, ``train.warmup`` and ``train.head_init`` too,
    so a row without them (an older result) sets their neutral values (0, 0.0, "warm"), whatever
    ``config`` had."""
    return with_settings(config, _point(point).settings())


def ids_digest(ids: Iterable[str]) -> str:
    """sha256 of the sorted ids, one per line: which records were used, without listing them."""
    return hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()


def shard_slices(train, config: S3TConfig, shard: int = 0, exclude: Iterable[str] = ()) -> dict[int, tuple[str, ...]]:
    """Slice -> record ids of ``shard``, placed as a fit places ``train`` (:func:`s3t.plan.place` on
    all of it, the plan's seed and placement), then without the ``exclude``d records."""
    from .data import to_records
    from .plan import place

    train = to_records(train)
    plan = config.plan
    if not isinstance(shard, int) or isinstance(shard, bool) or not 0 <= shard < plan.shards:
        raise ConfigError(f"shard must be in 0..{plan.shards - 1}; got {shard!r}")
    gone = set(exclude)
    pairs = place(list(train.ids), list(train.subjects), plan.shards, plan.slices, plan.seed, plan.placement).pairs
    out: dict[int, list[str]] = {j: [] for j in range(plan.slices)}
    for rid, (s, j) in zip(train.ids, pairs):
        if s == shard and rid not in gone:
            out[j].append(rid)
    return {j: tuple(v) for j, v in out.items()}


def tune(train, validation, base: S3TConfig | None = None, *, grid: Grid | Mapping[str, Grid] | None = None,
         methods: Sequence[str] = METHODS, shard: int = 0, exclude: Iterable[str] = (), backbone=None,
         say: Callable[[str], None] | None = None, journal=None) -> dict[str, Any]:
    """Pick lr × LoRA rank × epochs (× stage options) per method on ``validation``, training on one shard of ``train``.

    Parameters
    ----------
    train, validation
        Training and validation data (anything :func:`s3t.data.to_records` takes). No test data.
    base
        The settings every grid point starts from (plan, model, batch size, threads, ...); the grid
        replaces ``train.lr``, ``train.epochs``, ``train.lora.rank``, ``train.lora.alpha`` and the
        stage options ``train.first_stage_epochs``, ``train.warmup``, ``train.head_init``.
    grid
        One :class:`Grid` for every method, or one per method (same :meth:`Grid.budget_for` the plan's L).
    methods
        Some of ``"s3t"``, ``"sisa"``, ``"full"``.
    shard
        The shard whose records every point trains on.
    exclude
        Record ids never to read (forgotten records): removed from the shard and the validation set.
    backbone
        A loaded :class:`~s3t.train.backbone.Backbone` to share (else ``base.train.model`` is loaded).
    journal
        A :class:`~s3t.tune_journal.TuneJournal`: every finished point is written to it, and a point it
        already holds for the same method, base settings and data is taken from it, not trained again
        (an interrupted tune continues; the result is the one an uninterrupted run gives).

    Returns
    -------
    dict
        ``methods[m]``: ``points`` (each with val_accuracy, val_loss, cpu_seconds, seconds), ``chosen``,
        ``cpu_seconds``; ``data``: sizes and id digests of what was read; ``s3t_config`` when S3T was tuned.
    """
    import numpy as np

    from .data import to_records
    from .train.backbone import backbone_for, set_determinism

    say = say or (lambda msg: None)
    base = base or S3TConfig()
    if getattr(base.train, "task", "classification") != "classification":
        raise ConfigError("s3t tune chooses settings for classification (train.task 'classification')")
    stages = base.plan.slices
    grids = grids_for(methods, grid, stages)
    gone = set(exclude)
    train = to_records(train)
    validation = to_records(validation, label_names=train.label_names, id_prefix="val-")
    keep_val = np.array([i not in gone for i in validation.ids], dtype=bool)
    validation = validation.subset(keep_val)
    if len(validation) == 0:
        raise ConfigError("tuning needs validation records (none left)")
    slices = shard_slices(train, base, shard, gone)
    if any(not v for v in slices.values()):
        raise ConfigError(f"shard {shard} has an empty slice: too few training records for m={base.plan.shards}, "
                          f"L={base.plan.slices}")
    # the shard's rows: nothing else of ``train`` goes further
    where = {rid: i for i, rid in enumerate(train.ids)}
    shard_ids = [rid for j in sorted(slices) for rid in slices[j]]
    shard_train = train.subset([where[rid] for rid in shard_ids])
    backbone = backbone_for(base.train, backbone)  # on train.device: the GPU where there is one
    set_determinism(base.train.threads)
    t_cpu, t_wall = time.process_time(), time.perf_counter()
    out: dict[str, Any] = {
        "shard": shard, "methods": {}, "budget_epochs": next(iter(grids.values())).budget_for(stages),
        "base_config": base.to_dict(),
        "data": {"shard_records": len(shard_train), "slice_sizes": [len(slices[j]) for j in sorted(slices)],
                 "train_ids_sha256": ids_digest(shard_train.ids), "validation_records": len(validation),
                 "validation_ids_sha256": ids_digest(validation.ids), "excluded": len(gone),
                 "label_names": list(train.label_names)},
    }
    for method in grids:
        rows, kept = [], 0
        context = None if journal is None else journal.context(method, out["base_config"], {"shard": shard, **out["data"]})
        for point in grids[method].points():
            conf = apply(base, point)
            budget = point.budget(stages)
            done = journal.get(context, point.to_dict()) if journal is not None else None
            from_journal = done is not None
            if not from_journal:
                done = _train_point(method, backbone, conf, shard_train, slices, validation, shard)
                if journal is not None:
                    journal.add(context, point.to_dict(), done)
            kept += from_journal
            row = {**point.to_dict(), "budget_epochs": int(budget) if budget.denominator == 1 else float(budget), **done}
            rows.append(row)
            say(f"  {method} lr={point.lr:g} r={point.rank} epochs={point.epochs}{_options_text(point)}: validation "
                f"accuracy {row['val_accuracy']:.3f} (loss {row['val_loss']:.3f}), {row['cpu_seconds']:.1f}s CPU"
                + (" (kept from the journal)" if from_journal else ""))
        best = choose(rows)
        chosen = {k: best[k] for k in ("lr", "rank", "alpha", "epochs", *NEUTRAL, "val_accuracy", "val_loss")}
        out["methods"][method] = {"grid": grids[method].to_dict(stages), "points": rows, "chosen": chosen,
                                  "cpu_seconds": float(sum(r["cpu_seconds"] for r in rows)),
                                  "seconds": float(sum(r["seconds"] for r in rows)),
                                  "points_from_journal": kept}  # trained by an earlier, interrupted run
        say(f"{method}: chose lr={chosen['lr']:g} r={chosen['rank']} epochs={chosen['epochs']}"
            f"{_options_text(_point(chosen))} (validation accuracy {chosen['val_accuracy']:.3f})")
    out["cpu_seconds"] = time.process_time() - t_cpu
    out["seconds"] = time.perf_counter() - t_wall
    if "s3t" in out["methods"]:
        out["s3t_config"] = apply(base, out["methods"]["s3t"]["chosen"]).to_dict()
    return out


def _options_text(point: Point) -> str:
    return "".join(f" {k}={v}" for k, v in point.stage_options.items())


def _train_point(method: str, backbone, conf: S3TConfig, train, slices: dict[int, tuple[str, ...]], validation,
                 shard: int) -> dict[str, float]:
    """Train ``method`` with ``conf`` on the shard's slices; score the model it would serve on ``validation``."""
    import torch

    from .baselines.runner import AllLayerRunner
    from .plan import cyclic
    from .train.batches import tokenize
    from .train.stage import Examples, logits
    from .train.trainer import SliceData, StageRunner, trie

    cpu0, wall0 = time.process_time(), time.perf_counter()
    n_labels, L = len(train.label_names), conf.plan.slices
    if method == "s3t":  # one sequence: the first cyclic order, layer group by layer group
        runner = StageRunner(backbone, conf, n_labels)
        data = {j: SliceData(j, slices[j]) for j in slices}
        prefixes = trie(cyclic(L, 1))
    elif method == "sisa":  # the shard's L stages, every layer each time
        runner = AllLayerRunner(backbone, conf, n_labels, stages=L)
        data = {j: SliceData(j, slices[j]) for j in slices}
        prefixes = [tuple(range(k)) for k in range(1, L + 1)]
    else:  # one all-layer model on the shard's records
        runner = AllLayerRunner(backbone, conf, n_labels, stages=1)
        data = {0: SliceData(0, tuple(r for j in sorted(slices) for r in slices[j]))}
        prefixes = [(0,)]
    runner.add_records(train.ids, train.texts, train.labels)
    final: dict[str, Any] = {}

    def keep(spec, result, lineage) -> None:
        if spec.stage == max(len(p) for p in prefixes):
            final["model"] = result.model

    runner.train_prefixes(shard, prefixes, data, keep)
    model = final["model"].eval()
    pad = int(backbone.tokenizer.pad_token_id or 0)
    ex = Examples(list(validation.labels), tokens=tokenize(backbone.tokenizer, list(validation.texts),
                                                           conf.train.max_length), pad_id=pad)
    out = logits(model, 0, ex, batch_size=conf.serve.batch_size)
    y = torch.tensor(list(validation.labels), dtype=torch.long)
    acc = float((out.argmax(-1) == y).float().mean())
    loss = float(torch.nn.functional.cross_entropy(out, y))
    del runner, final, model
    return {"val_accuracy": acc, "val_loss": loss, "cpu_seconds": time.process_time() - cpu0,
            "seconds": time.perf_counter() - wall0}


def chosen_settings(result: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Per method, the chosen ``lr``, ``rank``, ``alpha``, ``epochs`` and stage options of a :func:`tune`
    result (an older result without stage options: their neutral values)."""
    return {m: {k: r["chosen"].get(k, NEUTRAL.get(k)) for k in ("lr", "rank", "alpha", "epochs", *NEUTRAL)}
            for m, r in result["methods"].items()}
