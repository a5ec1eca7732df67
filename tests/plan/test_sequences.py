"""Tests of s3t.plan.sequences: cyclic, bms, sequence_score and the selector registry."""

from __future__ import annotations

import itertools
import math
from collections import Counter

import numpy as np
import pytest

from s3t.errors import ConfigError
from s3t.plan import SELECTORS, bms, cyclic, select_sequences, sequence_score


def _is_permutation(seq: tuple[int, ...], L: int) -> bool:
    return sorted(seq) == list(range(L))


# ----------------------------------------------------------------------------- cyclic


@pytest.mark.parametrize("L", [1, 2, 3, 4, 5, 6, 7, 10])
def test_cyclic_is_a_latin_square(L: int) -> None:
    seqs = cyclic(L, L)
    assert len(seqs) == L
    assert all(_is_permutation(s, L) for s in seqs)
    for pos in range(L):
        assert sorted(s[pos] for s in seqs) == list(range(L)), f"position {pos}"
    assert seqs == [tuple((j + k) % L for k in range(L)) for j in range(L)]


@pytest.mark.parametrize(("L", "B"), [(6, 1), (6, 2), (6, 3), (5, 4)])
def test_cyclic_below_l_uses_each_slice_at_most_once_per_position(L: int, B: int) -> None:
    seqs = cyclic(L, B)
    assert seqs == cyclic(L, L)[:B]
    for pos in range(L):
        assert len({s[pos] for s in seqs}) == B


@pytest.mark.parametrize(("L", "B"), [(3, 6), (4, 24), (5, 37), (6, 13), (6, 720)])
def test_cyclic_beyond_l_is_distinct_and_blockwise_latin(L: int, B: int) -> None:
    seqs = cyclic(L, B)
    assert len(seqs) == B
    assert len(set(seqs)) == B
    assert all(_is_permutation(s, L) for s in seqs)
    assert seqs[:L] == cyclic(L, L)
    for start in range(0, B - B % L, L):  # every full block of L is again a Latin square
        block = seqs[start:start + L]
        for pos in range(L):
            assert sorted(s[pos] for s in block) == list(range(L))


def test_cyclic_suffix_rotation_order() -> None:
    # second block: keep the first element, rotate the rest left by one
    assert cyclic(4, 8)[4:] == [(0, 2, 3, 1), (1, 3, 0, 2), (2, 0, 1, 3), (3, 1, 2, 0)]


def test_cyclic_rejects_more_than_l_factorial() -> None:
    with pytest.raises(ConfigError) as err:
        cyclic(3, 7)
    msg = str(err.value)
    assert "budget" in msg and "6" in msg and "7" in msg


@pytest.mark.parametrize(("args", "name"), [((0, 1), "n_slices"), ((3, 0), "budget"), ((3, 1.5), "budget")])
def test_cyclic_bad_arguments(args: tuple, name: str) -> None:
    with pytest.raises(ConfigError) as err:
        cyclic(*args)
    assert str(err.value).startswith(name)


# ----------------------------------------------------------------------------- score


def test_sequence_score_by_hand() -> None:
    # q = (0.5, 0.5): position 1 -> 1 * 0.5^t, position 2 -> 2 * 0^t
    assert sequence_score([1, 1], (0, 1), t=1) == pytest.approx(0.5)
    assert sequence_score([1, 1], (0, 1), t=2) == pytest.approx(0.25)
    assert sequence_score([0.2, 0.8], (0,), t=1) == pytest.approx(0.8)
    # 1*(1-0.1) + 2*(1-0.1-0.3) + 3*0 with t=1
    assert sequence_score([0.1, 0.3, 0.6], (0, 1, 2), t=1) == pytest.approx(0.9 + 1.2)


def test_sequence_score_prefers_likely_deleted_slices_late() -> None:
    priors = [0.7, 0.2, 0.1]
    assert sequence_score(priors, (2, 1, 0)) > sequence_score(priors, (0, 1, 2))


@pytest.mark.parametrize("seq", [(0, 0), (3,), (-1,)])
def test_sequence_score_bad_seq(seq: tuple) -> None:
    with pytest.raises(ConfigError, match="^seq"):
        sequence_score([1, 1, 1], seq)


# ----------------------------------------------------------------------------- bms


