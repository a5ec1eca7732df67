"""SISA on the same shards and slices as S3T: B=1, identity order, all layers at every stage.

Shard s trains ONE sequence, slices in identity order 0..L-1. Stage k trains the LoRA
adapters of every layer and the head on slices 0..k-1, starting from stage k-1's state
(no layer isolation: that is the difference from S3T), and its state is kept as the
checkpoint "after slice k-1". Forgetting a record of slice j retrains that shard's stages
j+1..L from the checkpoint of stage j (from scratch when j = 0) on the slice without the
record. Seeds come from (plan seed, shard, prefix), so the retrained stages equal a
training from scratch on the remaining data.

Example
-------
>>> sisa = SISA(config).fit(train)                       # doctest: +SKIP
>>> report = sisa.forget(["mr-17"])                       # retrains the hit shard's suffix
>>> report.retrained, report.seconds
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config import S3TConfig
from ..errors import DataError, NotFittedError, UnknownRecordError
from ..plan import place, served_prefix


@dataclass
class ForgetReport:
    """What a baseline's forget did: which stages it retrained and how long it took."""

    record_ids: list[str]
    retrained: dict[int, list[int]] = field(default_factory=dict)  # shard -> retrained stages (1-based)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"record_ids": self.record_ids, "retrained": {str(k): v for k, v in self.retrained.items()},
                "seconds": self.seconds}


