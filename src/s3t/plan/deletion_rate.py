"""Deletion rate: how many deletion requests a plan absorbs before every shard is dead.

:func:`deletion_rate` is the closed form (coupon collector over the shards' distinct first
slices); :func:`simulate` is a Monte-Carlo check of it that also measures how long the
served prefixes stay over a stream of deletions (where sequence selection shows its gain).
With ``subject_sizes`` each request is a whole subject (a person and all their records), under
record or subject placement: see :mod:`s3t.plan.subject_rate`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence

import numpy as np

from s3t.errors import ConfigError
from s3t.plan.sequences import _check_priors
from s3t.plan.sharding import _check_int

__all__ = ["SimulationResult", "deletion_rate", "harmonic", "served_prefix", "simulate"]


def harmonic(n: int) -> float:
    """The n-th harmonic number H(n) = 1 + 1/2 + ... + 1/n (H(0) = 0).

    Parameters
    ----------
    n : int
        Non-negative integer.

    Returns
    -------
    float
    """
    n = _check_int("n", n, 0)
    return math.fsum(1.0 / k for k in range(1, n + 1))


def deletion_rate(n_shards: int, n_slices: int, budget: int) -> float:
    """Expected number of uniform random deletions until every shard is dead.

    A shard dies when the first slice of each of its sequences is hit. With
    B' = min(B, L) distinct first slices per shard this is a coupon collector over
    m·B' coupons among m·L equally likely slices: E = m·L·H(m·B').

    Parameters
    ----------
    n_shards : int
        Number of shards m (>= 1).
    n_slices : int
        Slices per shard L (>= 1).
    budget : int
        Sequences per shard B (>= 1).

    Returns
    -------
    float

    Examples
    --------
    >>> [round(deletion_rate(5, 6, b), 1) for b in (1, 2, 3, 6)]
    [68.5, 87.9, 99.5, 119.8]
    """
    m = _check_int("n_shards", n_shards, 1)
    L = _check_int("n_slices", n_slices, 1)
    b = _check_int("budget", budget, 1)
    return m * L * harmonic(m * min(b, L))


def served_prefix(sequences: Iterable[Sequence[int]], dead_slices: set[int]) -> int:
    """Longest prefix, over the sequences, that holds no dead slice.

    Parameters
    ----------
    sequences : iterable of sequence of int
        The shard's sequences (slice orders).
    dead_slices : set of int
        Slices holding a deleted record.

    Returns
    -------
    int
        The served checkpoint's stage; 0 means the shard is dead.

    Examples
    --------
    >>> served_prefix([(0, 1, 2), (1, 2, 0)], {2})
    2
    """
    best = 0
    for seq in sequences:
        n = 0
        for s in seq:
            if s in dead_slices:
                break
            n += 1
        best = max(best, n)
    return best


@dataclasses.dataclass(frozen=True)
class SimulationResult:
    """Outcome of :func:`simulate`.

    Attributes
    ----------
    deletion_rate : float
        Estimated expected number of requests until every shard is dead, by conditional
        Monte Carlo: each trial samples the order in which the sequences' first slices are
        hit and adds the *expected* wait between successive new hits (1 / probability of
        hitting a still-live first slice). Same expectation as counting requests, far less
        variance (for uniform priors it is exact in every trial).
    std : float
        Standard deviation of the per-trial conditional estimate (ddof=1; 0 for one trial).
    deletion_rate_plain : float
        Plain Monte Carlo: mean number of sampled requests until every shard was dead.
    std_plain : float
        Standard deviation of the plain count over the trials.
    trials : int
        Number of Monte-Carlo trials.
    theory : float or None
        Record requests: :func:`deletion_rate` with B = number of sequences (exact for
        uniform requests when the sequences have min(B, L) distinct first slices). Subject
        requests under subject placement: :func:`s3t.plan.subject_rate.packed_deletion_rate`
        of the packing (in subjects; exact for uniform requests). None where no closed form
        applies (subject requests under record placement, or subject priors).
    mean_prefix_fraction : float
        Mean over trials, shards and the first ``horizon`` requests of served_prefix / L.
    horizon : int
        Number of requests the prefix fraction is averaged over.
    unit : str
        What a request deletes, and so what every count here counts: ``"records"`` or ``"subjects"``.
    placement : str
        ``"record"`` or ``"subject"``: how records were placed (record requests: ``"record"``).
    subjects : int
        Number of subjects K (0 for record requests).
    """

    deletion_rate: float
    std: float
    trials: int
    theory: float | None
    mean_prefix_fraction: float
    horizon: int
    deletion_rate_plain: float
    std_plain: float
    unit: str = "records"
    placement: str = "record"
    subjects: int = 0

    def to_dict(self) -> dict[str, float | int]:
        """Plain dict of the fields (JSON-serialisable)."""
        return dataclasses.asdict(self)


def _check_sequences(sequences: Sequence[Sequence[int]], n_slices: int) -> np.ndarray:
    try:
        seqs = [tuple(int(s) for s in seq) for seq in sequences]
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"sequences must be a list of tuples of slice indices; got {sequences!r:.80}") from exc
    if not seqs:
        raise ConfigError("sequences must hold at least one sequence; got none")
    for seq in seqs:
        if sorted(seq) != list(range(n_slices)):
            raise ConfigError(
                f"sequences must each be a permutation of range(n_slices) = range({n_slices}); got {seq}"
            )
    return np.array(seqs, dtype=np.intp)


def _first_hits(
    rng: np.random.Generator, trials: int, n_total: int, p: np.ndarray | None, chunk: int, start: int
) -> np.ndarray:
    """Index of the first request in [start, start+chunk) hitting each slice (inf if none)."""
    if p is None:
        draws = rng.integers(0, n_total, size=(trials, chunk))
    else:
        draws = rng.choice(n_total, size=(trials, chunk), p=p)
    keys = (np.arange(trials)[:, None] * n_total + draws).ravel()
    uniq, first = np.unique(keys, return_index=True)  # first occurrence, row-major = time order
    out = np.full(trials * n_total, np.inf)
    out[uniq] = start + first % chunk
    return out.reshape(trials, n_total)


def _prefix_fraction(hits: np.ndarray, seqs: np.ndarray, horizon: int) -> float:
    """Mean served_prefix / L over trials, shards and requests 1..horizon, from the (trials, m, L)
    0-based index of the request that first hit each slice (inf: never)."""
    # best[.., k]: request index at which the best prefix of length k+1 dies
    best = np.full(hits.shape, -np.inf)
    for seq in seqs:
        best = np.maximum(best, np.minimum.accumulate(hits[:, :, seq], axis=2))
    return float((np.minimum(best, horizon).sum(axis=2) / (horizon * hits.shape[2])).mean())


def simulate(
    n_shards: int,
    n_slices: int,
    sequences: list[tuple[int, ...]],
    trials: int = 500,
    seed: int = 0,
    priors: Sequence[float] | None = None,
    horizon: int | None = None,
    *,
    subject_sizes: Sequence[int] | None = None,
    placement: str = "record",
    subject_priors: Sequence[float] | None = None,
) -> SimulationResult:
    """Monte-Carlo deletion rate and served-prefix length of a plan.

    Each request hits one slice of one shard, drawn with replacement uniformly over all
    m·L slices, or with ``priors`` (per slice, the same for every shard, normalised over
    all m·L slices). A hit slice is dead; a sequence serves its longest prefix of live
    slices; a shard is dead when every sequence serves 0. Every shard uses ``sequences``.

    With ``subject_sizes`` (records per subject) each request deletes one whole subject
    instead: distinct subjects, uniformly at random (or by ``subject_priors``), and every
    slice holding one of its records dies; all counts are then in subjects
    (``result.unit == "subjects"``). ``placement`` says where the records went:
    ``"record"`` — each record in a uniformly random slice (a balanced random deal), so a
    subject of n records hits each slice with probability about 1 − (1 − 1/(m·L))^n;
    ``"subject"`` — each subject in one slice (LPT bin packing by size, split over the fewest
    slices of one shard when larger than ceil(N/(m·L))), so a deletion cuts one slice and
    m·L·H(m·B') counts subjects when there are many subjects per slice, spread evenly
    (closed form with the finite K: :func:`s3t.plan.subject_rate.subject_deletion_rate`;
    exact for the actual packing, the ``theory``: :func:`s3t.plan.subject_rate.packed_deletion_rate`).
    Draw skewed sizes with :func:`s3t.plan.subject_rate.zipf_sizes`.

    Parameters
    ----------
    n_shards : int
        Number of shards m (>= 1).
    n_slices : int
        Slices per shard L (>= 1).
    sequences : list of tuple of int
        The B sequences, each a permutation of ``range(n_slices)``.
    trials : int, default 500
        Number of independent request streams (>= 1).
    seed : int, default 0
        Seed of ``np.random.default_rng``.
    priors : sequence of float, optional
        Deletion prior per slice (length L). Uniform when None.
    horizon : int, optional
        Requests over which the served-prefix fraction is averaged (state after each of
        requests 1..horizon). Default ``round(theory / 2)`` (subject requests without a
        closed form: half the simulated mean).
    subject_sizes : sequence of int, optional
        Records of each subject (each >= 1, total >= m·L): requests are subjects.
    placement : {"record", "subject"}, default "record"
        Placement of the subjects' records (needs ``subject_sizes`` for ``"subject"``).
    subject_priors : sequence of float, optional
        Relative deletion weight per subject (len K, >= 0); requests are drawn without
        replacement with these weights. Uniform when None.

    Returns
    -------
    SimulationResult

    Raises
    ------
    ConfigError
        Invalid argument, or priors under which some shard can never die (a first slice
        with prior 0) or does not die within 1000 times the uniform expectation.
    """
    m = _check_int("n_shards", n_shards, 1)
    L = _check_int("n_slices", n_slices, 1)
    seqs = _check_sequences(sequences, L)
    trials = _check_int("trials", trials, 1)
    seed = _check_int("seed", seed, 0)
    if placement not in ("record", "subject"):
        raise ConfigError(f"placement must be 'record' or 'subject'; got {placement!r}")
    if horizon is not None:
        horizon = _check_int("horizon", horizon, 1)
    if subject_sizes is not None:
        if priors is not None:
            raise ConfigError(f"priors (per slice) apply to record requests; with subject_sizes give "
                              f"subject_priors (per subject); got {priors!r:.80}")
        from s3t.plan.subject_rate import simulate_subjects

        return simulate_subjects(m, L, seqs, subject_sizes, placement, trials, seed, subject_priors, horizon)
    if placement != "record" or subject_priors is not None:
        raise ConfigError(f"placement must be 'record' for record requests (subject placement and subject_priors "
                          f"need subject_sizes); got {placement!r}")
    theory = deletion_rate(m, L, len(seqs))
    horizon = max(1, round(theory / 2)) if horizon is None else horizon
    firsts = np.unique(seqs[:, 0])
    p = None
    if priors is not None:
        q = _check_priors(priors, L)
        if np.any(q[firsts] == 0):
            raise ConfigError(
                f"priors must be positive for every first slice {firsts.tolist()} of the sequences, "
                f"or shards never die; got {q.tolist()}"
            )
        p = np.tile(q, m) / m
    n_total = m * L
    first_cols = (np.arange(m)[:, None] * L + firsts[None, :]).ravel()
    rng = np.random.default_rng(seed)
    chunk = max(int(2 * theory), horizon, 16)
    limit = 1000 * math.ceil(theory) + horizon
    hit = np.full((trials, n_total), np.inf)
    done = 0
    while done < horizon or not np.all(np.isfinite(hit[:, first_cols])):
        if done >= limit:
            raise ConfigError(
                f"priors are too skewed: not every shard died within {limit} requests; got {priors!r:.80}"
            )
        hit = np.minimum(hit, _first_hits(rng, trials, n_total, p, chunk, done))
        done += chunk
    hits = hit.reshape(trials, m, L)
    # shard death = when the last first slice is hit; all dead = max over shards
    counts = hits[:, :, firsts].max(axis=2).max(axis=1) + 1
    # conditional MC: order of the first-slice hits, expected wait 1/p for each new one
    probs = np.full(n_total, 1.0 / n_total) if p is None else p
    order = np.argsort(hit[:, first_cols], axis=1, kind="stable")
    ordered = probs[first_cols][order]
    live_mass = np.cumsum(ordered[:, ::-1], axis=1)[:, ::-1]  # mass still live before each hit
    conditional = (1.0 / live_mass).sum(axis=1)
    return SimulationResult(
        deletion_rate=float(conditional.mean()),
        std=float(conditional.std(ddof=1)) if trials > 1 else 0.0,
        deletion_rate_plain=float(counts.mean()),
        std_plain=float(counts.std(ddof=1)) if trials > 1 else 0.0,
        trials=trials,
        theory=float(theory),
        mean_prefix_fraction=_prefix_fraction(hits, seqs, horizon),
        horizon=int(horizon),
    )
