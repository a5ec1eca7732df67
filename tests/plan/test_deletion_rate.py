"""Tests of s3t.plan.deletion_rate: closed form, served prefix and the Monte-Carlo simulator."""

from __future__ import annotations

import dataclasses
import math
import random
import time

import pytest

from s3t.errors import ConfigError
from s3t.plan import (
    SimulationResult,
    bms,
    cyclic,
    deletion_rate,
    harmonic,
    served_prefix,
    select_sequences,
    simulate,
)

PAPER = {1: 68.5, 2: 87.9, 3: 99.5, 6: 119.8}  # m=5, L=6 (docs/s3t.md)


def test_harmonic() -> None:
    assert harmonic(0) == 0.0
    assert harmonic(1) == 1.0
    assert harmonic(2) == 1.5
    assert harmonic(4) == pytest.approx(25 / 12)
    assert harmonic(1000) == pytest.approx(math.log(1000) + 0.5772156649 + 1 / 2000, abs=1e-6)


def test_harmonic_rejects_negative() -> None:
    with pytest.raises(ConfigError, match="^n must"):
        harmonic(-1)


@pytest.mark.parametrize(("B", "expected"), sorted(PAPER.items()))
def test_formula_matches_the_paper_values(B: int, expected: float) -> None:
    assert round(deletion_rate(5, 6, B), 1) == expected


def test_formula_caps_budget_at_l() -> None:
    assert deletion_rate(5, 6, 10) == deletion_rate(5, 6, 6)
    assert deletion_rate(1, 1, 1) == 1.0
    assert deletion_rate(2, 3, 1) == pytest.approx(6 * 1.5)


@pytest.mark.parametrize(("args", "name"), [((0, 6, 1), "n_shards"), ((5, 0, 1), "n_slices"), ((5, 6, 0), "budget")])
def test_formula_bad_arguments(args: tuple, name: str) -> None:
    with pytest.raises(ConfigError) as err:
        deletion_rate(*args)
    assert str(err.value).startswith(name)


def test_served_prefix() -> None:
    seqs = [(0, 1, 2), (1, 2, 0), (2, 0, 1)]
    assert served_prefix(seqs, set()) == 3
    assert served_prefix(seqs, {2}) == 2
    assert served_prefix(seqs, {0}) == 2
    assert served_prefix(seqs, {0, 1}) == 1
    assert served_prefix(seqs, {0, 1, 2}) == 0
    assert served_prefix([(0, 1, 2)], {0}) == 0
    assert served_prefix([], set()) == 0


@pytest.mark.parametrize("B", sorted(PAPER))
def test_simulator_agrees_with_formula_within_3_percent(B: int) -> None:
    # 5000 trials: one standard error is <= 0.75 % of the mean here, so 3 % is >= 4 sigma
    result = simulate(5, 6, cyclic(6, B), trials=5000, seed=0)
    assert result.theory == pytest.approx(deletion_rate(5, 6, B))
    assert abs(result.deletion_rate / result.theory - 1) <= 0.03


@pytest.mark.parametrize("B", sorted(PAPER))
def test_simulator_500_trials_within_4_standard_errors(B: int) -> None:
    # plain counting: with 500 trials one standard error is ~1.5-2.3 % of the mean
    result = simulate(5, 6, cyclic(6, B), trials=500, seed=0)
    assert result.trials == 500
    assert abs(result.deletion_rate_plain - result.theory) <= 4 * result.std_plain / math.sqrt(result.trials)


