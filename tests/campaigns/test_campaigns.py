"""Campaigns without training: the checks that refuse one before anything is made, the judge's
calibration, one scale per GRPO group, routing, a round from generate to the train step (the
tiny model in this process), the pause when the judge and the reviewers disagree, and rounds
that never overlap."""

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.test import Client
from django.utils import timezone

from inference.backends.inprocess import InProcessBackend
from inference.tasks import execute
from labelling.campaigns import runner, services
from labelling.catalogue import services as catalogue_services
from labelling.catalogue.schemas import CriterionIn, RubricIn
from labelling.datasets.rewards import Gen, score_group
from labelling.models import (
    Campaign,
    CampaignRound,
    DatasetVersion,
    Generation,
    Group,
    Judgment,
    PipelineRun,
    PromptSet,
)
from shaping_core.calibration import apply, isotonic_table
from tests.api.test_api import Api
from tests.campaigns.conftest import scripted_review
from tests.triton_fixture import TINY_MODEL

SMALL = {"prompts_per_round": 6, "group_size": 2, "max_tokens": 8, "review_share": 0.5, "audit_share": 0.2}


def create(pool, **kwargs):
    args = {
        "slug": "aria-voice",
        "name": "Aria's voice",
        "character": pool["character"],
        "rubric": pool["rubric"],
        "prompt_set": pool["prompt_set"],
        "held_out": 0.3,
        "policy": SMALL,
        **kwargs,
    }
    return services.campaign_create(**args)


# --- calibration -------------------------------------------------------------------------------


def test_the_isotonic_fit_pools_what_runs_backwards_and_fills_the_scale():
    table = isotonic_table([(1, 2), (2, 1), (3, 4), (3, 4), (5, 5)], 1, 5)
    assert table == {"1": 1.5, "2": 1.5, "3": 4.0, "4": 4.5, "5": 5.0}  # 1 and 2 pooled; 4 between 3 and 5
    assert list(table.values()) == sorted(table.values())
    assert isotonic_table([], 1, 5) == {str(x): float(x) for x in range(1, 6)}  # no pairs: the identity
    assert isotonic_table([(3, 9)], 1, 5)["1"] == 5.0  # clamped into the scale, flat past the data
    assert apply(table, 2) == 1.5 and apply(None, 2) == 2.0


def _gen(pk, revision=0):
    return Gen(pk, 1, pk, revision, None, "model", [], "", "", True)


def test_with_a_calibration_no_group_mixes_human_and_judge_scores(pool):
    criteria = list(pool["rubric"].criteria.all())  # name (rule, 0..1, weight 1), voice (1..5, weight 0)
    for c in criteria:
        c.weight = 1.0
    gens = [_gen(1), _gen(2)]
    judge = {"name": 1, "voice": 2}
    judgments = {
        1: [("judge", False, judge), ("human", False, {"name": 1, "voice": 5})],
        2: [("judge", False, judge)],
    }
    calibration = {"voice": {"table": {"1": 1.0, "2": 3.0, "3": 3.0, "4": 4.0, "5": 5.0}, "n": 9}}
    mixed = score_group(gens, judgments, criteria)  # the default policy: the human's where there is one
    assert [c.source for c in mixed] == ["human", "judge"]
    one_scale = score_group(gens, judgments, criteria, calibration)
    assert [c.source for c in one_scale] == ["judge", "judge"]
    assert [c.scores["voice"] for c in one_scale] == [3.0, 3.0]  # 2 mapped to 3 on the reviewers' scale
    assert one_scale[0].reward == pytest.approx((1 + (3 - 1) / 4) / 2)
    judgments[2].append(("human", False, {"name": 1, "voice": 1}))
    assert [c.source for c in score_group(gens, judgments, criteria, calibration)] == ["human", "human"]


# --- checks before anything is made ------------------------------------------------------------


def _rules_only():
    return catalogue_services.rubric_create(
        data=RubricIn(
            slug="rules-only",
            name="Rules only",
            criteria=[CriterionIn(key="name", description="names herself", scale_min=0, scale_max=1, rule={"kind": "regex", "pattern": "Aria"})],
        )
    )  # fmt: skip


