"""P8's torch-free half: the deletion stream and the timeline metrics."""

from __future__ import annotations

import pytest

from s3t.bench.traffic_stream import deletion_stream, timeline_metrics


def test_stream_is_seeded_distinct_and_has_one_burst_in_the_middle():
    people = [f"p{i}" for i in range(30)]
    ev = deletion_stream(people, singles=8, burst=5, gap=10.0, seed=1)
    assert ev == deletion_stream(list(reversed(people)), 8, 5, 10.0, 1)
    assert ev != deletion_stream(people, 8, 5, 10.0, 2)
    names = [s for e in ev for s in e.subjects]
    assert len(names) == len(set(names)) == 13
    bursts = [k for k, e in enumerate(ev) if e.burst]
    assert bursts == [4] and len(ev[4].subjects) == 5 and all(len(e.subjects) == 1 for e in ev if not e.burst)
    assert [e.t for e in ev] == sorted(e.t for e in ev) and ev[0].t > 0
    with pytest.raises(ValueError, match="need as many subjects"):
        deletion_stream(people[:5], 4, 2, 1.0, 0)


def test_metrics_count_dark_time_and_area():
    tl = [(0.0, 2, 0.8), (10.0, 0, None), (12.0, 0, None), (15.0, 1, 0.6), (20.0, 0, None), (21.0, 2, 0.9)]
    m = timeline_metrics(tl, horizon=30.0, burst_at=10.0)
    assert m["dark_periods"] == [[10.0, 15.0], [20.0, 21.0]]  # adjacent dark points merge
    assert m["longest_dark"] == 5.0 and m["availability"] == pytest.approx(1 - 6 / 30, abs=1e-4)
    assert m["availability_outside_bursts"] == pytest.approx(1 - 1 / 25, abs=1e-4)
    assert m["accuracy_area"] == pytest.approx((0.8 * 10 + 0.6 * 5 + 0.9 * 9) / 30)
    no_burst = timeline_metrics(tl, horizon=30.0)
    assert no_burst["availability_outside_bursts"] == no_burst["availability"]
