"""The training curve as SVG polylines, drawn on the server: no chart library, nothing for the
Content-Security-Policy to allow, and the numbers are the stored ones."""

from __future__ import annotations

from dataclasses import dataclass

SERIES = (
    ("reward_mean", "reward (mean)"),
    ("loss", "loss"),
    ("kl", "KL to the parent"),
)


@dataclass(frozen=True)
class Line:
    key: str
    label: str
    points: str  # "x,y x,y ..." in the chart's box
    first: float
    last: float
    low: float
    high: float


def curve_lines(curve: list[dict], width: int = 480, height: int = 140, pad: int = 6) -> list[Line]:
    """One line per series that has values, each scaled to its own range (they differ by orders
    of magnitude), steps on the x axis."""
    lines = []
    steps = [row["step"] for row in curve]
    if not steps:
        return lines
    x0, x1 = min(steps), max(steps)
    for key, label in SERIES:
        values = [(row["step"], row[key]) for row in curve if row.get(key) is not None]
        if not values:
            continue
        low, high = min(v for _, v in values), max(v for _, v in values)
        span_y, span_x = (high - low) or 1.0, (x1 - x0) or 1

        def xy(step, value, low=low, span_y=span_y, span_x=span_x):
            x = pad + (step - x0) / span_x * (width - 2 * pad)
            y = height - pad - (value - low) / span_y * (height - 2 * pad)
            return f"{x:.1f},{y:.1f}"

        lines.append(
            Line(
                key=key,
                label=label,
                points=" ".join(xy(s, v) for s, v in values),
                first=values[0][1],
                last=values[-1][1],
                low=low,
                high=high,
            )
        )
    return lines