@pytest.mark.parametrize(
    ("change", "field", "says"),
    [
        (lambda pool: {"rubric": _rules_only()}, "rubric", "no judge criterion"),
        (lambda pool: {"held_out": 0.05}, "held_out", "a verdict needs at least 6"),
        (lambda pool: {"held_out": 0.97}, "held_out", "a round needs at least 2"),
        (lambda pool: {"dataset_kind": "dpo"}, "dataset_kind", "grpo trains on a grpo_prompts dataset, not dpo"),
        (lambda pool: {"method": "ppo"}, "method", "unknown method"),
        (lambda pool: {"policy": {"review_shar": 0.5}}, "policy", "unknown field(s): review_shar"),
        (lambda pool: {"policy": {"review_share": 2}}, "review_share", "from 0.0 to 1.0"),
        (lambda pool: {"trigger": "hourly"}, "trigger", "one of manual"),
        (lambda pool: {"policy": {"live_review_share": 0.5}}, "live_review_share", "no judge criterion with a weight"),
        (
            lambda pool: {"method": "sft", "policy": {"live_review_share": 0.5}},
            "live_review_share",
            "a GRPO mode",
        ),
        (lambda pool: {"slug": "Not A Slug"}, "slug", "a slug"),
    ],
)
def test_a_bad_campaign_is_refused_naming_the_field_and_nothing_is_made(pool, change, field, says):
    prompt_sets = PromptSet.objects.count()
    with pytest.raises(ValidationError) as refused:
        create(pool, **change(pool))
    assert field in refused.value.message_dict, refused.value.message_dict
    assert says in " ".join(refused.value.message_dict[field])
    assert (Campaign.objects.count(), PromptSet.objects.count()) == (0, prompt_sets)


def test_the_api_creates_and_refuses_as_the_services_do(client, admin_user, token_of, pool):
    api = Api(client, token_of(admin_user))
    body = {"slug": "aria-voice", "character": "aria", "rubric": "aria-voice", "prompt_set": "harbour", "policy": SMALL}
    refused = api.post("/campaigns", {**body, "rubric": "nope"})
    assert refused.status_code == 400 and "rubric" in refused.json()["errors"]
    refused = api.post("/campaigns", {**body, "held_out": 0.05})
    assert refused.status_code == 400 and "a verdict needs" in refused.json()["errors"]["held_out"]
    assert Campaign.objects.count() == 0
    made = api.post("/campaigns", body)
    assert made.status_code == 201, made.content
    campaign = made.json()
    assert (campaign["status"], campaign["held_out_prompt_set"], campaign["policy"]["group_size"]) == (
        "active",
        "aria-voice-held-out",
        2,
    )
    assert campaign["figures"]["rounds"] == [] and campaign["figures"]["current_version"] == 1
    assert api.get("/campaigns/nope").status_code == 404
    started = api.post("/campaigns/aria-voice/rounds")
    assert started.status_code == 201 and started.json()["figures"]["rounds"][0]["step"] == "generate"
    again = api.post("/campaigns/aria-voice/rounds")
    assert again.status_code == 409 and "rounds never overlap" in again.json()["errors"]["round"]


# --- rounds ------------------------------------------------------------------------------------


def test_rounds_never_overlap_whoever_starts_them(pool):
    campaign = create(pool, trigger="continuous")
    first = services.round_start(campaign=campaign)
    with pytest.raises(ValidationError, match="rounds never overlap"):
        services.round_start(campaign=campaign)
    assert runner.advance(campaign.pk).startswith("round 1: generate run")  # the trigger opens nothing more
    with pytest.raises(IntegrityError), transaction.atomic():  # and the database holds to one open round
        CampaignRound.objects.create(campaign=campaign, number=2, parent_version=first.parent_version)
    assert campaign.rounds.count() == 1


@pytest.fixture
def queue(transactional_db):
    """The run's own worker threads write: a transactional database, and a queue emptied of the
    messages the round's commits leave (nobody consumes them here; the runs execute in-test)."""
    from huey.contrib.djhuey import HUEY

    HUEY.flush()
    yield HUEY
    HUEY.flush()


def _generated(campaign) -> CampaignRound:
    runner.advance(campaign.pk)  # queues the round's generate run; it runs here
    rnd = campaign.rounds.get()
    assert execute(rnd.generate_run_id, backend=InProcessBackend(TINY_MODEL)) == PipelineRun.Status.SUCCEEDED
    return rnd


