"""Idempotency keys are scoped to the user and the request: another user's same key starts another
run, the same key with another body is a 409 saying so, and a key too long to store is a 422
(never a 500, on PostgreSQL too). Persona by persona on the API; the forms and the services too."""

import pytest
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse

from labelling.access import tokens
from labelling.access.roles import ADMIN
from labelling.models import Character, PipelineRun, PromptSet, Rubric
from labelling.runs import idempotency
from labelling.runs import services as run_services
from tests.api.test_api import Api
from tests.conftest import _make_user

SHEETS = {"concept": "a lighthouse keeper who collects storms", "count": 2}
RUN = {"kind": "generate", "character": "aria", "prompt_set": "aria-demo", "group_size": 2}

# POST /api/runs hands run_start the caller's user once labelling/api/runs.py passes
# `user=request.user` (as POST /api/sheets does); until then its keys stay global.


def api_for(user) -> Api:
    return Api(Client(), tokens.token_create(user=user, name="tests")[1] if user else None)


@pytest.fixture
def other_admin(db):
    return _make_user("grace", ADMIN)


# --- personas -------------------------------------------------------------------------------


@pytest.mark.parametrize(("persona", "status"), [(None, 401), ("outsider", 403), ("reviewer", 403)])
@pytest.mark.parametrize("path", ["/sheets", "/runs"])
def test_only_an_admins_token_starts_a_run_under_a_key(request, demo, persona, status, path):
    user = request.getfixturevalue(persona) if persona else None
    body = SHEETS if path == "/sheets" else RUN
    response = api_for(user).post(path, body, headers={"Idempotency-Key": "k-1"})
    assert response.status_code == status and not PipelineRun.objects.filter(kind="generate").exists()


def test_the_same_key_and_body_from_the_same_admin_is_the_same_run(admin_user, db):
    api = api_for(admin_user)
    first = api.post("/sheets", SHEETS, headers={"Idempotency-Key": "sheets-1"})
    again = api.post("/sheets", SHEETS, headers={"Idempotency-Key": "sheets-1"})
    assert (first.status_code, again.status_code) == (201, 200) and first.json()["id"] == again.json()["id"]


def test_another_admins_same_key_starts_their_own_run(admin_user, other_admin, db):
    first = api_for(admin_user).post("/sheets", SHEETS, headers={"Idempotency-Key": "sheets-1"})
    theirs = api_for(other_admin).post("/sheets", SHEETS, headers={"Idempotency-Key": "sheets-1"})
    assert (first.status_code, theirs.status_code) == (201, 201)
    assert first.json()["id"] != theirs.json()["id"]
    assert PipelineRun.objects.get(pk=theirs.json()["id"]).created_by == other_admin


def test_the_same_key_with_another_body_is_a_409_that_says_so(admin_user, db):
    api = api_for(admin_user)
    first = api.post("/sheets", SHEETS, headers={"Idempotency-Key": "sheets-1"})
    changed = api.post("/sheets", {**SHEETS, "count": 3}, headers={"Idempotency-Key": "sheets-1"})
    assert first.status_code == 201 and changed.status_code == 409
    assert "already used for another request" in changed.json()["detail"]
    assert "idempotency_key" in changed.json()["errors"]
    assert PipelineRun.objects.filter(kind="generate").count() == 1


@pytest.mark.parametrize("path", ["/sheets", "/runs"])
def test_a_key_too_long_to_store_is_a_422_and_starts_nothing(admin_user, demo, path):
    body = SHEETS if path == "/sheets" else RUN
    response = api_for(admin_user).post(path, body, headers={"Idempotency-Key": "k" * 121})
    assert response.status_code == 422, response.content
    assert "at most 120 characters" in response.json()["errors"]["idempotency_key"]
    assert not PipelineRun.objects.filter(kind="generate").exists()


def test_a_key_of_the_longest_length_is_kept(admin_user, db):
    api = api_for(admin_user)
    first = api.post("/sheets", SHEETS, headers={"Idempotency-Key": "k" * 120})
    again = api.post("/sheets", SHEETS, headers={"Idempotency-Key": "k" * 120})
    assert (first.status_code, again.status_code) == (201, 200)


