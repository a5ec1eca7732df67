"""Torch-free cost and latency arithmetic shared by the baselines and the benchmark.

A SISA deletion that hits the slice at position ``j`` (0-based) of a shard's single
sequence must retrain that shard's stages ``j+1..L`` (every stage whose data held the
slice), starting from the checkpoint of stage ``j``; a full-retrain deletion costs one
whole training. Given measured per-stage training times, these are sums.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import ConfigError


def sisa_retrain_seconds(stage_seconds: Sequence[float], hit_position: int) -> float:
    """Seconds SISA spends retraining a shard whose slice at ``hit_position`` lost a record.

    Parameters
    ----------
    stage_seconds : sequence of float
        Measured training time of stages 1..L of that shard.
    hit_position : int
        0-based position of the hit slice in the shard's (identity) order.

    Examples
    --------
    >>> sisa_retrain_seconds([1.0, 2.0, 3.0], 1)
    5.0
    >>> sisa_retrain_seconds([1.0, 2.0, 3.0], 0)
    6.0
    """
    if not 0 <= hit_position < len(stage_seconds):
        raise ConfigError(f"hit_position must be in 0..{len(stage_seconds) - 1}; got {hit_position}")
    return float(sum(stage_seconds[hit_position:]))


def latency_summary(values: Sequence[float]) -> dict[str, float | int]:
    """n, p50, p99, mean and max of a list of latencies (same unit as the input).

    >>> latency_summary([1, 2, 3, 4])["p50"]
    2.5
    """
    v = np.asarray(list(values), dtype=float)
    if v.size == 0:
        raise ConfigError("latency_summary needs at least one value; got none")
    return {
        "n": int(v.size),
        "p50": float(np.percentile(v, 50)),
        "p99": float(np.percentile(v, 99)),
        "mean": float(v.mean()),
        "max": float(v.max()),
    }


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator, or None when either is missing or the denominator is 0."""
    if numerator is None or denominator is None or denominator == 0:
        return None
    return float(numerator) / float(denominator)