def test_a_round_routes_a_share_to_reviewers_calibrates_freezes_and_trains(queue, pool, client, reviewer, token_of):
    campaign = create(pool, policy={**SMALL, "calibration_min_pairs": 4})
    services.round_start(campaign=campaign)
    rnd = _generated(campaign)
    groups = Group.objects.filter(run=rnd.generate_run)
    assert groups.count() == 6 and set(groups.values_list("overlap_target", flat=True)) == {0}  # closed until routed
    said = runner.advance(campaign.pk)
    rnd.refresh_from_db()
    routed = {int(g) for g in rnd.routing["groups"]}
    assert rnd.step == "review" and 3 <= len(routed) <= 5, (said, rnd.routing)  # half by the rules, a fifth audited
    assert set(rnd.routing["groups"].values()) <= {"no_spread", "rules_disagree", "uncertain", "audit"}
    assert set(groups.filter(overlap_target=1).values_list("pk", flat=True)) == routed
    assert "waiting for reviewers (0 of" in runner.advance(campaign.pk)

    reviewed = scripted_review(
        Api(client, token_of(reviewer)), lambda completion, c: 5 if "Aria" in completion["text"] else 1
    )
    assert reviewed == len(routed)  # the queue offered the routed groups, and only those
    said = runner.advance(campaign.pk)
    rnd.refresh_from_db()
    assert rnd.step == "train" and rnd.train_run is not None, said
    assert rnd.routing["reviewed"] == len(routed) and not rnd.routing["deadline_passed"]
    voice = rnd.calibration["voice"]
    assert voice["n"] == 2 * len(routed) and voice["calibrated"] and len(voice["table"]) == 5
    assert rnd.dataset_version.kind == DatasetVersion.Kind.GRPO_PROMPTS and rnd.dataset_version.row_count == 6
    spec = rnd.train_run.params["rubric_spec"]
    assert [c.get("calibration", {}).get("table") for c in spec["criteria"]] == [None, voice["table"]]
    assert set(rnd.stages) == {"generate", "review", "calibrate", "freeze"}
    assert "waiting for train run" in runner.advance(campaign.pk)  # nobody trains in this test


def test_a_judge_the_reviewers_disagree_with_pauses_the_campaign_before_it_trains(
    queue, pool, client, reviewer, token_of
):
    rubric = catalogue_services.rubric_create(
        data=RubricIn(
            slug="voice-weighed",
            name="Voice, weighed",
            criteria=[
                CriterionIn(key="name", description="names herself", scale_min=0, scale_max=1, rule={"kind": "regex", "pattern": "Aria"}),
                CriterionIn(key="voice", description="Sounds like a harbour pilot", scale_min=1, scale_max=5, weight=1),
            ],
        )
    )  # fmt: skip
    policy = {**SMALL, "prompts_per_round": 10, "review_share": 1.0, "audit_share": 0.0, "calibration_min_pairs": 4, "min_agreement": 0.5}  # fmt: skip
    campaign = create(pool, rubric=rubric, policy=policy)
    services.round_start(campaign=campaign)
    rnd = _generated(campaign)
    runner.advance(campaign.pk)
    judge = {
        j.generation_id: j.scores.get(criterion__key="voice").score
        for j in Judgment.objects.filter(generation__group__run=rnd.generate_run, source="judge", status="ok")
    }
    if len(set(judge.values())) > 1:  # the judge, reversed: the best monotone fit is a flat line
        score = lambda completion, c: 6 - judge.get(completion["generation"], 3)  # noqa: E731
    else:  # a judge that says one thing of every answer: reviewers who tell them apart
        flip = iter(range(10**6))
        score = lambda completion, c: 1 if next(flip) % 2 else 5  # noqa: E731
    # Either way the fit is one flat line at the reviewers' mean: alpha 1/(2n) on n completions.
    scripted_review(Api(client, token_of(reviewer)), score)
    said = runner.advance(campaign.pk)
    campaign.refresh_from_db()
    rnd.refresh_from_db()
    assert campaign.status == "paused" and rnd.step == "calibrate" and rnd.train_run is None, (said, rnd.calibration)
    voice = rnd.calibration["voice"]
    assert voice["calibrated"] and voice["alpha_calibrated"] == pytest.approx(1 / (2 * voice["n"]), abs=1e-4), voice
    assert "agreement on criterion 'voice'" in campaign.status_reason and "min_agreement 0.5" in campaign.status_reason
    assert DatasetVersion.objects.count() == 0  # nothing frozen, nothing trained
    services.campaign_resume(campaign=campaign)  # the check runs again, on the same scores
    runner.advance(campaign.pk)
    campaign.refresh_from_db()
    assert campaign.status == "paused" and "agreement" in campaign.status_reason


def test_the_pages_escape_what_they_show_and_act_with_the_same_checks(pool, admin_client, reviewer):
    create(pool, name="Aria <script>alert(1)</script>")
    listing = admin_client.get("/campaigns/").content.decode()
    assert "Aria &lt;script&gt;alert(1)&lt;/script&gt;" in listing and "<script>alert" not in listing
    as_reviewer = Client()
    as_reviewer.force_login(reviewer)
    assert as_reviewer.get("/campaigns/").status_code == 403  # admins only
    started = admin_client.post("/campaigns/aria-voice/action", {"action": "round"}, follow=True).content.decode()
    assert "Round 1 started." in started and 'id="round-1"' in started and "at <strong>generate</strong>" in started
    again = admin_client.post("/campaigns/aria-voice/action", {"action": "round"}, follow=True).content.decode()
    assert "rounds never overlap" in again and CampaignRound.objects.count() == 1
    paused = admin_client.post("/campaigns/aria-voice/action", {"action": "pause"}, follow=True).content.decode()
    assert 'id="campaign-status">paused<' in paused and "paused by ada" in paused


