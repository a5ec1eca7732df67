"""A reduced run of the fault and load harness (the full run: python -m tests.fault.harness)."""

from __future__ import annotations

import json

from tests.fault.harness import main


def test_crash_and_load_harness(tmp_path):
    result = main(["--out", str(tmp_path), "--trials", "3", "--requests", "120", "--clients", "8", "--records", "400"])
    assert len(result["trials"]) == 3
    # one trial per moment: forget traffic, a running retrain, a crash point inside the swap
    assert [t["moment"] for t in result["trials"]] == ["forget", "retrain", "swap"]
    assert result["trials"][2]["at_kill"].startswith("swap ("), result["trials"][2]
    for t in result["trials"]:
        assert t["lost_acknowledged"] == [], t
        assert t["audit_ok"] and t["served_after_restart"], t
        assert t["history_before_recovery_ok"], t
    load = result["load"]
    assert load["requests"] == 120 and not load["errors"]
    assert load["each_acknowledged_once"]
    assert load["audit_ok"] and load["history_before_recovery_ok"] and load["lost_acknowledged"] == []
    assert 0 < load["p50_ms"] <= load["p99_ms"]
    assert result["complete"] and result["trials_ok"] and result["lost_acknowledged_total"] == 0
    assert json.loads((tmp_path / "fault.json").read_text())["acknowledged_total"] == result["acknowledged_total"] > 0
