"""What the campaign page and the API show: each round's figures, what waits for reviewers,
and their throughput. One function feeds both, so the page and the API say the same."""

from __future__ import annotations

from datetime import timedelta

from django.db.models import F

from labelling import clock
from labelling.campaigns.routing import REASONS
from labelling.models import Campaign, CampaignRound, GeneratorVersion, Group, Judgment
from labelling.versions.evaluation import selectors as evaluation_selectors
from labelling.versions.generators import selectors as generator_selectors


def campaigns() -> list[Campaign]:
    return list(Campaign.objects.select_related("character", "rubric", "prompt_set").prefetch_related("rounds"))


def round_figures(rnd: CampaignRound) -> dict:
    candidate = GeneratorVersion.objects.filter(train_run_id=rnd.train_run_id).first() if rnd.train_run_id else None
    evaluation = rnd.evaluation
    figures = evaluation_selectors.figures(evaluation) if evaluation is not None and evaluation.result else None
    routing = rnd.routing or {}
    return {
        "number": rnd.number,
        "step": rnd.step,
        "outcome": rnd.outcome or None,
        "reason": rnd.reason,
        "parent_version": rnd.parent_version.number,
        "candidate_version": candidate.number if candidate else None,
        "generate_run": rnd.generate_run_id,
        "dataset": (
            {"id": rnd.dataset_version_id, "name": rnd.dataset_version.dataset, "number": rnd.dataset_version.number}
            if rnd.dataset_version_id
            else None
        ),
        "train_run": rnd.train_run_id,
        "evaluation": rnd.evaluation_id,
        "win_rate": figures["win_rate"] if figures else None,
        "prompts": figures["prompts"] if figures else None,
        "verdict": figures["verdict"] if figures else None,
        "reward_candidate": figures["reward_candidate"] if figures else None,
        "reward_baseline": figures["reward_baseline"] if figures else None,
        "criteria": figures["criteria"] if figures else None,
        "routed": len(routing.get("groups", {})),
        "routed_by_reason": routing.get("counts", {}),
        "groups": routing.get("of"),
        "reviewed": routing.get("reviewed"),
        "calibration": {
            key: {k: c[k] for k in ("n", "calibrated", "alpha_raw", "alpha_calibrated", "rho_raw", "rho_calibrated")}
            for key, c in (rnd.calibration or {}).items()
        },
        "stages": rnd.stages,
        "started_at": rnd.started_at,
        "finished_at": rnd.finished_at,
    }


def reviewer_load(campaign: Campaign) -> dict:
    """What waits for reviewers in the campaign's rounds, and what they scored in the last hour."""
    runs = [r for r in campaign.rounds.values_list("generate_run_id", flat=True) if r]
    groups = Group.objects.filter(run_id__in=runs)
    hour_ago = clock.now() - timedelta(hours=1)
    return {
        "waiting": groups.filter(ready=True, review_count__lt=F("overlap_target")).count(),
        "reviewed": groups.filter(review_count__gt=0).count(),
        "reviewed_last_hour": Judgment.objects.filter(
            source=Judgment.Source.HUMAN, generation__group__in=groups, created_at__gte=hour_ago
        )
        .values("generation__group")
        .distinct()
        .count(),
    }


def campaign_figures(campaign: Campaign) -> dict:
    current = generator_selectors.generator_version_current()
    return {
        "current_version": current.number if current else None,
        "rounds": [
            round_figures(r)
            for r in campaign.rounds.select_related(
                "parent_version", "evaluation", "dataset_version", "evaluation__candidate", "evaluation__baseline"
            ).order_by("number")
        ],
        "reviewers": reviewer_load(campaign),
        "reasons": REASONS,
    }
