"""RunState: finished parts are kept and read back; other settings are refused; restart discards."""

from __future__ import annotations

import pytest

from s3t.bench.resume import BenchStateError, RunState


def test_a_part_is_computed_once_then_read_back(tmp_path):
    said, calls = [], []

    def work(x):
        calls.append(x)
        return {"x": x, "pair": (1, 2)}

    timings = {}
    state = RunState(tmp_path, {"mode": "quick", "limit": 5}, say=said.append)
    assert not state.resumed
    first = state.part("P2", work, 3, timings=timings)
    assert first == {"x": 3, "pair": [1, 2]}, "returned as it reads back from disk"
    assert timings["P2"] >= 0
    again = RunState(tmp_path, {"mode": "quick", "limit": 5}, say=said.append)
    assert again.resumed and any("continuing" in m for m in said)
    kept_timings = {}
    assert again.part("P2", work, 4, timings=kept_timings) == first
    assert calls == [3], "the kept result is not recomputed"
    assert kept_timings["P2"] == timings["P2"]
    assert any("P2: kept" in m for m in said)


def test_other_settings_are_refused_and_restart_discards(tmp_path):
    state = RunState(tmp_path, {"mode": "quick", "limit": 5}, say=lambda m: None)
    state.part("P2", lambda: 1)
    with pytest.raises(BenchStateError, match="limit"):
        RunState(tmp_path, {"mode": "quick", "limit": 6}, say=lambda m: None)
    assert state.has("P2"), "a refused run changes nothing"
    fresh = RunState(tmp_path, {"mode": "quick", "limit": 6}, restart=True, say=lambda m: None)
    assert not fresh.resumed and not fresh.has("P2")


def test_finish_removes_the_work_directory_unless_kept(tmp_path):
    state = RunState(tmp_path / "a", {"mode": "quick"}, say=lambda m: None)
    state.part("P3", lambda: 2)
    state.finish(keep=True)
    assert state.root.exists()
    state.finish()
    assert not state.root.exists()
