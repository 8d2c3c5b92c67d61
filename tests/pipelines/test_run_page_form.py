"""The new-run form: each field says which kinds it belongs to (a deferred script shows only
the chosen kind's); without the script every field is there, and the server checks each kind."""

import re

from django.urls import reverse

from labelling.models import PipelineRun


def test_each_field_names_its_kinds_and_the_script_is_deferred(admin_client, db):
    html = admin_client.get(reverse("run_new")).content.decode()
    fields = re.findall(r'data-kinds="([a-z ]+)">\s*<label>[^<]*<(?:select|input)[^>]*name="([a-z_]+)"', html)
    kinds = {name: set(kinds.split()) for kinds, name in fields}
    assert kinds["character"] == kinds["prompt_set"] == kinds["group_size"] == {"generate"}
    assert kinds["source_run"] == {"judge", "revise"}
    assert kinds["rubric"] == {"generate", "judge", "revise"}
    assert kinds["threshold"] == kinds["max_tokens"] == {"generate", "revise"}
    assert '<script src="/static/js/run-form.js" defer></script>' in html
    assert "hidden" not in re.sub(r'type="hidden"', "", html.split('id="run-form"')[1].split("</form>")[0])


def test_a_judge_form_without_the_generate_fields_starts_a_judge_run(
    admin_client, world, django_capture_on_commit_callbacks
):
    # What a browser sends once the script has disabled the fields of other kinds.
    data = {
        "kind": "judge",
        "source_run": world["run"].pk,
        "rubric": world["rubric"].pk,
        "generator_version": "",
        "idempotency_key": "judge-1",
    }
    with django_capture_on_commit_callbacks(execute=False):
        response = admin_client.post(reverse("run_new"), data)
    run = PipelineRun.objects.get(kind="judge")
    assert response.status_code == 302 and run.source_run == world["run"] and run.character is None


def test_the_server_still_refuses_a_judge_run_without_its_source(admin_client, world):
    response = admin_client.post(reverse("run_new"), {"kind": "judge", "rubric": world["rubric"].pk})
    assert response.status_code == 400 and "a judge run needs a source run" in response.content.decode()
    assert not PipelineRun.objects.filter(kind="judge").exists()
