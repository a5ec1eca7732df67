"""Tests of s3t.serve.policy: when the service retrains (never whether a forget is exact)."""

from __future__ import annotations

import pytest

from s3t.errors import ConfigError
from s3t.serve.policy import RetrainPolicy, served_accuracy

BASE = dict(pending=True, dead_shards=0, accuracy_now=0.80, accuracy_fit=0.80, since_last=None)


def decide(kind, **kw):
    return RetrainPolicy(kind, delta=0.02, every=60).decide(**{**BASE, **kw})


def test_nothing_pending_never_retrains():
    for kind in ("immediate", "accuracy", "interval"):
        assert decide(kind, pending=False).run is False


def test_immediate_always_retrains():
    assert decide("immediate", accuracy_now=0.80, since_last=0.1).run is True


@pytest.mark.parametrize(("now", "dead", "run"), [(0.79, 0, False), (0.781, 0, False), (0.779, 0, True),
                                                  (0.80, 1, True), (None, 0, True)])
def test_accuracy_policy_retrains_on_a_drop_beyond_delta_or_a_dead_shard(now, dead, run):
    d = decide("accuracy", accuracy_now=now, dead_shards=dead)
    assert d.run is run and d.wait is None
    assert ("dead" in d.reason) == bool(dead)


def test_interval_policy_waits_out_the_interval():
    assert decide("interval", since_last=None).run is True
    d = decide("interval", since_last=20.0)
    assert d.run is False and d.wait == pytest.approx(40.0)
    assert decide("interval", since_last=60.0).run is True


def test_unknown_policy_is_a_config_error():
    with pytest.raises(ConfigError, match="retrain policy must be one of"):
        RetrainPolicy("sometimes")


def test_served_accuracy_counts_dead_shards_and_averages_live_members():
    body = {"shards": {"0": None, "1": {"val_accuracy": 0.7}, "2": {"val_accuracy": 0.9}, "3": {"val_accuracy": None}}}
    dead, acc = served_accuracy(body)
    assert dead == 1 and acc == pytest.approx(0.8)
    assert served_accuracy({"shards": {"0": None}}) == (1, None)
