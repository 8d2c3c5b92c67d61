"""Runs that generate through one backend and judge through another: OpenAI-compatible endpoints
named in the settings, chosen per run from the form, the CLI and the API, and recorded on every
completion and judgment (Producer: backend, endpoint, served model, sampling)."""

import re
import shlex
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from inference.backends.openai import capabilities_of
from inference.endpoints import Endpoint, endpoints_from_env
from inference.serving import reset_backend
from inference.tasks import execute
from labelling.access import tokens
from labelling.models import Generation, Judgment, PipelineRun
from labelling.runs import services as run_services
from tests.api.test_api import Api
from tests.inference.openai_stub import Reply, Stub, text
from tests.openai_fixture import TINY_HF
from tests.pipelines.conftest import Consumer, wait_for, worker_env

FINAL = {PipelineRun.Status.SUCCEEDED, PipelineRun.Status.PARTIAL, PipelineRun.Status.FAILED}


@pytest.fixture(autouse=True)
def _fresh_backends():
    reset_backend()  # one backend per endpoint name per process: none left from another test
    yield
    reset_backend()


@pytest.fixture
def endpoints(settings):
    """Two endpoints in the settings (nothing listens there: nothing here sends a request)."""
    settings.OPENAI_ENDPOINTS = {
        name: Endpoint(name=name, url="http://127.0.0.1:9/v1", model=f"{name}-model")
        for name in ("vllm", "hosted_judge")
    }
    return settings.OPENAI_ENDPOINTS


# --- one run, two backends, end to end ----------------------------------------------------------


def test_a_run_generates_with_triton_and_judges_through_transformers_serve(
    story, huey_queue, triton_url, transformers_serve, settings, tmp_path
):
    settings.OPENAI_ENDPOINTS = {"tserve": transformers_serve.endpoint()}
    worker = Consumer({**worker_env(triton_url), **transformers_serve.env("tserve")}, tmp_path / "huey.log").start()
    try:
        character, prompt_set, rubric = story(1)
        run, _ = run_services.run_start(
            kind="generate",
            character=character,
            prompt_set=prompt_set,
            rubric=rubric,
            group_size=2,
            params={"sampling": {"max_tokens": 8}, "judge_endpoint": "tserve"},
        )
        run = wait_for(run, FINAL, timeout_s=240, log=worker.log)
    finally:
        worker.stop()
    assert run.status == PipelineRun.Status.SUCCEEDED, run.errors
    generations = list(Generation.objects.filter(run=run).select_related("producer__generator"))
    assert len(generations) == 2
    for generation in generations:
        made_by = generation.producer
        assert (made_by.backend, made_by.endpoint, made_by.model_name) == ("triton", "", "qwen3")
        assert made_by.generator.number == 1 and made_by.sampling["max_tokens"] == 8
    judgments = list(Judgment.objects.filter(run=run, source=Judgment.Source.JUDGE).select_related("producer"))
    assert sorted(j.generation_id for j in judgments) == sorted(g.pk for g in generations)
    for judgment in judgments:
        judged_by = judgment.producer
        assert (judged_by.backend, judged_by.endpoint, judged_by.model_name) == ("openai", "tserve", str(TINY_HF))
        assert judged_by.sampling == {"temperature": 0.0, "top_p": 1.0, "guidance": "none"}
        # No guidance on this server, random weights: the prose answer is kept as a failed judgment.
        assert judgment.status == Judgment.Status.FAILED and judgment.raw_output and "no score" in judgment.error


def test_an_endpoint_failing_one_item_fails_that_item_and_the_run_goes_on(story, settings):
    def respond(body, number):
        if "Question 1" in body["messages"][-1]["content"]:
            return Reply(raw=b"data: {not json\n\n")
        return text("Steady ", "light.")

    with Stub(respond) as stub:
        settings.OPENAI_ENDPOINTS = {"stub": Endpoint(name="stub", url=stub.url, model="stub-model", max_retries=0)}
        character, prompt_set, _ = story(3)
        run, _ = run_services.run_start(
            kind="generate",
            character=character,
            prompt_set=prompt_set,
            group_size=2,
            params={"sampling": {"max_tokens": 8}, "generator_endpoint": "stub"},
            enqueue=False,
        )
        assert "generator_version" not in run.params  # versions are Triton's
        assert execute(run.pk) == PipelineRun.Status.PARTIAL
    run.refresh_from_db()
    assert (run.done_items, run.failed_items) == (2, 1)
    (failure,) = run.errors
    assert failure["item"] == "prompt:p1" and failure["error"] == "InferenceError"
    assert "endpoint 'stub' (model 'stub-model'): malformed answer" in failure["message"]
    generations = Generation.objects.filter(run=run).select_related("producer")
    assert sorted(g.text for g in generations) == ["Steady light."] * 4
    assert {(g.producer.backend, g.producer.endpoint, g.producer.model_name) for g in generations} == {
        ("openai", "stub", "stub-model")
    }
    assert generations[0].producer.sampling["max_tokens"] == 8
    assert len(stub.requests) == 6  # a group of 2 is 2 requests: the server declares no `n`


# --- choosing endpoints: API, form, CLI ------------------------------------------------------------


def test_the_api_starts_a_run_naming_its_endpoints(client, admin_user, demo, endpoints):
    api = Api(client, tokens.token_create(user=admin_user, name="tests")[1])
    body = {
        "kind": "generate",
        "character": "aria",
        "prompt_set": "aria-demo",
        "rubric": "aria-voice",
        "generator_endpoint": "vllm",
        "judge_endpoint": "hosted_judge",
    }
    response = api.post("/runs", body)
    assert response.status_code == 201, response.content
    made = response.json()
    assert (made["generator_endpoint"], made["judge_endpoint"], made["generator_version"]) == (
        "vllm",
        "hosted_judge",
        None,
    )
    run = PipelineRun.objects.get(pk=made["id"])
    assert (run.params["generator_endpoint"], run.params["judge_endpoint"]) == ("vllm", "hosted_judge")


