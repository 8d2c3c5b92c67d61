"""Campaign writes: create one (every check before anything is made), open a round, pause and
resume. The rounds themselves move in `runner`."""

from __future__ import annotations

import contextlib
import re

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F, Max

from labelling import clock
from labelling.campaigns.policy import policy_checked
from labelling.catalogue import services as catalogue_services
from labelling.datasets.filters import prompt_bucket
from labelling.models import Campaign, CampaignRound, Character, PipelineRun, Prompt, PromptSet, Rubric
from labelling.runs import executor
from labelling.runs import services as run_services
from labelling.versions.evaluation import decisions
from labelling.versions.generators import selectors as generator_selectors
from labelling.versions.training.services import METHOD_KINDS

SLUG = re.compile(r"[a-z0-9][a-z0-9_-]{0,59}")
MIN_TRAINING_PROMPTS = 2


def _pool_split(prompt_set: PromptSet, held_out: float) -> tuple[list[Prompt], list[Prompt]]:
    """The pool's prompts kept out of training (by the hash datasets use: the same prompts on
    every call) and the rest, each in the set's order."""
    kept, rest = [], []
    for p in prompt_set.prompts.order_by("order", "pk"):
        (kept if prompt_bucket(prompt_set.slug, p.external_id) < held_out else rest).append(p)
    return kept, rest


def campaign_check(
    *,
    slug: str,
    character: Character,
    rubric: Rubric,
    prompt_set: PromptSet,
    held_out: float,
    method: str,
    dataset_kind: str | None,
    trigger: str,
    rounds: int,
    policy: object,
) -> dict:
    """Everything a campaign needs, checked before anything is made; the policy with its
    defaults, or a ValidationError naming the field."""
    if not SLUG.fullmatch(slug or ""):
        raise ValidationError({"slug": "a slug: lower-case letters, digits, - and _, up to 60"})
    if Campaign.objects.filter(slug=slug).exists():
        raise ValidationError({"slug": f"a campaign {slug!r} exists"})
    criteria = list(rubric.criteria.all())
    if not any(not c.is_rule for c in criteria):
        raise ValidationError(
            {
                "rubric": f"rubric {rubric.slug} v{rubric.version} has no judge criterion (every criterion is a "
                "rule): a campaign calibrates the judge against reviewers, so it needs one the judge scores"
            }
        )
    if not any(c.weight > 0 for c in criteria):
        raise ValidationError(
            {"rubric": f"rubric {rubric.slug} v{rubric.version} has no criterion with a weight above 0"}
        )
    if method not in METHOD_KINDS:
        raise ValidationError({"method": f"unknown method {method!r} ({', '.join(METHOD_KINDS)})"})
    if dataset_kind is not None and dataset_kind != METHOD_KINDS[method]:
        raise ValidationError(
            {"dataset_kind": f"{method} trains on a {METHOD_KINDS[method]} dataset, not {dataset_kind}"}
        )
    if trigger not in Campaign.Trigger.values:
        raise ValidationError({"trigger": f"one of {', '.join(Campaign.Trigger.values)}"})
    if type(rounds) is not int or not 1 <= rounds <= 100:
        raise ValidationError({"rounds": "a whole number from 1 to 100"})
    if isinstance(held_out, bool) or not isinstance(held_out, int | float) or not 0 < held_out < 1:
        raise ValidationError({"held_out": "a share above 0 and below 1: every round is evaluated on held-out prompts"})
    policy = policy_checked(policy)
    if policy["live_review_share"] > 0:
        if method != "grpo":
            raise ValidationError({"live_review_share": "reviewers inside the RL step is a GRPO mode"})
        if not any(not c.is_rule and c.weight > 0 for c in criteria):
            raise ValidationError(
                {
                    "live_review_share": f"rubric {rubric.slug} has no judge criterion with a weight above 0 for reviewers to score in the step"
                }
            )
    kept, training = _pool_split(prompt_set, held_out)
    need = decisions.min_prompts()
    if len(kept) < need:
        raise ValidationError(
            {
                "held_out": f"prompt set {prompt_set.slug} has {prompt_set.prompts.count()} prompts; a held-out share of "
                f"{held_out:g} keeps {len(kept)} out, and a verdict needs at least {need}: add prompts or raise the share"
            }
        )
    if len(training) < MIN_TRAINING_PROMPTS:
        raise ValidationError(
            {
                "held_out": f"a held-out share of {held_out:g} leaves {len(training)} of prompt set {prompt_set.slug}'s "
                f"prompts to train on; a round needs at least {MIN_TRAINING_PROMPTS}"
            }
        )
    try:
        generator_selectors.generator_version_checked(None)
    except ValidationError as exc:
        raise ValidationError({"generator": "; ".join(exc.messages)}) from None
    return policy


