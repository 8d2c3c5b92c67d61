"""What a script driving the loop reads: a train run's per-step progress and the reward weights
its trainer used (`GET /api/runs/{id}`, `GET /api/model-versions/{n}`), and the model version
that wrote each completion (`GET /api/generations`)."""

import pytest

from inference.versions.training import rewards
from labelling.access import tokens
from labelling.catalogue import services as catalogue_services
from labelling.catalogue.schemas import CriterionIn, RubricIn
from labelling.datasets import services as dataset_services
from labelling.models import GeneratorVersion, PromptSet
from labelling.records import services as record_services
from labelling.versions.generators import selectors as generator_selectors
from labelling.versions.training import selectors as training_selectors
from labelling.versions.training import services as training_services
from tests.api.test_api import Api
from tests.factories import generate_run


@pytest.fixture
def api(client, admin_user):
    return Api(client, tokens.token_create(user=admin_user, name="tests")[1])


@pytest.fixture
def grpo_prompts(world, media):
    return dataset_services.dataset_build(
        dataset="mira", kind="grpo_prompts", filter={"runs": [world["run"].pk], "rubric": "voice"}
    )


def _signed_rubric():
    """A rule criterion (weight 3), two judged ones (weights 1 and 0.5) and one of weight 0."""
    return catalogue_services.rubric_create(
        data=RubricIn(
            slug="signed",
            name="Signed",
            criteria=[
                CriterionIn(key="name", description="names herself", scale_min=0, scale_max=1, weight=3,
                            rule={"kind": "regex", "pattern": "Mira"}),
                CriterionIn(key="voice", description="in voice", weight=1),
                CriterionIn(key="calm", description="calm", weight=0.5),
                CriterionIn(key="aside", description="recorded only", weight=0),
            ],
        )
    )  # fmt: skip


def test_a_train_runs_detail_carries_the_steps_its_page_draws(api, grpo_prompts, world):
    run, _ = training_services.train_start(
        dataset_version=grpo_prompts, method="grpo", params={"steps": 3}, enqueue=False
    )
    assert api.get(f"/runs/{run.pk}").json()["training"]["steps"] == []  # the trainer is loading
    for step, loss in ((1, 0.9), (2, 0.7)):
        training_services.training_step_record(
            run_id=run.pk, step=step, metrics={"loss": loss, "reward_mean": step / 4, "kl": None, "learning_rate": 1e-5}
        )
    body = api.get(f"/runs/{run.pk}").json()
    training = body["training"]
    assert (training["version"], training["method"], training["dataset"], training["max_steps"]) == (
        2,
        "grpo",
        "mira@1",
        3,
    )
    assert training["steps"] == training_selectors.training_curve(run.pk)  # the numbers the chart draws
    assert [(s["step"], s["loss"], s["reward_mean"], s["kl"]) for s in training["steps"]] == [
        (1, 0.9, 0.25, None),
        (2, 0.7, 0.5, None),
    ]
    # The rubric's one criterion is judge-scored: one function, the whole weight.
    assert training["reward_weights"] == [{"function": "judge", "criteria": ["voice"], "weight": 1.0, "derived": True}]
    assert run.params["training"]["reward_weights"] is None  # what was recorded: "derive them"
    assert api.get("/model-versions/2").json()["reward_weights"] == training["reward_weights"]

    assert api.get(f"/runs/{world['run'].pk}").json()["training"] is None  # not a train run
    assert "training" not in api.get("/runs").json()["items"][0]  # lists stay light


def test_the_reward_weights_are_the_ones_the_trainer_uses(api, grpo_prompts):
    rubric = _signed_rubric()
    run, _ = training_services.train_start(
        dataset_version=grpo_prompts, method="grpo", rubric=rubric, params={"steps": 2}, enqueue=False
    )
    plan = rewards.plan(run.params["rubric_spec"], triton_url="127.0.0.1:1", reward_weights=None)
    weights = api.get(f"/runs/{run.pk}").json()["training"]["reward_weights"]
    assert [w["function"] for w in weights] == plan.names == ["rule_name", "judge"]
    assert [w["weight"] for w in weights] == plan.weights == pytest.approx([3 / 4.5, 1.5 / 4.5], abs=1e-6)
    assert [w["criteria"] for w in weights] == [["name"], ["voice", "calm"]]

    given, _ = training_services.train_start(
        dataset_version=grpo_prompts,
        method="grpo",
        rubric=rubric,
        params={"steps": 2, "reward_weights": [1, 2]},
        enqueue=False,
    )
    weights = api.get(f"/runs/{given.pk}").json()["training"]["reward_weights"]
    assert [(w["weight"], w["derived"]) for w in weights] == [(1.0, False), (2.0, False)]
    planned = rewards.plan(given.params["rubric_spec"], triton_url="127.0.0.1:1", reward_weights=[1, 2])
    assert [w["weight"] for w in weights] == planned.weights


def test_dpo_and_sft_have_no_reward_functions(world, media):
    sft = dataset_services.dataset_build(
        dataset="mira", kind="sft", filter={"runs": [world["run"].pk], "rubric": "voice"}
    )
    run, _ = training_services.train_start(dataset_version=sft, method="sft", params={"steps": 2}, enqueue=False)
    assert generator_selectors.reward_weights(run.params) is None


def test_each_completion_names_the_model_version_that_wrote_it(api, world):
    v1 = GeneratorVersion.objects.get(number=1)
    run = generate_run(
        character=world["run"].character, prompt_set=PromptSet.objects.get(slug="keeper"), rubric=world["rubric"]
    )
    producer = record_services.producer_get_or_create(backend="triton", generator=v1, sampling={"seed": 1})
    prompt = run.prompt_set.prompts.first()
    made = record_services.generation_record(
        group=record_services.group_for(run=run, prompt=prompt),
        index=0,
        messages=prompt.messages,
        producer=producer,
        run=run,
        raw_text="The lamp is lit.",
    )
    (item,) = api.get("/generations", run=run.pk).json()["items"]
    assert (item["id"], item["model_version"]) == (made.pk, 1)
    assert item["producer"] == {"backend": "triton", "endpoint": "", "model_name": "qwen3", "model_version": "1"}
    imported = api.get("/generations", run=world["run"].pk).json()["items"]
    assert imported and {(g["model_version"], g["producer"]) for g in imported} == {(None, None)}
    assert [g["id"] for g in api.get("/generations", model_version=1).json()["items"]] == [made.pk]
    assert api.get("/generations", model_version=2).json() == {"items": [], "count": 0}
    assert api.get("/generations", model_version=0).status_code == 422


def test_a_train_request_with_reviewers_inside_the_step_is_checked_and_recorded(api, grpo_prompts, world):
    from labelling.models import PipelineRun

    body = {"kind": "train", "dataset": "mira@1", "method": "grpo", "live_review": {"share": 0.5, "deadline_s": 30}}
    before = PipelineRun.objects.count()
    refused = api.post("/runs", {**body, "live_review": {"share": 0, "deadline_s": 30}})
    assert refused.status_code == 422 and "live_review" in str(refused.json()["errors"])
    refused = api.post("/runs", {**body, "live_review": {"share": 0.5, "deadline_s": 30, "when": "now"}})
    assert refused.status_code == 422 and PipelineRun.objects.count() == before
    made = api.post("/runs", body)  # the dataset's rubric: one judge criterion, all the weight
    assert made.status_code == 201, made.content
    assert PipelineRun.objects.get(pk=made.json()["id"]).params["live_review"] == {"share": 0.5, "deadline_s": 30.0}
