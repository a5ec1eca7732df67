"""Forget-set selection rules."""

from __future__ import annotations

import numpy as np
import pytest

from s3t.errors import ConfigError
from s3t.evaluate import scenarios as sc

IDS = [f"r{i}" for i in range(200)]


def test_random_sizes_are_seeded_and_at_least_one():
    a = sc.random_ids(IDS, 0.10, 3)
    assert len(a) == 20 and a == sc.random_ids(IDS, 0.10, 3) and a != sc.random_ids(IDS, 0.10, 4)
    assert len(sc.random_ids(IDS[:30], 0.01, 0)) == 1
    assert set(a) <= set(IDS)


def test_class_rule_picks_the_rarest_class_with_five_percent():
    labels = [0] * 5 + [1] * 20 + [2] * 75          # class 0 holds 5% -> still eligible
    assert sc.pick_class(labels, ["a", "b", "c"]) == 0
    labels = [0] * 4 + [1] * 20 + [2] * 76
    assert sc.pick_class(labels, ["a", "b", "c"]) == 1
    assert sc.pick_class(labels, ["a", "b", "c"], "c") == 2
    with pytest.raises(ConfigError):
        sc.pick_class(labels, ["a", "b", "c"], "zzz")
    assert sc.class_ids(["x", "y", "z"], [1, 0, 1], 1) == ["x", "z"]


def test_synthetic_subjects_are_deterministic_and_real_ones_win():
    subs = sc.subjects_of(IDS, [None] * len(IDS), 10)
    assert subs == sc.subjects_of(IDS, [None] * len(IDS), 10)
    assert len(set(subs)) == 10 and all(s.startswith("subject-") for s in subs)
    assert sc.subjects_of(["a", "b"], ["u1", "u2"], 10) == ["u1", "u2"]
    who, members = sc.subject_ids(IDS, subs, 0)
    assert members and all(subs[IDS.index(i)] == who for i in members)
    assert len(members) == subs.count(who)


def test_worst_case_takes_records_fitted_far_better_than_unseen_data_of_their_class():
    # class 0 held-out losses ~1.0, class 1 ~0.1; record 2 (class 0, loss 0.05) is far below its
    # class; record 3 (class 1, loss 0.05) is close to its class -> record 2 ranks first
    train_loss, train_y = [0.9, 1.1, 0.05, 0.05], [0, 0, 0, 1]
    held_loss, held_y = [0.9, 1.0, 1.1, 0.08, 0.1, 0.12], [0, 0, 0, 1, 1, 1]
    s = sc.memorisation_scores(train_loss, train_y, held_loss, held_y)
    assert int(np.argmax(s)) == 2
    assert sc.worst_case_ids(["a", "b", "c", "d"], s, 1) == ["c"]


def test_leave_out_memorisation_prefers_records_other_shards_get_wrong():
    # record 0 (shard 0): full model sure, the other shards are not -> memorised
    # record 1 (shard 1): every model is sure -> an easy record, not memorised
    p_full = [0.95, 0.95, 0.6]
    p_shards = np.array([[0.95, 0.9, 0.5], [0.2, 0.95, 0.5], [0.3, 0.9, 0.6]])
    s = sc.leave_out_scores(p_full, p_shards, [0, 1, 2])
    assert s[0] == pytest.approx(0.95 - 0.25) and s[1] == pytest.approx(0.95 - 0.9)
    assert sc.worst_case_ids(["a", "b", "c"], s, 1) == ["a"]
    with pytest.raises(ConfigError):
        sc.leave_out_scores([0.5], np.array([[0.5]]), [0])


def test_sequential_requests_are_disjoint():
    reqs = sc.sequential_ids(IDS, 10, 0.02, 0)
    assert len(reqs) == 10 and all(len(r) == 4 for r in reqs)
    assert len({i for r in reqs for i in r}) == 40
    with pytest.raises(ConfigError):
        sc.sequential_ids(IDS, 60, 0.02, 0)


def test_module_doctests_run():
    import doctest

    from s3t.evaluate import metrics, mia

    for module in (sc, metrics, mia):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__
