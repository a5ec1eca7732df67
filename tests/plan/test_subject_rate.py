"""Tests of s3t.plan.subject_rate: Zipf sizes, subject packing, the subject closed form and the
whole-subject deletion simulator (checked against a slow direct simulation and exact values)."""

from __future__ import annotations

import math
import random
from fractions import Fraction

import numpy as np
import pytest

from s3t.errors import ConfigError
from s3t.plan import cyclic, deletion_rate, harmonic, served_prefix, simulate
from s3t.plan.subject_rate import (
    _deletion_positions,
    pack_subjects,
    packed_deletion_rate,
    subject_deletion_rate,
    zipf_sizes,
)

# -- zipf_sizes -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("k", "n", "a"), [(100, 4000, 1.0), (10, 10, 2.0), (7, 1000, 0.0), (50, 51, 1.5)])
def test_zipf_sizes_total_minimum_and_shape(k: int, n: int, a: float) -> None:
    sizes = zipf_sizes(k, n, a, seed=3)
    assert len(sizes) == k and sum(sizes) == n and min(sizes) >= 1
    ranked = sorted(sizes, reverse=True)
    # 1 + (N - K) / rank^a / sum: each within one record of its proportional share
    w = [1 / r**a for r in range(1, k + 1)]
    for size, wi in zip(ranked, w):
        assert abs(size - (1 + (n - k) * wi / sum(w))) < 1


def test_zipf_sizes_exponent_zero_is_equal_and_seed_only_shuffles() -> None:
    assert sorted(zipf_sizes(7, 30, 0.0)) == [4, 4, 4, 4, 4, 5, 5]
    a, b = zipf_sizes(20, 500, 1.0, seed=1), zipf_sizes(20, 500, 1.0, seed=2)
    assert a == zipf_sizes(20, 500, 1.0, seed=1) and a != b and sorted(a) == sorted(b)


def test_zipf_sizes_skew_grows_with_the_exponent() -> None:
    largest = [max(zipf_sizes(100, 4000, a)) for a in (0.0, 0.5, 1.0, 2.0)]
    assert largest == sorted(largest) and largest[0] == 40 and largest[-1] > 2000


@pytest.mark.parametrize(
    ("args", "name"),
    [((0, 10, 1.0), "n_subjects"), ((5, 4, 1.0), "n_records"), ((5, 10, -1.0), "exponent"),
     ((5, 10, "x"), "exponent"), ((5, 10, float("nan")), "exponent")],
)
def test_zipf_sizes_bad_arguments(args: tuple, name: str) -> None:
    with pytest.raises(ConfigError) as err:
        zipf_sizes(*args)
    assert str(err.value).startswith(name) and "got" in str(err.value)


# -- subject_deletion_rate ------------------------------------------------------------------------


def _inclusion_exclusion(m: int, L: int, B: int, k: int) -> float:
    """(K+1) Σ_j (-1)^(j+1) C(F, j) / (j c + 1): exact rational arithmetic."""
    f, c = m * min(B, L), Fraction(k, m * L)
    return float((k + 1) * sum(Fraction((-1) ** (j + 1) * math.comb(f, j)) / (j * c + 1) for j in range(1, f + 1)))


@pytest.mark.parametrize(("m", "L", "B", "k"), [(4, 4, 4, 100), (5, 6, 6, 30), (2, 3, 1, 12), (5, 6, 3, 600)])
def test_closed_form_equals_inclusion_exclusion(m: int, L: int, B: int, k: int) -> None:
    assert subject_deletion_rate(m, L, B, k) == pytest.approx(_inclusion_exclusion(m, L, B, k), rel=1e-9)


def test_closed_form_limits() -> None:
    # one subject per slice: the last of the F first-slice subjects among K = m·L
    assert subject_deletion_rate(4, 4, 2, 16) == pytest.approx(17 * 8 / 9)
    assert subject_deletion_rate(4, 4, 4, 16) == pytest.approx(16)
    # many subjects per slice: the record formula m·L·H(m·B'), now counting subjects
    for B in (1, 3, 6):
        assert subject_deletion_rate(5, 6, B, 10**8) == pytest.approx(deletion_rate(5, 6, B), rel=1e-5)
    # finitely many subjects: fewer than the with-replacement count, never more than K
    assert subject_deletion_rate(5, 6, 6, 60) < deletion_rate(5, 6, 6)
    assert all(subject_deletion_rate(2, 3, 3, k) <= k for k in range(6, 50))