@pytest.mark.parametrize("field", ["generator_endpoint", "judge_endpoint"])
def test_the_api_refuses_an_unknown_endpoint_naming_the_field_and_the_configured_ones(
    client, admin_user, demo, endpoints, field
):
    api = Api(client, tokens.token_create(user=admin_user, name="tests")[1])
    before = PipelineRun.objects.count()
    body = {"kind": "generate", "character": "aria", "prompt_set": "aria-demo", field: "http://10.0.0.1:8000/v1"}
    response = api.post("/runs", body)
    assert response.status_code == 400, response.content
    message = response.json()["errors"][field]
    assert message == "no endpoint 'http://10.0.0.1:8000/v1' (configured: hosted_judge, vllm)"
    assert PipelineRun.objects.count() == before


def test_a_run_generating_through_an_endpoint_cannot_pin_a_model_version(client, admin_user, demo, endpoints):
    api = Api(client, tokens.token_create(user=admin_user, name="tests")[1])
    body = {"kind": "generate", "character": "aria", "prompt_set": "aria-demo", "generator_endpoint": "vllm"}
    response = api.post("/runs", {**body, "generator_version": 1})
    assert response.status_code == 400 and "generator_version" in response.json()["errors"]


def test_the_form_offers_the_configured_endpoints_only_when_there_are_some(admin_client, demo, settings):
    settings.OPENAI_ENDPOINTS = {}
    assert b'name="judge_endpoint"' not in admin_client.get(reverse("run_new")).content
    settings.OPENAI_ENDPOINTS = {"vllm": Endpoint(name="vllm", url="http://127.0.0.1:9/v1", model="m")}
    page = admin_client.get(reverse("run_new")).content.decode()
    assert '<select name="generator_endpoint">' in page and '<option value="vllm">vllm</option>' in page
    assert "127.0.0.1:9" not in page  # names only, never addresses


def test_the_form_starts_a_run_judged_through_an_endpoint(admin_client, demo, endpoints):
    from labelling.models import Character, PromptSet, Rubric

    data = {
        "kind": "generate",
        "character": Character.objects.get(slug="aria").pk,
        "prompt_set": PromptSet.objects.get(slug="aria-demo").pk,
        "rubric": Rubric.objects.get(slug="aria-voice").pk,
        "group_size": "2",
        "max_tokens": "16",
        "threshold": "0.5",
        "max_rounds": "1",
        "generator_endpoint": "",
        "judge_endpoint": "hosted_judge",
    }
    response = admin_client.post(reverse("run_new"), data)
    assert response.status_code == 302
    run = PipelineRun.objects.latest("id")
    assert run.params["judge_endpoint"] == "hosted_judge" and "generator_endpoint" not in run.params
    assert run.params["generator_version"] == 1  # generating with the bundled model, pinned as always
    refused = admin_client.post(reverse("run_new"), {**data, "judge_endpoint": "nowhere"})
    assert refused.status_code == 400 and b"no endpoint &#x27;nowhere&#x27;" in refused.content


def test_the_cli_starts_a_run_through_endpoints(demo, endpoints):
    call_command(
        "start_run",
        "--kind=generate",
        "--character=aria",
        "--prompt-set=aria-demo",
        "--generator-endpoint=vllm",
        "--judge-endpoint=hosted_judge",
    )
    run = PipelineRun.objects.latest("id")
    assert run.params["generator_endpoint"] == "vllm"
    assert run.params["judge_endpoint"] == "hosted_judge"
    with pytest.raises(CommandError, match=r"judge_endpoint: no endpoint 'gpt' \(configured: hosted_judge, vllm\)"):
        call_command(
            "start_run", "--kind=generate", "--character=aria", "--prompt-set=aria-demo", "--judge-endpoint=gpt"
        )


def test_generate_prints_completions_from_an_endpoint(transformers_serve, settings, capsys, db):
    settings.OPENAI_ENDPOINTS = {"tserve": transformers_serve.endpoint()}
    call_command("generate", "Where to?", "--endpoint", "tserve", "--n", "2", "--max-tokens", "4")
    assert capsys.readouterr().out.count("--- #") == 2
    with pytest.raises(
        CommandError, match=r"--endpoint: no endpoint 'vllm' is configured \(OPENAI_ENDPOINTS: tserve\)"
    ):
        call_command("generate", "Where to?", "--endpoint", "vllm")


def test_the_docs_configuration_and_command_work_as_written(demo, settings):
    doc = (Path(__file__).resolve().parents[2] / "docs" / "openai-endpoints.md").read_text()
    environ = dict(
        line.split("=", 1)
        for block in re.findall(r"^```env\n(.*?)^```$", doc, re.S | re.M)
        for line in block.splitlines()
    )
    endpoints = endpoints_from_env(environ)
    assert set(endpoints) == {"vllm", "judge"}
    assert capabilities_of(endpoints["vllm"]).judge_guidance == "regex"
    assert capabilities_of(endpoints["judge"]).judge_guidance == "json_schema"
    settings.OPENAI_ENDPOINTS = endpoints
    (command,) = re.findall(r"^ *```sh\n(.*?)^ *```$", doc, re.S | re.M)
    words = shlex.split(command)
    assert words[:2] == ["python", "manage.py"]
    call_command(*words[2:])
    run = PipelineRun.objects.latest("id")
    assert (run.params["generator_endpoint"], run.params["judge_endpoint"]) == ("vllm", "judge")
