"""A campaign's rounds, moved on by the queues: `advance` takes the campaign's lock, opens a
round when its trigger fires, and moves the open round through as many steps as are ready:

generate (+ judge) -> review (the routed share; until reviewed or the deadline) -> calibrate
-> freeze -> train -> evaluate -> done (promoted when the verdict says better; otherwise the
campaign stops and says why).

Every step is safe to run twice: what it made is linked on the round (and the runs it starts
carry idempotency keys), so a worker killed mid-round resumes the round at its step. A fault or
a failed check pauses the campaign with the reason; `services.campaign_resume` goes on.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count, F, Q

from labelling import clock
from labelling.campaigns import calibration, routing, services
from labelling.datasets import services as dataset_services
from labelling.models import Campaign, CampaignRound, GeneratorVersion, Group, Judgment, PipelineRun
from labelling.runs import services as run_services
from labelling.versions.evaluation import pairs
from labelling.versions.evaluation import selectors as evaluation_selectors
from labelling.versions.evaluation import services as evaluation_services
from labelling.versions.training import services as training_services

log = logging.getLogger(__name__)

FINISHED = {
    PipelineRun.Status.SUCCEEDED,
    PipelineRun.Status.PARTIAL,
    PipelineRun.Status.FAILED,
    PipelineRun.Status.CANCELLED,
}
S = CampaignRound.Step


def advance(campaign_id: int) -> str:
    """Move the campaign on as far as it can go now; what it is waiting for, or why it stopped."""
    with services.locked(campaign_id) as campaign:
        if campaign.status != Campaign.Status.ACTIVE:
            return f"{campaign.status}: {campaign.status_reason}".rstrip(": ")
        rnd = campaign.rounds.filter(finished_at__isnull=True).first()
        if rnd is None:
            why = _trigger_waits(campaign)
            if why:
                return why
            try:
                rnd = services.round_open(campaign)
            except ValidationError as exc:
                services.campaign_pause(campaign=campaign, reason="; ".join(exc.messages))
                return f"paused: {'; '.join(exc.messages)}"
            log.info("campaign %s: round %s opened (trigger %s)", campaign.slug, rnd.number, campaign.trigger)
        for _ in range(len(S)):  # each pass moves one step or stops
            before = rnd.step
            try:
                with transaction.atomic():  # a step that fails leaves nothing half-made
                    said = STEPS[rnd.step](campaign, rnd)
            except ValidationError as exc:  # a step's own refusal: say it, change nothing more
                rnd.refresh_from_db()
                said = _pause(campaign, rnd, f"round {rnd.number}, step {rnd.step}: {'; '.join(exc.messages)}")
            except Exception as exc:  # noqa: BLE001 - recorded as the pause's reason, and logged
                log.exception("campaign %s round %s: step %s failed", campaign.slug, rnd.number, rnd.step)
                rnd.refresh_from_db()
                said = _pause(
                    campaign, rnd, f"round {rnd.number}, step {rnd.step} failed: {type(exc).__name__}: {exc}"[:2000]
                )
            rnd.save()
            if rnd.step == before or rnd.finished_at is not None or campaign.status != Campaign.Status.ACTIVE:
                return said
        return said


def _trigger_waits(campaign: Campaign) -> str | None:
    """Why no round opens now (None: one does)."""
    last = campaign.rounds.order_by("-number").first()
    if last is None or campaign.trigger == Campaign.Trigger.MANUAL:
        return "waiting for a round to be started (page, API or CLI)"
    if campaign.rounds.count() >= campaign.rounds_planned:
        return "every planned round has run"
    if campaign.trigger == Campaign.Trigger.REVIEWS:
        since = reviews_since(campaign, last.started_at)
        need = campaign.policy["trigger_reviews"]
        if since < need:
            return f"waiting for reviews: {since} of {need} groups reviewed since round {last.number} began"
    if campaign.trigger == Campaign.Trigger.SCHEDULE:
        due = last.started_at + timedelta(seconds=campaign.policy["trigger_every_s"])
        if clock.now() < due:
            return f"next round due at {due.isoformat(timespec='seconds')}"
    return None


def reviews_since(campaign: Campaign, since) -> int:
    return (
        Judgment.objects.filter(
            source=Judgment.Source.HUMAN, created_at__gt=since, generation__group__character=campaign.character
        )
        .values("generation__group")
        .distinct()
        .count()
    )


def _pause(campaign: Campaign, rnd: CampaignRound, reason: str) -> str:
    log.warning("campaign %s paused: %s", campaign.slug, reason)
    services.campaign_pause(campaign=campaign, reason=reason)
    return f"paused: {reason}"


def _run_fault(campaign, rnd, run: PipelineRun, what: str) -> str:
    first = (run.errors or [{}])[0]
    message = first.get("message") or first.get("error") or "no error recorded"
    return _pause(
        campaign,
        rnd,
        f"round {rnd.number}: {what} run #{run.pk} {run.status} ({message}); resume the campaign to resume it",
    )


def _generate(campaign: Campaign, rnd: CampaignRound) -> str:
    policy = campaign.policy
    if rnd.generate_run is None:
        rnd.generate_run, _ = run_services.run_start(
            kind=PipelineRun.Kind.GENERATE,
            character=campaign.character,
            prompt_set=rnd.prompts,
            rubric=campaign.rubric,
            group_size=policy["group_size"],
            params={
                "sampling": {
                    "max_tokens": policy["max_tokens"],
                    "temperature": policy["temperature"],
                    "seed": policy["seed"] + rnd.number,  # each round its own draws, the same on a rerun
                },
                "generator_version": rnd.parent_version.number,
                "review_overlap": 0,  # closed to reviewers until routed
                "campaign": campaign.slug,
                "campaign_round": rnd.number,
            },
            idempotency_key=f"campaign/{campaign.pk}/round/{rnd.number}/generate",
        )
        return f"round {rnd.number}: generate run #{rnd.generate_run.pk} queued"
    run = PipelineRun.objects.get(pk=rnd.generate_run_id)
    if run.status not in FINISHED:
        return f"round {rnd.number}: waiting for generate run #{run.pk} ({run.done_items}/{run.total_items})"
    if run.status in (PipelineRun.Status.FAILED, PipelineRun.Status.CANCELLED):
        return _run_fault(campaign, rnd, run, "generate")
    rnd.routing = routing.route(rnd)
    rnd.routed_at = clock.now()
    services.step_moved(rnd, S.REVIEW)
    return f"round {rnd.number}: {len(rnd.routing['groups'])} of {rnd.routing['of']} groups sent to reviewers"


def _review(campaign: Campaign, rnd: CampaignRound) -> str:
    routed = [int(g) for g in rnd.routing.get("groups", {})]
    reviewed = Group.objects.filter(pk__in=routed, review_count__gte=F("overlap_target")).count()
    deadline = rnd.routed_at + timedelta(seconds=campaign.policy["review_deadline_s"])
    if reviewed < len(routed) and clock.now() < deadline:
        return f"round {rnd.number}: waiting for reviewers ({reviewed} of {len(routed)} groups reviewed)"
    rnd.routing = {**rnd.routing, "reviewed": reviewed, "deadline_passed": reviewed < len(routed)}
    services.step_moved(rnd, S.CALIBRATE)
    return f"round {rnd.number}: {reviewed} of {len(routed)} routed groups reviewed"


def _calibrate(campaign: Campaign, rnd: CampaignRound) -> str:
    rnd.calibration = calibration.fit(campaign)
    reason = calibration.untrusted(campaign, rnd.calibration)
    if reason:
        return _pause(campaign, rnd, f"round {rnd.number}: {reason}")
    services.step_moved(rnd, S.FREEZE)
    fitted = [k for k, c in rnd.calibration.items() if c["calibrated"]]
    return f"round {rnd.number}: judge calibrated on {', '.join(fitted) or 'no criterion yet (too few pairs)'}"


def _freeze(campaign: Campaign, rnd: CampaignRound) -> str:
    kind = training_services.METHOD_KINDS[campaign.method]
    rnd.dataset_version = dataset_services.dataset_build(
        dataset=campaign.slug,
        kind=kind,
        filter={
            "runs": [rnd.generate_run_id],
            "rubric": campaign.rubric.slug,
            "rubric_version": campaign.rubric.version,
        },
        calibration=calibration.tables(rnd.calibration),
    )
    services.step_moved(rnd, S.TRAIN)
    return f"round {rnd.number}: dataset {campaign.slug} v{rnd.dataset_version.number} frozen"


def _train(campaign: Campaign, rnd: CampaignRound) -> str:
    if rnd.train_run is None:
        rnd.train_run, _ = training_services.train_start(
            dataset_version=rnd.dataset_version,
            method=campaign.method,
            params=campaign.policy["training"],
            from_version=rnd.parent_version.number,
            rubric=campaign.rubric,
            calibration=calibration.tables(rnd.calibration),
            live_review=(
                {"share": campaign.policy["live_review_share"], "deadline_s": campaign.policy["live_review_deadline_s"]}
                if campaign.policy["live_review_share"] > 0
                else None
            ),
            idempotency_key=f"campaign/{campaign.pk}/round/{rnd.number}/train",
        )
        return f"round {rnd.number}: train run #{rnd.train_run.pk} queued"
    run = PipelineRun.objects.get(pk=rnd.train_run_id)
    version = GeneratorVersion.objects.get(train_run=run)
    if run.status not in FINISHED or version.status == GeneratorVersion.Status.TRAINING:
        return f"round {rnd.number}: waiting for train run #{run.pk} (step {run.done_items} of {run.total_items})"
    if run.status != PipelineRun.Status.SUCCEEDED or version.status != GeneratorVersion.Status.READY:
        if run.status == PipelineRun.Status.SUCCEEDED:
            return _pause(
                campaign, rnd, f"round {rnd.number}: version {version.number} is {version.status}: {version.error}"
            )
        return _run_fault(campaign, rnd, run, "train")
    services.step_moved(rnd, S.EVALUATE)
    return f"round {rnd.number}: version {version.number} trained"


def _evaluate(campaign: Campaign, rnd: CampaignRound) -> str:
    policy = campaign.policy
    version = GeneratorVersion.objects.get(train_run_id=rnd.train_run_id)
    if rnd.evaluation is None:
        rnd.evaluation = evaluation_services.evaluation_start(
            candidate=version.number,
            baseline=rnd.parent_version.number,
            prompt_set=campaign.held_out,
            rubric=campaign.rubric,
            character=campaign.character,
            completions_per_prompt=policy["completions_per_prompt"],
            seed=policy["seed"],
            sampling={"max_tokens": policy["max_tokens"], "temperature": policy["temperature"]},
            human_pairs=policy["human_pairs"],
            idempotency_key=f"campaign/{campaign.pk}/round/{rnd.number}/evaluate",
        )
        return f"round {rnd.number}: evaluation #{rnd.evaluation.pk} queued"
    evaluation = evaluation_services.evaluation_finish(evaluation=rnd.evaluation)
    for side in (evaluation.candidate_run, evaluation.baseline_run):
        if side.status in (PipelineRun.Status.FAILED, PipelineRun.Status.CANCELLED):
            return _run_fault(campaign, rnd, side, "evaluation")
    if evaluation.result is None:
        return f"round {rnd.number}: waiting for evaluation #{evaluation.pk}"
    human = pairs.human_figures(evaluation)
    if evaluation.human_pairs:
        chosen = evaluation.pairs.filter(choice_count__gte=F("overlap_target")).count()
        ab_deadline = rnd.step_started_at + timedelta(seconds=policy["ab_deadline_s"])
        if chosen < evaluation.pairs.count() and clock.now() < ab_deadline:
            return f"round {rnd.number}: waiting for blind A/B choices ({chosen} of {evaluation.pairs.count()} pairs)"
    decision = evaluation_selectors.evaluation_decision(evaluation, human)
    services.step_moved(rnd, S.DONE)
    rnd.finished_at = clock.now()
    said = f"v{version.number} against v{rnd.parent_version.number}: {decision['verdict'] or 'no verdict'} ({decision['reason']})"
    if decision["verdict"] == "better":
        evaluation_services.generator_version_promote(version=version)
        rnd.outcome, rnd.reason = CampaignRound.Outcome.PROMOTED, f"{said}; v{version.number} is current"
        if campaign.rounds.count() >= campaign.rounds_planned:
            Campaign.objects.filter(pk=campaign.pk).update(
                status=Campaign.Status.FINISHED, status_reason=f"all {campaign.rounds_planned} rounds ran"
            )
            campaign.status = Campaign.Status.FINISHED
    else:
        rnd.outcome, rnd.reason = (
            CampaignRound.Outcome.NOT_PROMOTED,
            f"{said}; v{rnd.parent_version.number} stays current",
        )
        Campaign.objects.filter(pk=campaign.pk).update(
            status=Campaign.Status.STOPPED,
            status_reason=f"round {rnd.number}: {said}. A version is promoted only when its verdict is better",
        )
        campaign.status = Campaign.Status.STOPPED
    log.info("campaign %s round %s: %s", campaign.slug, rnd.number, rnd.reason)
    return f"round {rnd.number} done: {rnd.reason}"


STEPS = {
    S.GENERATE: _generate,
    S.REVIEW: _review,
    S.CALIBRATE: _calibrate,
    S.FREEZE: _freeze,
    S.TRAIN: _train,
    S.EVALUATE: _evaluate,
}


def _wants_polls() -> Q:
    """Active, and with something to look at: an open round, or a trigger that may fire."""
    return Q(status=Campaign.Status.ACTIVE) & (
        Q(rounds__finished_at__isnull=True, rounds__isnull=False)
        | (~Q(trigger=Campaign.Trigger.MANUAL) & Q(pk__in=_rounds_left()))
    )


def _rounds_left():
    return Campaign.objects.annotate(ran=Count("rounds")).filter(ran__lt=F("rounds_planned")).values("pk")


def campaigns_due() -> list[int]:
    """Campaigns that want polls and whose chain of polls is lost or never began (the
    watchdog queues them)."""
    stale = clock.now() - timedelta(seconds=30)
    return list(
        Campaign.objects.filter(_wants_polls())
        .filter(Q(poll_at__isnull=True) | Q(poll_at__lt=stale))
        .values_list("pk", flat=True)
        .distinct()
    )


def poll_claim(campaign_id: int, delay_s: float) -> bool:
    """Take the campaign's next poll (one chain of polls a campaign): True when this caller
    should schedule it; False when another poll is due sooner, or the campaign wants none."""
    now = clock.now()
    wanted = Campaign.objects.filter(_wants_polls(), pk=campaign_id).exists()
    return wanted and bool(
        Campaign.objects.filter(pk=campaign_id)
        .filter(Q(poll_at__isnull=True) | Q(poll_at__lte=now))
        .update(poll_at=now + timedelta(seconds=delay_s))
    )