def test_closed_form_needs_a_subject_in_every_slice() -> None:
    with pytest.raises(ConfigError, match="^n_subjects"):
        subject_deletion_rate(2, 3, 3, 5)
    # the packing fills the empty slice by splitting a subject; the exact form of that packing still holds
    for B in (1, 3):  # B = L: all 5 subjects are always needed (std 0)
        result = simulate(2, 3, cyclic(3, B), trials=4000, subject_sizes=[3] * 5, placement="subject")
        assert abs(result.deletion_rate - result.theory) <= 4 * result.std / math.sqrt(result.trials) + 1e-6


# -- packed_deletion_rate -------------------------------------------------------------------------


def _brute_force(cover, m, L, b):
    """Exact expectation by enumerating every deletion order and every choice of first slices."""
    import itertools

    choices = list(itertools.product(itertools.combinations(range(L), b), repeat=m))
    orders = list(itertools.permutations(range(len(cover))))
    total = Fraction(0)
    for choice in choices:
        firsts = {sh * L + j for sh, js in enumerate(choice) for j in js}
        for order in orders:
            hit: set[int] = set()
            for t, i in enumerate(order, start=1):
                hit |= set(cover[i])
                if firsts <= hit:
                    total += t
                    break
    return float(total / (len(choices) * len(orders)))


@pytest.mark.parametrize(
    ("sizes", "m", "L", "b"),
    [([30, 1, 1, 1, 1, 1, 1], 3, 2, 1),  # a subject over 5 slices of 3 shards
     ([30, 1, 1, 1, 1, 1, 1], 3, 2, 2),
     ([9, 5, 3, 2, 2, 1, 1], 2, 3, 2),
     ([4, 4], 2, 2, 1)],  # fewer subjects than slices
)
def test_packed_form_equals_brute_force(sizes, m, L, b) -> None:
    cover, _ = pack_subjects(sizes, m, L)
    assert packed_deletion_rate(cover, m, L, b) == pytest.approx(_brute_force(cover, m, L, b), rel=1e-7)


@pytest.mark.parametrize(("k", "B"), [(16, 1), (32, 2), (160, 4), (1600, 3)])
def test_packed_form_of_an_even_packing_is_the_even_spread_form(k: int, B: int) -> None:
    cover, load = pack_subjects([7] * k, 4, 4)
    assert len(set(load)) == 1
    assert packed_deletion_rate(cover, 4, 4, B) == pytest.approx(subject_deletion_rate(4, 4, B, k), rel=1e-7)


def test_packed_form_of_a_skewed_population_is_far_from_the_even_spread_form() -> None:
    sizes = zipf_sizes(1000, 50_000, 1.0)
    result = simulate(5, 6, cyclic(6, 6), trials=3000, seed=1, subject_sizes=sizes, placement="subject")
    assert result.theory == pytest.approx(packed_deletion_rate(pack_subjects(sizes, 5, 6, 1)[0], 5, 6, 6))
    assert abs(result.deletion_rate - result.theory) <= 4 * result.std / math.sqrt(result.trials)
    assert result.theory > 3 * subject_deletion_rate(5, 6, 6, 1000)  # slices of big subjects hold few subjects


