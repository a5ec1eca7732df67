"""Where records go: by record (random, balanced) or by subject (one person, one slice).

Real erasure requests name a person, and a person owns many records. With ``"record"``
placement (:func:`s3t.plan.assign_shards`) one person's records land in nearly every slice, so
forgetting one person cuts nearly every lineage. With ``"subject"`` placement all records of a
subject go to ONE (shard, slice): forgetting the subject cuts the lineages of that slice only.

Subject placement is a longest-processing-time bin packing of subject sizes over the m·L
slices: subjects from largest to smallest (ties in a seeded order), each into the slice with
the fewest records so far (ties in a seeded order of the slices). A subject larger than a
slice's capacity ``ceil(N / (m·L))`` is split into ``ceil(size / capacity)`` nearly equal pieces
(a seeded random partition of its records, so that pieces do not inherit an order of the ids such
as a label-sorted source file) over that many slices of the least-loaded shard (over several shards only if it exceeds a
whole shard), and named in :attr:`Placement.split`. Records without a subject are placed one
by one in the same way, after the subjects. Like :func:`assign_shards`, the result depends
only on the set of (id, subject) pairs and the seed, never on the input order.

Example
-------
>>> ids = [f"r{i}" for i in range(12)]
>>> subjects = ["ann"] * 3 + ["bob"] * 3 + ["cy"] * 3 + ["dee"] * 3
>>> p = place(ids, subjects, n_shards=2, n_slices=2, seed=0)
>>> p.placement, len({p.pairs[i] for i in range(3)}), p.sizes
('subject', 1, (3, 3, 3, 3))
"""

from __future__ import annotations

import heapq
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from s3t.errors import ConfigError
from s3t.plan.sharding import _check_int, assign_shards

__all__ = ["PLACEMENTS", "Placement", "place", "resolve_placement", "slice_priors"]

PLACEMENTS = ("auto", "subject", "record")


@dataclass(frozen=True)
class Placement:
    """The (shard, slice) of every record, and how balanced the slices are."""

    placement: str  # "subject" or "record" (what "auto" resolved to)
    pairs: tuple[tuple[int, int], ...]  # in the order of the ids given
    sizes: tuple[int, ...]  # records per slice, shard-major: sizes[shard * L + slice]
    split: tuple[tuple[str, int], ...] = field(default=())  # (subject, number of slices) of split subjects

    @property
    def spread(self) -> tuple[int, int]:
        """(smallest, largest) slice size."""
        return min(self.sizes), max(self.sizes)

    def report(self) -> dict:
        lo, hi = self.spread
        return {"placement": self.placement, "slice_min": lo, "slice_max": hi,
                "slice_mean": round(sum(self.sizes) / len(self.sizes), 2),
                "split_subjects": [{"subject": s, "slices": k} for s, k in self.split]}


def resolve_placement(placement: str, subjects: Sequence[str | None]) -> str:
    """``"auto"`` is ``"subject"`` when some record has a subject, else ``"record"``."""
    if placement not in PLACEMENTS:
        raise ConfigError(f"placement must be one of {list(PLACEMENTS)}; got {placement!r}")
    if placement == "auto":
        return "subject" if any(s is not None for s in subjects) else "record"
    return placement


def place(record_ids: Sequence[str], subjects: Sequence[str | None] | None, n_shards: int, n_slices: int,
          seed: int, placement: str = "auto") -> Placement:
    """Assign every record to a (shard, slice) (see the module docstring).

    Raises
    ------
    ConfigError
        Bad arguments, repeated ids, fewer records than m·L, or ``subjects`` of another length.
    """
    ids = list(record_ids)
    subjects = [None] * len(ids) if subjects is None else list(subjects)
    if len(subjects) != len(ids):
        raise ConfigError(f"subjects must give one entry per record id; got {len(subjects)} for {len(ids)} ids")
    kind = resolve_placement(placement, subjects)
    pairs = assign_shards(ids, n_shards, n_slices, seed)  # validates ids and sizes in every case
    if kind == "subject":
        pairs, split = _pack(ids, subjects, int(n_shards), int(n_slices), _check_int("seed", seed, 0))
    else:
        split = []
    sizes = [0] * (n_shards * n_slices)
    for sh, sl in pairs:
        sizes[sh * n_slices + sl] += 1
    return Placement(kind, tuple(pairs), tuple(sizes), tuple(split))


