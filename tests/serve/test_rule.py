"""Tests of s3t.serve.rule: the pure serving rule on hand-made StageView chains."""

from __future__ import annotations

import doctest
import itertools
import random

import pytest

from s3t.serve import rule
from s3t.serve.rule import Served, StageView, choose_served, valid_prefix


def chain(name: str, n: int, dirty: set[int] = frozenset(), accs: list | None = None) -> list[StageView]:
    """A correctly linked chain of ``n`` stages ``name1..nameN``; stages (1-based) in ``dirty`` are unclean."""
    out, parent = [], None
    for k in range(1, n + 1):
        cid = f"{name}{k}"
        acc = None if accs is None else accs[k - 1]
        out.append(StageView(cid, parent, clean=k not in dirty, val_accuracy=acc))
        parent = cid
    return out


# -- valid_prefix ---------------------------------------------------------------------------


def test_valid_prefix_full_clean_chain():
    assert valid_prefix(chain("a", 3)) == 3


def test_valid_prefix_empty_chain_is_zero():
    assert valid_prefix([]) == 0


@pytest.mark.parametrize("dirty_at", [1, 2, 3])
def test_dirty_stage_cuts_it_and_everything_after(dirty_at):
    # later stages are clean again, but they must not count: the prefix ends at the dirty stage
    c = chain("a", 4, dirty={dirty_at})
    assert valid_prefix(c) == dirty_at - 1


def test_broken_parent_link_cuts():
    c = chain("a", 3)
    c[2] = StageView("a3", "somewhere-else", clean=True, val_accuracy=0.9)
    assert valid_prefix(c) == 2
    c = chain("a", 3)
    c[1] = StageView("a2", None, clean=True)  # stage 2 claims to have no parent
    assert valid_prefix(c) == 1


def test_first_stage_with_a_parent_is_not_a_valid_start():
    c = [StageView("a1", "ghost", clean=True)] + chain("a", 3)[1:]
    assert valid_prefix(c) == 0


def test_parent_must_be_the_stage_directly_below():
    # stage 3 points at stage 1 (skipping 2): the chain is broken at stage 3
    c = chain("a", 3)
    c[2] = StageView("a3", "a1", clean=True)
    assert valid_prefix(c) == 2


@pytest.mark.parametrize("missing_at", [0, 1, 2])
def test_untrained_stage_cuts(missing_at):
    c: list = chain("a", 3)
    c[missing_at] = None
    assert valid_prefix(c) == missing_at


def test_a_stage_after_a_gap_does_not_reconnect():
    # stage 2 untrained, stage 3 linked to stage 1's id would still be a broken chain
    c: list = chain("a", 3)
    c[1] = None
    c[2] = StageView("a3", "a1", clean=True)
    assert valid_prefix(c) == 1


# -- choose_served ----------------------------------------------------------------------------


def test_longest_clean_prefix_wins_over_accuracy():
    short = chain("a", 3, dirty={2}, accs=[0.99, 0.99, 0.99])  # prefix 1, very accurate
    long = chain("b", 3, dirty={3}, accs=[0.1, 0.2, 0.3])  # prefix 2, poor
    served = choose_served([short, long])
    assert served == Served(sequence=1, stage=2, checkpoint_id="b2", val_accuracy=0.2)


def test_served_is_the_last_clean_stage_of_the_winning_chain():
    served = choose_served([chain("a", 3, accs=[0.5, 0.6, 0.7])])
    assert (served.sequence, served.stage, served.checkpoint_id, served.val_accuracy) == (0, 3, "a3", 0.7)


def test_tie_on_length_higher_accuracy_wins():
    a = chain("a", 3, dirty={3}, accs=[0.9, 0.6, 0.9])
    b = chain("b", 3, dirty={3}, accs=[0.1, 0.8, 0.9])
    c = chain("c", 3, dirty={3}, accs=[0.9, 0.7, 0.9])
    served = choose_served([a, b, c])
    assert (served.sequence, served.checkpoint_id) == (1, "b2")


def test_tie_on_length_and_accuracy_lowest_index_wins():
    chains = [chain("a", 2, dirty={1}), chain("b", 2, accs=[0.5, 0.7]), chain("c", 2, accs=[0.5, 0.7]),
              chain("d", 2, accs=[0.9, 0.7])]
    served = choose_served(chains)
    assert (served.sequence, served.checkpoint_id) == (1, "b2")


def test_none_accuracy_loses_to_any_number():
    no_acc = chain("a", 2)
    zero = chain("b", 2, accs=[0.0, 0.0])
    served = choose_served([no_acc, zero])
    assert served.sequence == 1 and served.val_accuracy == 0.0
    # also when the numbered one comes first
    served = choose_served([zero, no_acc])
    assert served.sequence == 0


def test_all_none_accuracies_lowest_index_wins():
    served = choose_served([chain("a", 2, dirty={2}), chain("b", 2), chain("c", 2)])
    assert (served.sequence, served.checkpoint_id, served.val_accuracy) == (1, "b2", None)


def test_all_dead_gives_none():
    dead = [chain("a", 3, dirty={1}), [None, None, None], [StageView("c1", "x", clean=True)]]
    assert choose_served(dead) is None


def test_no_sequences_gives_none():
    assert choose_served([]) is None


def _reference(chains) -> tuple[int, int] | None:
    """Brute force: enumerate candidate (sequence, length) pairs, filter valid ones, sort by the rule."""
    candidates = []
    for j, ch in enumerate(chains):
        for n in range(1, len(ch) + 1):
            ok = all(
                ch[i] is not None and ch[i].clean and ch[i].parent_id == (None if i == 0 else ch[i - 1].checkpoint_id)
                for i in range(n)
            )
            if ok:
                acc = ch[n - 1].val_accuracy
                candidates.append(((n, acc is not None, acc if acc is not None else 0.0, -j), (j, n)))
    if not candidates:
        return None
    return max(candidates)[1]


def test_matches_brute_force_on_random_chains():
    rng = random.Random(1234)
    for _ in range(400):
        chains = []
        for j in range(rng.randint(1, 4)):
            ch = chain(f"s{j}-", 3, dirty={k for k in (1, 2, 3) if rng.random() < 0.25},
                       accs=[rng.choice([None, 0.25, 0.5, 0.75]) for _ in range(3)])
            for i in range(3):
                r = rng.random()
                if r < 0.08:
                    ch[i] = None
                elif r < 0.14:
                    ch[i] = StageView(ch[i].checkpoint_id, "broken", ch[i].clean, ch[i].val_accuracy)
            chains.append(ch)
        got = choose_served(chains)
        want = _reference(chains)
        assert (None if got is None else (got.sequence, got.stage)) == want, chains
        if got is not None:
            assert got.checkpoint_id == chains[got.sequence][got.stage - 1].checkpoint_id


def test_order_of_equal_chains_only_changes_the_index():
    chains = [chain("a", 2, accs=[0.5, 0.5]), chain("b", 2, accs=[0.5, 0.5])]
    for perm in itertools.permutations(range(2)):
        served = choose_served([chains[i] for i in perm])
        assert served.sequence == 0


def test_module_doctest_runs():
    result = doctest.testmod(rule)
    assert result.attempted > 0 and result.failed == 0
