"""Full retraining: one all-layer LoRA model on all the data; forget retrains from scratch.

The gold standard of exact unlearning, and the slowest: every deletion costs a whole
training on the retained data. Trained with the same stage machinery (one stage whose
group is every layer), tokenisation, batches and LoRA settings as S3T and SISA.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

import numpy as np

from ..config import S3TConfig
from ..errors import DataError, NotFittedError, UnknownRecordError
from .sisa import ForgetReport


class FullRetrain:
    """A single fine-tuned model; ``forget`` retrains it from scratch without the records."""

    name = "full"

    def __init__(self, config: S3TConfig, backbone=None):
        self.config = config
        self.backbone = backbone

    def fit(self, train) -> "FullRetrain":
        self._prepare(train)
        self._train()
        self.fit_seconds_ = self.seconds_
        return self

    def _prepare(self, train) -> None:
        from ..tasks import task_spec
        from .runner import AllLayerRunner, resolve_backbone

        train = task_spec(self.config.train.task).to_records(train)
        self.backbone = resolve_backbone(self.backbone, self.config)
        self.label_names_ = train.label_names
        self.ids_ = list(train.ids)
        self.deleted_: set[str] = set()
        self._version = 0
        self.runner_ = AllLayerRunner(self.backbone, self.config, len(train.label_names), stages=1)
        self.runner_.add_records(train.ids, train.texts, train.labels)

    def save(self, path) -> None:
        """Write the fitted, not yet forgotten-from model (state and timings) atomically."""
        from .runner import save_fitted

        if not hasattr(self, "state_"):
            raise NotFittedError("this full-retrain baseline is not fitted: call fit(train) first")
        if self.deleted_:
            raise DataError("save() keeps a freshly fitted model; this one has forgotten records")
        save_fitted(path, {"state": self.state_, "seconds": self.seconds_, "n_examples": self.n_examples_})

    @classmethod
    def restore(cls, config: S3TConfig, train, path, backbone=None) -> "FullRetrain":
        """The model that ``save`` wrote, rebuilt on the same ``train`` without training."""
        from .runner import load_fitted

        obj = cls(config, backbone)
        obj._prepare(train)
        saved = load_fitted(path)
        obj.state_, obj.seconds_, obj.n_examples_ = saved["state"], saved["seconds"], saved["n_examples"]
        obj.fit_seconds_ = obj.seconds_
        obj.model_ = obj.runner_.model(0, (0,), obj.state_)
        return obj

    def _train(self) -> None:
        from ..train.trainer import SliceData

        data = {0: SliceData(self._version, tuple(self.ids_))}

        def on_checkpoint(spec, result, lineage) -> None:
            self.state_, self.seconds_, self.n_examples_ = result.state, result.seconds, result.n_examples
            self.model_ = result.model.eval()

        self.runner_.train_prefixes(0, [(0,)], data, on_checkpoint)

    def forget(self, record_ids: Iterable[str]) -> ForgetReport:
        """Drop the records and retrain the model from scratch on what is left."""
        if not hasattr(self, "state_"):
            raise NotFittedError("this full-retrain baseline is not fitted: call fit(train) first")
        ids = [r for r in dict.fromkeys(record_ids) if r not in self.deleted_]
        known = set(self.ids_)
        unknown = [r for r in ids if r not in known]
        if unknown:
            raise UnknownRecordError(f"unknown training record(s) {unknown[:5]}")
        start = time.perf_counter()
        if ids:
            gone = set(ids)
            self.ids_ = [r for r in self.ids_ if r not in gone]
            self.deleted_ |= gone
            self.runner_.drop_slice(self._version)
            self._version += 1
            self._train()
        return ForgetReport(record_ids=ids, retrained={0: [1]} if ids else {}, seconds=time.perf_counter() - start)

    def logits(self, texts: Sequence[str]):
        from .runner import model_logits

        if not hasattr(self, "model_"):
            raise NotFittedError("this full-retrain baseline is not fitted: call fit(train) first")
        return model_logits(self.model_, self.runner_.text_examples(texts), self.config.serve.batch_size)

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        from .runner import aggregate

        return aggregate([self.logits(texts)], "logits")

    def score(self, data) -> float:
        from ..data import to_records

        rs = to_records(data, label_names=self.label_names_)
        pred = self.predict_proba(list(rs.texts)).argmax(-1)
        return float((pred == np.array(rs.labels)).mean())
