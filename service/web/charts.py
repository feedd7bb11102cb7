"""Geometry of the page's three small inline SVG charts (no script, no chart library).

Each function turns figures already computed elsewhere into coordinates in a fixed view box:
the value waterfall (the payload's monthly components, running total), the whale curve
(:func:`experiments.plots.whale_curve_points`, thinned to at most ``points`` vertices) and the
complaint timeline (one dot per complaint: time across, severity down).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

WATERFALL_STEPS: tuple[tuple[str, str], ...] = (
    ("revenue", "Revenue"),
    ("cost_of_goods", "Cost of goods"),
    ("discounts", "Discounts"),
    ("cost_to_serve", "Cost to serve (complaints)"),
    ("compensation", "Compensation"),
    ("receivables_provision", "Overdue (provision)"),
)


@dataclass(frozen=True)
class Bar:
    """One waterfall bar: label, amount, and its span in view-box units."""

    label: str
    amount: float
    x: float
    y: float
    height: float
    kind: str  # "up", "down" or "total"


def _waterfall_levels(
    parts: Mapping[str, Any],
) -> tuple[list[tuple[str, float]], float, list[float], float, float]:
    steps = [(label, float(parts.get(key) or 0.0)) for key, label in WATERFALL_STEPS]
    net = float(parts.get("net_margin") or 0.0)
    levels = [0.0]
    for _, amount in steps:
        levels.append(levels[-1] + amount)
    top, bottom = max([*levels, net, 0.0]), min([*levels, net, 0.0])
    return steps, net, levels, top, (top - bottom) or 1.0


def waterfall_zero(parts: Mapping[str, Any], height: float = 220) -> float:
    """The y of zero in :func:`waterfall`'s view box."""
    _, _, _, top, span = _waterfall_levels(parts)
    return top / span * height


def waterfall(parts: Mapping[str, Any], width: float = 640, height: float = 220) -> list[Bar]:
    """Bars from revenue down to net margin (costs are negative amounts, as booked)."""
    steps, net, levels, top, span = _waterfall_levels(parts)
    slot = width / (len(steps) + 1)

    def y_of(value: float) -> float:
        return (top - value) / span * height

    bars = []
    for index, (label, amount) in enumerate(steps):
        start, end = levels[index], levels[index + 1]
        bars.append(
            Bar(
                label,
                amount,
                index * slot,
                y_of(max(start, end)),
                abs(y_of(start) - y_of(end)),
                "up" if amount >= 0 else "down",
            )
        )
    bars.append(
        Bar(
            "Net margin",
            net,
            len(steps) * slot,
            y_of(max(net, 0.0)),
            abs(y_of(net) - y_of(0)),
            "total",
        )
    )
    return bars


@dataclass(frozen=True)
class WhaleCurve:
    """The whale curve as a polyline, with its peak."""

    points: str
    peak_customers: float
    peak_profit: float
    top_y: float
    customers: int


def whale(
    margins: Sequence[float], width: float = 640, height: float = 220, points: int = 200
) -> WhaleCurve | None:
    """The cumulative-profit curve of the margins (None when their total is not positive)."""
    from experiments.plots import whale_curve_points  # matplotlib: only when drawn

    if not margins:
        return None
    try:
        x, y, peak_x, peak_y = whale_curve_points(np.asarray(margins, dtype=np.float64))
    except ValueError:
        return None
    keep = np.unique(np.linspace(0, x.size - 1, min(points, x.size)).round().astype(int))
    keep = np.union1d(keep, [int(np.argmax(y))])
    low, high = min(0.0, float(y.min())), max(1.0, float(y.max()))
    scale = height / (high - low)
    coordinates = " ".join(f"{x[i] * width:.1f},{(high - y[i]) * scale:.1f}" for i in keep.tolist())
    return WhaleCurve(coordinates, peak_x, peak_y, (high - 1.0) * scale, len(margins))


LABEL_WIDTH = 80  # room for the severity labels left of the dots


@dataclass(frozen=True)
class Dot:
    """One complaint on the timeline."""

    x: float
    y: float
    severity: str
    within_rule: bool | None
    title: str


def timeline(
    complaints: Sequence[Mapping[str, Any]], width: float = 640, lane: float = 28
) -> list[Dot]:
    """Dots: opening time across the width, one lane per severity (major at the top)."""
    lanes = {"major": 0, "minor": 1, "near_miss": 2}
    times: list[datetime] = [c["opened_at"] for c in complaints if c["opened_at"] is not None]
    if not times:
        return []
    first, last = min(times), max(times)
    span = (last - first).total_seconds() or 1.0
    dots = []
    for c in complaints:
        if c["opened_at"] is None:
            continue
        hours = c["hours_to_resolve"]
        resolved = "open" if hours is None else f"resolved in {hours:,.1f} h"
        dots.append(
            Dot(
                x=LABEL_WIDTH
                + (c["opened_at"] - first).total_seconds() / span * (width - LABEL_WIDTH - 10),
                y=lane / 2 + lanes.get(str(c["severity"]), 2) * lane,
                severity=str(c["severity"]),
                within_rule=c["within_rule"],
                title=f"{c['opened_at']:%Y-%m-%d} {c['severity']} via {c['channel']}, {resolved}",
            )
        )
    return dots
