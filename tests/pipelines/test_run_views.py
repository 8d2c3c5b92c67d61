"""Runs from the browser: admins start, watch, cancel and resume runs; reviewers cannot."""

import pytest
from django.urls import reverse

from labelling.models import PipelineRun


@pytest.fixture
def demo_rows(demo):
    from labelling.models import Character, PromptSet, Rubric

    return (
        Character.objects.get(slug="aria"),
        PromptSet.objects.get(slug="aria-demo"),
        Rubric.objects.get(slug="aria-voice"),
    )


def form(rows, **extra):
    character, prompt_set, rubric = rows
    data = {
        "kind": "generate",
        "character": character.pk,
        "prompt_set": prompt_set.pk,
        "rubric": rubric.pk,
        "group_size": "4",
        "max_tokens": "16",
        "threshold": "0.5",
        "max_rounds": "1",
        "idempotency_key": "form-1",
    }
    data.update(extra)
    return data


def test_an_admin_starts_a_run_once_per_form(admin_client, demo_rows, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):  # queueing is the consumer's business
        first = admin_client.post(reverse("run_new"), form(demo_rows))
        again = admin_client.post(reverse("run_new"), form(demo_rows))
    run = PipelineRun.objects.get(kind="generate")
    assert first.status_code == again.status_code == 302
    assert first.url == again.url == reverse("run_detail", args=[run.pk])
    assert run.params["sampling"] == {"max_tokens": 16} and run.group_size == 4
    page = admin_client.get(first.url)
    assert page.status_code == 200 and f'ws-connect="/ws/live/?run={run.pk}"' in page.content.decode()


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"character": ""}, "character", "needs a character"),
        ({"group_size": "0"}, "group_size", "between 1 and 16"),
        ({"max_tokens": "many"}, "max_tokens", "a number is required"),
        ({"rubric": "999999"}, "rubric", "no such rubric"),
        ({"kind": "train"}, "kind", "not a pipeline kind"),
    ],
)
def test_a_bad_form_says_what_is_wrong_and_starts_nothing(admin_client, demo_rows, change, field, message):
    response = admin_client.post(reverse("run_new"), form(demo_rows, **change))
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not PipelineRun.objects.filter(kind="generate").exists()


def test_reviewers_cannot_start_or_steer_runs(reviewer_client, demo_rows):
    assert reviewer_client.get(reverse("run_new")).status_code == 403
    assert reviewer_client.post(reverse("run_new"), form(demo_rows)).status_code == 403
    assert not PipelineRun.objects.filter(kind="generate").exists()


def test_resuming_a_finished_run_is_refused_with_a_message(admin_client, demo_rows):
    character, prompt_set, rubric = demo_rows
    run = PipelineRun.objects.create(
        kind="generate", character=character, prompt_set=prompt_set, status=PipelineRun.Status.SUCCEEDED
    )
    response = admin_client.post(reverse("run_resume", args=[run.pk]), follow=True)
    assert "is succeeded; only failed, partial, cancelled or stalled runs resume" in response.content.decode()
    run.refresh_from_db()
    assert run.status == PipelineRun.Status.SUCCEEDED


def test_inference_health_shows_each_model(admin_client, settings, triton_url):
    from inference.serving import reset_backend

    settings.TRITON_URL = triton_url
    reset_backend()
    try:
        html = admin_client.get(reverse("inference_health")).content.decode()
    finally:
        reset_backend()
    assert 'class="health ok"' in html and "not ready" not in html
    assert "qwen3 ✓" in html and "judge ✓" in html and "✗" not in html
    # Each model's batching engine: sequences decoding of its batch, requests queued.
    assert "qwen3: batch 0/16, queue 0" in html and "judge: batch 0/16, queue 0" in html


def test_inference_health_says_when_triton_is_down(admin_client, settings):
    from inference.serving import reset_backend
    from inference.triton_server import free_port

    settings.TRITON_URL = f"127.0.0.1:{free_port()}"
    reset_backend()
    try:
        html = admin_client.get(reverse("inference_health")).content.decode()
    finally:
        reset_backend()
    assert "not ready" in html and "cannot reach Triton" in html


def test_an_admin_designs_characters_from_a_concept(admin_client, demo_rows, django_capture_on_commit_callbacks):
    _, _, rubric = demo_rows
    data = {
        "concept": "a cartographer who is afraid of heights",
        "count": "3",
        "sheet_max_tokens": "4000",
        "sheet_rubric": rubric.pk,
        "idempotency_key": "sheets-1",
    }
    with django_capture_on_commit_callbacks(execute=False):
        first = admin_client.post(reverse("sheet_run_new"), data)
        again = admin_client.post(reverse("sheet_run_new"), data)
    run = PipelineRun.objects.get(params__output="sheet")
    assert first.status_code == again.status_code == 302 and first.url == reverse("run_detail", args=[run.pk])
    assert run.group_size == 3 and run.rubric == rubric and run.params["sampling"]["guidance_type"] == "json_schema"
    assert run.params["sampling"]["max_tokens"] == 4000


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"concept": "  "}, "describe the character"),
        ({"count": "40"}, "between 1 and 16"),
        ({"sheet_rubric": "999999"}, "no such rubric"),
        ({"sheet_max_tokens": "512"}, "between"),  # too few for the longest guided sheet to close
    ],
)
def test_a_bad_design_form_says_what_is_wrong_and_starts_nothing(admin_client, demo, change, message):
    data = {"concept": "a baker", "count": "2", "sheet_max_tokens": "4000", **change}
    response = admin_client.post(reverse("sheet_run_new"), data)
    assert response.status_code == 400 and message in response.content.decode()
    assert not PipelineRun.objects.filter(params__output="sheet").exists()


def test_puzzles_uploaded_in_the_browser_become_a_prompt_set_to_run(admin_client, demo):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from labelling.models import PromptSet
    from tests.characters.test_puzzles import SAMPLE

    upload = SimpleUploadedFile(SAMPLE.name, SAMPLE.read_bytes())
    response = admin_client.post(reverse("puzzles_new"), {"puzzles": upload, "puzzle_set": "houses"})
    prompt_set = PromptSet.objects.get(slug="houses")
    assert response.status_code == 302 and response.url == f"{reverse('run_new')}?prompt_set={prompt_set.pk}"
    assert prompt_set.prompts.count() == 5
    page = admin_client.get(response.url).content.decode()
    assert f'<option value="{prompt_set.pk}" selected>' in page and "5 decision prompts imported" in page


def test_a_bad_puzzle_file_names_the_line_and_imports_nothing(admin_client, demo):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from labelling.models import PromptSet

    bad = b'{"id": "a", "prompt": "p", "layout": "k: (1,1)(2,2)(3,3)"}\n{"id": "b", "prompt": "p"}\n'
    response = admin_client.post(
        reverse("puzzles_new"), {"puzzles": SimpleUploadedFile("bad.jsonl", bad), "puzzle_set": "bad"}
    )
    body = response.content.decode()
    assert response.status_code == 400 and "bad.jsonl" in body and "layout" in body and "nothing imported" in body
    assert not PromptSet.objects.filter(slug="bad").exists()
    missing = admin_client.post(reverse("puzzles_new"), {"puzzle_set": "bad"})
    assert missing.status_code == 400 and "choose an Architext JSONL file" in missing.content.decode()