@pytest.mark.parametrize(("B", "expected"), [(1, 68.5), (6, 119.8)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_conditional_estimate_within_3_percent_at_500_trials(B: int, expected: float, seed: int) -> None:
    result = simulate(5, 6, cyclic(6, B), trials=500, seed=seed)
    assert abs(result.deletion_rate / expected - 1) <= 0.03


@pytest.mark.parametrize("selection", ["cyclic", "bms"])
def test_conditional_and_plain_estimates_agree_under_skewed_priors(selection: str) -> None:
    priors = (0.35, 0.25, 0.15, 0.12, 0.08, 0.05)
    seqs = select_sequences(selection, 6, 3, priors)
    result = simulate(5, 6, seqs, trials=4000, seed=3, priors=priors)
    assert result.std > 0  # the order of hits matters when priors differ
    se = math.hypot(result.std, result.std_plain) / math.sqrt(result.trials)
    assert abs(result.deletion_rate - result.deletion_rate_plain) <= 4 * se


def test_simulator_with_more_than_l_sequences_matches_b_equals_l() -> None:
    result = simulate(5, 3, cyclic(3, 6), trials=5000, seed=1)
    assert result.theory == deletion_rate(5, 3, 3)
    assert abs(result.deletion_rate / result.theory - 1) <= 0.03


def test_simulator_counts_the_killing_request() -> None:
    # one shard, one slice: the first request kills everything
    one = simulate(1, 1, [(0,)], trials=20)
    assert (one.deletion_rate, one.std, one.theory) == (1.0, 0.0, 1.0)
    # one shard, two slices, B=1: geometric with p = 1/2, mean 2
    two = simulate(1, 2, [(0, 1)], trials=20000, seed=2)
    assert two.theory == 2.0
    assert two.deletion_rate == pytest.approx(2.0, abs=0.05)


def test_simulator_is_fast() -> None:
    start = time.perf_counter()
    simulate(5, 6, cyclic(6, 6), trials=500)
    assert time.perf_counter() - start < 2.0


def test_simulator_is_seeded() -> None:
    a = simulate(3, 4, cyclic(4, 2), trials=200, seed=5)
    assert a == simulate(3, 4, cyclic(4, 2), trials=200, seed=5)
    assert a != simulate(3, 4, cyclic(4, 2), trials=200, seed=6)


def _reference_prefix_fraction(m, L, seqs, horizon, trials, priors=None, seed=0):
    """Slow, direct version of the served-prefix fraction (pure Python)."""
    rng = random.Random(seed)
    weights = None if priors is None else [priors[s] for _ in range(m) for s in range(L)]
    total = 0.0
    for _ in range(trials):
        dead = [set() for _ in range(m)]
        for _ in range(horizon):
            k = rng.randrange(m * L) if weights is None else rng.choices(range(m * L), weights)[0]
            dead[k // L].add(k % L)
            total += sum(served_prefix(seqs, d) for d in dead) / (m * L)
    return total / (trials * horizon)


@pytest.mark.parametrize("priors", [None, [0.6, 0.3, 0.1]])
def test_prefix_fraction_matches_direct_simulation(priors) -> None:
    seqs = [(0, 1, 2), (2, 0, 1)]
    fast = simulate(2, 3, seqs, trials=20000, seed=0, priors=priors, horizon=4)
    slow = _reference_prefix_fraction(2, 3, seqs, 4, 4000, priors)
    assert fast.horizon == 4
    assert fast.mean_prefix_fraction == pytest.approx(slow, abs=0.01)


def test_prefix_fraction_after_one_request_is_exact() -> None:
    # one request kills slice s of one shard; with B=1 that shard serves prefix s
    m, L = 4, 5
    result = simulate(m, L, [tuple(range(L))], trials=20000, seed=3, horizon=1)
    expected = ((m - 1) * L + (L - 1) / 2) / (m * L)
    assert result.mean_prefix_fraction == pytest.approx(expected, abs=0.005)


def test_bms_keeps_longer_prefixes_under_skewed_deletions() -> None:
    priors = [0.35, 0.25, 0.15, 0.12, 0.08, 0.05]
    plain = simulate(5, 6, cyclic(6, 3), trials=1000, priors=priors)
    aware = simulate(5, 6, bms(priors, 3), trials=1000, priors=priors)
    assert aware.mean_prefix_fraction > plain.mean_prefix_fraction + 0.05
    assert aware.deletion_rate > plain.deletion_rate


def test_default_horizon_and_result_fields() -> None:
    result = simulate(5, 6, cyclic(6, 2), trials=50)
    assert isinstance(result, SimulationResult)
    assert result.horizon == round(deletion_rate(5, 6, 2) / 2) == 44
    assert 0.0 < result.mean_prefix_fraction < 1.0
    assert result.std_plain > 0
    d = result.to_dict()
    assert set(d) == {"deletion_rate", "std", "trials", "theory", "mean_prefix_fraction", "horizon",
                      "deletion_rate_plain", "std_plain", "unit", "placement", "subjects"}
    assert d["trials"] == 50 and d["theory"] == result.theory
    assert (d["unit"], d["placement"], d["subjects"]) == ("records", "record", 0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.trials = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"n_shards": 0}, "n_shards"),
        ({"n_slices": 0}, "n_slices"),
        ({"sequences": []}, "sequences"),
        ({"sequences": [(0, 1, 1)]}, "sequences"),
        ({"sequences": [(0, 1)]}, "sequences"),
        ({"sequences": [("a", "b", "c")]}, "sequences"),
        ({"trials": 0}, "trials"),
        ({"seed": -2}, "seed"),
        ({"horizon": 0}, "horizon"),
        ({"priors": [1, 1]}, "priors"),
        ({"priors": [0, 1, 1]}, "priors"),  # the first slice can never be hit
        ({"placement": "subject"}, "placement"),  # subject placement needs subject_sizes
        ({"placement": "person"}, "placement"),
        ({"subject_priors": [1.0]}, "placement"),
        ({"subject_sizes": [3, 3], "priors": [1, 1, 1]}, "priors"),
        ({"subject_sizes": [1, 1]}, "subject_sizes"),  # fewer records than slices
        ({"subject_sizes": [3, 0]}, "subject_sizes"),
        ({"subject_sizes": [3, 3], "subject_priors": [1.0]}, "subject_priors"),
        ({"subject_sizes": [3, 3], "subject_priors": [0, 0]}, "subject_priors"),
    ],
)
def test_simulate_bad_arguments_name_the_parameter(kwargs: dict, name: str) -> None:
    args = {"n_shards": 2, "n_slices": 3, "sequences": [(0, 1, 2)], "trials": 5, **kwargs}
    with pytest.raises(ConfigError) as err:
        simulate(**args)
    assert str(err.value).startswith(name)
    assert "got" in str(err.value)