def _copy_prompts(slug: str, name: str, prompts: list[Prompt], *, why: str) -> PromptSet:
    prompt_set = PromptSet.objects.create(slug=slug[:80], name=name[:120], description=why)
    catalogue_services.prompts_copy(prompt_set=prompt_set, prompts=prompts, origin="from_prompt")
    return prompt_set


def campaign_create(
    *,
    slug: str,
    name: str,
    character: Character,
    rubric: Rubric,
    prompt_set: PromptSet,
    held_out: float = 0.3,
    method: str = "grpo",
    dataset_kind: str | None = None,
    trigger: str = Campaign.Trigger.MANUAL,
    rounds: int = 3,
    policy: object = None,
    created_by=None,
) -> Campaign:
    """A campaign, with its held-out prompts as a prompt set of their own (`<slug>-held-out`).
    A refusal creates nothing."""
    checked = campaign_check(
        slug=slug,
        character=character,
        rubric=rubric,
        prompt_set=prompt_set,
        held_out=held_out,
        method=method,
        dataset_kind=dataset_kind,
        trigger=trigger,
        rounds=rounds,
        policy=policy,
    )
    kept, _ = _pool_split(prompt_set, held_out)
    try:
        with transaction.atomic():
            held = _copy_prompts(
                f"{slug}-held-out",
                f"{name or slug}: held out",
                kept,
                why=f"The {held_out:g} share of {prompt_set.slug} campaign {slug} never trains on.",
            )
            return Campaign.objects.create(
                slug=slug,
                name=name or slug,
                character=character,
                rubric=rubric,
                prompt_set=prompt_set,
                held_out=held,
                method=method,
                trigger=trigger,
                rounds_planned=rounds,
                policy={**checked, "held_out_share": held_out},
                created_by=created_by,
            )
    except IntegrityError:
        raise ValidationError(
            {"slug": f"a campaign {slug!r} or a prompt set {slug}-held-out exists (created at the same time?)"}
        ) from None


def training_prompts(campaign: Campaign) -> list[Prompt]:
    return _pool_split(campaign.prompt_set, campaign.policy["held_out_share"])[1]


def round_open(campaign: Campaign) -> CampaignRound:
    """The campaign's next round, generating with the current version on the next slice of the
    pool's training prompts (in turn, from the start again once every one has had its round).
    Call it inside the campaign's lock (`locked`); a round already open is returned. Refused
    (ValidationError) when the round's prompt set name is taken by another set."""
    if (open_round := campaign.rounds.filter(finished_at__isnull=True).first()) is not None:
        return open_round
    number = (campaign.rounds.aggregate(n=Max("number"))["n"] or 0) + 1
    pool = training_prompts(campaign)
    per = min(campaign.policy["prompts_per_round"], len(pool))
    start = ((number - 1) * per) % len(pool)
    chosen = (pool[start:] + pool[:start])[:per]
    parent = generator_selectors.generator_version_checked(None)
    slug = f"{campaign.slug}-r{number}"
    if PromptSet.objects.filter(slug=slug).exists():
        raise ValidationError(
            {"round": f"round {number} keeps its prompts in a prompt set {slug}, and one exists: rename it"}
        )
    with transaction.atomic():
        prompts = _copy_prompts(
            slug,
            f"{campaign.name}: round {number}",
            chosen,
            why=f"The prompts round {number} of campaign {campaign.slug} generated on.",
        )
        return CampaignRound.objects.create(campaign=campaign, number=number, parent_version=parent, prompts=prompts)