def test_packed_form_gives_up_on_a_too_large_group_of_linked_shards() -> None:
    sizes = [250] + [1] * 100  # capacity 20: 13 pieces span all 3 shards, 2^18 inclusion-exclusion terms
    cover, _ = pack_subjects(sizes, 3, 6)
    assert len({b // 6 for b in cover[0]}) == 3
    assert packed_deletion_rate(cover, 3, 6, 6) is None
    assert simulate(3, 6, cyclic(6, 6), trials=20, subject_sizes=sizes, placement="subject").theory is None


# -- pack_subjects --------------------------------------------------------------------------------


def test_pack_one_slice_per_subject_and_balanced() -> None:
    sizes = zipf_sizes(200, 4000, 0.5, seed=1)
    cover, load = pack_subjects(sizes, 4, 4, seed=0)
    assert max(sizes) <= math.ceil(4000 / 16)  # nothing to split
    assert sum(load) == 4000 and len(load) == 16
    assert all(len(c) == 1 for c in cover)
    assert max(load) - min(load) <= max(sizes)
    for b in range(16):  # a slice's load is the sum of its (unsplit) subjects
        assert load[b] == sum(s for c, s in zip(cover, sizes) if c == (b,))


def test_pack_splits_a_large_subject_over_the_fewest_slices_of_one_shard() -> None:
    sizes = zipf_sizes(100, 4000, 1.0)  # the largest has 753 records; capacity 250
    cover, load = pack_subjects(sizes, 4, 4)
    cap = math.ceil(4000 / 16)
    big = [(s, c) for s, c in zip(sizes, cover) if s > cap]
    assert big and max(load) <= cap + 10
    for s, c in big:
        assert len(c) == math.ceil(s / cap)
        assert len({b // 4 for b in c}) == 1  # one shard


def test_pack_a_subject_larger_than_a_shard_takes_whole_shards() -> None:
    cover, load = pack_subjects([30, 1, 1, 1, 1, 1, 1], 3, 2)  # capacity 6: 5 pieces, a shard holds 2
    assert len(cover[0]) == 5 and sum(load) == 36
    assert sorted(cover[0])[:4] in ([0, 1, 2, 3], [0, 1, 4, 5], [2, 3, 4, 5])


def test_pack_fills_empty_slices_when_subjects_are_fewer_than_slices() -> None:
    cover, load = pack_subjects([4, 4], 2, 2)  # 2 subjects, 4 slices
    assert min(load) >= 1 and sum(load) == 8
    assert sorted(b for c in cover for b in c) == [0, 1, 2, 3]


def test_pack_is_seeded() -> None:
    sizes = [5] * 9 + [3] * 5
    assert pack_subjects(sizes, 2, 3, seed=4) == pack_subjects(sizes, 2, 3, seed=4)
    assert len({tuple(pack_subjects(sizes, 2, 3, seed=s)[0]) for s in range(6)}) > 1  # ties broken by the seed


def test_pack_agrees_with_the_real_subject_placement() -> None:
    placement = pytest.importorskip("s3t.plan.placement")
    if not hasattr(placement, "place"):
        pytest.skip("s3t.plan.placement.place not available")
    sizes = zipf_sizes(60, 1200, 1.0, seed=2)
    ids = [f"r{i:05d}" for i in range(sum(sizes))]
    subjects = [f"s{k:03d}" for k, s in enumerate(sizes) for _ in range(s)]
    real = placement.place(ids, subjects, 3, 4, seed=0, placement="subject")
    cover, load = pack_subjects(sizes, 3, 4, seed=0)
    real_slices = {}
    for subj, pair in zip(subjects, real.pairs):
        real_slices.setdefault(subj, set()).add(pair)
    assert [len(real_slices[f"s{k:03d}"]) for k in range(len(sizes))] == [len(c) for c in cover]
    assert max(load) - min(load) <= max(real.sizes) - min(real.sizes) + 1


# -- the simulator with subject requests ----------------------------------------------------------


def _reference(m, L, seqs, sizes, placement, trials, horizon, seed=0):
    """Slow, direct simulation (pure Python): place, delete subjects one by one, watch the shards."""
    rng = random.Random(seed)
    k, n = len(sizes), sum(sizes)
    counts, prefix = [], 0.0
    cover_fixed = pack_subjects(sizes, m, L, seed)[0] if placement == "subject" else None
    for _ in range(trials):
        if placement == "record":
            owners = [i for i, s in enumerate(sizes) for _ in range(s)]
            rng.shuffle(owners)
            cover = [set() for _ in range(k)]
            for slot, i in enumerate(owners):
                cover[i].add(slot % (m * L))
        else:
            shard_perm = list(range(m))
            rng.shuffle(shard_perm)
            slice_perm = [rng.sample(range(L), L) for _ in range(m)]
            cover = [{shard_perm[b // L] * L + slice_perm[b // L][b % L] for b in c} for c in cover_fixed]
        order = rng.sample(range(k), k)
        dead = [set() for _ in range(m)]
        count = None
        for t, i in enumerate(order, start=1):
            for b in cover[i]:
                dead[b // L].add(b % L)
            if count is None and all(served_prefix(seqs, d) == 0 for d in dead):
                count = t
            if t <= horizon:
                prefix += sum(served_prefix(seqs, d) for d in dead) / (m * L)
        counts.append(count)
    return sum(counts) / trials, float(np.std(counts, ddof=1)), prefix / (trials * horizon)


@pytest.mark.parametrize("placement", ["record", "subject"])
def test_subject_simulation_matches_a_direct_simulation(placement: str) -> None:
    m, L, seqs = 2, 3, [(0, 1, 2), (1, 2, 0)]
    sizes = zipf_sizes(15, 120, 1.0, seed=1)
    fast = simulate(m, L, seqs, trials=6000, seed=0, subject_sizes=sizes, placement=placement, horizon=3)
    mean, std, prefix = _reference(m, L, seqs, sizes, placement, 3000, 3)
    assert (fast.unit, fast.placement, fast.subjects, fast.horizon) == ("subjects", placement, 15, 3)
    se = math.hypot(fast.std / math.sqrt(fast.trials), std / math.sqrt(3000))
    assert abs(fast.deletion_rate - mean) <= 4 * se
    assert fast.mean_prefix_fraction == pytest.approx(prefix, abs=0.015)


@pytest.mark.parametrize(("k", "B"), [(16, 1), (32, 2), (64, 4), (160, 1), (160, 4)])
def test_subject_placement_agrees_with_the_closed_form(k: int, B: int) -> None:
    # equal sizes, K a multiple of m·L: every slice holds exactly K/(m·L) subjects, the form is exact
    result = simulate(4, 4, cyclic(4, B), trials=5000, seed=2, subject_sizes=[10] * k, placement="subject")
    assert result.theory == pytest.approx(subject_deletion_rate(4, 4, B, k))
    assert abs(result.deletion_rate - result.theory) <= 4 * max(result.std, 1e-9) / math.sqrt(result.trials) + 1e-9


def test_singletons_under_record_placement_are_records() -> None:
    # one record per subject: the balanced deal puts K/(m·L) of them in each slice, as subject placement does
    result = simulate(3, 4, cyclic(4, 2), trials=5000, seed=1, subject_sizes=[1] * 48, placement="record")
    expected = subject_deletion_rate(3, 4, 2, 48)
    assert result.theory is None
    assert abs(result.deletion_rate - expected) <= 4 * result.std / math.sqrt(result.trials)


def test_many_subjects_per_slice_approach_the_record_formula() -> None:
    result = simulate(4, 4, cyclic(4, 4), trials=2000, seed=0, subject_sizes=[3] * 4000, placement="subject")
    assert abs(result.deletion_rate / (16 * harmonic(16)) - 1) <= 0.03


def test_skewed_subjects_kill_record_placement_fast_and_subject_placement_slowly() -> None:
    sizes = zipf_sizes(100, 4000, 1.0)
    rec = simulate(4, 4, cyclic(4, 4), trials=1000, subject_sizes=sizes, placement="record")
    sub = simulate(4, 4, cyclic(4, 4), trials=1000, subject_sizes=sizes, placement="subject")
    assert rec.deletion_rate < 5 and sub.deletion_rate > 30
    assert sub.mean_prefix_fraction > rec.mean_prefix_fraction
    assert abs(sub.deletion_rate - sub.theory) <= 4 * sub.std / math.sqrt(sub.trials)


def test_subject_priors() -> None:
    sizes = zipf_sizes(100, 4000, 1.0)
    kw = {"trials": 3000, "seed": 4, "subject_sizes": sizes}
    plain = simulate(4, 4, cyclic(4, 2), placement="subject", **kw)
    flat = simulate(4, 4, cyclic(4, 2), placement="subject", subject_priors=[2.5] * 100, **kw)
    assert flat.theory is None and plain.theory is not None
    se = math.hypot(plain.std, flat.std) / math.sqrt(3000)
    assert abs(flat.deletion_rate - plain.deletion_rate) <= 4 * se
    # big subjects asked first: under record placement they cover every slice sooner
    rec = simulate(4, 4, cyclic(4, 2), placement="record", **kw)
    by_size = simulate(4, 4, cyclic(4, 2), placement="record", subject_priors=[s**2 for s in sizes], **kw)
    assert by_size.deletion_rate < rec.deletion_rate - 0.3


def test_weighted_deletion_order_follows_the_priors() -> None:
    pos = _deletion_positions(np.random.default_rng(0), 40000, np.array([3.0, 1.0, 0.0]), 3)
    assert np.all(np.isinf(pos[:, 2]))
    assert np.mean(pos[:, 0] == 0) == pytest.approx(0.75, abs=0.01)
    uniform = _deletion_positions(np.random.default_rng(0), 40000, None, 4)
    assert np.all(np.sort(uniform, axis=1) == np.arange(4))
    assert np.mean(uniform == 0, axis=0) == pytest.approx([0.25] * 4, abs=0.01)


def test_priors_that_leave_a_first_slice_unasked_are_rejected() -> None:
    with pytest.raises(ConfigError, match="^subject_priors"):
        simulate(1, 2, [(0, 1)], trials=100, subject_sizes=[1, 1], placement="subject", subject_priors=[1, 0])


def test_subject_simulation_is_seeded_and_fast() -> None:
    import time

    sizes = zipf_sizes(1000, 50_000, 1.0)
    start = time.perf_counter()
    a = simulate(5, 6, cyclic(6, 6), trials=500, seed=1, subject_sizes=sizes, placement="record")
    b = simulate(5, 6, cyclic(6, 6), trials=500, seed=1, subject_sizes=sizes, placement="subject")
    assert time.perf_counter() - start < 10.0
    assert a == simulate(5, 6, cyclic(6, 6), trials=500, seed=1, subject_sizes=sizes, placement="record")
    assert b != simulate(5, 6, cyclic(6, 6), trials=500, seed=2, subject_sizes=sizes, placement="subject")
