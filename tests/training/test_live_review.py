"""Reviewers inside the RL step, with real parts: a GRPO train run on the tiny model sends a
share of each step's groups to the review queue, a reviewer scores them through the reviewer
API while the step waits, their scores become those groups' rewards, and the run records per
step how many groups people scored and how long the step waited."""

import threading
import time

import pytest
from django.core.exceptions import ValidationError

from inference.versions import train_runs
from labelling.access import tokens
from labelling.catalogue import services as catalogue_services
from labelling.catalogue.schemas import CriterionIn, RubricIn
from labelling.datasets import services as dataset_services
from labelling.models import GeneratorVersion, Group, PipelineRun
from labelling.versions.training import services as training_services
from tests.api.test_api import Api
from tests.campaigns.conftest import scripted_review
from tests.training.conftest import NAME_RULE, generated

pytestmark = [pytest.mark.triton, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def _dataset(kind, run):
    return dataset_services.dataset_build(dataset="voiced", kind=kind, filter={"runs": [run.pk], "rubric": "voiced"})


@pytest.fixture
def voiced(aria):
    rubric = catalogue_services.rubric_create(
        data=RubricIn(
            slug="voiced",
            name="Says her name, in voice",
            criteria=[
                CriterionIn(key="name", description="Aria names herself", scale_min=0, scale_max=1, rule=NAME_RULE),
                CriterionIn(key="voice", description="Sounds like a harbour pilot", scale_min=1, scale_max=5, weight=1),
            ],
        )
    )  # the judge scores voice, and it moves the reward
    return {**aria, "rubric": rubric}


def test_a_grpo_step_waits_for_reviewers_and_rewards_their_groups_from_their_scores(
    voiced, versioned_triton, client, reviewer
):
    judged = generated(voiced, voiced["train"], version=1, group_size=2)
    with pytest.raises(ValidationError, match="GRPO mode"):
        training_services.train_start(
            dataset_version=_dataset("sft", judged),
            method="sft",
            live_review={"share": 0.5, "deadline_s": 5},
            enqueue=False,
        )
    run, _ = training_services.train_start(
        dataset_version=_dataset("grpo_prompts", judged),
        method="grpo",
        rubric=voiced["rubric"],
        params={"steps": 3, "num_generations": 4, "per_device_batch_size": 8},
        live_review={"share": 0.5, "deadline_s": 20},
        enqueue=False,
    )
    outcome = {}
    trainer = threading.Thread(target=lambda: outcome.setdefault("status", train_runs.execute(run.pk)))
    trainer.start()
    reviewing = Api(client, tokens.token_create(user=reviewer, name="live")[1])
    reviewed = 0
    deadline = time.monotonic() + 300
    while trainer.is_alive() and time.monotonic() < deadline:
        reviewed += scripted_review(reviewing, lambda completion, c: 5 if "Aria" in completion["text"] else 1)
        time.sleep(0.2)
    trainer.join(60)
    run.refresh_from_db()
    assert outcome.get("status") == "succeeded", (run.errors, outcome)
    log = run.params["live_review_log"]
    assert [entry["step"] for entry in log] == [1, 2, 3]
    assert all(entry["groups"] == 2 and entry["sent"] == 1 for entry in log)  # 8 rollouts: 2 prompts x 4
    assert sum(entry["human"] for entry in log) >= 2, log  # people scored the step's group in time
    assert all(entry["waited_s"] < 25 for entry in log)
    live = PipelineRun.objects.filter(params__live_review_of=run.pk)
    # One run of live groups a step, served ahead of the queue's older groups (the reviewer also
    # took the generate run's own groups when no step was waiting).
    assert live.count() == 3 and Group.objects.filter(run__in=live, review_count__gte=1).count() == 3
    assert GeneratorVersion.objects.get(train_run=run).status == "ready"
    # Nothing stays open for reviewers once its step has gone on.
    assert not Group.objects.filter(run__in=live, review_count=0, overlap_target__gt=0).exists()
