"""Synthetic Zipf subjects for datasets without owners."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from s3t.data import to_records
from s3t.data.subjects import describe, synthetic_subjects, with_subjects
from s3t.errors import DataError
from s3t.plan.subject_rate import zipf_sizes


def test_sizes_follow_the_zipf_shape_and_depend_only_on_the_id_set():
    ids = [f"r{i}" for i in range(1000)]
    owners = synthetic_subjects(ids, 50, 1.0, seed=3)
    assert sorted(Counter(owners).values()) == sorted(zipf_sizes(50, 1000, 1.0, 3))
    shuffled = ids[:]
    random.Random(1).shuffle(shuffled)
    assert dict(zip(shuffled, synthetic_subjects(shuffled, 50, 1.0, seed=3))) == dict(zip(ids, owners))
    assert synthetic_subjects(ids, 50, 1.0, seed=4) != owners
    big = Counter(owners).most_common(1)[0][1]
    assert big > 5 * (1000 / 50)  # skewed: the largest person owns far more than the mean


def test_with_subjects_replaces_subjects_and_describe_states_the_model():
    rs = to_records([{"text": f"t{i}", "label": i % 2, "subject": "x"} for i in range(30)])
    owned = with_subjects(rs, 3, 0.0, seed=0)
    assert sorted(Counter(owned.subjects).values()) == [10, 10, 10] and owned.texts == rs.texts
    d = describe(3, 30, 0.0, 0)
    assert d["subjects"] == 3 and d["largest"] == d["smallest"] == 10
    with pytest.raises(DataError, match="at least as many records"):
        synthetic_subjects(["a", "b"], 3)