def _brute_position(q, prefixes, B, L, t):
    """Best summed gain over all assignments of one position (slice offered c times)."""
    allowed = [[s for s in range(L) if s not in p] for p in prefixes]
    copies = -(-B // L)
    while True:
        best = None
        for combo in itertools.product(*allowed):
            if max(Counter(combo).values()) > copies:
                continue
            gain = sum(
                (len(p) + 1) * max(0.0, 1 - sum(q[k] for k in p) - q[s]) ** t for p, s in zip(prefixes, combo)
            )
            if best is None or gain > best[0]:
                best = (gain, combo)
        if best is not None:
            return best
        copies += 1


def _brute_greedy(q, B, L, t):
    prefixes = [() for _ in range(B)]
    for _ in range(L):
        _, combo = _brute_position(q, prefixes, B, L, t)
        prefixes = [p + (s,) for p, s in zip(prefixes, combo)]
    return prefixes


PRIOR_CASES = [
    [1, 1, 1],
    [0.6, 0.3, 0.1],
    [0.05, 0.15, 0.8],
    [0.34, 0.33, 0.33],
    *[np.random.default_rng(seed).dirichlet([0.7] * 3).tolist() for seed in range(8)],
]


@pytest.mark.parametrize("B", [2, 3])
@pytest.mark.parametrize("priors", PRIOR_CASES)
@pytest.mark.parametrize("t", [1.0, 5.0, 100.0])
def test_bms_matches_brute_force(priors, B: int, t: float) -> None:
    q = np.asarray(priors, float) / np.sum(priors)
    seqs = bms(priors, B, t=t)
    assert all(_is_permutation(s, 3) for s in seqs)
    # each position is an optimal assignment given the positions before it ...
    for pos in range(3):
        prefixes = [s[:pos] for s in seqs]
        got = sum((pos + 1) * max(0.0, 1 - sum(q[k] for k in s[:pos]) - q[s[pos]]) ** t for s in seqs)
        best, _ = _brute_position(q, prefixes, B, 3, t)
        assert got == pytest.approx(best, rel=1e-6, abs=1e-300)
    # ... and the whole plan scores as the brute-force greedy optimum
    total = sum(sequence_score(q, s, t) for s in seqs)
    brute = sum(sequence_score(q, s, t) for s in _brute_greedy(q, B, 3, t))
    assert total == pytest.approx(brute, rel=1e-6, abs=1e-300)


@pytest.mark.parametrize(("L", "B"), [(3, 3), (4, 2), (5, 5), (6, 3), (6, 6), (4, 24), (5, 40)])
def test_bms_uniform_is_cyclic_and_scores_no_worse(L: int, B: int) -> None:
    uniform = [1.0] * L
    seqs = bms(uniform, B)
    assert sum(sequence_score(uniform, s) for s in seqs) >= sum(sequence_score(uniform, s) for s in cyclic(L, B)) - 1e-12
    assert seqs == cyclic(L, B)


SKEWED = [0.35, 0.25, 0.15, 0.12, 0.08, 0.05]


@pytest.mark.parametrize("B", [1, 2, 3, 4])
def test_bms_puts_likely_deleted_slices_late(B: int) -> None:
    def weighted_position(seqs):
        return np.mean([sum(p * s.index(k) for k, p in enumerate(SKEWED)) for s in seqs])

    seqs = bms(SKEWED, B)
    assert weighted_position(seqs) > weighted_position(cyclic(6, B))
    assert {s[0] for s in seqs} == set(range(6 - B, 6))  # the B least likely slices go first
    assert all(s[-1] in (0, 1) for s in seqs)  # the most likely ones go last
    uniform_score = sum(sequence_score(SKEWED, s) for s in cyclic(6, B))
    assert sum(sequence_score(SKEWED, s) for s in seqs) > uniform_score


@pytest.mark.parametrize(("L", "B"), [(3, 4), (3, 6), (4, 9), (4, 24), (5, 17), (5, 60)])
@pytest.mark.parametrize("seed", range(4))
def test_bms_beyond_l_gives_distinct_permutations(L: int, B: int, seed: int) -> None:
    priors = np.random.default_rng(seed).dirichlet([0.5] * L).tolist()
    seqs = bms(priors, B)
    assert len(seqs) == B
    assert all(_is_permutation(s, L) for s in seqs)
    assert len(set(seqs)) == B
    assert max(Counter(s[0] for s in seqs).values()) <= -(-B // L)  # slices offered ceil(B/L) times
    assert bms(priors, B) == seqs  # deterministic


def test_bms_with_fewer_sequences_has_distinct_first_slices() -> None:
    seqs = bms([0.6, 0.3, 0.1], 2)
    assert sorted(s[0] for s in seqs) == [1, 2]
    assert all(s[-1] == 0 for s in seqs)


def test_bms_rejects_more_than_l_factorial() -> None:
    with pytest.raises(ConfigError, match="^budget"):
        bms([1, 2, 3], 7)


@pytest.mark.parametrize("t", [-1.0, float("nan"), "100"])
def test_bms_bad_t(t) -> None:
    with pytest.raises(ConfigError, match="^t must"):
        bms([1, 1, 1], 2, t=t)


# ----------------------------------------------------------------------------- registry


def test_registry_names() -> None:
    assert set(SELECTORS) == {"cyclic", "bms", "bms_relaxed"}
    assert SELECTORS["cyclic"](5, 3, None) == cyclic(5, 3)


def test_select_cyclic_ignores_priors() -> None:
    assert select_sequences("cyclic", 6, 3, SKEWED) == select_sequences("cyclic", 6, 3) == cyclic(6, 3)


def test_select_bms_uses_priors_or_uniform() -> None:
    assert select_sequences("bms", 6, 3, SKEWED) == bms(SKEWED, 3)
    assert select_sequences("bms", 6, 3) == bms([1.0] * 6, 3)
    assert select_sequences("bms", 6, 3, SKEWED) != select_sequences("bms", 6, 3)


def test_unknown_selector_lists_known_names() -> None:
    with pytest.raises(ConfigError) as err:
        select_sequences("random", 6, 3)
    msg = str(err.value)
    assert msg.startswith("name") and "'bms'" in msg and "'cyclic'" in msg and "'random'" in msg


@pytest.mark.parametrize(
    ("args", "name"),
    [
        (("cyclic", 0, 1), "n_slices"),
        (("cyclic", 4, 0), "budget"),
        (("cyclic", 3, 7), "budget"),
        (("bms", 4, 2, [1, 1, 1]), "priors"),
        (("bms", 3, 2, [1, -1, 1]), "priors"),
        (("bms", 3, 2, [0, 0, 0]), "priors"),
        (("bms", 3, 2, [1, float("inf"), 1]), "priors"),
        (("cyclic", 3, 2, [1, 1]), "priors"),
        (("bms", 3, 2, "abc"), "priors"),
    ],
)
def test_select_bad_arguments_name_the_parameter(args: tuple, name: str) -> None:
    with pytest.raises(ConfigError) as err:
        select_sequences(*args)
    assert str(err.value).startswith(name)
    assert "got" in str(err.value)


def test_select_never_exceeds_l_factorial() -> None:
    assert len(select_sequences("bms", 3, math.factorial(3))) == 6


@pytest.mark.parametrize(("L", "B"), [(3, 3), (4, 2), (6, 6), (4, 24)])
def test_bms_relaxed_with_uniform_priors_is_cyclic(L: int, B: int) -> None:
    assert select_sequences("bms_relaxed", L, B) == cyclic(L, B)


@pytest.mark.parametrize("B", [2, 6, 10, 13])
def test_bms_relaxed_puts_hot_slices_last_wherever_they_do_not_start(B: int) -> None:
    L, hot = 10, (6, 7)
    priors = [16.0 if s in hot else 1.0 for s in range(L)]
    seqs = select_sequences("bms_relaxed", L, B, priors)
    assert len(set(seqs)) == B and all(_is_permutation(s, L) for s in seqs)
    assert max(Counter(s[0] for s in seqs).values()) <= -(-B // L)   # first slices as distinct as BMS's
    for s in seqs:
        tail = [k for k in s[1:] if k in hot]
        assert tuple(s[L - len(tail):]) == tuple(tail), s           # hot slices after every cold one
    latin = bms(priors, B)
    if B == L:  # the published rule must place a hot slice at every position once
        assert any(s.index(6) < L - 2 for s in latin)
    total = sum(sequence_score(priors, s) for s in seqs)
    assert total >= sum(sequence_score(priors, s) for s in latin) - 1e-12
