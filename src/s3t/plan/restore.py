"""Progressive restore: which cut stages a retrain trains first, by serving value.

After deletions cut lineages, a shard serves the longest clean prefix over its sequences (0 =
dead). A naive retrain trains every cut stage in one pass and swaps the result in at the end,
so a dead shard stays dark for the whole pass. :func:`next_step` orders the work so the served
model comes back as early as possible and improves stage by stage:

1. ``revive``: every dead shard trains stage 1 of its best sequence (a live model after about
   one stage-1 training);
2. ``extend``: every shard whose best sequence is shorter than L trains that sequence's next
   stage (each a longer served prefix, swapped in when registered);
3. ``rest``: every other cut stage (the other sequences, which only matter for later deletions).

The caller trains one step, swaps it in, and asks again: deletions that arrive meanwhile are
seen by the next call, and stages already retrained and still clean are never redone. The best
sequence of a shard is the one with the longest clean prefix (the one it serves), ties to the
lowest index. Torch-free.

Example
-------
>>> seqs = {0: [(0, 1, 2), (1, 2, 0)], 1: [(0, 1, 2), (1, 2, 0)]}
>>> next_step(seqs, {0: [0, 0], 1: [3, 1]})
('revive', {0: [(0,)]})
>>> next_step(seqs, {0: [1, 0], 1: [3, 1]})
('extend', {0: [(0, 1)]})
>>> next_step(seqs, {0: [3, 0], 1: [3, 1]})
('rest', {0: [(1,), (1, 2), (1, 2, 0)], 1: [(1, 2), (1, 2, 0)]})
>>> next_step(seqs, {0: [3, 3], 1: [3, 3]}) is None
True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

__all__ = ["STEPS", "best_sequence", "next_step"]

STEPS = ("revive", "extend", "rest")


def best_sequence(clean: Sequence[int]) -> int:
    """Index of the sequence with the longest clean prefix (ties: the lowest index)."""
    return max(range(len(clean)), key=lambda b: (clean[b], -b))


def next_step(sequences: Mapping[int, Sequence[Sequence[int]]], clean: Mapping[int, Sequence[int]]
              ) -> tuple[str, dict[int, list[tuple[int, ...]]]] | None:
    """The next batch of prefixes to train, per shard, and its kind; None when nothing is cut.

    ``sequences[shard]``: the shard's B sequences; ``clean[shard][b]``: how many stages of
    sequence b are trained and clean (its longest servable prefix).
    """
    revive, extend, rest = {}, {}, {}
    for shard in sorted(sequences):
        seqs, n = [tuple(s) for s in sequences[shard]], list(clean[shard])
        b = best_sequence(n)
        if n[b] == 0:
            revive[shard] = [seqs[b][:1]]
        elif n[b] < len(seqs[b]):
            extend[shard] = [seqs[b][:n[b] + 1]]
        todo: dict[tuple[int, ...], None] = {}
        done = {seqs[i][:k] for i in range(len(seqs)) for k in range(1, n[i] + 1)}
        for seq, k in zip(seqs, n):
            for j in range(k + 1, len(seq) + 1):
                if seq[:j] not in done:
                    todo.setdefault(seq[:j], None)
        if todo:
            rest[shard] = sorted(todo, key=lambda p: (len(p), p))
    for kind, step in zip(STEPS, (revive, extend, rest)):
        if step:
            return kind, step
    return None
