"""The JSON API: token auth, roles, idempotent run triggers, imports, external generations,
judgments and dataset versions; every bad request is a 4xx naming the field and writes nothing."""

import hashlib
import json

import pytest
from django.core.management import call_command

from labelling.access import tokens
from labelling.models import (
    ApiToken,
    Character,
    DatasetVersion,
    Generation,
    Group,
    Judgment,
    PipelineRun,
    Prompt,
)


class Api:
    """The test client with a bearer token and JSON bodies."""

    def __init__(self, client, token: str | None):
        self.client, self.token = client, token

    def _headers(self, extra=None):
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return {**headers, **(extra or {})}

    def get(self, path, **params):
        return self.client.get(f"/api{path}", params, headers=self._headers())

    def post(self, path, body=None, headers=None, raw: str | None = None):
        data = raw if raw is not None else json.dumps(body if body is not None else {})
        return self.client.post(f"/api{path}", data, content_type="application/json", headers=self._headers(headers))


@pytest.fixture
def api(client, admin_user):
    return Api(client, tokens.token_create(user=admin_user, name="tests")[1])


@pytest.fixture
def reviewer_api(client, reviewer):
    return Api(client, tokens.token_create(user=reviewer, name="tests")[1])


def counts():
    return {
        m.__name__: m.objects.count()
        for m in (Character, PipelineRun, Group, Generation, Judgment, DatasetVersion, Prompt)
    }


# --- tokens -------------------------------------------------------------------------------


def test_tokens_are_stored_hashed_and_shown_once(admin_user, capsys):
    call_command("create_token", admin_user.username, "--name", "ci")
    token = capsys.readouterr().out.strip()
    row = ApiToken.objects.get(name="ci")
    assert token.startswith("shp_") and len(token) > 40
    assert row.digest == hashlib.sha256(token.encode()).hexdigest()
    assert token not in json.dumps(list(ApiToken.objects.values()), default=str)
    assert tokens.token_authenticate(token).pk == row.pk


@pytest.mark.parametrize("header", [None, "Bearer nope", "Bearer shp_not-a-real-token", "Basic YWRhOng="])
def test_a_missing_or_wrong_token_is_401_json(client, db, header):
    response = client.get("/api/characters", headers={"Authorization": header} if header else {})
    assert response.status_code == 401
    assert response.json() == {"detail": "Unauthorized"}


def test_a_revoked_token_stops_working(api, capsys):
    assert api.get("/characters").status_code == 200
    call_command("create_token", "--revoke", api.token[:12])
    assert api.get("/characters").status_code == 401


def test_a_signed_in_browser_session_is_not_an_api_credential(admin_client):
    assert admin_client.get("/api/characters").status_code == 401


def test_the_schema_and_docs_are_served(client, db):
    schema = client.get("/api/openapi.json").json()
    assert {"/api/runs", "/api/datasets", "/api/generations", "/api/judgments"} <= set(schema["paths"])
    assert client.get("/api/docs").status_code == 200


# --- catalogue ------------------------------------------------------------------------------


def test_lists_paginate(api, demo):
    page = api.get("/characters", limit=1).json()
    assert page["count"] >= 1 and len(page["items"]) == 1 and page["items"][0]["slug"] == "aria"
    rubric = api.get("/rubrics").json()["items"][0]
    assert rubric["criteria"] and {"key", "scale_min", "scale_max", "weight"} <= set(rubric["criteria"][0])
    assert api.get("/prompt-sets").json()["items"][0]["prompt_count"] > 0


def test_import_is_all_or_nothing_and_names_the_line_and_field(api, db):
    good = json.dumps({"kind": "character", "slug": "nox", "name": "Nox", "persona": "A night owl."})
    bad = json.dumps({"kind": "character", "slug": "nox2", "name": "Nox"})
    before = counts()
    response = api.post("/import", {"name": "people.jsonl", "content": f"{good}\n{bad}\n"})
    assert response.status_code == 400
    body = response.json()
    assert body["errors"] == {"line 2: persona": "field required"}
    assert "nothing imported" in body["detail"]
    assert counts() == before
    created = api.post("/import", {"name": "people.jsonl", "content": good})
    assert created.status_code == 201 and created.json()["characters"] == 1


def test_a_reviewer_token_reads_but_cannot_write(reviewer_api, demo):
    before = counts()
    assert reviewer_api.get("/characters").status_code == 200
    for path, body in [
        ("/runs", {"kind": "generate", "character": "aria", "prompt_set": "aria-demo"}),
        ("/import", {"content": "{}"}),
        ("/datasets", {"dataset": "x", "kind": "sft"}),
    ]:
        response = reviewer_api.post(path, body)
        assert response.status_code == 403, path
        assert "admin" in response.json()["detail"]
    assert reviewer_api.get("/datasets").status_code == 403
    assert counts() == before


# --- runs -------------------------------------------------------------------------------------