@contextlib.contextmanager
def locked(campaign_id: int):
    """The campaign, locked for this transaction: a write first (SQLite's write lock, a row
    lock on PostgreSQL), so two advancers or triggers never act on one state."""
    with transaction.atomic():
        Campaign.objects.filter(pk=campaign_id).update(poll_at=F("poll_at"))
        yield Campaign.objects.select_for_update().select_related("rubric", "character").get(pk=campaign_id)


def round_start(*, campaign: Campaign) -> CampaignRound:
    """Start a round by hand (page, API, CLI): refused while one is open or the campaign is not
    active or has run its rounds. Two at once start one round (the campaign's lock, and at most
    one open round a campaign in the database)."""
    with locked(campaign.pk) as current_campaign:
        if current_campaign.status != Campaign.Status.ACTIVE:
            raise ValidationError(
                {
                    "status": f"campaign {current_campaign.slug} is {current_campaign.status}: {current_campaign.status_reason}".rstrip(
                        ": "
                    )
                }
            )
        if (current := current_campaign.rounds.filter(finished_at__isnull=True).first()) is not None:
            raise ValidationError(
                {"round": f"round {current.number} is running (at {current.step}); rounds never overlap"}
            )
        if current_campaign.rounds.count() >= current_campaign.rounds_planned:
            raise ValidationError({"rounds": f"all {current_campaign.rounds_planned} planned rounds have run"})
        opened = round_open(current_campaign)
    transaction.on_commit(lambda: executor.campaign_poll(campaign.pk))
    return opened


def campaign_pause(*, campaign: Campaign, reason: str) -> Campaign:
    Campaign.objects.filter(pk=campaign.pk, status=Campaign.Status.ACTIVE).update(
        status=Campaign.Status.PAUSED, status_reason=reason[:2000]
    )
    campaign.refresh_from_db()
    return campaign


def campaign_resume(*, campaign: Campaign) -> Campaign:
    """Active again: the open round goes on from its step (a run of it that failed or was
    cancelled is resumed first; the check that paused it runs again)."""
    with locked(campaign.pk) as campaign:
        if campaign.status not in (Campaign.Status.PAUSED, Campaign.Status.STOPPED):
            raise ValidationError(
                {"status": f"campaign {campaign.slug} is {campaign.status}; only a paused or stopped one resumes"}
            )
        if campaign.status == Campaign.Status.STOPPED and campaign.rounds.count() >= campaign.rounds_planned:
            raise ValidationError({"rounds": f"all {campaign.rounds_planned} planned rounds have run"})
        current = campaign.rounds.filter(finished_at__isnull=True).select_related("evaluation").first()
        for run in _round_runs(current) if current else ():
            if run.status in (PipelineRun.Status.FAILED, PipelineRun.Status.CANCELLED):
                run_services.run_resume(run=run)
        campaign.status, campaign.status_reason, campaign.poll_at = Campaign.Status.ACTIVE, "", None
        campaign.save(update_fields=["status", "status_reason", "poll_at"])
    transaction.on_commit(lambda: executor.campaign_poll(campaign.pk))
    return campaign


def _round_runs(rnd: CampaignRound) -> list[PipelineRun]:
    """The runs a round has started: its generate run, its train run, its evaluation's two sides."""
    evaluation = rnd.evaluation
    sides = [evaluation.candidate_run, evaluation.baseline_run] if evaluation else []
    return [run for run in (rnd.generate_run, rnd.train_run, *sides) if run is not None]


def step_moved(rnd: CampaignRound, step: str) -> None:
    """Record how long the round's step took, and move it on."""
    now = clock.now()
    rnd.stages = {**rnd.stages, rnd.step: round((now - rnd.step_started_at).total_seconds(), 3)}
    rnd.step, rnd.step_started_at = step, now
