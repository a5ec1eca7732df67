"""Forget quality and utility of a chat model (torch-free: numpy, scipy), after TOFU (Maini et al. 2024).

For a question q with correct answer a and perturbed answers â_1..â_k, with P(·|q) the model's
teacher-forced probability of a whole response (for s3t, under the ensemble's combined
next-token distribution) and |·| its length in tokens:

- **answer probability** P(a|q)^(1/|a|), the length-normalised probability of the correct answer;
- **truth ratio** R = (∏_j P(â_j|q)^(1/|â_j|))^(1/k) / P(a|q)^(1/|a|): the geometric mean of the
  perturbed answers' normalised probabilities over the correct one's. R < 1: the model prefers
  the truth. (TOFU's paper averages the ratios arithmetically; its code uses this geometric form,
  as the reciprocal. The KS test below is unchanged by either choice.)
- **truth score**: on the forget set mean min(R, 1/R), on retained people mean max(0, 1 − R)
  (TOFU's "Truth Ratio" statistics);
- **forget quality**: the p-value of the two-sample Kolmogorov–Smirnov test between a method's
  truth ratios and Retrain's on the same forget-set questions (``scipy.stats.ks_2samp``): high
  = indistinguishable from a model that never saw the forget set. Retrain against itself is 1;
- **token accuracy**: share of response tokens whose arg-max next token (teacher-forced) is right;
- **ROUGE-L**: recall of the longest common word subsequence of a greedy answer with the correct
  response (TOFU's ROUGE), on lower-cased words without punctuation;
- held-out chat: **mean token log-probability** of real responses and its **perplexity**
  exp(−mean), pooled over tokens.

>>> float(truth_ratio([-2.0], [2], [[-4.0, -6.0]], [[2, 2]])[0]) == float(np.exp(-2.5 - -1.0))
True
"""

from __future__ import annotations

import math
import re
from typing import Any, Sequence

import numpy as np


def _arr(x: Any) -> np.ndarray:
    return np.asarray(x, dtype=float)


def normalised_logp(logp: Any, tokens: Any) -> np.ndarray:
    """log P(answer|q)^(1/|answer|): the mean log-probability per token."""
    logp, tokens = _arr(logp), _arr(tokens)
    if logp.shape != tokens.shape or (tokens < 1).any():
        raise ValueError(f"expected log-probs and token counts (>= 1) of one shape; got {logp.shape}, {tokens.shape}")
    return logp / tokens


def truth_ratio(correct_logp: Any, correct_tokens: Any, perturbed_logp: Any, perturbed_tokens: Any) -> np.ndarray:
    """R per question (see the module docstring) from summed log-probs [n] and [n, k] and token counts."""
    right = normalised_logp(correct_logp, correct_tokens)
    wrong = normalised_logp(perturbed_logp, perturbed_tokens)
    if wrong.ndim != 2 or wrong.shape[0] != right.shape[0]:
        raise ValueError(f"expected perturbed [n, k] for n = {right.shape[0]} questions; got {wrong.shape}")
    return np.exp(wrong.mean(1) - right)


def forget_quality(method_tr: Sequence[float] | None, retrain_tr: Sequence[float]) -> dict[str, float]:
    """KS test of a method's truth ratios against Retrain's (same questions): statistic and p-value."""
    from scipy.stats import ks_2samp

    if method_tr is None:
        return {"ks_statistic": float("nan"), "p_value": float("nan")}
    a, b = _arr(method_tr), _arr(retrain_tr)
    if a.shape != b.shape:
        raise ValueError(f"forget quality compares truth ratios of the same questions; got {a.shape} and {b.shape}")
    res = ks_2samp(a, b)
    return {"ks_statistic": float(res.statistic), "p_value": float(res.pvalue)}


_WORD = re.compile(r"[a-z0-9]+")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def rouge_l_recall(prediction: str, reference: str) -> float:
    """|LCS(prediction, reference)| / |reference| over words.

    >>> rouge_l_recall("Ann was born in Rome, I think", "Ann was born in Paris.")
    0.8
    """
    ref, pred = words(reference), words(prediction)
    if not ref:
        return float("nan")
    prev = [0] * (len(pred) + 1)
    for r in ref:
        cur = [0]
        for j, p in enumerate(pred):
            cur.append(prev[j] + 1 if r == p else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1] / len(ref)


def question_metrics(correct_logp: Any, correct_tokens: Any, correct_hits: Any, perturbed_logp: Any,
                     perturbed_tokens: Any, forget: bool, rouge: Sequence[float] = ()) -> dict[str, Any]:
    """Answer probability, token accuracy, truth ratio (mean, median, score) and ROUGE-L of one question set;
    ``truth_ratios``: the per-question values (what forget quality compares)."""
    tr = truth_ratio(correct_logp, correct_tokens, perturbed_logp, perturbed_tokens)
    score = np.minimum(tr, 1 / tr) if forget else np.maximum(0.0, 1 - tr)
    return {"answer_prob": float(np.exp(normalised_logp(correct_logp, correct_tokens)).mean()),
            "token_accuracy": float(_arr(correct_hits).sum() / _arr(correct_tokens).sum()),
            "truth_ratio_mean": float(tr.mean()), "truth_ratio_median": float(np.median(tr)),
            "truth_score": float(score.mean()),
            "rouge_l": float(np.mean(rouge)) if len(rouge) else float("nan"), "rouge_n": len(rouge),
            "truth_ratios": [float(x) for x in tr]}


def chat_metrics(logp: Any, tokens: Any, hits: Any) -> dict[str, float]:
    """Mean token log-probability, perplexity and token accuracy of held-out responses (pooled over tokens)."""
    logp, tokens = _arr(logp), _arr(tokens)
    if not len(tokens) or np.isnan(logp).any():  # nothing asked, or no live model
        return {"mean_token_logp": float("nan"), "perplexity": float("nan"), "token_accuracy": float("nan"),
                "pairs": int(len(tokens))}
    mean = float(logp.sum() / tokens.sum())
    return {"mean_token_logp": mean, "perplexity": float(math.exp(-mean)),
            "token_accuracy": float(_arr(hits).sum() / tokens.sum()), "pairs": int(len(tokens))}