def test_runs_another_admins_same_key_starts_their_own_run(admin_user, other_admin, demo):
    first = api_for(admin_user).post("/runs", RUN, headers={"Idempotency-Key": "nightly-1"})
    theirs = api_for(other_admin).post("/runs", RUN, headers={"Idempotency-Key": "nightly-1"})
    assert (first.status_code, theirs.status_code) == (201, 201) and first.json()["id"] != theirs.json()["id"]


def test_runs_the_same_key_with_another_body_is_a_409(admin_user, demo):
    api = api_for(admin_user)
    assert api.post("/runs", RUN, headers={"Idempotency-Key": "nightly-1"}).status_code == 201
    changed = api.post("/runs", {**RUN, "group_size": 3}, headers={"Idempotency-Key": "nightly-1"})
    assert changed.status_code == 409 and "already used for another request" in changed.json()["detail"]


# --- the start-a-run form ------------------------------------------------------------------


def run_form(key: str, **extra) -> dict:
    character, prompt_set = Character.objects.get(slug="aria"), PromptSet.objects.get(slug="aria-demo")
    form = {
        "kind": "generate",
        "character": character.pk,
        "prompt_set": prompt_set.pk,
        "rubric": Rubric.objects.get(slug="aria-voice").pk,
        "group_size": "2",
        "max_tokens": "16",
        "threshold": "0.5",
        "max_rounds": "1",
        "idempotency_key": key,
    }
    return {**form, **extra}


def test_a_form_key_is_the_admins_own(admin_user, other_admin, demo):
    mine, theirs = Client(), Client()
    mine.force_login(admin_user)
    theirs.force_login(other_admin)
    first = mine.post(reverse("run_new"), run_form("form-1"))
    second = theirs.post(reverse("run_new"), run_form("form-1"))
    assert first.status_code == second.status_code == 302 and first.url != second.url
    assert mine.post(reverse("run_new"), run_form("form-1")).url == first.url  # a double submit


def test_a_form_resubmitted_with_other_values_under_its_key_says_so(admin_client, demo):
    admin_client.post(reverse("run_new"), run_form("form-1"))
    page = admin_client.post(reverse("run_new"), run_form("form-1", group_size="3"))
    assert page.status_code == 400 and "already used for another request" in page.content.decode()
    assert PipelineRun.objects.filter(kind="generate").count() == 1


# --- the service: callers without a user keep their keys as they are ------------------------


def start(demo_rows, *, key, user=None, group_size=2):
    character, prompt_set = demo_rows
    return run_services.run_start(
        kind="generate",
        character=character,
        prompt_set=prompt_set,
        group_size=group_size,
        idempotency_key=key,
        user=user,
        enqueue=False,
    )


@pytest.fixture
def demo_rows(demo):
    return Character.objects.get(slug="aria"), PromptSet.objects.get(slug="aria-demo")


def test_a_key_given_without_a_user_is_stored_as_it_is_and_shared(demo_rows):
    run, created = start(demo_rows, key="evaluation-7/candidate")
    again, created_again = start(demo_rows, key="evaluation-7/candidate", group_size=3)
    assert run.idempotency_key == "evaluation-7/candidate" and (created, created_again) == (True, False)
    assert again.pk == run.pk


def test_a_users_key_is_stored_scoped_and_carries_the_requests_fingerprint(demo_rows, admin_user):
    run, _ = start(demo_rows, key="nightly", user=admin_user)
    assert run.idempotency_key == idempotency.key_stored("nightly", admin_user) != "nightly"
    assert len(run.idempotency_key) <= PipelineRun._meta.get_field("idempotency_key").max_length
    assert run.params[idempotency.FINGERPRINT]
    with pytest.raises(idempotency.IdempotencyConflict):
        start(demo_rows, key="nightly", user=admin_user, group_size=3)
    assert start(demo_rows, key="nightly", user=admin_user)[0].pk == run.pk


def test_a_key_too_long_is_refused_by_the_service_whoever_calls(demo_rows, admin_user):
    for user in (None, admin_user):
        with pytest.raises(ValidationError, match="at most 120 characters"):
            start(demo_rows, key="k" * 121, user=user)
    assert not PipelineRun.objects.filter(kind="generate").exists()
