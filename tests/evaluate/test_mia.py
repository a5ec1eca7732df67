"""Membership-inference attacks on inputs where the right call is known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from s3t.evaluate.mia import confidence_attack, loss_threshold, mia_efficacy


def test_loss_threshold_separates_members_from_non_members():
    assert loss_threshold(np.array([0.1, 0.2, 0.3]), np.array([1.0, 2.0, 3.0])) == pytest.approx(0.3)
    # overlapping: the best balanced split is still between the groups' bulk
    t = loss_threshold(np.array([0.1, 0.2, 1.5]), np.array([1.0, 2.0, 3.0]))
    assert t in (0.2, 1.5)


def test_confidence_attack_learns_the_direction():
    rng = np.random.default_rng(1)
    members = np.column_stack([rng.uniform(0.9, 1.0, 100), rng.uniform(0, 0.1, 100), rng.uniform(0.9, 1.0, 100)])
    non = np.column_stack([rng.uniform(0.4, 0.6, 80), rng.uniform(0.6, 0.7, 80), rng.uniform(0.3, 0.6, 80)])
    predict = confidence_attack(members, non)
    assert predict(members).all() and not predict(non).any()


def _probs(p_true: np.ndarray) -> np.ndarray:
    return np.column_stack([p_true, 1 - p_true])


def test_efficacy_is_the_share_of_forget_records_called_non_members():
    n = 100
    y = np.zeros(n, int)
    retain, test = (_probs(np.full(n, 0.99)), y), (_probs(np.linspace(0.4, 0.6, n)), y)
    half = _probs(np.r_[np.full(10, 0.99), np.full(10, 0.5)])  # 10 memorised, 10 unseen-like
    m = mia_efficacy((half, np.zeros(20, int)), retain, test)
    assert m["confidence"] == pytest.approx(0.5) and m["loss"] == pytest.approx(0.5)
    empty = mia_efficacy((np.zeros((0, 2)), np.zeros(0, int)), retain, test)
    assert math.isnan(empty["confidence"])
