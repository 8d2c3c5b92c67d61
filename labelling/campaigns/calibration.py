"""The judge against the reviewers, per judge criterion, on every completion of a campaign both
scored: the isotonic fit (`shaping_core.calibration`) with its sample size, and agreement before
and after it: Krippendorff's alpha (interval; the reviewers' mean and the judge as two coders)
and Spearman's rho. Both "after" figures are in-sample: the fit was made on the same pairs.
"""

from __future__ import annotations

import statistics
from collections import defaultdict

from labelling.models import Campaign, CriterionScore, Judgment
from labelling.review.agreement import krippendorff_alpha_interval, spearman
from shaping_core.calibration import apply, isotonic_table


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def campaign_pairs(campaign: Campaign) -> dict[str, list[tuple[int, float]]]:
    """Criterion key -> (the judge's latest score, the reviewers' mean score) per completion of the
    campaign's rounds that both scored."""
    rubric = campaign.rubric
    runs = list(campaign.rounds.exclude(generate_run=None).values_list("generate_run_id", flat=True))
    rows = (
        CriterionScore.objects.filter(
            judgment__rubric=rubric,
            judgment__status=Judgment.Status.OK,
            judgment__generation__group__run_id__in=runs,
            criterion__rule__isnull=True,
        )
        .order_by("judgment_id")
        .values_list("criterion__key", "judgment__generation_id", "judgment__source", "judgment__reviewer_id", "score")
    )
    judge: dict[str, dict[int, int]] = defaultdict(dict)
    human: dict[str, dict[tuple[int, int], int]] = defaultdict(dict)
    for key, generation_id, source, reviewer_id, score in rows:
        if source == Judgment.Source.JUDGE:
            judge[key][generation_id] = score  # the latest
        else:
            human[key][(generation_id, reviewer_id)] = score  # a reviewer's latest
    out: dict[str, list[tuple[int, float]]] = {}
    for key, scored in human.items():
        by_generation: dict[int, list[int]] = defaultdict(list)
        for (generation_id, _), score in scored.items():
            by_generation[generation_id].append(score)
        out[key] = [(judge[key][g], statistics.fmean(v)) for g, v in sorted(by_generation.items()) if g in judge[key]]
    return out


def fit(campaign: Campaign) -> dict:
    """Per judge criterion: `table` (None while the sample is under the policy's minimum: the
    judge's own scores stand, and `calibrated` says so), `n`, and alpha and rho raw and calibrated."""
    pairs = campaign_pairs(campaign)
    need = campaign.policy["calibration_min_pairs"]
    out = {}
    for c in campaign.rubric.criteria.filter(rule__isnull=True):
        sample = pairs.get(c.key, [])
        table = isotonic_table(sample, c.scale_min, c.scale_max) if len(sample) >= need else None
        judge = [float(x) for x, _ in sample]
        human = [y for _, y in sample]
        calibrated = [apply(table, x) for x, _ in sample]
        out[c.key] = {
            "n": len(sample),
            "weight": c.weight,
            "calibrated": table is not None,
            "table": table,
            "alpha_raw": _rounded(krippendorff_alpha_interval(list(zip(human, judge, strict=True)))),
            "alpha_calibrated": _rounded(krippendorff_alpha_interval(list(zip(human, calibrated, strict=True)))),
            "rho_raw": _rounded(spearman(judge, human)),
            "rho_calibrated": _rounded(spearman(calibrated, human)),
        }
    return out


def tables(calibration: dict) -> dict | None:
    """What rewards apply: criterion key -> {"table", "n"} for the fitted criteria (None: none)."""
    fitted = {key: {"table": c["table"], "n": c["n"]} for key, c in calibration.items() if c.get("table")}
    return fitted or None


def untrusted(campaign: Campaign, calibration: dict) -> str | None:
    """Why the campaign must not train on these scores, if it must not: a criterion that moves
    the reward, fitted, whose calibrated agreement is under the policy's minimum."""
    floor = campaign.policy["min_agreement"]
    for key, c in calibration.items():
        if c["weight"] > 0 and c["calibrated"] and (c["alpha_calibrated"] is None or c["alpha_calibrated"] < floor):
            alpha = "none (no spread)" if c["alpha_calibrated"] is None else f"{c['alpha_calibrated']:.3f}"
            return (
                f"judge-human agreement on criterion {key!r} is {alpha} (Krippendorff's alpha, calibrated, "
                f"{c['n']} completions), under the campaign's min_agreement {floor:g}: paused rather than train on "
                "scores nobody trusts. Review more of the campaign's groups, or improve the judge, then resume"
            )
    return None
