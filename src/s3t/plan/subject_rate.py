"""Deletion rate counted in subjects: erasure requests name a person, and a person owns many records.

* :func:`zipf_sizes` — skewed (Zipf-like) subject sizes, deterministic from a seed.
* :func:`pack_subjects` — subject placement as bin packing: the slices each subject's records land in.
* :func:`subject_deletion_rate` — closed form for subject placement with subjects spread evenly.
* :func:`packed_deletion_rate` — the exact expectation for one packing (skewed sizes, split subjects).
* :func:`simulate_subjects` — Monte Carlo of a stream of whole-subject deletions under ``"record"`` or
  ``"subject"`` placement (reached through :func:`s3t.plan.deletion_rate.simulate` with ``subject_sizes``).

Under record placement a subject with n records hits a given slice with probability
1 − (1 − 1/(m·L))^n, so one large subject alone can take every shard down; under subject
placement it cuts one slice (or the few slices of one shard it had to be split over).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
from scipy.integrate import simpson

from s3t.errors import ConfigError
from s3t.plan.sharding import _check_int

__all__ = ["SUBJECT_PLACEMENTS", "pack_subjects", "packed_deletion_rate", "simulate_subjects", "subject_deletion_rate",
           "zipf_sizes"]

SUBJECT_PLACEMENTS = ("record", "subject")
_CELLS = 4_000_000  # array elements per Monte-Carlo chunk (bounds memory whatever N and trials)


def zipf_sizes(n_subjects: int, n_records: int, exponent: float = 1.0, seed: int = 0) -> list[int]:
    """Subject sizes proportional to 1/rank^exponent, totalling ``n_records``, each >= 1.

    Every subject gets one record; the other N − K are shared in proportion to
    1/rank^a by largest remainders, so the sizes are the Zipf shape itself, not a noisy
    draw. ``seed`` shuffles which subject holds which rank (the same seed, the same list).

    Parameters
    ----------
    n_subjects : int
        K >= 1.
    n_records : int
        N >= K.
    exponent : float, default 1.0
        a >= 0; 0 gives equal sizes (differing by at most 1).
    seed : int, default 0
        Seed of the rank shuffle (>= 0).

    Returns
    -------
    list of int

    Examples
    --------
    >>> sorted(zipf_sizes(4, 100, 1.0), reverse=True)  # 1 + 96 · (1, 1/2, 1/3, 1/4) / H(4), rounded
    [47, 24, 16, 13]
    >>> sorted(zipf_sizes(3, 10, 0.0))
    [3, 3, 4]
    """
    k = _check_int("n_subjects", n_subjects, 1)
    n = _check_int("n_records", n_records, k)
    seed = _check_int("seed", seed, 0)
    try:
        a = float(exponent)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"exponent must be a number >= 0; got {exponent!r}") from exc
    if not (math.isfinite(a) and a >= 0):
        raise ConfigError(f"exponent must be a number >= 0; got {exponent!r}")
    w = 1.0 / np.arange(1, k + 1, dtype=float) ** a
    share = (n - k) * w / w.sum()
    extra = np.floor(share).astype(np.int64)
    left = (n - k) - int(extra.sum())
    extra[np.argsort(-(share - extra), kind="stable")[:left]] += 1  # largest remainders; ties to lower ranks
    sizes = np.sort(1 + extra)[::-1]
    return [int(x) for x in sizes[np.random.default_rng(seed).permutation(k)]]


def subject_deletion_rate(n_shards: int, n_slices: int, budget: int, n_subjects: int) -> float:
    """Expected number of uniform subject deletions until every shard is dead, subject placement.

    Assumptions: every subject sits in exactly one slice and the K subjects spread evenly,
    c = K/(m·L) per slice; requests name distinct subjects uniformly at random (without
    replacement). A shard dies when its B' = min(B, L) first slices are all hit, so the
    count is the last first-hit among F = m·B' groups of c subjects in a random order of K:

        E = (K + 1) · [1 − Γ(1 + 1/c) · Γ(F + 1) / Γ(F + 1 + 1/c)]

    (inclusion–exclusion over the groups: the first of j·c items sits at (K+1)/(j·c+1) on
    average). Exact when every slice holds exactly c subjects. As c grows it tends to
    m·L·H(m·B') — :func:`s3t.plan.deletion_rate.deletion_rate` — which then counts subjects
    instead of records; for few subjects per slice it is smaller (a deleted subject is never
    drawn again; c = 1 gives K·F/(F+1) with K = m·L). With skewed sizes it can be far off:
    the packing leaves the slices of large subjects with few subjects each, which are rarely
    hit, so shards live longer (m=5, L=6, B=6, 1000 Zipf-1 subjects: ~380, not 112); use
    :func:`packed_deletion_rate` for an actual packing.

    Parameters
    ----------
    n_shards, n_slices, budget : int
        m, L, B (each >= 1).
    n_subjects : int
        K >= m·L (fewer subjects than slices: the placement splits some, no closed form).

    Returns
    -------
    float

    Examples
    --------
    >>> round(subject_deletion_rate(4, 4, 2, 16), 2)  # one subject per slice, F = 8: 17 · 8/9
    15.11
    >>> round(subject_deletion_rate(5, 6, 6, 10**7), 1)  # many subjects: m·L·H(m·B') = 119.8
    119.8
    """
    m = _check_int("n_shards", n_shards, 1)
    L = _check_int("n_slices", n_slices, 1)
    b = _check_int("budget", budget, 1)
    k = _check_int("n_subjects", n_subjects, 1)
    if k < m * L:
        raise ConfigError(f"n_subjects must be >= n_shards * n_slices = {m * L} for the closed form (every slice "
                          f"holds a subject); got {k}")
    f = m * min(b, L)
    x = m * L / k  # 1/c
    ratio = math.exp(math.lgamma(1 + x) + math.lgamma(f + 1) - math.lgamma(f + 1 + x))
    return (k + 1) * (1.0 - ratio)


def _check_sizes(subject_sizes: Sequence[int]) -> np.ndarray:
    if isinstance(subject_sizes, (str, bytes)):
        raise ConfigError(f"subject_sizes must be a list of positive integers; got {subject_sizes!r:.60}")
    try:
        sizes = [_check_int("subject_sizes", s, 1) for s in subject_sizes]
    except TypeError as exc:
        raise ConfigError(f"subject_sizes must be a list of positive integers; got {subject_sizes!r:.60}") from exc
    except ConfigError as exc:
        raise ConfigError(f"subject_sizes must all be integers >= 1; got {subject_sizes!r:.80}") from exc
    if not sizes:
        raise ConfigError("subject_sizes must hold at least one subject; got none")
    return np.array(sizes, dtype=np.int64)


def pack_subjects(subject_sizes: Sequence[int], n_shards: int, n_slices: int,
                  seed: int = 0) -> tuple[list[tuple[int, ...]], list[int]]:
    """Subject placement of sizes: for each subject the slices (``shard * L + slice``) it lands in.

    The rules of :mod:`s3t.plan.placement`, on sizes only: longest processing time first
    (subjects from largest to smallest, ties in a seeded order) into the slice with the fewest
    records (ties in a seeded order of the slices). A subject larger than the capacity
    ``ceil(N/(m·L))`` is split into ``ceil(size/capacity)`` nearly equal pieces over the
    least-loaded slices of the least-loaded shard (several shards only if it exceeds a shard).
    An empty slice (fewer subjects than slices) takes one record of the largest subject of the
    fullest slice, which then spans one more slice.

    Returns
    -------
    (list of tuple of int, list of int)
        The slices of each subject (in the order of ``subject_sizes``) and the records per slice.

    Examples
    --------
    >>> pack_subjects([5, 1, 1, 1], 2, 2)[1]
    [2, 2, 2, 2]
    """
    sizes = _check_sizes(subject_sizes)
    m = _check_int("n_shards", n_shards, 1)
    L = _check_int("n_slices", n_slices, 1)
    rng = np.random.default_rng([_check_int("seed", seed, 0), 0x5EB1EC7])
    n_bins, total = m * L, int(sizes.sum())
    if total < n_bins:
        raise ConfigError(f"subject_sizes must total at least n_shards * n_slices = {n_bins} records so that "
                          f"no slice is empty; got {total}")
    cap = math.ceil(total / n_bins)
    rank = rng.permutation(n_bins)
    tiebreak = rng.permutation(len(sizes))
    load = np.zeros(n_bins, dtype=np.int64)
    pieces: list[dict[int, int]] = [{} for _ in sizes]  # subject -> {slice: records}
    for i in sorted(range(len(sizes)), key=lambda i: (-sizes[i], tiebreak[i])):
        size = int(sizes[i])
        if size <= cap:
            b = int(np.lexsort((rank, load))[0])
            pieces[i][b] = size
            load[b] += size
            continue
        per_shard = load.reshape(m, L).sum(axis=1)
        shards = np.lexsort((rank.reshape(m, L).min(axis=1), per_shard))
        targets = [int(sh) * L + int(j) for sh in shards
                   for j in np.lexsort((rank[sh * L:(sh + 1) * L], load[sh * L:(sh + 1) * L]))]
        for chunk, b in zip(np.array_split(np.arange(size), math.ceil(size / cap)), targets):
            pieces[i][b] = len(chunk)
            load[b] += len(chunk)
    for b in sorted(np.flatnonzero(load == 0).tolist(), key=lambda b: rank[b]):
        donor = int(np.lexsort((rank, -load))[0])
        here = [i for i, p in enumerate(pieces) if p.get(donor)]
        i = max(here, key=lambda i: (pieces[i][donor], -tiebreak[i]))
        pieces[i][donor] -= 1
        if not pieces[i][donor]:
            del pieces[i][donor]
        pieces[i][b] = 1
        load[donor] -= 1
        load[b] += 1
    return [tuple(sorted(p)) for p in pieces], [int(x) for x in load]


def packed_deletion_rate(cover: Sequence[Sequence[int]], n_shards: int, n_slices: int,
                         n_first: int) -> float | None:
    """Exact expected uniform subject deletions until every shard is dead, for one packing.

    ``cover`` gives the slices (``shard * L + slice``) of each of the K subjects
    (:func:`pack_subjects`); ``n_first`` distinct slices of each shard are first slices,
    averaged over which ones (every choice equally likely, independently per shard — the
    random slice labels of :func:`simulate_subjects`). Requests draw distinct subjects
    uniformly. Writing each subject's position as the rank of a uniform U_i,

        E = (K + 1) · ∫_0^1 [1 − G(v)] dv,

    with G(v) the probability that every shard is dead when each subject is left alive
    independently with probability v (inclusion–exclusion over the first slices, shard by
    shard; shards linked by a subject spanning them are taken together). Unlike
    :func:`subject_deletion_rate` it holds for skewed sizes and split subjects: a slice
    holding few (large) subjects is rarely hit, so the last shard lives longer than under
    an even spread. Returns None when a group of linked shards is too large to enumerate.
    """
    m = _check_int("n_shards", n_shards, 1)
    L = _check_int("n_slices", n_slices, 1)
    b = min(_check_int("n_first", n_first, 1), L)
    cover = [tuple(int(x) for x in c) for c in cover]
    root = list(range(m))

    def find(x: int) -> int:
        while root[x] != x:
            root[x] = root[root[x]]
            x = root[x]
        return x

    for c in cover:
        for x in c[1:]:
            root[find(x // L)] = find(c[0] // L)
    comps: dict[int, list[int]] = {}
    for sh in range(m):
        comps.setdefault(find(sh), []).append(sh)
    s = np.geomspace(1e-12, 1.0, 4001)  # 1 - v, v: the chance that a subject is still alive
    g = np.ones_like(s)
    for shards in comps.values():
        n_choices = math.comb(L, b) ** len(shards)
        terms = np.arange(2 ** (b * len(shards)))
        if n_choices * len(terms) > 2**16:
            return None
        sign = np.where(np.array([bin(t).count("1") for t in terms]) % 2, -1.0, 1.0)
        sets = [frozenset(c) for c in cover if c[0] // L in shards]
        coef = np.zeros(len(sets) + 1)  # P(every first slice hit) = Σ_n coef[n] v^n
        for choice in itertools.product(itertools.combinations(range(L), b), repeat=len(shards)):
            firsts = [sh * L + j for sh, js in zip(shards, choice) for j in js]
            masks = np.array([sum(1 << i for i, f in enumerate(firsts) if f in c) for c in sets] or [0], dtype=np.int64)
            alive = np.count_nonzero(terms[:, None] & masks[None, :], axis=1)  # subjects touching the set T
            coef += np.bincount(alive, weights=sign, minlength=len(coef))[: len(coef)]
        power = np.flatnonzero(coef)
        with np.errstate(divide="ignore"):
            log_v = np.log1p(-s)  # -inf at s = 1
        total = np.zeros_like(s)
        for i in range(0, len(power), 256):
            p = power[i:i + 256]
            with np.errstate(invalid="ignore"):
                vp = np.where(p[None, :] == 0, 1.0, np.exp(log_v[:, None] * p[None, :]))
            total += (coef[p][None, :] * vp).sum(axis=1)
        g *= total / n_choices
    # ∫_0^1 (1 − G) ds in log s (Simpson), plus the sliver [0, 1e-12] where 1 − G = 1
    return float((len(cover) + 1) * (simpson((1.0 - g) * s, x=np.log(s)) + 1e-12))


def _check_subject_priors(priors: Sequence[float], k: int) -> np.ndarray:
    try:
        w = np.array([float(p) for p in priors], dtype=float)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"subject_priors must be {k} numbers >= 0; got {priors!r:.80}") from exc
    if len(w) != k or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ConfigError(f"subject_priors must be {k} numbers >= 0 with a positive sum (one per subject); "
                          f"got {priors!r:.80}")
    return w


def _deletion_positions(rng: np.random.Generator, trials: int, w: np.ndarray | None, k: int) -> np.ndarray:
    """(trials, K) 0-based position of each subject in its trial's request stream (inf: never asked)."""
    if w is None:
        keys = rng.random((trials, k))
    else:  # Efraimidis–Spirakis: sampling without replacement with weights = sorting U^(1/w)
        with np.errstate(divide="ignore"):
            keys = -np.log(rng.random((trials, k))) / w
    pos = np.empty((trials, k))
    np.put_along_axis(pos, np.argsort(keys, axis=1, kind="stable"), np.arange(k, dtype=float)[None, :], axis=1)
    if w is not None:
        pos[:, w == 0] = np.inf
    return pos


def simulate_subjects(n_shards: int, n_slices: int, seqs: np.ndarray, subject_sizes: Sequence[int],
                      placement: str, trials: int, seed: int, subject_priors: Sequence[float] | None = None,
                      horizon: int | None = None):
    """Monte Carlo of whole-subject deletions; see :func:`s3t.plan.deletion_rate.simulate`.

    Per trial: the records are placed — ``"record"``: dealt in a random order round-robin over
    the m·L slices (as :func:`s3t.plan.assign_shards`), so each lands in an (almost
    independently) uniform slice; ``"subject"``: :func:`pack_subjects` (seeded once) with the
    shards and the slices within each shard randomly relabelled — then the subjects are
    deleted one by one in a random order (uniform, or by ``subject_priors`` without
    replacement), and each deletion kills every slice holding one of its records. Every
    trial is exact (no conditional estimate): ``deletion_rate == deletion_rate_plain``.
    ``theory``: :func:`packed_deletion_rate` of the packing (subject placement, uniform requests).
    """
    from s3t.plan.deletion_rate import SimulationResult, _prefix_fraction

    m, L = n_shards, n_slices
    if placement not in SUBJECT_PLACEMENTS:
        raise ConfigError(f"placement must be one of {list(SUBJECT_PLACEMENTS)}; got {placement!r}")
    sizes = _check_sizes(subject_sizes)
    k, n, n_bins = len(sizes), int(sizes.sum()), m * L
    if n < n_bins:
        raise ConfigError(f"subject_sizes must total at least n_shards * n_slices = {n_bins} records so that "
                          f"no slice is empty; got {n}")
    w = None if subject_priors is None else _check_subject_priors(subject_priors, k)
    rng = np.random.default_rng(seed)
    hits = np.empty((trials, n_bins))
    if placement == "record":
        owner = np.repeat(np.arange(k), sizes)
        pad = -n % n_bins
    else:
        cover, _ = pack_subjects(sizes.tolist(), m, L, seed)
        subj = np.array([i for i, bins in enumerate(cover) for _ in bins])
        shard, sl = np.divmod(np.array([b for bins in cover for b in bins]), L)
    step = max(1, _CELLS // (n + k if placement == "record" else 2 * len(subj) + k))  # bounded memory per chunk
    for t0 in range(0, trials, step):
        tc = min(trials, t0 + step) - t0
        pos = _deletion_positions(rng, tc, w, k)
        if placement == "record":
            slots = rng.permuted(np.tile(owner, (tc, 1)), axis=1)  # record i of the deal -> slice i % (m·L)
            vals = np.concatenate([np.take_along_axis(pos, slots, axis=1), np.full((tc, pad), np.inf)], axis=1)
            hits[t0:t0 + tc] = vals.reshape(tc, -1, n_bins).min(axis=1)
        else:  # relabel shards, and slices within each shard, at random
            shard_perm = rng.permuted(np.tile(np.arange(m), (tc, 1)), axis=1)
            slice_perm = rng.permuted(np.tile(np.arange(L), (tc, m, 1)), axis=2)
            rows = np.arange(tc)[:, None]
            mapped = shard_perm[:, shard] * L + slice_perm[rows, shard[None, :], sl[None, :]]
            flat = np.full(tc * n_bins, np.inf)
            np.minimum.at(flat, (rows * n_bins + mapped).ravel(), pos[:, subj].ravel())
            hits[t0:t0 + tc] = flat.reshape(tc, n_bins)
    hits = hits.reshape(trials, m, L)
    firsts = np.unique(seqs[:, 0])
    counts = hits[:, :, firsts].max(axis=2).max(axis=1) + 1
    if not np.all(np.isfinite(counts)):
        raise ConfigError("subject_priors must be positive for some subject in every first slice, or shards never "
                          f"die; got {subject_priors!r:.80}")
    theory = packed_deletion_rate(cover, m, L, len(firsts)) if placement == "subject" and w is None else None
    if horizon is None:
        horizon = max(1, round((theory if theory is not None else float(counts.mean())) / 2))
    std = float(counts.std(ddof=1)) if trials > 1 else 0.0
    return SimulationResult(
        deletion_rate=float(counts.mean()), std=std, deletion_rate_plain=float(counts.mean()), std_plain=std,
        trials=trials, theory=theory, mean_prefix_fraction=_prefix_fraction(hits, seqs, horizon),
        horizon=int(horizon), unit="subjects", placement=placement, subjects=k,
    )
