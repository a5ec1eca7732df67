"""P8 deletion traffic, the torch-free half: the stream of subject deletions and the timeline metrics.

The stream: ``singles`` deletions of one subject each, at exponential gaps of mean ``gap``
seconds (a Poisson process), and one burst of ``burst`` subjects at once, halfway between the two
middle singles. Subjects are drawn without replacement, uniformly among people (an erasure request
is one per person, whatever their size). Times are in CPU seconds of the machine's own training
work, so a method's retrain "takes time" exactly as long as it computes.

The metrics read a timeline: ``(t, live_shards, accuracy)`` points, each holding until the next
(accuracy None = no live model). Predict requests are taken to arrive uniformly in time, so the
fraction of them answered is the fraction of time with a live model.

Example
-------
>>> tl = [(0.0, 2, 0.8), (10.0, 0, None), (12.0, 1, 0.7), (20.0, 2, 0.8)]
>>> m = timeline_metrics(tl, horizon=30.0, burst_at=10.0)
>>> m["availability"], m["longest_dark"], m["availability_outside_bursts"], round(m["accuracy_area"], 4)
(0.9333, 2.0, 1.0, 0.72)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["Event", "deletion_stream", "timeline_metrics"]


@dataclass(frozen=True)
class Event:
    t: float
    subjects: tuple[str, ...]
    burst: bool = False


def deletion_stream(subjects: Sequence[str], singles: int, burst: int, gap: float, seed: int) -> list[Event]:
    """The P8 stream (see the module docstring); deterministic in ``seed``."""
    names = sorted(set(subjects))
    if singles + burst > len(names):
        raise ValueError(f"{singles} single and {burst} burst deletions need as many subjects; got {len(names)}")
    rng = np.random.default_rng([seed, 0xD31])
    order = [names[i] for i in rng.permutation(len(names))[: singles + burst]]
    times = np.cumsum(rng.exponential(gap, size=singles))
    half = singles // 2
    events = [Event(float(t), (s,)) for t, s in zip(times, order[:singles])]
    if burst:  # halfway between the two middle singles
        before = float(times[half - 1]) if half else 0.0
        after = float(times[half]) if half < singles else before + gap
        events.append(Event((before + after) / 2, tuple(order[singles:]), burst=True))
    return sorted(events, key=lambda e: e.t)


def timeline_metrics(timeline: Sequence[tuple[float, int, float | None]], horizon: float,
                     burst_at: float | None = None) -> dict:
    """Availability, longest dark period, dark time outside bursts and the accuracy area.

    ``accuracy_area``: mean served accuracy over [0, horizon], counting dark time as 0.
    ``availability_outside_bursts``: availability over the time not in a dark period that began
    at ``burst_at`` (a burst that kills every shard is allowed to darken the model).
    """
    pts = sorted(timeline, key=lambda p: p[0])
    dark: list[tuple[float, float]] = []
    area = 0.0
    for k, (t, live, acc) in enumerate(pts):
        end = pts[k + 1][0] if k + 1 < len(pts) else horizon
        end = min(max(end, t), horizon)
        if end <= t:
            continue
        if live == 0 or acc is None:
            if dark and abs(dark[-1][1] - t) < 1e-12:
                dark[-1] = (dark[-1][0], end)
            else:
                dark.append((t, end))
        else:
            area += acc * (end - t)
    dark_time = sum(b - a for a, b in dark)
    burst_dark = sum(b - a for a, b in dark if burst_at is not None and abs(a - burst_at) <= 1e-3)  # timelines keep ms
    outside = horizon - burst_dark
    return {
        "availability": round(1 - dark_time / horizon, 4) if horizon > 0 else 1.0,
        "longest_dark": round(max((b - a for a, b in dark), default=0.0), 3),
        "dark_periods": [[round(a, 3), round(b, 3)] for a, b in dark],
        "availability_outside_bursts": round(1 - (dark_time - burst_dark) / outside, 4) if outside > 0 else 1.0,
        "accuracy_area": area / horizon if horizon > 0 else 0.0,
    }
