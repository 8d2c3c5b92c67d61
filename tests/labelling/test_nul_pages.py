"""Text holding the NUL character (\\u0000) sent to a page: a 404 when the URL's path holds it, a
400 naming the query parameter or form field otherwise, and nothing written, the same on SQLite
and PostgreSQL (which stores no NUL in text: a lookup or a write with one failed there with a
500). The API refuses it with a 422 of its own (tests/api/test_nul_text.py)."""

import io
import json
import uuid
from urllib.parse import urlencode

import pytest
from django.test import Client

from labelling.models import Character, Generation, Judgment, PipelineRun, PromptSet
from labelling.review import services as review_services
from tests.review.conftest import review_form

NUL = "\x00"
REFUSAL = "text cannot hold the NUL character (\\u0000)"


@pytest.fixture
def held(world, admin_user):
    """The admin holds a group of `world` under review; `ids` fill the URLs below."""
    assignment = review_services.assignment_claim_next(reviewer=admin_user)
    generation = assignment.group.generations.order_by("pk").first()
    return {"assignment": assignment, "ids": {"assignment": assignment.pk, "generation": generation.pk}}


def _written() -> tuple:
    return tuple(m.objects.count() for m in (Character, PromptSet, PipelineRun, Generation, Judgment))


@pytest.mark.parametrize(
    ("path", "query", "where"),
    [
        ("/runs/new", {"prompt_set": f"1{NUL}"}, "prompt_set"),
        ("/review/", {"policy": f"no_signal{NUL}"}, "policy"),
        ("/stats/", {"rubric": NUL}, "rubric"),
        ("/models/", {f"x{NUL}": "1"}, f"x{NUL}"),  # a parameter's name counts too
        ("/admin/labelling/character/", {"q": f"mi{NUL}ra"}, "q"),  # the admin's search
        ("/admin/labelling/rubric/", {"slug__exact": f"voice{NUL}"}, "slug__exact"),  # a list filter
    ],
)
def test_a_query_parameter_with_nul_is_a_400_naming_it(admin_client, held, path, query, where):
    response = admin_client.get(path, query)
    assert response.status_code == 400, response.content[:500]
    assert response.content.decode() == f"{REFUSAL}: {where!r}"


@pytest.mark.parametrize(
    "path",
    [
        "/media/datasets/voice%00.jsonl",  # a path the view joins onto MEDIA_ROOT
        "/characters/mi%00ra/",
        "/admin/labelling/character/1%00/change/",
        "/review/ab/1%00/choose",
    ],
)
def test_a_path_with_nul_is_a_404(admin_client, held, path):
    assert admin_client.get(path).status_code == 404


@pytest.mark.parametrize(
    ("path", "form", "where"),
    [
        ("/runs/new", {"kind": "generate", "group_size": "2", "idempotency_key": f"k{NUL}"}, "idempotency_key"),
        ("/runs/sheets", {"concept": f"a lighthouse keeper{NUL}", "count": "1"}, "concept"),
        ("/models/train", {"dataset": "1", "method": "sft", "idempotency_key": f"k{NUL}"}, "idempotency_key"),
        ("/sheets/{generation}/promote", {"slug": f"mira{NUL}"}, "slug"),
        ("/review/{assignment}/rewrite/{generation}", {"rewrite-{generation}": f"Better{NUL}"}, "rewrite-{generation}"),
        ("/review/{assignment}/skip", {"policy": NUL}, "policy"),
        ("/review/ab/1/choose", {"choice": f"a{NUL}", "submission_id": str(uuid.uuid4())}, "choice"),
        ("/admin/labelling/character/add/", {"name": f"Mi{NUL}ra", "slug": "mira2", "persona": "p"}, "name"),
    ],
)
@pytest.mark.parametrize("encoding", ["multipart", "urlencoded"])  # a plain form / what htmx sends
def test_a_form_field_with_nul_is_a_400_naming_it_and_writes_nothing(admin_client, held, path, form, where, encoding):
    ids = held["ids"]
    form = {k.format(**ids): v for k, v in form.items()}
    before = _written()
    if encoding == "multipart":
        response = admin_client.post(path.format(**ids), form)
    else:
        body = urlencode(form)
        response = admin_client.post(path.format(**ids), body, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 400, response.content[:500]
    assert response.content.decode() == f"{REFUSAL}: {where.format(**ids)!r}"
    assert _written() == before


def test_a_review_with_nul_in_a_critique_is_refused_and_the_group_stays_held(admin_client, held):
    assignment = held["assignment"]
    generation = held["ids"]["generation"]
    form = review_form(assignment, **{f"critique-{generation}": f"Too long{NUL}"})
    response = admin_client.post(f"/review/{assignment.pk}/submit", form, headers={"HX-Request": "true"})
    assert response.status_code == 400
    assert response.content.decode() == f"{REFUSAL}: 'critique-{generation}'"
    assert not Judgment.objects.filter(source="human").exists()
    # The same form without it goes through.
    form[f"critique-{generation}"] = "Too long"
    assert admin_client.post(f"/review/{assignment.pk}/submit", form).status_code == 302
    assert Judgment.objects.filter(source="human").count() == assignment.group.generations.count()


@pytest.mark.parametrize("where", ["prompt", "layout", "id"])
def test_a_puzzle_file_with_an_escaped_nul_names_its_line_and_imports_nothing(admin_client, held, where):
    row = {"id": "a1", "prompt": "a small flat", "layout": "hall: (100,20)(140,20)(140,230)(100,230)"}
    row[where] += NUL
    upload = io.BytesIO(f"{json.dumps(row)}\n".encode())  # the NUL as JSON writes it: \u0000
    upload.name = "houses.jsonl"
    response = admin_client.post("/runs/puzzles", {"puzzle_set": "houses", "puzzles": upload})
    assert response.status_code == 400
    assert f"houses.jsonl:1: {where}: {REFUSAL}" in response.content.decode()
    assert not PromptSet.objects.filter(slug="houses").exists()


def test_an_admin_import_with_an_escaped_nul_names_its_line_and_imports_nothing(admin_client, held):
    upload = io.BytesIO(b'characters:\n  - {name: Bo, slug: bo, persona: "You are Bo\\0"}\n')
    upload.name = "bo.yaml"
    response = admin_client.post("/admin/labelling/character/import/", {"file": upload})
    assert response.status_code == 200  # the form again, with the problems
    assert f"bo.yaml:2: characters[0].persona: {REFUSAL}" in response.content.decode()
    assert not Character.objects.filter(slug="bo").exists()


def test_signing_in_with_nul_in_the_username_is_a_400(db, admin_user):
    response = Client().post("/accounts/login/", {"username": f"ada{NUL}", "password": "x"})
    assert response.status_code == 400
    assert response.content.decode() == f"{REFUSAL}: 'username'"


def test_an_anonymous_visitor_is_still_sent_to_sign_in_first(client, db):
    response = client.get("/stats/", {"rubric": NUL})
    assert response.status_code == 302 and response.url.startswith("/accounts/login/")
