"""The judge calibrated against the reviewers, per criterion: an isotonic (monotone, never
decreasing) map from the judge's score to the reviewers' mean score, fitted on completions
both scored, and applied where no reviewer scored.

The fit is pool-adjacent-violators over the judge's scale points, each weighted by how many
completions it holds; a scale point without data takes the straight line between its fitted
neighbours (the nearest one past either end). The map is a table of the criterion's integer
scale points to a score on the reviewers' scale: JSON as it is stored with a round and a train
run, `{"table": {"1": 1.0, ...}, "n": 24}`.

Free of Django: the trainer's reward function applies the same table.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping


def isotonic_table(pairs: Iterable[tuple[int, float]], scale_min: int, scale_max: int) -> dict[str, float]:
    """The monotone map judge score -> mean reviewer score, over every point of the scale.
    `pairs` are (judge score, reviewers' mean score) per completion. With no pairs, the identity."""
    by_x: dict[int, list[float]] = defaultdict(list)
    for x, y in pairs:
        by_x[int(x)].append(float(y))
    if not by_x:
        return {str(x): float(x) for x in range(scale_min, scale_max + 1)}
    # Blocks of (sum of y, weight, first x, last x), merged while a block's mean falls below
    # the one before it (pool adjacent violators).
    blocks: list[list[float]] = []
    for x in sorted(by_x):
        blocks.append([math.fsum(by_x[x]), len(by_x[x]), x, x])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] > blocks[-1][0] / blocks[-1][1]:
            total, weight, _, last = blocks.pop()
            blocks[-1][0] += total
            blocks[-1][1] += weight
            blocks[-1][3] = last
    fitted = {}
    for total, weight, first, last in blocks:
        for x in by_x:
            if first <= x <= last:
                fitted[x] = total / weight
    known = sorted(fitted)
    table = {}
    for x in range(scale_min, scale_max + 1):
        if x in fitted:
            value = fitted[x]
        elif x < known[0]:
            value = fitted[known[0]]
        elif x > known[-1]:
            value = fitted[known[-1]]
        else:
            low = max(k for k in known if k < x)
            high = min(k for k in known if k > x)
            value = fitted[low] + (fitted[high] - fitted[low]) * (x - low) / (high - low)
        table[str(x)] = round(min(max(value, scale_min), scale_max), 6)
    return table


def apply(table: Mapping[str, float] | None, score: int) -> float:
    """The calibrated score of a judge's integer score (itself without a table)."""
    if not table:
        return float(score)
    return float(table[str(score)])


def calibrated_scores(scores: Mapping[str, int], calibration: Mapping[str, Mapping] | None) -> dict[str, float]:
    """A judgment's scores with each calibrated criterion mapped through its table; the other
    criteria (rules, criteria without a fit) as they are."""
    calibration = calibration or {}
    return {
        key: apply((calibration.get(key) or {}).get("table"), value) if key in calibration else float(value)
        for key, value in scores.items()
    }
