"""Unlearning metrics on numpy arrays of class probabilities and labels (torch-free).

Vocabulary (Jia et al. 2023, "Model Sparsity Can Simplify Machine Unlearning"; Fan et al.
2024, "SalUn"):

- **UA**  unlearning accuracy = 1 − accuracy on the forget set;
- **RA**  accuracy on the retained training data;
- **TA**  accuracy on the test set;
- **MIA** MIA-efficacy = share of forget records a membership-inference attack calls
  non-members (see :mod:`s3t.evaluate.mia`);
- **RTE** run-time efficiency = wall seconds of the unlearning step;
- **FTG** forget−test gap = accuracy on the forget set − accuracy on the test set. For a
  *random* forget set a model that never saw it treats it like unseen data, so FTG ≈ 0 (up
  to sampling noise) for every exact method whatever its accuracy, and FTG > 0 is leftover
  memorisation; UA alone cannot show this for a weaker exact model (its UA is high because
  its test accuracy is low too). For chosen forget sets (a class, the most memorised
  records) the forget set is harder than test data by construction: compare FTG with
  Retrain's there.

A method is judged by its *gap to Retrain* (the model retrained without the forget set):
``|metric − metric_retrain|`` for UA, RA, TA and MIA, and their mean, the *average gap*.
RTE is a cost, reported but not averaged into the gap. Missing values (a method with no
live model) are NaN and propagate as NaN.

**Within noise.** A forget set of 15 records moves UA by 6.7 points per record, so a gap to
Retrain means little on its own. :func:`noise_check` pairs each forget record's outcome under
a method and under Retrain (wrong or not; called a non-member or not) and bootstraps the
records: a method is *within noise* of Retrain on a metric when the 95% interval of the
difference holds 0.

>>> import numpy as np
>>> unlearning_accuracy(np.array([[0.9, 0.1], [0.2, 0.8]]), np.array([0, 0]))
0.5
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

GAP_METRICS = ("UA", "RA", "TA", "MIA")
NOISE_METRICS = ("UA", "MIA")          # the forget-set metrics "within noise of Retrain" is judged on
PER_RECORD = "per_record"              # summarise()'s key for the per-forget-record vectors
EPS = 1e-12


def _check(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    probs, labels = np.asarray(probs, dtype=float), np.asarray(labels, dtype=int)
    if probs.ndim != 2 or labels.ndim != 1 or len(probs) != len(labels):
        raise ValueError(f"expected probs [n, C] and labels [n]; got shapes {probs.shape} and {labels.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() >= probs.shape[1]):
        raise ValueError(f"labels must be class indices 0..{probs.shape[1] - 1}")
    return probs, labels


def accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    """Share of rows whose arg-max class is the label (NaN for no rows)."""
    probs, labels = _check(probs, labels)
    return float("nan") if len(labels) == 0 else float((probs.argmax(1) == labels).mean())


def unlearning_accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    """UA = 1 − accuracy on the forget set."""
    return 1.0 - accuracy(probs, labels)


def true_label_prob(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    probs, labels = _check(probs, labels)
    return probs[np.arange(len(labels)), labels]


def entropy(probs: np.ndarray) -> np.ndarray:
    """Shannon entropy (nats) of each row."""
    p = np.clip(np.asarray(probs, dtype=float), EPS, 1.0)
    return -(p * np.log(p)).sum(1)


def loss(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Cross-entropy −log p(label) of each row."""
    return -np.log(np.clip(true_label_prob(probs, labels), EPS, 1.0))


