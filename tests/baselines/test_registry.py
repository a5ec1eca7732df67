"""The baseline registry and the torch-free cost arithmetic."""

from __future__ import annotations

import subprocess
import sys

import pytest

from s3t.baselines import BASELINES, SISA, FullRetrain, get_baseline, register_baseline
from s3t.baselines.cost import latency_summary, ratio, sisa_retrain_seconds
from s3t.errors import ConfigError


def test_registry_holds_both_and_refuses_duplicates():
    assert BASELINES == {"sisa": SISA, "full": FullRetrain}
    assert get_baseline("sisa") is SISA
    with pytest.raises(ConfigError, match="already registered"):
        register_baseline("sisa", FullRetrain)
    with pytest.raises(ConfigError, match="unknown baseline"):
        get_baseline("retrain")
    assert BASELINES["sisa"] is SISA, "a refused registration changes nothing"


def test_cost_modules_are_torch_free():
    code = "import sys, s3t.baselines, s3t.baselines.cost, s3t.bench.config; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_sisa_retrain_seconds_sums_the_suffix():
    stages = [1.0, 2.0, 4.0]
    assert [sisa_retrain_seconds(stages, j) for j in range(3)] == [7.0, 6.0, 4.0]
    with pytest.raises(ConfigError):
        sisa_retrain_seconds(stages, 3)


def test_latency_summary_and_ratio():
    s = latency_summary(list(range(1, 101)))
    assert s["n"] == 100 and s["p50"] == 50.5 and 99 < s["p99"] <= 100 and s["max"] == 100
    with pytest.raises(ConfigError):
        latency_summary([])
    assert ratio(6, 3) == 2.0 and ratio(1, 0) is None and ratio(None, 2) is None