class SISA:
    """Sharded, isolated, sliced, aggregated training (Bourtoule et al., 2021) with LoRA."""

    name = "sisa"

    def __init__(self, config: S3TConfig, backbone=None):
        self.config = config
        self.backbone = backbone

    # -- fit ------------------------------------------------------------------------------
    def fit(self, train, assignment: Sequence[tuple[int, int]] | None = None) -> "SISA":
        """Train every shard's L stages. ``assignment``: (shard, slice) per record (default:
        :func:`s3t.plan.place` with the plan's seed and placement — the same split S3T makes)."""
        self._prepare(train, assignment)
        start = time.perf_counter()
        for shard in range(self.config.plan.shards):
            self._train_from(shard, 0)
        self.fit_seconds_ = time.perf_counter() - start
        return self

    def _prepare(self, train, assignment: Sequence[tuple[int, int]] | None) -> None:
        """Everything ``fit`` sets up before training: shards, slices, the runner."""
        from ..tasks import task_spec
        from .runner import AllLayerRunner, resolve_backbone

        train = task_spec(self.config.train.task).to_records(train)
        plan = self.config.plan
        if assignment is None:
            assignment = place(list(train.ids), list(train.subjects), plan.shards, plan.slices, plan.seed,
                               plan.placement).pairs
        assignment = [tuple(int(x) for x in a) for a in assignment]
        if len(assignment) != len(train):
            raise DataError(f"assignment must give one (shard, slice) per record ({len(train)}); got {len(assignment)}")
        self.backbone = resolve_backbone(self.backbone, self.config)
        self.label_names_ = train.label_names
        self.where_ = dict(zip(train.ids, assignment))
        self.members_: dict[tuple[int, int], list[str]] = {(s, j): [] for s in range(plan.shards) for j in range(plan.slices)}
        for rid, key in self.where_.items():
            self.members_[key].append(rid)
        self.versions_ = {key: n for n, key in enumerate(sorted(self.members_))}
        self._next_version = len(self.versions_)
        self.runner_ = AllLayerRunner(self.backbone, self.config, len(train.label_names), stages=plan.slices)
        self.runner_.add_records(train.ids, train.texts, train.labels)
        self.states_: dict[int, list] = {s: [None] * plan.slices for s in range(plan.shards)}
        self.stage_seconds_: dict[int, list[float]] = {s: [0.0] * plan.slices for s in range(plan.shards)}
        self.deleted_: set[str] = set()

    def save(self, path: str | Path) -> None:
        """Write the fitted, not yet forgotten-from model (states and stage timings) atomically."""
        self._check_fitted()
        if self.deleted_:
            raise DataError("save() keeps a freshly fitted SISA; this one has forgotten records")
        from .runner import save_fitted

        save_fitted(path, {"states": self.states_, "stage_seconds": self.stage_seconds_, "fit_seconds": self.fit_seconds_})

    @classmethod
    def restore(cls, config: S3TConfig, train, path: str | Path, backbone=None,
                assignment: Sequence[tuple[int, int]] | None = None) -> "SISA":
        """The SISA that ``save`` wrote, rebuilt on the same ``train`` without training."""
        from .runner import load_fitted

        obj = cls(config, backbone)
        obj._prepare(train, assignment)
        saved = load_fitted(path)
        obj.states_, obj.stage_seconds_, obj.fit_seconds_ = saved["states"], saved["stage_seconds"], saved["fit_seconds"]
        return obj

    def _slices(self, shard: int) -> dict:
        from ..train.trainer import SliceData

        return {j: SliceData(self.versions_[(shard, j)], tuple(self.members_[(shard, j)]))
                for j in range(self.config.plan.slices)}

    def _train_from(self, shard: int, kept: int) -> list[int]:
        """Train stages kept+1..L of ``shard`` from the state of stage ``kept`` (0 = from scratch)."""
        L = self.config.plan.slices
        prefixes = [tuple(range(k)) for k in range(kept + 1, L + 1)]
        parents = {tuple(range(kept)): self.states_[shard][kept - 1]} if kept else None

        def on_checkpoint(spec, result, lineage) -> None:
            self.states_[shard][spec.stage - 1] = result.state
            self.stage_seconds_[shard][spec.stage - 1] = result.seconds

        self.runner_.train_prefixes(shard, prefixes, self._slices(shard), on_checkpoint, parent_states=parents)
        return [len(p) for p in prefixes]

    def _check_fitted(self) -> None:
        if not hasattr(self, "states_"):
            raise NotFittedError("this SISA baseline is not fitted: call fit(train) first")

    # -- forget -----------------------------------------------------------------------------
    def locate(self, record_id: str) -> tuple[int, int]:
        """(shard, slice) of a training record."""
        self._check_fitted()
        if record_id not in self.where_:
            raise UnknownRecordError(f"unknown training record {record_id!r}")
        return self.where_[record_id]

    def forget(self, record_ids: Iterable[str]) -> ForgetReport:
        """Remove the records and retrain each hit shard from the checkpoint before its first hit slice."""
        self._check_fitted()
        ids = [r for r in dict.fromkeys(record_ids) if r not in self.deleted_]
        hits: dict[int, int] = {}
        for rid in ids:
            shard, j = self.locate(rid)
            hits[shard] = min(hits.get(shard, j), j)
        start = time.perf_counter()
        for rid in ids:
            key = self.where_[rid]
            self.members_[key].remove(rid)
            self.runner_.drop_slice(self.versions_[key])
            self.versions_[key] = self._next_version
            self._next_version += 1
            self.deleted_.add(rid)
        report = ForgetReport(record_ids=ids)
        for shard, j in sorted(hits.items()):
            self.states_[shard][j:] = [None] * (self.config.plan.slices - j)
            report.retrained[shard] = self._train_from(shard, j)
        report.seconds = time.perf_counter() - start
        return report

    def served_stages(self, deleted: Iterable[str] = ()) -> dict[int, int]:
        """Per shard, the last stage whose slices hold none of ``deleted`` — what SISA could
        serve WITHOUT retraining (0 = the shard has no usable checkpoint)."""
        self._check_fitted()
        dead: dict[int, set[int]] = {}
        for rid in deleted:
            shard, j = self.locate(rid)
            dead.setdefault(shard, set()).add(j)
        order = [tuple(range(self.config.plan.slices))]
        return {s: served_prefix(order, dead.get(s, set())) for s in range(self.config.plan.shards)}

    # -- predict ----------------------------------------------------------------------------
    def checkpoint_logits(self, texts: Sequence[str], stages: dict[int, int] | None = None) -> dict[tuple[int, int], Any]:
        """Logits [n, C] of checkpoints (shard, stage) on ``texts``: every checkpoint by default,
        or the one stage per shard in ``stages`` (stage 0 = dead shard, skipped)."""
        self._check_fitted()
        from .runner import model_logits

        L = self.config.plan.slices
        wanted = [(s, k) for s in self.states_ for k in range(1, L + 1)] if stages is None else \
            [(s, k) for s, k in stages.items() if k > 0]
        ex = self.runner_.text_examples(texts)
        out = {}
        for shard, stage in wanted:
            state = self.states_[shard][stage - 1]
            model = self.runner_.model(shard, tuple(range(stage)), state)
            out[(shard, stage)] = model_logits(model, ex, self.config.serve.batch_size)
        return out

    def predict_proba(self, texts: Sequence[str], stages: dict[int, int] | None = None) -> np.ndarray:
        """Ensemble probabilities; ``stages`` per shard (default: every shard's last stage)."""
        from ..errors import NoLiveModelError
        from .runner import aggregate

        self._check_fitted()
        stages = stages or {s: self.config.plan.slices for s in self.states_}
        per = self.checkpoint_logits(texts, stages)
        if not per:
            raise NoLiveModelError("no SISA shard has a usable checkpoint; retraining is needed")
        return aggregate([per[k] for k in sorted(per)], self.config.serve.aggregate)

    def score(self, data, stages: dict[int, int] | None = None) -> float:
        from ..data import to_records

        rs = to_records(data, label_names=self.label_names_)
        pred = self.predict_proba(list(rs.texts), stages).argmax(-1)
        return float((pred == np.array(rs.labels)).mean())
