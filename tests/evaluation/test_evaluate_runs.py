"""`POST /api/runs` with `kind: "evaluate"`: an evaluation, answered by its candidate's run;
the same Idempotency-Key is the same evaluation; refusals name the field and create nothing."""

import pytest

from labelling.access import tokens
from labelling.models import Evaluation, GeneratorVersion, PipelineRun
from labelling.versions.evaluation import services
from tests.api.test_api import Api

BODY = {"kind": "evaluate", "candidate": 2, "rubric": "voice", "prompt_set": "keeper"}


@pytest.fixture
def v2(world):
    return GeneratorVersion.objects.create(
        number=2, parent_id=GeneratorVersion.objects.get(number=1).pk, status="ready"
    )


@pytest.fixture
def api(client, admin_user):
    return Api(client, tokens.token_create(user=admin_user, name="tests")[1])


def test_an_evaluate_run_starts_an_evaluation_with_both_sides(api, admin_user, v2):
    response = api.post("/runs", {**BODY, "group_size": 3, "seed": 5, "max_tokens": 16, "human_pairs": 2})
    assert response.status_code == 201, response.content
    evaluation = Evaluation.objects.get()
    run = response.json()
    assert (run["id"], run["evaluation"], run["kind"], run["status"]) == (
        evaluation.candidate_run_id,
        evaluation.pk,
        "generate",
        "queued",
    )
    assert (evaluation.candidate.number, evaluation.baseline.number) == (2, 1)  # the candidate's parent
    assert evaluation.created_by == admin_user and evaluation.human_pairs == 2
    cand, base = evaluation.candidate_run, evaluation.baseline_run
    assert (cand.params["generator_version"], base.params["generator_version"]) == (2, 1)
    assert cand.group_size == base.group_size == 3
    assert cand.params["sampling"] == base.params["sampling"]
    assert (cand.params["sampling"]["seed"], cand.params["sampling"]["max_tokens"]) == (5, 16)
    # Either side names its evaluation; a run that is no side of one names none.
    assert api.get(f"/runs/{base.pk}").json()["evaluation"] == evaluation.pk
    listed = {r["id"]: r["evaluation"] for r in api.get("/runs").json()["items"]}
    assert listed == {
        cand.pk: evaluation.pk,
        base.pk: evaluation.pk,
        PipelineRun.objects.exclude(pk__in=(cand.pk, base.pk)).get().pk: None,
    }


def test_the_seed_defaults_to_the_evaluations_default(api, v2):
    assert api.post("/runs", BODY).status_code == 201
    assert Evaluation.objects.get().sampling["seed"] == services.DEFAULT_SEED


def test_max_tokens_defaults_to_the_evaluations_default_as_on_post_evaluations(api, v2):
    as_run = api.post("/runs", BODY)
    as_evaluation = api.post("/evaluations", {k: v for k, v in BODY.items() if k != "kind"})
    assert (as_run.status_code, as_evaluation.status_code) == (201, 201), (as_run.content, as_evaluation.content)
    expected = services.DEFAULT_SAMPLING["max_tokens"]
    assert expected == 64
    for evaluation in Evaluation.objects.all():
        assert evaluation.sampling["max_tokens"] == expected
        assert evaluation.candidate_run.params["sampling"]["max_tokens"] == expected
    # A generate run keeps its own default.
    generate = api.post("/runs", {"kind": "generate", "character": "mira", "prompt_set": "keeper", "rubric": "voice"})
    assert PipelineRun.objects.get(pk=generate.json()["id"]).params["sampling"]["max_tokens"] == 128


def test_the_same_idempotency_key_returns_the_same_evaluation(api, v2):
    first = api.post("/runs", BODY, headers={"Idempotency-Key": "eval-v2"})
    again = api.post("/runs", BODY, headers={"Idempotency-Key": "eval-v2"})
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"] and first.json()["evaluation"] == again.json()["evaluation"]
    assert (
        Evaluation.objects.count() == 1
        and PipelineRun.objects.filter(params__evaluation_side__isnull=False).count() == 2
    )


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({**BODY, "baseline": 2}, "baseline", "another version"),
        ({**BODY, "candidate": 7}, "candidate", "there is no version 7"),
        ({**BODY, "prompt_set": "nope"}, "prompt_set", "no prompt set 'nope'"),
    ],
)
def test_refusals_are_400s_naming_the_field_and_create_nothing(api, v2, body, field, message):
    runs = PipelineRun.objects.count()
    response = api.post("/runs", body)
    assert response.status_code == 400, response.content
    assert message in response.json()["errors"][field]
    assert (PipelineRun.objects.count(), Evaluation.objects.count()) == (runs, 0)


@pytest.mark.parametrize("field", ["candidate", "rubric"])
def test_an_evaluate_body_without_what_it_needs_is_a_422_naming_it(api, v2, field):
    runs = PipelineRun.objects.count()
    response = api.post("/runs", {k: v for k, v in BODY.items() if k != field})
    assert response.status_code == 422, response.content
    assert response.json()["errors"] == {field: "Field required"}
    assert (PipelineRun.objects.count(), Evaluation.objects.count()) == (runs, 0)
