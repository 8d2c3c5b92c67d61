"""Agreement statistics: Krippendorff's alpha between reviewers, Spearman's rank correlation
between humans and the judge, and the numbers behind the stats page.

Alpha uses the interval metric (scores are points on a scale): alpha = 1 - D_o / D_e, over
the units (completions) that at least two reviewers scored. 1 is perfect agreement, 0 is
what chance gives, below 0 is systematic disagreement. None when there is too little data.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from django.db.models import Count, Q
from django.utils import timezone

from labelling.models import Assignment, CriterionScore, Judgment, Rubric


def _squared_pair_sum(values: Sequence[float]) -> float:
    """Sum over ordered pairs i != j of (v_i - v_j)^2, in O(n)."""
    n = len(values)
    return 2 * n * math.fsum(v * v for v in values) - 2 * math.fsum(values) ** 2


def krippendorff_alpha_interval(units: Iterable[Sequence[float]]) -> float | None:
    pairable = [list(u) for u in units if len(u) >= 2]
    n = sum(len(u) for u in pairable)
    if n < 2:
        return None
    observed = math.fsum(_squared_pair_sum(u) / (len(u) - 1) for u in pairable) / n
    expected = _squared_pair_sum([v for u in pairable for v in u]) / (n * (n - 1))
    if expected == 0:
        return 1.0 if observed == 0 else None
    return 1 - observed / expected


def _ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks, ties sharing their average rank."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's rho (Pearson's r of the ranks); None for fewer than 3 pairs or no spread."""
    if len(x) != len(y) or len(x) < 3:
        return None
    rx, ry = _ranks(x), _ranks(y)
    mx, my = statistics.fmean(rx), statistics.fmean(ry)
    sxy = math.fsum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    sxx, syy = math.fsum((a - mx) ** 2 for a in rx), math.fsum((b - my) ** 2 for b in ry)
    if sxx == 0 or syy == 0:
        return None
    return sxy / math.sqrt(sxx * syy)


# --- the stats page ---------------------------------------------------------------------------


@dataclass
class CriterionAgreement:
    key: str
    description: str
    scale: list[int]
    alpha: float | None
    alpha_units: int  # completions scored by two reviewers or more
    rho: float | None
    rho_pairs: int  # completions with both human and judge scores
    human_counts: list[int]  # per scale point
    judge_counts: list[int]


def rubric_with_reviews() -> Rubric | None:
    """The rubric version with the most human judgments (the page's default)."""
    row = (
        Judgment.objects.filter(source=Judgment.Source.HUMAN, status=Judgment.Status.OK)
        .values("rubric_id")
        .order_by()
        .annotate(n=Count("id"))
        .order_by("-n")
        .first()
    )
    return Rubric.objects.filter(pk=row["rubric_id"]).first() if row else None


def criterion_agreement(rubric: Rubric) -> list[CriterionAgreement]:
    ok = Q(judgment__rubric=rubric, judgment__status=Judgment.Status.OK)
    human: dict[int, dict[tuple[int, int], int]] = defaultdict(dict)  # criterion -> (gen, reviewer) -> score
    for criterion_id, generation_id, reviewer_id, score in (
        CriterionScore.objects.filter(ok, judgment__source=Judgment.Source.HUMAN)
        .order_by("judgment_id")
        .values_list("criterion_id", "judgment__generation_id", "judgment__reviewer_id", "score")
    ):
        human[criterion_id][(generation_id, reviewer_id)] = score  # a reviewer's latest counts
    judge: dict[int, dict[int, int]] = defaultdict(dict)  # criterion -> gen -> the judge's latest score
    for criterion_id, generation_id, score in (
        CriterionScore.objects.filter(ok, judgment__source=Judgment.Source.JUDGE)
        .order_by("judgment_id")
        .values_list("criterion_id", "judgment__generation_id", "score")
    ):
        judge[criterion_id][generation_id] = score
    out = []
    for c in rubric.criteria.all():
        units: dict[int, list[int]] = defaultdict(list)
        for (generation_id, _), score in human[c.pk].items():
            units[generation_id].append(score)
        both = [(statistics.fmean(units[g]), judge[c.pk][g]) for g in sorted(units) if g in judge[c.pk]]
        scale = list(range(c.scale_min, c.scale_max + 1))
        out.append(
            CriterionAgreement(
                key=c.key,
                description=c.description,
                scale=scale,
                alpha=krippendorff_alpha_interval(units.values()),
                alpha_units=sum(1 for u in units.values() if len(u) >= 2),
                rho=spearman([h for h, _ in both], [j for _, j in both]),
                rho_pairs=len(both),
                human_counts=_counts(human[c.pk].values(), scale),
                judge_counts=_counts(judge[c.pk].values(), scale),
            )
        )
    return out


def _counts(scores: Iterable[int], scale: list[int]) -> list[int]:
    counts = dict.fromkeys(scale, 0)
    for s in scores:
        if s in counts:
            counts[s] += 1
    return list(counts.values())


@dataclass
class ReviewerProgress:
    username: str
    done_today: int
    done_total: int
    median_seconds: float | None  # per group, over the last 100 submitted


def reviewer_progress(reviewers: Iterable) -> list[ReviewerProgress]:
    start_of_day = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    out = []
    for reviewer in reviewers:
        submitted = Assignment.objects.filter(
            reviewer=reviewer, status=Assignment.Status.SUBMITTED, completed_at__isnull=False
        )
        spans = [
            (done - began).total_seconds()
            for began, done in submitted.order_by("-completed_at").values_list("created_at", "completed_at")[:100]
        ]
        out.append(
            ReviewerProgress(
                username=reviewer.username,
                done_today=submitted.filter(completed_at__gte=start_of_day).count(),
                done_total=submitted.count(),
                median_seconds=statistics.median(spans) if spans else None,
            )
        )
    return out


def bars(counts: Sequence[int], labels: Sequence[int], *, height: int = 60, width: int = 18) -> list[Mapping]:
    """Bar geometry for a small SVG histogram (numbers only: nothing from users is drawn)."""
    top = max(counts, default=0) or 1
    return [
        {
            "x": i * (width + 4),
            "h": round(height * n / top),
            "y": height - round(height * n / top),
            "n": n,
            "label": label,
            "w": width,
        }
        for i, (n, label) in enumerate(zip(counts, labels, strict=True))
    ]
