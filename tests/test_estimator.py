"""The estimator's pure helpers (the fitted estimator is exercised in test_integration and serve/)."""

from __future__ import annotations

import pytest

from s3t.estimator import scoring_subset


def test_scoring_subset_is_spread_over_the_split_not_its_first_rows():
    # A validation split lists its rows in file order, and files are often sorted by label: the
    # first 300 of the movie reviews' validation rows were 288 of one class, so every checkpoint's
    # validation score (serving tie-breaks, retrain gains) measured one class only.
    ids = [f"mr-{i}" for i in range(600)]
    first_half = set(ids[:300])
    subset = scoring_subset(ids, 300)
    assert len(subset) == len(set(subset)) == 300 and set(subset) <= set(ids)
    share = sum(i in first_half for i in subset) / len(subset)
    assert 0.4 < share < 0.6, share
    assert list(subset) == [i for i in ids if i in set(subset)]  # kept in the split's order


def test_scoring_subset_depends_on_the_set_and_is_stable_when_records_leave():
    ids = [f"v{i}" for i in range(200)]
    subset = scoring_subset(ids, 50)
    assert set(scoring_subset(list(reversed(ids)), 50)) == set(subset)
    gone = set(subset[:5])  # deleted validation records leave the subset; the rest stay in it
    after = scoring_subset([i for i in ids if i not in gone], 50)
    assert set(subset) - gone <= set(after) and len(after) == 50


@pytest.mark.parametrize("limit", [0, 10, 25])
def test_scoring_subset_keeps_everything_when_the_limit_allows(limit):
    ids = [f"v{i}" for i in range(10)]
    assert scoring_subset(ids, limit) == tuple(ids)
