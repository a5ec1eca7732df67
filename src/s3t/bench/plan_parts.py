"""Torch-free parts of the benchmark: P2 (deletion rate, cyclic vs BMS) and padding waste (P5c)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..plan import deletion_rate, select_sequences, simulate
from .config import BenchConfig


SKEW_SELECTORS = ("cyclic", "bms", "bms_relaxed")  # P2 under skewed priors: published BMS and its relaxed variant


def skewed_priors(n_slices: int, seed: int, hot_share: float = 0.8, hot_fraction: float = 0.2) -> tuple[list[float], list[int]]:
    """Priors where ``hot_fraction`` of the slices (seeded pick) carry ``hot_share`` of the requests."""
    n_hot = max(1, round(hot_fraction * n_slices))
    hot = sorted(np.random.default_rng(seed).choice(n_slices, n_hot, replace=False).tolist())
    cold = (1 - hot_share) / (n_slices - n_hot)
    return [hot_share / n_hot if s in hot else cold for s in range(n_slices)], hot


def p2_deletion_rate(cfg: BenchConfig) -> dict:
    """Simulated vs closed-form deletion rate for B = 1..L, and cyclic vs BMS under skewed priors."""
    m, L = cfg.sim_shards, cfg.sim_slices
    formula = []
    for b in range(1, L + 1):
        res = simulate(m, L, select_sequences("cyclic", L, b), trials=cfg.sim_trials, seed=cfg.seed)
        formula.append({
            "budget": b, "formula": deletion_rate(m, L, b), "simulated": res.deletion_rate,
            "simulated_plain": res.deletion_rate_plain, "plain_stderr": res.std_plain / cfg.sim_trials ** 0.5,
            "rel_error": res.deletion_rate / deletion_rate(m, L, b) - 1,
            "rel_error_plain": res.deletion_rate_plain / deletion_rate(m, L, b) - 1,
        })
    Ls = cfg.skew_slices
    priors, hot = skewed_priors(Ls, cfg.seed)
    skew = []
    for b in cfg.skew_budgets:
        row: dict = {"budget": b}
        for name in SKEW_SELECTORS:
            seqs = select_sequences(name, Ls, b, None if name == "cyclic" else priors)
            res = simulate(m, Ls, seqs, trials=cfg.sim_trials, seed=cfg.seed, priors=priors)
            row[name] = {"deletion_rate": res.deletion_rate, "mean_prefix_fraction": res.mean_prefix_fraction,
                         "horizon": res.horizon}
        for name, suffix in (("bms", ""), ("bms_relaxed", "_relaxed")):
            row[f"prefix_gain{suffix}"] = row[name]["mean_prefix_fraction"] / row["cyclic"]["mean_prefix_fraction"] - 1
            row[f"rate_gain{suffix}"] = row[name]["deletion_rate"] / row["cyclic"]["deletion_rate"] - 1
        skew.append(row)
    return {
        "formula_check": {"shards": m, "slices": L, "trials": cfg.sim_trials, "rows": formula,
                          "max_abs_rel_error": max(abs(r["rel_error"]) for r in formula),
                          "max_abs_rel_error_plain": max(abs(r["rel_error_plain"]) for r in formula)},
        "skewed": {"shards": m, "slices": Ls, "hot_slices": hot, "priors": priors, "rows": skew,
                   "note": "2 of 10 slices carry 80% of the requests; horizon = half the uniform deletion rate"},
    }


def padded_fraction(lengths: Sequence[int], batches: Sequence[Sequence[int]]) -> float:
    """Share of the padded batch slots that are padding (0 = no waste).

    >>> padded_fraction([2, 4], [[0, 1]])
    0.25
    """
    slots = sum(len(b) * max(lengths[i] for i in b) for b in batches if b)
    real = sum(lengths[i] for b in batches for i in b)
    return 1 - real / slots if slots else 0.0


def random_batches(n: int, batch_size: int, seed: int) -> list[list[int]]:
    order = np.random.default_rng(seed).permutation(n).tolist()
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


def cache_saving_model(n_layers: int, n_slices: int, budget: int, epochs: int, backward_factor: float = 3.0) -> float:
    """Expected share of training compute the trunk cache saves, by counting layer passes.

    Without the cache, stage k forwards its k slices through the N - k·n frozen layers below
    group k in every epoch of every sequence; with it, each slice goes once through the
    N - n layers below the top group. Trained layers cost ``backward_factor`` forwards
    (forward + backward). Slices count as equal units.

    >>> round(cache_saving_model(6, 3, 3, 1), 3)
    0.043
    >>> round(cache_saving_model(6, 6, 6, 2), 3)
    0.106
    """
    n = n_layers // n_slices
    ks = range(1, n_slices + 1)
    frozen = budget * epochs * sum(k * (n_layers - k * n) for k in ks)
    cache = n_slices * (n_layers - n)
    train = budget * epochs * sum(k * k * n for k in ks) * backward_factor
    return (frozen - cache) / (train + frozen)
