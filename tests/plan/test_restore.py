"""Tests of s3t.plan.restore.next_step: the order in which a retrain brings shards back."""

from __future__ import annotations

import itertools
import random

from s3t.plan import cyclic
from s3t.plan.restore import best_sequence, next_step


def _simulate(sequences, clean):
    """Apply steps until nothing is cut; return the steps and the served prefix after each."""
    clean = {k: list(v) for k, v in clean.items()}
    out = []
    for _ in range(100):
        step = next_step(sequences, clean)
        if step is None:
            return out
        kind, chosen = step
        for shard, prefixes in chosen.items():
            for p in prefixes:  # trained parents first: a prefix extends every sequence it starts
                for b, seq in enumerate(sequences[shard]):
                    if tuple(seq[:len(p)]) == p and clean[shard][b] == len(p) - 1:
                        clean[shard][b] = len(p)
        out.append((kind, chosen, {k: max(v) for k, v in clean.items()}))
    raise AssertionError("no end")


def test_best_sequence_is_the_longest_clean_prefix_ties_to_the_lowest_index():
    assert best_sequence([0, 2, 2, 1]) == 1 and best_sequence([0, 0]) == 0


def test_dead_shards_come_back_first_with_one_stage_each():
    seqs = {s: cyclic(4, 4) for s in range(3)}
    steps = _simulate(seqs, {0: [0, 0, 0, 0], 1: [2, 0, 1, 0], 2: [0, 0, 0, 0]})
    kind, chosen, served = steps[0]
    assert kind == "revive" and chosen == {0: [(0,)], 2: [(0,)]}
    assert served == {0: 1, 1: 2, 2: 1}
    # then the best sequences grow one stage per step, every shard together, until full
    kinds = [k for k, _, _ in steps]
    assert kinds == ["revive"] + ["extend"] * 3 + ["rest"]
    assert [s for _, _, s in steps[1:4]] == [{0: 2, 1: 3, 2: 2}, {0: 3, 1: 4, 2: 3}, {0: 4, 1: 4, 2: 4}]


def test_every_cut_prefix_is_trained_exactly_once_and_served_prefix_never_shrinks():
    rng = random.Random(7)
    for _ in range(200):
        L, B, m = rng.randint(1, 5), rng.randint(1, 5), rng.randint(1, 3)
        perms = list(itertools.permutations(range(L)))
        seqs = {s: [tuple(rng.choice(perms)) for _ in range(B)] for s in range(m)}
        clean = {}
        for s in range(m):  # a consistent state: a shared prefix is clean in every sequence or none
            dead = set(rng.sample(range(L), rng.randint(0, L)))
            clean[s] = [next((k for k, x in enumerate(q) if x in dead), L) for q in seqs[s]]
        cut = {(s, q[:k]) for s in range(m) for q, n in zip(seqs[s], clean[s]) for k in range(n + 1, L + 1)}
        steps = _simulate(seqs, clean)
        trained = [(s, p) for _, chosen, _ in steps for s, ps in chosen.items() for p in ps]
        assert sorted(trained) == sorted(cut) and len(set(trained)) == len(trained)
        served = [{s: max(clean[s]) for s in range(m)}] + [sv for _, _, sv in steps]
        assert all(all(b[s] >= a[s] for s in range(m)) for a, b in zip(served, served[1:]))
        assert not steps or all(v == L for v in served[-1].values())
