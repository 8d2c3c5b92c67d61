"""A short campaign with real parts: a huey consumer moves the rounds, a training consumer
trains, tritonserver serves every version, and a scripted reviewer scores the routed groups
through the reviewer API while the campaign runs. Two rounds of GRPO on the tiny model; the
pipeline consumer is killed mid-round, and the next one goes on from the round's step."""

import html
import subprocess
import sys
import time

import pytest

from inference.triton_server import model_versions_ready
from labelling.campaigns import services
from labelling.models import CampaignRound, Evaluation, GeneratorVersion, PipelineRun
from tests.api.test_api import Api
from tests.campaigns.conftest import ROUND_LINE, scripted_review
from tests.pipelines.conftest import ROOT, Consumer, worker_env
from tests.training.conftest import TRAIN_WORKER

pytestmark = [pytest.mark.triton, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

# The shaping loop test's settings: the tiny model learns to say her name at this rate.
TRAINING = {"steps": 40, "seed": 3, "learning_rate": 2.5e-3}


def test_a_campaign_runs_its_rounds_unattended_and_resumes_after_its_worker_dies(
    pool,
    versioned_triton,
    settings,
    tmp_path,
    client,
    reviewer,
    token_of,  # noqa: F811
):
    from huey.contrib.djhuey import HUEY

    from inference.train_queue import TRAIN_HUEY

    HUEY.flush()
    TRAIN_HUEY.flush()
    env = {
        **worker_env(versioned_triton.url),
        "TRITON_REPOSITORY": str(settings.TRITON_REPOSITORY),
        "DATA_DIR": str(settings.DATA_DIR),
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "CAMPAIGN_POLL_S": "0.5",
    }
    campaign = services.campaign_create(
        slug="aria-voice",
        name="Aria's voice",
        character=pool["character"],
        rubric=pool["rubric"],
        prompt_set=pool["prompt_set"],
        held_out=0.3,
        trigger="continuous",
        rounds=2,
        policy={
            "prompts_per_round": 10,
            "group_size": 2,
            "max_tokens": 16,
            "temperature": 1.0,
            "review_share": 0.3,
            "audit_share": 0.2,
            "calibration_min_pairs": 4,
            "training": TRAINING,
            "completions_per_prompt": 4,
        },
    )
    logs = [tmp_path / "huey-1.log", tmp_path / "huey-2.log", tmp_path / "train.log"]
    pipeline = Consumer(env, logs[0]).start()
    trainer = Consumer(env, logs[2], TRAIN_WORKER).start()
    # docs/campaigns.md's command, as a user runs it: it starts round 1, waits, prints each round.
    command = subprocess.Popen(
        [sys.executable, "manage.py", "campaign", "run", "aria-voice", "--timeout", "900"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    reviewing = Api(client, token_of(reviewer))
    restarted = False
    try:
        deadline = time.monotonic() + 900
        while command.poll() is None:
            assert time.monotonic() < deadline, [log.read_text()[-3000:] for log in logs if log.exists()]
            scripted_review(reviewing, lambda completion, c: 5 if "Aria" in completion["text"] else 1)
            first = campaign.rounds.filter(number=1).first()
            if not restarted and first is not None and first.step == CampaignRound.Step.TRAIN:
                pipeline.kill()  # mid-round: its polls die with it, the next consumer goes on
                pipeline = Consumer(env, logs[1]).start()
                restarted = True
            time.sleep(0.5)
    finally:
        if command.poll() is None:
            command.kill()
        pipeline.stop()
        trainer.stop()
    printed = command.stdout.read().splitlines()
    campaign.refresh_from_db()
    tails = "\n".join(f"--- {log.name}\n{log.read_text()[-3000:]}" for log in logs if log.exists())
    assert restarted, tails
    print("\n".join(printed))
    assert [ROUND_LINE.fullmatch(line) is not None for line in printed[:2]] == [True, True], printed
    assert printed[2].startswith(f"campaign aria-voice: {campaign.status}: ")
    assert command.returncode == (0 if campaign.status == "finished" else 1)

    rounds = list(campaign.rounds.order_by("number"))
    body = Api(client, token_of(pool["admin"])).get("/campaigns/aria-voice").json()
    for r in body["figures"]["rounds"]:
        print(r["number"], r["outcome"], r["win_rate"], r["calibration"], r["stages"])
    # Round 1: the tiny model learns to say her name, wins on held-out prompts, is promoted.
    one = rounds[0]
    assert (one.outcome, one.evaluation.candidate.number, one.evaluation.baseline.number) == ("promoted", 2, 1), (
        one.reason,
        tails,
    )
    assert GeneratorVersion.objects.get(number=2).is_current or rounds[-1].outcome == "promoted"
    assert one.evaluation.prompt_set == campaign.held_out and one.routing["reviewed"] >= 1
    assert one.calibration["voice"]["n"] >= 4 and set(one.stages) >= {"generate", "review", "train", "evaluate"}
    # Round 2 generated with version 2 and trained from it; the campaign ended by its rule.
    assert len(rounds) == 2 and rounds[1].parent_version.number == 2 and rounds[1].finished_at is not None
    assert PipelineRun.objects.get(pk=rounds[1].generate_run_id).params["generator_version"] == 2
    if rounds[1].outcome == "promoted":
        assert campaign.status == "finished" and GeneratorVersion.objects.get(is_current=True).number == 3
    else:  # an undecided or worse verdict stops the campaign, says why, and v2 stays current
        assert campaign.status == "stopped" and "promoted only when its verdict is better" in campaign.status_reason
        assert GeneratorVersion.objects.get(is_current=True).number == 2
    # Nothing made twice, whatever died: one generate run, one train run and one evaluation a round.
    assert PipelineRun.objects.filter(kind="train").count() == 2 and Evaluation.objects.count() == 2
    assert PipelineRun.objects.filter(params__campaign="aria-voice").count() == 2
    assert model_versions_ready(versioned_triton.url, "qwen3") == [1, 2, 3]
    # The API says what the page shows.
    assert [r["outcome"] for r in body["figures"]["rounds"]] == [r.outcome for r in rounds]
    assert body["figures"]["rounds"][0]["win_rate"]["low"] > 0.5
    client.force_login(pool["admin"])
    page = client.get("/campaigns/aria-voice/").content.decode()
    assert 'id="round-1"' in page and 'id="round-2"' in page and html.escape(one.reason) in page
    assert f"{body['figures']['rounds'][0]['win_rate']['estimate']:.3f}" in page
