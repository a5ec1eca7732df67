"""Tests of s3t.plan.sharding.assign_shards (and that s3t.plan needs no torch)."""

from __future__ import annotations

import random
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest

from s3t.errors import ConfigError
from s3t.plan import assign_shards


def _ids(n: int) -> list[str]:
    return [f"rec-{i:05d}" for i in range(n)]


@pytest.mark.parametrize(
    ("n", "m", "L"),
    [(6, 2, 3), (7, 2, 3), (100, 5, 6), (101, 5, 6), (1003, 7, 4), (59, 1, 1), (30, 30, 1), (48, 2, 4), (95, 6, 3)],
)
def test_sizes_are_balanced(n: int, m: int, L: int) -> None:
    pairs = assign_shards(_ids(n), m, L, seed=3)
    assert len(pairs) == n
    assert all(0 <= sh < m and 0 <= sl < L for sh, sl in pairs)
    shard_sizes = Counter(sh for sh, _ in pairs)
    assert set(shard_sizes) == set(range(m))
    assert max(shard_sizes.values()) - min(shard_sizes.values()) <= 1
    for shard in range(m):
        slice_sizes = Counter(sl for sh, sl in pairs if sh == shard)
        assert set(slice_sizes) == set(range(L)), f"shard {shard} has an empty slice"
        assert max(slice_sizes.values()) - min(slice_sizes.values()) <= 1


def test_exactly_one_record_per_slice_when_n_equals_m_times_l() -> None:
    pairs = assign_shards(_ids(12), 3, 4, seed=0)
    assert sorted(pairs) == [(sh, sl) for sh in range(3) for sl in range(4)]


def test_follows_the_documented_dealing_rule() -> None:
    # sorted ids, permuted by default_rng(seed), i-th goes to (i % m, (i // m) % L)
    ids = _ids(37)
    perm = np.random.default_rng(9).permutation(37)
    expected = {ids[k]: (i % 4, (i // 4) % 3) for i, k in enumerate(perm)}
    assert dict(zip(ids, assign_shards(ids, 4, 3, seed=9))) == expected


def test_deterministic_for_same_seed() -> None:
    ids = _ids(200)
    assert assign_shards(ids, 5, 6, seed=11) == assign_shards(list(ids), 5, 6, seed=11)


def test_input_order_does_not_matter() -> None:
    ids = _ids(200)
    shuffled = ids[:]
    random.Random(1).shuffle(shuffled)
    assert shuffled != ids
    first = dict(zip(ids, assign_shards(ids, 5, 6, seed=2)))
    second = dict(zip(shuffled, assign_shards(shuffled, 5, 6, seed=2)))
    assert first == second


def test_result_follows_input_order() -> None:
    ids = _ids(50)
    pairs = assign_shards(ids, 2, 5, seed=4)
    reversed_pairs = assign_shards(ids[::-1], 2, 5, seed=4)
    assert reversed_pairs == pairs[::-1]


def test_seed_changes_the_assignment() -> None:
    ids = _ids(200)
    assert assign_shards(ids, 5, 6, seed=0) != assign_shards(ids, 5, 6, seed=1)


def test_accepts_a_tuple_of_ids() -> None:
    ids = tuple(_ids(20))
    assert assign_shards(ids, 2, 2, seed=0) == assign_shards(list(ids), 2, 2, seed=0)


def test_too_few_records() -> None:
    with pytest.raises(ConfigError) as err:
        assign_shards(_ids(29), 5, 6, seed=0)
    msg = str(err.value)
    assert "record_ids" in msg and "n_shards * n_slices" in msg and "30" in msg and "29" in msg


def test_duplicate_ids() -> None:
    ids = _ids(40) + ["rec-00003"]
    with pytest.raises(ConfigError) as err:
        assign_shards(ids, 2, 2, seed=0)
    msg = str(err.value)
    assert "record_ids" in msg and "unique" in msg and "rec-00003" in msg


def test_non_string_ids() -> None:
    with pytest.raises(ConfigError, match="record_ids"):
        assign_shards([1, 2, 3, 4], 2, 2, seed=0)  # type: ignore[list-item]


def test_single_string_is_rejected() -> None:
    with pytest.raises(ConfigError, match="record_ids"):
        assign_shards("abcdefgh", 2, 2, seed=0)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"n_shards": 0}, "n_shards"),
        ({"n_shards": 2.5}, "n_shards"),
        ({"n_shards": True}, "n_shards"),
        ({"n_slices": 0}, "n_slices"),
        ({"n_slices": "3"}, "n_slices"),
        ({"seed": -1}, "seed"),
        ({"seed": 1.0}, "seed"),
    ],
)
def test_bad_arguments_name_the_parameter(kwargs: dict, name: str) -> None:
    args = {"n_shards": 2, "n_slices": 3, "seed": 0, **kwargs}
    with pytest.raises(ConfigError) as err:
        assign_shards(_ids(50), **args)
    msg = str(err.value)
    assert msg.startswith(name) and ">=" in msg and repr(kwargs[name]) in msg


def test_config_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        assign_shards(_ids(5), 0, 1, seed=0)


def test_plan_imports_without_torch() -> None:
    code = (
        "import sys\n"
        "sys.modules['torch'] = None\n"  # any 'import torch' now raises ImportError
        "import s3t.plan\n"
        "from s3t.plan import select_sequences, simulate\n"
        "seqs = select_sequences('bms', 4, 2, [0.4, 0.3, 0.2, 0.1])\n"
        "simulate(2, 4, seqs, trials=5)\n"
        "assert sys.modules['torch'] is None\n"
        "print('ok')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