def _pack(ids: list[str], subjects: list[str | None], m: int, L: int, seed: int):
    rng = np.random.default_rng([seed, 0x5EB1EC7])
    n_bins = m * L
    cap = math.ceil(len(ids) / n_bins)
    members: dict[str, list[str]] = defaultdict(list)
    loose: list[str] = []
    for rid, subj in zip(ids, subjects):
        if subj is None:
            loose.append(rid)
        else:
            members[subj].append(rid)
    names = sorted(members)
    tiebreak = {s: int(r) for s, r in zip(names, rng.permutation(len(names)))}
    bin_rank = rng.permutation(n_bins).tolist()  # seeded order among equally loaded slices
    load = [0] * n_bins
    heap = [(0, bin_rank[b], b) for b in range(n_bins)]
    heapq.heapify(heap)
    where: dict[str, tuple[int, int]] = {}
    split: list[tuple[str, int]] = []

    def take_bin() -> int:
        while True:  # lazy heap: skip stale entries
            ld, rank, b = heapq.heappop(heap)
            if ld == load[b]:
                return b

    def put(b: int, rids: list[str]) -> None:
        load[b] += len(rids)
        for r in rids:
            where[r] = divmod(b, L)
        heapq.heappush(heap, (load[b], bin_rank[b], b))

    for subj in sorted(names, key=lambda s: (-len(members[s]), tiebreak[s])):
        rids = sorted(members[subj])
        if len(rids) <= cap:
            put(take_bin(), rids)
            continue
        pieces = math.ceil(len(rids) / cap)
        split.append((subj, pieces))
        # seeded random pieces, not runs of sorted ids: ids often follow a label-sorted file
        shuffled = np.random.default_rng([seed, 0x5EB1EC7, tiebreak[subj]]).permutation(np.array(rids, dtype=object))
        chunks = np.array_split(shuffled, pieces)
        # the least-loaded shard(s): its least-loaded slices take the pieces, largest first
        shards = sorted(range(m), key=lambda sh: (sum(load[sh * L:(sh + 1) * L]), min(bin_rank[sh * L:(sh + 1) * L])))
        targets = [b for sh in shards for b in sorted(range(sh * L, (sh + 1) * L), key=lambda b: (load[b], bin_rank[b]))]
        for chunk, b in zip(chunks, targets):
            put(b, list(chunk))
        heap = [(load[b], bin_rank[b], b) for b in range(n_bins)]  # rebuild: several bins changed
        heapq.heapify(heap)
    for rid in sorted(loose, key=lambda r: (tiebreak.get(r, 0), r)):
        put(take_bin(), [rid])
    _fill_empty(load, where, members, split, L, bin_rank)
    return [where[r] for r in ids], split


def _fill_empty(load: list[int], where: dict[str, tuple[int, int]], members: dict[str, list[str]],
                split: list[tuple[str, int]], L: int, bin_rank: list[int]) -> None:
    """No slice may be empty: when there are fewer subjects than slices, an empty slice takes one
    record of the largest subject of the fullest slice (that subject is then split)."""
    subject_of = {r: s for s, rids in members.items() for r in rids}
    for b in sorted((b for b in range(len(load)) if load[b] == 0), key=lambda b: bin_rank[b]):
        donor = max(range(len(load)), key=lambda d: (load[d], -bin_rank[d]))
        if load[donor] < 2:
            raise ConfigError("too few records to fill every slice")  # unreachable: place() checked N >= m·L
        here = [r for r, wb in where.items() if wb == divmod(donor, L)]
        loose = [r for r in here if r not in subject_of]
        if loose:
            moved = max(loose)
        else:
            count = defaultdict(int)
            for r in here:
                count[subject_of[r]] += 1
            subj = max(count, key=lambda s: (count[s], s))
            moved = max(r for r in here if subject_of[r] == subj)
        where[moved] = divmod(b, L)
        load[donor] -= 1
        load[b] += 1
        subj = subject_of.get(moved)
        if subj is not None:
            pieces = len({where[r] for r in members[subj]})
            split[:] = [x for x in split if x[0] != subj] + [(subj, pieces)]


def slice_priors(placement: Placement, subjects: Sequence[str | None], subject_priors: dict[str, float],
                 n_shards: int, n_slices: int) -> dict[int, list[float]]:
    """Per shard, each slice's deletion prior from per-subject deletion likelihoods.

    A deletion request names one subject and cuts every slice holding its records, so a slice's
    prior is the sum of the likelihoods of the subjects it holds (a subject split over several
    slices counts fully in each). Subjects missing from ``subject_priors``, and records without a
    subject (each its own request), count with the mean of the given likelihoods. The result
    feeds the BMS selectors, one plan per shard.

    >>> p = place(["a", "b", "c", "d"], ["x", "x", "y", "z"], 1, 2, seed=0)
    >>> sorted(sum(v) for v in slice_priors(p, ["x", "x", "y", "z"], {"x": 3.0, "y": 1.0, "z": 1.0}, 1, 2).values())
    [5.0]
    """
    bad = {k: v for k, v in subject_priors.items()
           if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0}
    if bad:
        raise ConfigError(f"subject priors must be finite numbers >= 0; got {dict(list(bad.items())[:5])}")
    if not subject_priors:
        raise ConfigError("subject priors must name at least one subject")
    default = sum(subject_priors.values()) / len(subject_priors)
    held: dict[tuple[int, int], set] = defaultdict(set)
    for k, ((sh, sl), subj) in enumerate(zip(placement.pairs, subjects)):
        held[(sh, sl)].add(("subject", subj) if subj is not None else ("record", k))
    out = {sh: [0.0] * n_slices for sh in range(n_shards)}
    for (sh, sl), owners in held.items():
        out[sh][sl] = math.fsum(subject_priors.get(o, default) if kind == "subject" else default for kind, o in owners)
    return out


def shard_sequences(placed: Placement, subjects: Sequence[str | None], selection: str, n_shards: int, n_slices: int,
                    budget: int, priors: Sequence[float] | None = None,
                    subject_priors: dict[str, float] | None = None) -> tuple[dict[int, list[tuple[int, ...]]],
                                                                          dict[int, list[float]] | None]:
    """Each shard's sequences: the same for all (``priors`` per slice, or none), or, with
    ``subject_priors``, each shard's own BMS order for its slices' summed priors (:func:`slice_priors`).
    Returns (sequences per shard, the per-shard slice priors used or None)."""
    from s3t.plan.sequences import select_sequences

    if subject_priors is None:
        common = select_sequences(selection, n_slices, budget, priors)
        return {sh: common for sh in range(n_shards)}, None
    per = slice_priors(placed, subjects, dict(subject_priors), n_shards, n_slices)
    return {sh: select_sequences(selection, n_slices, budget, q if sum(q) > 0 else None) for sh, q in per.items()}, per