def attack_features(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """[max prob, entropy, true-label prob] per row: the confidence attack's inputs."""
    probs, labels = _check(probs, labels)
    return np.stack([probs.max(1), entropy(probs), true_label_prob(probs, labels)], 1)


def gaps(rows: Mapping[str, Mapping[str, float]], reference: str = "retrain",
         metrics: Sequence[str] = GAP_METRICS) -> dict[str, dict[str, float]]:
    """Per method: ``|metric − reference's metric|`` for each metric, plus ``avg`` (their mean).

    >>> g = gaps({"retrain": {"UA": 0.2, "RA": 1.0}, "ft": {"UA": 0.0, "RA": 0.9}}, metrics=("UA", "RA"))
    >>> round(g["ft"]["avg"], 3), g["retrain"]["avg"]
    (0.15, 0.0)
    """
    if reference not in rows:
        raise ValueError(f"reference method {reference!r} has no row; rows: {sorted(rows)}")
    ref = rows[reference]
    out = {}
    for name, row in rows.items():
        g = {m: abs(_num(row.get(m)) - _num(ref.get(m))) for m in metrics}
        g["avg"] = float(np.mean([g[m] for m in metrics])) if metrics else float("nan")
        out[name] = g
    return out


def _num(x: float | None) -> float:
    return float("nan") if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def summarise(forget: tuple[np.ndarray, np.ndarray], retain: tuple[np.ndarray, np.ndarray],
              test: tuple[np.ndarray, np.ndarray], seed: int = 0) -> dict[str, float]:
    """UA, RA, TA and both MIA-efficacies from (probs, labels) of the forget, retain and test sets."""
    from .mia import mia_efficacy

    m = mia_efficacy(forget, retain, test, seed=seed)
    ua, ta = unlearning_accuracy(*forget), accuracy(*test)
    wrong = np.asarray(forget[0]).argmax(1) != np.asarray(forget[1]) if len(forget[1]) else np.zeros(0, bool)
    return {"UA": ua, "RA": accuracy(*retain), "TA": ta, "MIA": m["confidence"], "MIA_loss": m["loss"],
            "FTG": (1.0 - ua) - ta, "forget_loss": float(loss(*forget).mean()),
            PER_RECORD: {"UA": wrong.astype(float), "MIA": m["non_member"].astype(float)}}


def paired_interval(a: Sequence[float], b: Sequence[float], level: float = 0.95, n_boot: int = 4000,
                    seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap interval of ``mean(a) − mean(b)`` where ``a[i]`` and ``b[i]`` belong
    to the same record (resampling records, keeping the pairs).

    >>> paired_interval([1, 0, 1, 0], [1, 0, 1, 0])
    (0.0, 0.0)
    """
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"expected two paired vectors of one length; got shapes {a.shape} and {b.shape}")
    if len(a) == 0:
        return float("nan"), float("nan")
    d = a - b
    idx = np.random.default_rng(seed).integers(0, len(d), size=(n_boot, len(d)))
    means = d[idx].mean(1)
    tail = 100 * (1 - level) / 2
    return float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))


def noise_check(per_record: Mapping[str, Mapping[str, Sequence[float] | None]], reference: str = "retrain",
                metrics: Sequence[str] = NOISE_METRICS, seed: int = 0) -> dict[str, dict[str, dict[str, Any]]]:
    """Is each method's UA / MIA-efficacy within noise of the reference (Retrain)?

    Per method and metric: the difference to the reference, its 95% paired-bootstrap interval over
    the forget records (:func:`paired_interval`), and ``within`` = the interval holds 0, i.e. the
    forget set is too small to tell the two apart. A method without a live model (``None``) gets
    NaN and ``within = None``.
    """
    ref = per_record[reference]
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for name, vec in per_record.items():
        out[name] = {}
        for m in metrics:
            if vec is None:
                out[name][m] = {"diff": float("nan"), "lo": float("nan"), "hi": float("nan"), "within": None}
                continue
            a, b = np.asarray(vec[m], float), np.asarray(ref[m], float)
            lo, hi = paired_interval(a, b, seed=seed)
            diff = float(a.mean() - b.mean()) if len(a) else float("nan")
            out[name][m] = {"diff": diff, "lo": lo, "hi": hi, "within": bool(lo <= 0.0 <= hi) if len(a) else None}
    return out


def nan_row() -> dict[str, float]:
    """The metrics of a method that has no model to evaluate (e.g. every s3t/SISA shard dead)."""
    return {k: float("nan") for k in ("UA", "RA", "TA", "MIA", "MIA_loss", "FTG", "forget_loss")}
