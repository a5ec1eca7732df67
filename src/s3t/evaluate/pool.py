"""The records of one evaluation run and how each kind of method is scored on them (imports torch).

Training and test records are tokenised once (with the full model's runner). A method is
scored through a *predictor* — ``ids -> class probabilities`` — built either from a single
:class:`~s3t.train.model.AdaptedEncoder` (the full model and every approximate method) or
from an estimator with ``predict_proba(texts)`` (s3t, SISA, Retrain).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..baselines.runner import model_logits
from ..errors import NoLiveModelError
from ..train.stage import Examples
from .metrics import nan_row, summarise

Predictor = Callable[[Sequence[str]], np.ndarray]


@dataclass
class Pool:
    """Tokens, texts and labels of the train and test records, keyed by id."""

    tokens: dict[str, list[int]]
    texts: dict[str, str]
    labels: dict[str, int]
    pad_id: int
    batch_size: int
    train_ids: list[str]
    test_eval: list[str]
    seed: int
    eval_limit: int

    @classmethod
    def build(cls, full, splits, eval_limit: int, seed: int) -> "Pool":
        """From a fitted :class:`~s3t.baselines.FullRetrain` (its tokens) and the splits."""
        runner = full.runner_
        tokens = dict(runner.tokens)
        extra = splits.test.ids + splits.validation.ids
        ex = runner.text_examples(list(splits.test.texts) + list(splits.validation.texts))
        tokens.update(zip(extra, ex.tokens))
        texts, labels = {}, {}
        for rs in (splits.train, splits.test, splits.validation):
            texts.update(zip(rs.ids, rs.texts))
            labels.update(zip(rs.ids, (int(y) for y in rs.labels)))
        rng = np.random.default_rng(seed + 7)
        test = list(splits.test.ids)
        test_eval = sorted(test[i] for i in rng.permutation(len(test))[:eval_limit])
        return cls(tokens, texts, labels, runner.pad_id, full.config.serve.batch_size, list(splits.train.ids),
                   test_eval, seed, eval_limit)

    def examples(self, ids: Sequence[str]) -> Examples:
        return Examples(labels=[self.labels[i] for i in ids], tokens=[self.tokens[i] for i in ids], pad_id=self.pad_id)

    def label_array(self, ids: Sequence[str]) -> np.ndarray:
        return np.array([self.labels[i] for i in ids], dtype=int)

    def retained(self, forgotten: set[str]) -> list[str]:
        return [i for i in self.train_ids if i not in forgotten]

    def retain_eval(self, forgotten: set[str]) -> list[str]:
        """A seeded sample of ``eval_limit`` retained records (the same order for every scenario)."""
        order = np.random.default_rng(self.seed + 11).permutation(len(self.train_ids))
        keep = [self.train_ids[i] for i in order if self.train_ids[i] not in forgotten]
        return sorted(keep[: self.eval_limit])

    # -- predictors -------------------------------------------------------------------
    def model_predictor(self, model) -> Predictor:
        def predict(ids: Sequence[str]) -> np.ndarray:
            with torch.no_grad():
                return torch.softmax(model_logits(model, self.examples(ids), self.batch_size), -1).numpy()
        return predict

    def estimator_predictor(self, est) -> Predictor:
        return lambda ids: np.asarray(est.predict_proba([self.texts[i] for i in ids]))

    def score(self, predict: Predictor, forget_ids: Sequence[str], forgotten: set[str]) -> dict[str, float]:
        """UA/RA/TA/MIA of a predictor; NaN metrics with a note when it has no live model."""
        retain = self.retain_eval(forgotten)
        try:
            parts = [(predict(ids), self.label_array(ids)) for ids in (forget_ids, retain, self.test_eval)]
        except NoLiveModelError as exc:
            return {**nan_row(), "note": f"no live model: {exc}"}
        return summarise(*parts, seed=self.seed)
