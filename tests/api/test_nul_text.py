"""Text holding the NUL character (\\u0000) is refused by every operation of the API, the same
on SQLite and PostgreSQL (which stores no NUL in text: a lookup with one failed there with a
500, found by the fuzzer's sequences): a 422 naming where it was, and nothing written."""

import json

import pytest

from labelling.access import tokens
from labelling.models import Character, PipelineRun


@pytest.fixture
def auth(admin_user):
    return {"Authorization": f"Bearer {tokens.token_create(user=admin_user, name='nul')[1]}"}


def test_a_body_field_with_nul_is_refused_and_starts_nothing(client, auth, demo):
    body = {"candidate": 1, "rubric": "aria-voice", "character": "ar\x00ia"}
    runs = PipelineRun.objects.count()
    response = client.post("/api/evaluations", json.dumps(body), content_type="application/json", headers=auth)
    assert response.status_code == 422, response.content
    assert response.json()["errors"] == {"character": "text cannot hold the NUL character (\\u0000)"}
    assert PipelineRun.objects.count() == runs


def test_a_query_or_path_value_with_nul_is_refused(client, auth, demo):
    listed = client.get("/api/judgments", {"source": "judge\x00"}, headers=auth)
    assert (listed.status_code, listed.json()["errors"]) == (422, {"source": listed.json()["errors"]["source"]})
    read = client.get("/api/datasets/ar%00ia/1", headers=auth)
    assert read.status_code == 422, read.content


def test_without_a_valid_token_it_is_still_a_401(client, demo):
    response = client.post("/api/evaluations", json.dumps({"character": "\x00"}), content_type="application/json")
    assert response.status_code == 401


def test_an_import_holding_an_escaped_nul_is_a_400_naming_its_line(client, auth, db):
    """The body's text holds no NUL, the file it carries does (JSON's \\u0000 escape): the
    importer refuses it, on its line, and writes nothing."""
    row = json.dumps({"kind": "character", "name": "Bo", "slug": "bo", "persona": "You are Bo\x00"})
    response = client.post(
        "/api/import",
        json.dumps({"name": "bo.jsonl", "content": row}),
        content_type="application/json",
        headers=auth,
    )
    assert response.status_code == 400, response.content
    assert response.json()["errors"] == {"line 1: persona": "text cannot hold the NUL character (\\u0000)"}
    assert not Character.objects.exists()
