"""Balanced, seeded assignment of records to (shard, slice).

The assignment depends only on the *set* of record ids and the seed: ids are sorted
first, so the order in which records are read does not change where they land.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np

from s3t.errors import ConfigError

__all__ = ["assign_shards"]


def _check_int(name: str, value: object, minimum: int) -> int:
    """Return ``value`` as an int, or raise ConfigError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ConfigError(f"{name} must be an integer >= {minimum}; got {value!r}")
    if value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}; got {value!r}")
    return int(value)


def assign_shards(
    record_ids: Sequence[str], n_shards: int, n_slices: int, seed: int
) -> list[tuple[int, int]]:
    """Assign every record to a (shard, slice) pair, balanced and reproducible.

    The ids are sorted, permuted with ``np.random.default_rng(seed)`` and dealt
    round-robin: the i-th record of the permutation goes to shard ``i % n_shards``
    and, within that shard, to slice ``(i // n_shards) % n_slices``. Hence shard sizes
    differ by at most 1, and slice sizes within one shard differ by at most 1.

    Parameters
    ----------
    record_ids : sequence of str
        Stable record ids; must be unique.
    n_shards : int
        Number of shards m (>= 1).
    n_slices : int
        Number of slices L per shard (>= 1).
    seed : int
        Seed of the permutation (>= 0).

    Returns
    -------
    list of (int, int)
        ``(shard, slice)`` for each record, in the order of ``record_ids``.

    Raises
    ------
    ConfigError
        If an argument is out of range, an id is duplicated or not a string, or there
        are fewer records than ``n_shards * n_slices`` (some slice would be empty).

    Examples
    --------
    >>> pairs = assign_shards([f"r{i}" for i in range(12)], n_shards=2, n_slices=3, seed=0)
    >>> sorted(sum(1 for p in pairs if p[0] == s) for s in range(2))
    [6, 6]
    """
    n_shards = _check_int("n_shards", n_shards, 1)
    n_slices = _check_int("n_slices", n_slices, 1)
    seed = _check_int("seed", seed, 0)
    if isinstance(record_ids, (str, bytes)):
        raise ConfigError(
            f"record_ids must be a sequence of string ids, not a single string; got {record_ids!r:.60}"
        )
    ids = list(record_ids)
    bad = [r for r in ids if not isinstance(r, str)]
    if bad:
        raise ConfigError(
            f"record_ids must all be strings; got {len(bad)} non-string id(s), e.g. {bad[0]!r}"
        )
    needed = n_shards * n_slices
    if len(ids) < needed:
        raise ConfigError(
            f"record_ids must hold at least n_shards * n_slices = {n_shards} * {n_slices} = "
            f"{needed} records so that no slice is empty; got {len(ids)}"
        )
    ordered = sorted(ids)
    dupes = sorted({a for a, b in zip(ordered, ordered[1:]) if a == b})
    if dupes:
        shown = ", ".join(repr(d) for d in dupes[:5])
        more = f" (and {len(dupes) - 5} more)" if len(dupes) > 5 else ""
        raise ConfigError(f"record_ids must be unique; got duplicate id(s) {shown}{more}")

    perm = np.random.default_rng(seed).permutation(len(ordered))
    where: dict[str, tuple[int, int]] = {}
    for i, k in enumerate(perm.tolist()):
        where[ordered[k]] = (i % n_shards, (i // n_shards) % n_slices)
    return [where[r] for r in ids]
