"""Which of a round's groups reach reviewers: where they count most, plus a random audit.

In order, up to `review_share` of the round's groups:
1. no spread: the judge gave every completion of the group the same reward (its GRPO
   advantages are all zero: the group teaches nothing until a person separates them);
2. rules and judge disagree: two completions the rule criteria order one way and the judge's
   criteria the other;
3. judge uncertain: the judge failed on a completion, or the group's two best rewards lie
   within UNCERTAIN_MARGIN of each other (a near tie decides the advantage's sign);
then `audit_share` of the groups at random among the rest, so the judge's error is estimated on
groups no rule picked (the calibration and the agreement would be biased on picked ones alone).
The draw is seeded by the campaign and round: the same groups every time it is computed.
"""

from __future__ import annotations

import hashlib
import math

from labelling.datasets.rewards import _generations_of, _judgments_of
from labelling.models import CampaignRound, Group, Judgment
from shaping_core import scoring

UNCERTAIN_MARGIN = 0.1
REASONS = {
    "no_spread": "judge rewards all equal",
    "rules_disagree": "rules and judge disagree",
    "uncertain": "judge uncertain (a failure or a near tie)",
    "audit": "random audit",
}


def _overall(criteria, scores: dict) -> float | None:
    mine = [c for c in criteria if c.key in scores]
    if not mine or not any(c.weight > 0 for c in mine):
        return None
    return scoring.overall(mine, {c.key: scores[c.key] for c in mine})


def group_reasons(group_ids: list[int], rubric, criteria, failed: set[int]) -> dict[int, str | None]:
    """Group id -> the first rule that picks it (None: no rule does)."""
    rules = [c for c in criteria if c.is_rule]
    judged = [c for c in criteria if not c.is_rule]
    generations: dict[int, list[int]] = {}
    for values in _generations_of(group_ids):
        if values[3] == 0:  # originals only
            generations.setdefault(values[1], []).append(values[0])
    judgments = _judgments_of(group_ids, rubric) if group_ids else {}
    out: dict[int, str | None] = {}
    for group_id in group_ids:
        rows = []
        for generation_id in generations.get(group_id, []):
            judge = [j for j in judgments.get(generation_id, ()) if j[0] == Judgment.Source.JUDGE]
            if judge:
                scores = judge[-1][2]
                rows.append((_overall(criteria, scores), _overall(rules, scores), _overall(judged, scores)))
        rewards = [r[0] for r in rows if r[0] is not None]
        reason = None
        if len(rewards) >= 2 and max(rewards) - min(rewards) < 1e-9:
            reason = "no_spread"
        elif any(
            a[1] is not None
            and a[2] is not None
            and b[1] is not None
            and b[2] is not None
            and (a[1] - b[1]) * (a[2] - b[2]) < 0
            for i, a in enumerate(rows)
            for b in rows[i + 1 :]
        ):
            reason = "rules_disagree"
        elif group_id in failed or (len(rewards) >= 2 and sorted(rewards)[-1] - sorted(rewards)[-2] < UNCERTAIN_MARGIN):
            reason = "uncertain"
        out[group_id] = reason
    return out


def _draw(seed: str, group_id: int) -> str:
    return hashlib.sha256(f"{seed}/{group_id}".encode()).hexdigest()


def route(rnd: CampaignRound) -> dict:
    """Choose the round's reviewed groups and open them to the review queue (each to
    `review_overlap` reviewers); the choice, with each group's reason, as it is recorded."""
    policy = rnd.campaign.policy
    groups = list(Group.objects.filter(run=rnd.generate_run).order_by("id").values_list("id", flat=True))
    criteria = list(rnd.campaign.rubric.criteria.all())
    failed = set(
        Judgment.objects.filter(
            generation__group__in=groups, source=Judgment.Source.JUDGE, status=Judgment.Status.FAILED
        ).values_list("generation__group_id", flat=True)
    )
    reasons = group_reasons(groups, rnd.campaign.rubric, criteria, failed)
    budget = math.ceil(policy["review_share"] * len(groups))
    order = {name: i for i, name in enumerate(REASONS)}
    picked = sorted((g for g in groups if reasons[g]), key=lambda g: (order[reasons[g]], g))[:budget]
    chosen = {g: reasons[g] for g in picked}
    rest = sorted((g for g in groups if g not in chosen), key=lambda g: _draw(f"{rnd.campaign_id}/{rnd.number}", g))
    for g in rest[: math.ceil(policy["audit_share"] * len(groups))]:
        chosen[g] = "audit"
    Group.objects.filter(pk__in=list(chosen)).update(overlap_target=policy["review_overlap"])
    counts = {name: sum(1 for r in chosen.values() if r == name) for name in REASONS}
    return {
        "groups": {str(g): r for g, r in sorted(chosen.items())},
        "counts": counts,
        "of": len(groups),
        "candidates": {name: sum(1 for r in reasons.values() if r == name) for name in REASONS if name != "audit"},
    }
