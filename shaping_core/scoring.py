"""The weighted reward: one rule for the judge, the review services, the exports and the
TRL reward function.

A judgment's overall score is the weighted mean of its criterion scores, each rescaled to
0..1 first, so criteria on different scales weigh what their weight says. The scores must
cover exactly the rubric's criteria, each an integer inside its scale: a missing, unknown
or out-of-scale score is a `ScoresInvalid` everywhere, never a silent skip.

Free of Django: Triton's judge model and the reward function import it without settings.
A criterion is anything with `key`, `weight`, `scale_min` and `scale_max` (a `Criterion`
row, or a `Scale` made from a rubric dict by `criteria_of`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from shaping_core.calibration import calibrated_scores


class CriterionLike(Protocol):
    key: str
    weight: float
    scale_min: int
    scale_max: int


@dataclass(frozen=True)
class Scale:
    key: str
    scale_min: int
    scale_max: int
    weight: float = 1.0


class ScoresInvalid(ValueError):
    """Scores that do not fit the rubric; `field` names what is wrong ("scores" or "scores.KEY")."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def criteria_of(rubric: Mapping) -> list[Scale]:
    """The criteria of a rubric given as a dict (the judge's request, a dataset's rubric file)."""
    return [
        Scale(key=c["key"], scale_min=c["scale_min"], scale_max=c["scale_max"], weight=c.get("weight", 1.0))
        for c in rubric["criteria"]
    ]


def check(criteria: Iterable[CriterionLike], scores: Mapping[str, object]) -> None:
    """Refuse scores that miss or add a criterion, or fall outside a criterion's scale."""
    criteria = list(criteria)
    expected = {c.key for c in criteria}
    if set(scores) != expected:
        missing, unknown = sorted(expected - set(scores)), sorted(set(scores) - expected)
        raise ScoresInvalid(
            "scores", f"scores must cover exactly the rubric's criteria; missing {missing}, unknown {unknown}"
        )
    for c in criteria:
        value = scores[c.key]
        if not isinstance(value, int) or isinstance(value, bool) or not c.scale_min <= value <= c.scale_max:
            raise ScoresInvalid(f"scores.{c.key}", f"{value!r} is outside {c.scale_min}..{c.scale_max}")


def overall(
    criteria: Iterable[CriterionLike], scores: Mapping[str, int], calibration: Mapping[str, Mapping] | None = None
) -> float:
    """Weighted mean of the scores rescaled to 0..1 (0.0 when no criterion has weight).

    Checks the scores first: a reward from a partial or padded set of scores would be
    a different number from the one every other part of the product computes. With
    `calibration` (criterion key -> `shaping_core.calibration` table), a judge's scores are
    mapped onto the reviewers' scale first."""
    criteria = list(criteria)
    check(criteria, scores)
    return overall_of_values(criteria, calibrated_scores(scores, calibration) if calibration else scores)


def overall_of_values(criteria: Iterable[CriterionLike], values: Mapping[str, float]) -> float:
    """`overall` of values already on each criterion's scale that need not be integers (the mean
    of several reviewers' scores, a calibrated judge's): the same weighted mean, no check."""
    total = weight_sum = 0.0
    for c in criteria:
        total += c.weight * (values[c.key] - c.scale_min) / (c.scale_max - c.scale_min)
        weight_sum += c.weight
    return total / weight_sum if weight_sum else 0.0


def rubric_overall(rubric: Mapping, scores: Mapping[str, int]) -> float:
    """`overall` for a rubric given as a dict, as the judge and the TRL reward function hold it."""
    return overall(criteria_of(rubric), scores)


def competition_ranks(values: Mapping[int, float]) -> dict[int, int]:
    """Competition ranking (1, 1, 3) by descending value: equal values share a rank."""
    return {key: 1 + sum(1 for v in values.values() if v > mine) for key, mine in values.items()}
