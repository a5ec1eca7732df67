"""Small server-side SVG line charts for the dashboard (no JavaScript, no external assets).

Only SVG presentation attributes are used (no ``style``), so the page's Content-Security-Policy
can forbid inline styles. Every text is XML-escaped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape
from typing import Optional, Sequence

from .dashboard_schemas import Capacity, HistoryPoint

W, H = 560, 340
PAD_L, PAD_R, PAD_B = 56, 16, 44
LEGEND_ROW = 15  # px per legend row, between the title and the plot


@dataclass
class Series:
    name: str
    color: str
    points: list[tuple[float, float]]
    dash: str = ""  # stroke-dasharray
    dots: bool = False
    step: bool = False  # hold y until the next x (a state that changes at events)


def _ticks(lo: float, hi: float, n: int = 5, integer: bool = False) -> list[float]:
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    if integer:
        step = max(1, round(step)) if step >= 1 else 1
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def _fmt(v: float) -> str:
    return f"{v:.0f}" if abs(v - round(v)) < 1e-9 else (f"{v:.2f}" if abs(v) < 10 else f"{v:.1f}")


def line_chart(title: str, series: Sequence[Series], x_label: str, y_label: str,
               x_range: tuple[float, float], y_range: tuple[float, float], chart_id: str) -> str:
    """An SVG line chart with axes, ticks, a legend and one polyline (plus dots) per series."""
    (x0, x1), (y0, y1) = x_range, y_range
    pad_t = 34 + LEGEND_ROW * len(series)
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1)
    pw, ph = W - PAD_L - PAD_R, H - pad_t - PAD_B

    def px(x: float) -> float:
        return PAD_L + (x - x0) / (x1 - x0) * pw

    def py(y: float) -> float:
        return pad_t + ph - (y - y0) / (y1 - y0) * ph

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" id="{escape(chart_id)}" class="chart" viewBox="0 0 {W} {H}" '
           f'width="{W}" height="{H}" role="img" aria-label="{escape(title)}">',
           f'<text x="{PAD_L}" y="18" font-size="14" font-weight="600" fill="#1f2933">{escape(title)}</text>']
    for t in _ticks(y0, y1):
        out.append(f'<line x1="{PAD_L}" x2="{W - PAD_R}" y1="{py(t):.1f}" y2="{py(t):.1f}" stroke="#e4e7eb"/>')
        out.append(f'<text x="{PAD_L - 6}" y="{py(t) + 4:.1f}" font-size="11" text-anchor="end" fill="#52606d">{_fmt(t)}</text>')
    for t in _ticks(x0, x1, 6, integer=True):  # x: a count (deleted records)
        out.append(f'<line x1="{px(t):.1f}" x2="{px(t):.1f}" y1="{pad_t + ph}" y2="{pad_t + ph + 4}" stroke="#7b8794"/>')
        out.append(f'<text x="{px(t):.1f}" y="{pad_t + ph + 16}" font-size="11" text-anchor="middle" fill="#52606d">{_fmt(t)}</text>')
    out.append(f'<rect x="{PAD_L}" y="{pad_t}" width="{pw}" height="{ph}" fill="none" stroke="#9aa5b1"/>')
    out.append(f'<text x="{PAD_L + pw / 2}" y="{H - 8}" font-size="12" text-anchor="middle" fill="#323f4b">{escape(x_label)}</text>')
    out.append(f'<text x="14" y="{pad_t + ph / 2}" font-size="12" text-anchor="middle" fill="#323f4b" '
               f'transform="rotate(-90 14 {pad_t + ph / 2})">{escape(y_label)}</text>')
    for s in series:
        pts = [(x, y) for x, y in s.points if x0 <= x <= x1]
        if s.step and len(pts) > 1:
            stepped = [pts[0]]
            for (xa, ya), (xb, yb) in zip(pts, pts[1:]):
                stepped += [(xb, ya), (xb, yb)]
            pts = stepped
        clipped = [(px(x), py(min(max(y, y0), y1))) for x, y in pts]
        if len(clipped) > 1:
            path = " ".join(f"{a:.1f},{b:.1f}" for a, b in clipped)
            dash = f' stroke-dasharray="{s.dash}"' if s.dash else ""
            out.append(f'<polyline points="{path}" fill="none" stroke="{s.color}" stroke-width="2"{dash}/>')
        if s.dots or len(clipped) == 1:
            for x, y in s.points:
                if x0 <= x <= x1:
                    out.append(f'<circle cx="{px(x):.1f}" cy="{py(min(max(y, y0), y1)):.1f}" r="3.5" fill="{s.color}"/>')
    for i, s in enumerate(series):  # legend: one row per series, under the title
        ly = 38 + LEGEND_ROW * i
        dash = f' stroke-dasharray="{s.dash}"' if s.dash else ""
        out.append(f'<line x1="{PAD_L}" x2="{PAD_L + 22}" y1="{ly - 4}" y2="{ly - 4}" stroke="{s.color}" stroke-width="2"{dash}/>')
        out.append(f'<text x="{PAD_L + 28}" y="{ly}" font-size="11" fill="#323f4b">{escape(s.name)}</text>')
    out.append("</svg>")
    return "\n".join(out)


def accuracy_chart(history: Sequence[HistoryPoint], current: Optional[float] = None) -> str:
    """Validation accuracy vs the number of deleted records, one point per manifest version."""
    member = [(p.deleted_records, p.mean_member_accuracy) for p in history if p.mean_member_accuracy is not None]
    measured = [(p.deleted_records, p.ensemble_accuracy) for p in history if p.ensemble_accuracy is not None]
    values = [y for _, y in member + measured] + ([current] if current is not None else [])
    lo = max(0.0, math.floor((min(values) if values else 0.0) * 10 - 0.5) / 10)
    x_hi = max([p.deleted_records for p in history] + [1])
    series = [Series("served ensemble (measured)", "#1f7a4d", measured, dots=True),
              Series("mean of served checkpoints", "#5b8def", member, dash="5 3", step=True)]
    return line_chart("Validation accuracy vs deletions", series, "deleted records", "accuracy",
                      (0, x_hi), (lo, 1.0), "chart-accuracy")


def capacity_chart(history: Sequence[HistoryPoint], capacity: Capacity) -> str:
    """Remaining deletion capacity m·L·H(live first slices) vs the fresh plan's formula, in the
    capacity's unit: subjects (x = deleted subjects) under subject placement, else records."""
    unit = capacity.capacity_unit
    e0 = capacity.expected_total
    done = [p.deleted_subjects if unit == "subjects" else p.deleted_records for p in history]
    x_hi = max(done + [0])
    x_hi = max(x_hi * 1.25, min(e0, 10.0), 1.0)
    actual = [(x, p.remaining_capacity) for x, p in zip(done, history)]
    series = [
        Series(f"remaining: m·L·H(live first slices) {unit}", "#d9822b", actual, dots=True, step=True),
        Series("formula − deletions: m·L·H(m·B′) − d", "#7b8794", [(0, e0), (min(x_hi, e0), e0 - min(x_hi, e0))], dash="6 4"),
        Series(f"formula m·L·H(m·B′) = {e0:.1f} {unit}", "#3e4c59", [(0, e0), (x_hi, e0)], dash="2 3"),
    ]
    return line_chart(f"Remaining deletion capacity ({unit})", series, f"deleted {unit}",
                      f"expected {unit[:-1]} deletions left", (0, x_hi), (0, e0 * 1.12), "chart-capacity")
