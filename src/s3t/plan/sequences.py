"""Which B orders (sequences) of a shard's L slices to train.

Selectors: :func:`cyclic` (rows of a Latin square, extended by suffix rotations),
:func:`bms` (bipartite-matching based selection driven by per-slice deletion priors) and
``bms_relaxed`` (BMS with distinct first slices only, see :func:`bms`).
:func:`select_sequences` picks one by name from :data:`SELECTORS`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from s3t.errors import ConfigError
from s3t.plan.sharding import _check_int

__all__ = ["SELECTORS", "bms", "cyclic", "select_sequences", "sequence_score"]

# Relative weight of the deterministic tie-break in BMS: far above float noise
# (~1e-14 after the power t) and far below any difference that matters.
_TIE_REL = 1e-9
_TIE_ABS = 1e-300  # breaks ties between gains that underflowed to exactly 0


def _check_budget(n_slices: int, budget: int) -> tuple[int, int]:
    n_slices = _check_int("n_slices", n_slices, 1)
    budget = _check_int("budget", budget, 1)
    # n_slices! without computing a huge factorial: stop once it exceeds the budget
    limit = 1
    for k in range(2, n_slices + 1):
        limit *= k
        if limit >= budget:
            break
    if budget > limit:
        raise ConfigError(
            f"budget must be <= n_slices! = {math.factorial(n_slices)} (the number of distinct "
            f"orders of {n_slices} slices); got {budget}"
        )
    return n_slices, budget


def _check_priors(priors: Sequence[float], n_slices: int | None = None) -> np.ndarray:
    """Return priors as a float array normalised to sum 1, or raise ConfigError."""
    try:
        q = np.asarray(priors, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"priors must be a sequence of numbers; got {priors!r:.80}") from exc
    if q.ndim != 1 or q.size == 0:
        raise ConfigError(f"priors must be a non-empty 1-d sequence of numbers; got shape {q.shape}")
    if n_slices is not None and q.size != n_slices:
        raise ConfigError(
            f"priors must have one value per slice (n_slices = {n_slices}); got {q.size} values"
        )
    if not np.all(np.isfinite(q)) or np.any(q < 0):
        raise ConfigError(f"priors must be finite and non-negative; got {q.tolist()}")
    total = float(q.sum())
    if total <= 0:
        raise ConfigError(f"priors must have a positive sum; got sum {total}")
    return q / total


def _check_t(t: float) -> float:
    if isinstance(t, bool) or not isinstance(t, numbers.Real) or not math.isfinite(t) or t < 0:
        raise ConfigError(f"t must be a finite number >= 0; got {t!r}")
    return float(t)


def _rotation_order(n_slices: int, index: int) -> tuple[int, ...]:
    """The ``index``-th order of the cyclic family (mixed-radix rotation code).

    Digit k of ``index`` (radix ``n_slices - k``, least significant first) is how far
    the suffix starting at position k is rotated left. Distinct indices below
    ``n_slices!`` give distinct orders: digit k alone decides the element at position k.
    """
    order = list(range(n_slices))
    for k in range(n_slices - 1):
        radix = n_slices - k
        r = index % radix
        index //= radix
        order[k:] = order[k + r:] + order[k:k + r]
    return tuple(order)


def cyclic(n_slices: int, budget: int) -> list[tuple[int, ...]]:
    """Cyclic sequences: rows of a Latin square, then suffix rotations.

    Sequence j < L is the identity order rotated left by j, so for ``budget <= n_slices``
    every slice is used at most once in every position (exactly once when B = L). For
    B > L the family continues by keeping the first element and rotating the rest
    (recursively), block by block of L sequences; each block is again a Latin square and
    all sequences are distinct.

    Parameters
    ----------
    n_slices : int
        Number of slices L (>= 1).
    budget : int
        Number of sequences B, ``1 <= B <= L!``.

    Returns
    -------
    list of tuple of int
        B distinct permutations of ``range(n_slices)``.

    Raises
    ------
    ConfigError
        If an argument is out of range (including B > L!).

    Examples
    --------
    >>> cyclic(3, 3)
    [(0, 1, 2), (1, 2, 0), (2, 0, 1)]
    >>> cyclic(3, 4)[3]
    (0, 2, 1)
    """
    n_slices, budget = _check_budget(n_slices, budget)
    return [_rotation_order(n_slices, j) for j in range(budget)]


def sequence_score(priors: Sequence[float], seq: Sequence[int], t: float = 100.0) -> float:
    """Score Σ_n n·(1 − Σ_{k≤n} q_k)^t of a (possibly partial) sequence.

    ``q_k`` is the normalised prior of the slice at position k. High when slices likely to
    be deleted come late, so long prefixes survive.

    Parameters
    ----------
    priors : sequence of float
        Deletion prior per slice (non-negative, positive sum; normalised here).
    seq : sequence of int
        Distinct slice indices, a prefix of an order or a full order.
    t : float, default 100.0
        Sharpness exponent (>= 0).

    Returns
    -------
    float
    """
    q = _check_priors(priors)
    t = _check_t(t)
    idx = list(seq)
    if any(isinstance(s, bool) or not isinstance(s, numbers.Integral) or not 0 <= s < q.size for s in idx):
        raise ConfigError(f"seq must hold slice indices in [0, {q.size}); got {idx}")
    if len(set(idx)) != len(idx):
        raise ConfigError(f"seq must not repeat a slice; got {idx}")
    alive = np.clip(1.0 - np.cumsum(q[idx]), 0.0, None)
    return float(np.sum(np.arange(1, len(idx) + 1) * alive**t))


def _fill_position(gain: np.ndarray, prefixes: np.ndarray, n_slices: int, copies: int | None = None) -> np.ndarray:
    """Slice for every sequence at the next position: one BMS assignment step.

    ``gain`` is (B, L) with -inf where forbidden; ``prefixes`` is (B, pos). Slices are
    offered ``copies`` times (default ``ceil(B/L)``), more if the assignment is infeasible. Sequences sharing
    a prefix may then put the same slice next at most ``(L - pos - 1)!`` times, so that
    they can still end up distinct: the excess rows (those with the most remaining
    options, then the highest index) are barred from that slice and the step is re-solved.
    """
    budget = gain.shape[0]
    cap = math.factorial(n_slices - prefixes.shape[1] - 1)
    gain = gain.copy()
    copies = -(-budget // n_slices) if copies is None else copies
    while True:
        try:
            rows, cols = linear_sum_assignment(np.tile(gain, (1, copies)), maximize=True)
        except ValueError:  # infeasible: some slice is needed more often
            if copies >= budget:  # cannot happen: every row keeps an allowed slice
                raise
            copies += 1
            continue
        chosen = cols[np.argsort(rows)] % n_slices
        groups: dict[tuple[int, ...], list[int]] = {}
        for j in range(budget):
            groups.setdefault((*prefixes[j].tolist(), int(chosen[j])), []).append(j)
        barred = False
        options = np.count_nonzero(np.isfinite(gain), axis=1)
        for members in groups.values():
            # keep the least flexible rows on this slice, bar the others from it
            for j in sorted(members, key=lambda r: (options[r], r))[cap:]:
                if options[j] > 1:
                    gain[j, chosen[j]] = -np.inf
                    barred = True
        if not barred:
            return chosen


def bms(priors: Sequence[float], budget: int, t: float = 100.0, latin: bool = True) -> list[tuple[int, ...]]:
    """Bipartite-matching based selection of ``budget`` sequences.

    Positions 1..L are filled in turn. At position n, slice s is assigned to sequence j so
    that the summed gain ``n·(1 − cum_j − q_s)^t`` is maximal (``cum_j``: normalised priors
    already in sequence j), solved with ``scipy.optimize.linear_sum_assignment``. A slice
    already in a sequence is forbidden for it. Each slice is offered ``ceil(B/L)`` times per
    position (once when B <= L, so sequences start with distinct slices); if that cannot
    fill the position (possible near the end), the copies are increased until it can.

    ``latin=False`` (selector ``"bms_relaxed"``) keeps that limit at the first position only:
    first slices stay distinct, so the deletion rate m·L·H(m·min(B, L)) is unchanged, but
    later positions may repeat a slice across sequences. With B = L the published rule makes
    every position a permutation (a Latin square), so a likely-deleted slice must sit early
    in some sequence; relaxed, it can come last in every sequence it does not start. With
    uniform priors both give :func:`cyclic`.

    Ties (e.g. uniform priors) are broken deterministically towards :func:`cyclic`, by a
    relative nudge of 1e-9 on the gains: with uniform priors the result *is* the cyclic
    plan, and otherwise the total score is optimal per position up to that nudge.

    Parameters
    ----------
    priors : sequence of float
        Deletion prior per slice; L = len(priors). Normalised to sum 1.
    budget : int
        Number of sequences B, ``1 <= B <= L!``.
    t : float, default 100.0
        Sharpness exponent of the score (>= 0).

    Returns
    -------
    list of tuple of int
        B distinct permutations of ``range(L)``. For B <= L the first slices already
        differ. For B > L the matching could repeat an order; sequences sharing a prefix
        are then kept apart per step (see ``_fill_position``) and any repeat that is
        left is replaced by the best unused order a few adjacent swaps away.
    """
    q = _check_priors(priors)
    n_slices, budget = _check_budget(q.size, budget)
    t = _check_t(t)
    target = np.array(cyclic(n_slices, budget))  # tie-break preference
    slices = np.arange(n_slices)
    used = np.zeros((budget, n_slices), dtype=bool)
    cum = np.zeros(budget)
    orders = np.zeros((budget, n_slices), dtype=int)
    for pos in range(n_slices):
        alive = np.clip(1.0 - cum[:, None] - q[None, :], 0.0, None)
        gain = (pos + 1) * alive**t
        pref = 1.0 - ((slices[None, :] - target[:, pos:pos + 1]) % n_slices) / n_slices
        gain = gain * (1.0 + _TIE_REL * pref) + _TIE_ABS * pref
        gain[used] = -np.inf
        chosen = _fill_position(gain, orders[:, :pos], n_slices, None if latin or pos == 0 else budget)
        orders[:, pos] = chosen
        used[np.arange(budget), chosen] = True
        cum += q[chosen]
    return _make_distinct([tuple(int(s) for s in row) for row in orders], q, t)


def _make_distinct(orders: list[tuple[int, ...]], q: np.ndarray, t: float) -> list[tuple[int, ...]]:
    """Replace repeated orders by the best-scoring unused order nearest to them.

    Nearest = fewest adjacent swaps (breadth-first, late positions first); within that
    layer the highest :func:`sequence_score`, then the first found. Needs B <= L!.
    """
    seen: set[tuple[int, ...]] = set()
    out = []
    for order in orders:
        layer = [order]
        visited = {order}
        while order in seen:
            nxt = []
            for cur in layer:
                for i in range(len(cur) - 2, -1, -1):
                    cand = (*cur[:i], cur[i + 1], cur[i], *cur[i + 2:])
                    if cand not in visited:
                        visited.add(cand)
                        nxt.append(cand)
            fresh = [c for c in nxt if c not in seen]
            if fresh:
                order = max(fresh, key=lambda c: sequence_score(q, c, t))
            layer = nxt
        seen.add(order)
        out.append(order)
    return out


def _select_cyclic(n_slices: int, budget: int, priors: Sequence[float] | None = None) -> list[tuple[int, ...]]:
    return cyclic(n_slices, budget)


def _select_bms(n_slices: int, budget: int, priors: Sequence[float] | None = None) -> list[tuple[int, ...]]:
    if priors is None:
        priors = [1.0] * n_slices
    return bms(priors, budget)


def _select_bms_relaxed(n_slices: int, budget: int, priors: Sequence[float] | None = None) -> list[tuple[int, ...]]:
    return bms([1.0] * n_slices if priors is None else priors, budget, latin=False)


SELECTORS: dict[str, Callable[..., list[tuple[int, ...]]]] = {
    "cyclic": _select_cyclic,
    "bms": _select_bms,
    "bms_relaxed": _select_bms_relaxed,
}
"""Selector name -> ``f(n_slices, budget, priors=None)`` returning the sequences."""


def select_sequences(
    name: str, n_slices: int, budget: int, priors: Sequence[float] | None = None
) -> list[tuple[int, ...]]:
    """Select ``budget`` sequences of ``n_slices`` slices with the named selector.

    Parameters
    ----------
    name : str
        A key of :data:`SELECTORS` (``"cyclic"``, ``"bms"`` or ``"bms_relaxed"``).
    n_slices : int
        Number of slices L (>= 1).
    budget : int
        Number of sequences B, ``1 <= B <= L!``.
    priors : sequence of float, optional
        Deletion prior per slice (length L, non-negative, positive sum). Ignored by
        ``"cyclic"``; the BMS selectors use uniform priors when None.

    Returns
    -------
    list of tuple of int

    Raises
    ------
    ConfigError
        Unknown name (the message lists the known ones) or an invalid argument.
    """
    if not isinstance(name, str) or name not in SELECTORS:
        raise ConfigError(f"name must be one of {sorted(SELECTORS)}; got {name!r}")
    n_slices, budget = _check_budget(n_slices, budget)
    if priors is not None:
        priors = _check_priors(priors, n_slices).tolist()
    return SELECTORS[name](n_slices, budget, priors)
