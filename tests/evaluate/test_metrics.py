"""Metrics on hand-made probabilities whose right answers are known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from s3t.evaluate.metrics import (PER_RECORD, accuracy, attack_features, entropy, gaps, loss, nan_row, noise_check,
                                  paired_interval, summarise, true_label_prob, unlearning_accuracy)

P = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.5, 0.5]])
Y = np.array([0, 1, 1, 0])


def test_accuracy_and_ua():
    # argmax: 0, 1, 0, 0 (ties go to the first class) -> right on rows 0, 1, 3
    assert accuracy(P, Y) == pytest.approx(0.75)
    assert unlearning_accuracy(P, Y) == pytest.approx(0.25)
    assert unlearning_accuracy(P, 1 - Y) == pytest.approx(0.75)
    assert math.isnan(accuracy(np.zeros((0, 2)), np.zeros(0, int)))


def test_entropy_loss_and_features():
    assert entropy(np.array([[1.0, 0.0], [0.5, 0.5]])) == pytest.approx([0.0, math.log(2)], abs=1e-9)
    assert loss(P, Y) == pytest.approx(-np.log([0.9, 0.8, 0.4, 0.5]))
    assert true_label_prob(P, Y) == pytest.approx([0.9, 0.8, 0.4, 0.5])
    f = attack_features(P, Y)
    assert f.shape == (4, 3)
    assert f[:, 0] == pytest.approx([0.9, 0.8, 0.6, 0.5])
    assert f[3, 1] == pytest.approx(math.log(2))


def test_shape_and_label_checks():
    with pytest.raises(ValueError):
        accuracy(P, Y[:3])
    with pytest.raises(ValueError):
        accuracy(P, np.array([0, 1, 2, 0]))


def test_gaps_are_absolute_differences_to_retrain_and_their_mean():
    rows = {"retrain": {"UA": 0.10, "RA": 0.95, "TA": 0.90, "MIA": 0.30},
            "ga": {"UA": 0.40, "RA": 0.85, "TA": 0.80, "MIA": 0.50},
            "dead": nan_row()}
    g = gaps(rows)
    assert g["retrain"] == {"UA": 0.0, "RA": 0.0, "TA": 0.0, "MIA": 0.0, "avg": 0.0}
    assert g["ga"]["UA"] == pytest.approx(0.30) and g["ga"]["RA"] == pytest.approx(0.10)
    assert g["ga"]["avg"] == pytest.approx((0.30 + 0.10 + 0.10 + 0.20) / 4)
    assert math.isnan(g["dead"]["avg"])
    with pytest.raises(ValueError):
        gaps({"ga": rows["ga"]})


def test_summarise_on_a_model_that_memorised_its_training_data():
    rng = np.random.default_rng(0)
    n = 200
    confident = np.tile([0.99, 0.01], (n, 1))                  # members: label 0, sure of it
    unsure = np.column_stack([u := rng.uniform(0.3, 0.7, n), 1 - u])  # non-members: unsure
    y = np.zeros(n, int)
    forgotten_well = unsure[:50], y[:50]                       # the forget set looks like test data
    s = summarise(forgotten_well, (confident, y), (unsure, y))
    assert s["RA"] == 1.0 and s["MIA"] == pytest.approx(1.0) and s["MIA_loss"] == pytest.approx(1.0)
    assert s["FTG"] == pytest.approx((1 - s["UA"]) - s["TA"])
    s = summarise((confident[:50], y[:50]), (confident, y), (unsure, y))  # still memorised
    assert s["UA"] == 0.0 and s["MIA"] == 0.0 and s["MIA_loss"] == 0.0
    assert s["FTG"] == pytest.approx(1.0 - s["TA"])                # forget acc 1 vs test acc


def test_paired_interval_is_zero_for_equal_outcomes_and_excludes_zero_for_a_clear_shift():
    same = np.r_[np.ones(10), np.zeros(10)]
    assert paired_interval(same, same) == (0.0, 0.0)
    lo, hi = paired_interval(np.ones(40), np.zeros(40))   # every record flipped: the difference is exactly 1
    assert lo == hi == 1.0
    a = np.r_[np.ones(30), np.zeros(10)]                     # 75% vs 25% on 40 paired records
    b = np.r_[np.zeros(10), np.ones(10), np.zeros(20)]
    lo, hi = paired_interval(a, b, seed=3)
    assert 0.0 < lo < 0.5 < hi < 1.0
    assert paired_interval(a, b, seed=3) == (lo, hi)         # seeded
    with pytest.raises(ValueError):
        paired_interval(np.ones(3), np.ones(4))


def test_noise_check_one_flipped_record_of_five_is_noise_all_five_is_not():
    ref = {"UA": np.zeros(5), "MIA": np.zeros(5)}
    one = {"UA": np.r_[1.0, np.zeros(4)], "MIA": np.zeros(5)}
    five = {"UA": np.ones(5), "MIA": np.ones(5)}
    out = noise_check({"retrain": ref, "a": one, "b": five, "dead": None})
    assert out["retrain"]["UA"]["within"] and out["retrain"]["UA"]["diff"] == 0.0
    assert out["a"]["UA"]["within"] is True and out["a"]["UA"]["diff"] == pytest.approx(0.2)
    assert out["b"]["UA"]["within"] is False and out["b"]["MIA"]["within"] is False
    assert out["dead"]["UA"]["within"] is None and math.isnan(out["dead"]["MIA"]["diff"])


def test_summarise_returns_the_per_record_outcomes_behind_ua_and_mia():
    y = np.zeros(4, int)
    forget = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.1, 0.9]])
    members, non = np.tile([0.99, 0.01], (50, 1)), np.tile([0.55, 0.45], (50, 1))
    s = summarise((forget, y), (members, np.zeros(50, int)), (non, np.zeros(50, int)))
    vec = s[PER_RECORD]
    assert list(vec["UA"]) == [0.0, 1.0, 0.0, 1.0] and vec["UA"].mean() == s["UA"]
    assert vec["MIA"].mean() == pytest.approx(s["MIA"]) and len(vec["MIA"]) == 4