def test_the_same_idempotency_key_returns_the_same_run(api, demo):
    body = {"kind": "generate", "character": "aria", "prompt_set": "aria-demo", "group_size": 2}
    first = api.post("/runs", body, headers={"Idempotency-Key": "nightly-1"})
    again = api.post("/runs", body, headers={"Idempotency-Key": "nightly-1"})
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]
    other = api.post("/runs", body, headers={"Idempotency-Key": "nightly-2"})
    assert other.status_code == 201 and other.json()["id"] != first.json()["id"]
    status = api.get(f"/runs/{first.json()['id']}").json()
    assert status["status"] == "queued" and status["progress_percent"] == 0
    cancelled = api.post(f"/runs/{first.json()['id']}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"


def test_resume_queues_a_failed_run_and_refuses_a_running_one_with_409(api, demo):
    from django.utils import timezone

    from labelling.models import PipelineRun

    body = {"kind": "generate", "character": "aria", "prompt_set": "aria-demo", "group_size": 2}
    run_id = api.post("/runs", body).json()["id"]
    PipelineRun.objects.filter(pk=run_id).update(status="running", heartbeat_at=timezone.now(), total_items=6)
    refused = api.post(f"/runs/{run_id}/resume")
    assert refused.status_code == 409
    assert (
        refused.json()["detail"]
        == f"status: run #{run_id} is running (its worker is alive); cancel it first, or wait for it to finish"
    )
    assert PipelineRun.objects.get(pk=run_id).status == "running"
    PipelineRun.objects.filter(pk=run_id).update(status="partial", done_items=3, failed_items=3)
    resumed = api.post(f"/runs/{run_id}/resume")
    assert resumed.status_code == 200 and resumed.json()["status"] == "queued"
    again = api.post(f"/runs/{run_id}/resume")
    assert again.status_code == 409 and "is queued" in again.json()["detail"]


# 400: well-formed but refused (an unknown slug, a rule of the run); 422: the body breaks its
# schema (a wrong type, a missing field, a value outside its declared range or choices).
@pytest.mark.parametrize(
    "body, status, field",
    [
        ({"kind": "generate", "character": "nobody", "prompt_set": "aria-demo"}, 400, "character"),
        ({"kind": "generate", "character": "aria"}, 422, "prompt_set"),  # each kind's body names what it needs
        ({"kind": "judge", "source_run": 1}, 422, "rubric"),
        ({"kind": "train", "method": "sft"}, 422, "dataset"),
        ({"kind": "dance", "character": "aria", "prompt_set": "aria-demo"}, 422, "kind"),
        ({"kind": "judge", "rubric": "no-such-rubric", "source_run": 1}, 400, "rubric"),
        ({"kind": "judge", "rubric": "aria-voice", "source_run": 999999}, 400, "source_run"),
        ({"kind": "generate", "character": "aria", "prompt_set": "aria-demo", "group_size": 0}, 422, "group_size"),
        (
            {"kind": "generate", "character": "aria", "prompt_set": "aria-demo", "group_size": "four"},
            422,
            "group_size",
        ),
        ({"character": "aria"}, 422, "kind"),
    ],
)
def test_bad_run_requests_name_the_field_and_write_nothing(api, demo, body, status, field):
    before = counts()
    response = api.post("/runs", body)
    assert response.status_code == status, response.content
    assert field in response.json()["errors"], response.json()
    assert field in response.json()["detail"]
    assert counts() == before


def test_a_body_that_is_not_json_is_400_and_writes_nothing(api, demo):
    before = counts()
    response = api.post("/runs", raw="{not json")
    assert response.status_code == 400
    assert response.json() == {"detail": "Cannot parse request body"}
    assert counts() == before


def test_unknown_ids_and_paths_are_404_json(api, db):
    for path in ("/runs/424242", "/datasets/none/1", "/datasets/none/1/download", "/no-such-thing"):
        response = api.get(path)
        assert response.status_code == 404, path
        assert response.json()["detail"]
    assert api.post("/runs/424242/cancel").status_code == 404
    too_big = api.get(f"/runs/{10**30}")
    assert too_big.status_code == 422 and "run_id" in too_big.json()["errors"]


# --- external generations and judgments ----------------------------------------------------


def test_external_generations_become_a_group_for_review(api, demo):
    body = {
        "groups": [
            {
                "character": "aria",
                "prompt_set": "aria-demo",
                "prompt": "stars",
                "completions": ["One answer.", "<think>hm</think>Another."],
                "model": "elsewhere-7b",
            }
        ]
    }
    response = api.post("/generations", body)
    assert response.status_code == 201, response.content
    run = PipelineRun.objects.get(pk=response.json()["run_id"])
    group = run.groups.get()
    assert [g.text for g in group.generations.order_by("index")] == ["One answer.", "Another."]
    assert group.generations.get(index=1).thinking == "hm"
    listed = api.get("/generations", run=run.pk).json()
    assert listed["count"] == 2 and listed["items"][0]["source"] == "external"


def test_external_generations_with_a_bad_group_write_nothing(api, demo):
    before = counts()
    body = {
        "groups": [
            {"character": "aria", "prompt_set": "aria-demo", "prompt": "stars", "completions": ["fine"]},
            {"character": "aria", "prompt_set": "aria-demo", "prompt": "no-such-prompt", "completions": ["x"]},
        ]
    }
    response = api.post("/generations", body)
    assert response.status_code == 400
    assert response.json()["errors"] == {"groups[1].prompt": "no prompt 'no-such-prompt' in prompt set 'aria-demo'"}
    assert "no-such-prompt" in response.json()["detail"]
    assert counts() == before


def test_judgments_are_pushed_for_a_generation_and_checked_against_the_rubric(api, world):
    generation = world["made"][("b", 0)]
    ok = api.post(
        "/judgments",
        {
            "generation": generation.pk,
            "rubric": "voice",
            "scores": {"voice": 2},
            "rationale": "flat",
            "model": "big-judge",
        },
    )
    assert ok.status_code == 201, ok.content
    assert ok.json()["scores"] == {"voice": 2} and ok.json()["overall"] == 0.25
    before = counts()
    for body, status, field in [
        ({"generation": generation.pk, "rubric": "voice", "scores": {"voice": 9}}, 400, "scores.voice"),
        ({"generation": generation.pk, "rubric": "voice", "scores": {"tone": 3}}, 400, "scores"),
        ({"generation": generation.pk, "rubric": "nope", "scores": {"voice": 3}}, 400, "rubric"),
        ({"generation": generation.pk, "rubric": "voice", "scores": {"voice": "3x"}}, 422, "scores.voice"),
    ]:
        response = api.post("/judgments", body)
        assert response.status_code == status, body
        assert field in response.json()["errors"], response.json()
    assert api.post("/judgments", {"generation": 10**9, "rubric": "voice", "scores": {"voice": 3}}).status_code == 404
    assert counts() == before
    listed = api.get("/judgments", generation=generation.pk).json()
    assert [j["scores"] for j in listed["items"]] == [{"voice": 4}, {"voice": 2}]


# --- datasets --------------------------------------------------------------------------------


def test_build_list_fetch_compare_and_download_a_version(api, world, media):
    made = api.post("/datasets", {"dataset": "mira", "kind": "grpo", "filter": {"rubric": "voice"}})
    assert made.status_code == 201, made.content
    version = made.json()
    assert version["number"] == 1 and version["row_count"] == 2
    assert api.get("/datasets").json()["items"][0]["sha256"] == version["sha256"]
    assert api.get("/datasets/mira/1").json()["stats"] == version["stats"]
    download = api.get("/datasets/mira/1/download")
    body = b"".join(download.streaming_content)
    assert download.status_code == 200 and download["X-Content-SHA256"] == version["sha256"]
    assert hashlib.sha256(body).hexdigest() == version["sha256"]
    assert len(body.splitlines()) == 2
    api.post("/datasets", {"dataset": "mira", "kind": "grpo", "filter": {"rubric": "voice", "runs": [world["run"].pk]}})
    diff = api.get("/datasets/mira/compare", old=1, new=2).json()
    assert diff == {"added": [], "removed": [], "changed": [], "unchanged": 2}


def test_a_filter_that_selects_nothing_is_400_and_writes_nothing(api, world, media):
    response = api.post(
        "/datasets", {"dataset": "mira", "kind": "grpo", "filter": {"rubric": "voice", "character": "nobody"}}
    )
    assert response.status_code == 400 and "filter" in response.json()["errors"]
    for body, status, field in [
        ({"dataset": "mira", "kind": "zip"}, 422, "kind"),
        ({"dataset": "mira", "kind": "grpo", "filter": {"colour": "red"}}, 400, "filter"),
        ({"dataset": "mira", "kind": "grpo", "filter": {"rubric": "voice", "runs": "all"}}, 400, "runs"),
    ]:
        response = api.post("/datasets", body)
        assert response.status_code == status, response.json()
        assert field in response.json()["errors"], response.json()
    assert not DatasetVersion.objects.exists()
    assert list(media.rglob("*.jsonl")) == []  # no file is left behind by a refused build


def test_a_corrupt_version_is_409_never_served(api, world, media):
    api.post("/datasets", {"dataset": "mira", "kind": "sft", "filter": {"rubric": "voice"}})
    path = next((media / "datasets" / "mira").glob("v1-*.jsonl"))
    path.write_bytes(path.read_bytes() + b'{"injected": true}\n')
    response = api.get("/datasets/mira/1/download")
    assert response.status_code == 409 and "sha256" in response.json()["detail"]
    path.unlink()
    assert "missing" in api.get("/datasets/mira/1/download").json()["detail"]