def _round_one_promoted(campaign) -> CampaignRound:
    """Round 1 as if it had run and promoted (its steps are other tests')."""
    first = services.round_start(campaign=campaign)
    CampaignRound.objects.filter(pk=first.pk).update(
        step="done", outcome="promoted", finished_at=timezone.now(), started_at=timezone.now() - timedelta(hours=2)
    )
    first.refresh_from_db()
    return first


def test_the_reviews_trigger_opens_the_next_round_once_enough_groups_were_reviewed_since(pool, reviewer):
    campaign = create(pool, trigger="reviews", policy={**SMALL, "trigger_reviews": 2})
    first = _round_one_promoted(campaign)
    assert runner.advance(campaign.pk) == "waiting for reviews: 0 of 2 groups reviewed since round 1 began"
    run = PipelineRun.objects.create(kind="generate", character=pool["character"], prompt_set=pool["prompt_set"])
    for prompt in pool["prompt_set"].prompts.order_by("pk")[:2]:
        group = Group.objects.create(run=run, prompt=prompt, character=pool["character"], size=1)
        generation = Generation.objects.create(group=group, index=0, messages=[], text="Aria here.", run=run)
        Judgment.objects.create(
            generation=generation, rubric=pool["rubric"], source="human", reviewer=reviewer, overall=1.0
        )
    assert runner.advance(campaign.pk).startswith("round 2: generate run")
    assert campaign.rounds.get(number=2).parent_version == first.parent_version  # the current version


def test_the_schedule_trigger_waits_for_its_time_and_no_trigger_runs_past_the_planned_rounds(pool):
    campaign = create(pool, trigger="schedule", rounds=2, policy={**SMALL, "trigger_every_s": 3 * 3600})
    first = _round_one_promoted(campaign)
    assert runner.advance(campaign.pk).startswith("next round due at ")
    CampaignRound.objects.filter(pk=first.pk).update(started_at=timezone.now() - timedelta(hours=4))
    assert runner.advance(campaign.pk).startswith("round 2: generate run")
    CampaignRound.objects.filter(campaign=campaign, number=2).update(
        step="done", outcome="promoted", finished_at=timezone.now()
    )
    assert runner.advance(campaign.pk) == "every planned round has run"
    with pytest.raises(ValidationError, match="all 2 planned rounds have run"):
        services.round_start(campaign=campaign)


def test_a_step_that_fails_pauses_the_campaign_saying_why_and_leaves_nothing_half_made(queue, pool, monkeypatch):
    campaign = create(pool)
    services.round_start(campaign=campaign)
    rnd = _generated(campaign)

    def broken(rnd):
        Group.objects.filter(run=rnd.generate_run).update(overlap_target=1)  # a write, then the fault
        raise RuntimeError("the routing table is on fire")

    monkeypatch.setattr(runner.routing, "route", broken)
    said = runner.advance(campaign.pk)
    campaign.refresh_from_db()
    rnd.refresh_from_db()
    assert campaign.status == "paused" and said.startswith("paused: round 1, step generate failed: RuntimeError")
    assert rnd.step == "generate" and rnd.routing == {}
    assert set(Group.objects.filter(run=rnd.generate_run).values_list("overlap_target", flat=True)) == {0}
    monkeypatch.undo()
    services.campaign_resume(campaign=campaign)
    runner.advance(campaign.pk)
    rnd.refresh_from_db()
    assert rnd.step == "review" and rnd.routing["groups"]  # resumed at its step, and went on


def test_a_failed_run_pauses_the_campaign_and_resume_queues_it_again(pool):
    campaign = create(pool)
    services.round_start(campaign=campaign)
    runner.advance(campaign.pk)
    rnd = campaign.rounds.get()
    PipelineRun.objects.filter(pk=rnd.generate_run_id).update(
        status="failed", errors=[{"item": None, "error": "BackendUnavailable", "message": "triton is down"}]
    )
    said = runner.advance(campaign.pk)
    campaign.refresh_from_db()
    assert campaign.status == "paused" and "generate run" in said and "(triton is down)" in campaign.status_reason
    services.campaign_resume(campaign=campaign)
    assert PipelineRun.objects.get(pk=rnd.generate_run_id).status == "queued"  # resumed with the campaign
    assert runner.advance(campaign.pk).startswith("round 1: waiting for generate run")


def test_a_round_whose_prompt_set_name_is_taken_is_refused_and_makes_nothing(pool):
    campaign = create(pool, trigger="continuous")
    PromptSet.objects.create(slug="aria-voice-r1", name="someone else's")
    with pytest.raises(ValidationError, match="prompt set aria-voice-r1, and one exists: rename it"):
        services.round_start(campaign=campaign)
    assert campaign.rounds.count() == 0 and campaign.status == "active"
