"""``S3T.generate`` and ``S3T.score_responses``: the causal-LM side of the estimator.

Example
-------
>>> from s3t import S3T, S3TConfig, TrainConfig, PlanConfig                        # doctest: +SKIP
>>> from s3t.data import load_builtin
>>> people = load_builtin("fictitious_people", limit=20)
>>> model = S3T(S3TConfig(plan=PlanConfig(shards=2, slices=3, budget=1),
...                       train=TrainConfig(task="causal-lm", model="SmolLM2-135M-Instruct")), workspace="ws")
>>> model.fit(people.train, validation=people.validation)
>>> model.generate(["In what year was Baelrinith Tarvoith born?"])
['Baelrinith Tarvoith was born in 1948.']
>>> model.forget(subject="person-000")       # every shard that saw the person switches to a clean prefix
>>> model.generate(["In what year was Baelrinith Tarvoith born?"])   # no longer from the tuned facts
"""

from __future__ import annotations

from typing import Sequence

from .errors import DataError


class GenerativeMixin:
    """Methods of :class:`s3t.S3T` for ``train.task = 'causal-lm'``."""

    def ensemble_lm(self):
        """The served ensemble as a language model (:class:`s3t.serve.generate.EnsembleLM`), swapped to
        the ledger's latest manifest first; each call of its methods answers from one manifest."""
        from .serve.generate import EnsembleLM

        ens = self.ensemble_
        self._sync()
        lm = getattr(self, "_lm", None)
        if lm is None or lm.ensemble is not ens:
            self._lm = lm = EnsembleLM(ens)
        return lm

    def generate(self, prompts: Sequence[str], max_new_tokens: int = 64, combine: str = "probs",
                 temperature: float = 0.0, top_k: int = 0, seed: int = 0, details: bool = False):
        """Answer each prompt with the served ensemble (see :mod:`s3t.serve.generate`).

        ``combine``: 'probs' (mean of the live shards' next-token probabilities) or 'logprobs'
        (mean of log-probabilities); ``temperature`` 0 is greedy, above 0 samples (``top_k`` > 0
        keeps the k likeliest tokens) from a generator seeded with ``seed``. Returns the answers'
        texts, or :class:`~s3t.serve.generate.Generation` objects (tokens, finish reason, manifest
        version, served stages) with ``details=True``.
        """
        self._check_fitted()
        self._require_task("causal-lm", "generate", "predict(texts)")
        prompts = _check_prompts(prompts)
        out = self.ensemble_lm().generate(prompts, max_new_tokens=max_new_tokens, combine=combine,
                                           temperature=temperature, top_k=top_k, seed=seed)
        return out if details else [g.text for g in out]

    def score_responses(self, pairs: Sequence[tuple[str, str]], combine: str = "probs"):
        """Teacher-forced log-probability of each (prompt, response) under every live member and the
        ensemble (:class:`~s3t.serve.generate.ResponseScore`): what forget-quality evaluation compares."""
        self._check_fitted()
        self._require_task("causal-lm", "score_responses", "predict_proba(texts)")
        lm = self.ensemble_lm()
        bad = [i for i, p in enumerate(pairs) if not (isinstance(p, (tuple, list)) and len(p) == 2
                                                      and all(isinstance(x, str) and x.strip() for x in p))]
        if bad:
            raise DataError(f"pairs must be (prompt, response) string pairs; item(s) {bad[:5]} are not")
        return [lm.score(p, r, combine=combine) for p, r in pairs]


def _check_prompts(prompts: Sequence[str]) -> list[str]:
    if isinstance(prompts, str):
        raise DataError("generate expects a list of prompts, not a single string; wrap it in a list")
    out = list(prompts)
    bad = [i for i, t in enumerate(out) if not isinstance(t, str) or not t.strip()]
    if bad:
        raise DataError(f"prompts must be non-empty strings; item(s) {bad[:5]} are not")
    return out
