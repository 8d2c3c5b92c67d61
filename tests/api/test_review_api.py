"""Reviewing over the API, by persona: claim the next group, submit its rating (once per
submission id), skip; a refusal is a 4xx that writes nothing; someone else's hold is a 404."""

import uuid

import pytest

from labelling.access import tokens
from labelling.access.roles import REVIEWER
from labelling.models import Assignment, CriterionScore, Group, Judgment
from tests.api.test_api import Api
from tests.conftest import _make_user


@pytest.fixture
def pair(world):
    """The fixture's group of two, complete: both groups are in the queue."""
    Group.objects.filter(ready=False).update(ready=True)
    return world


@pytest.fixture
def as_user(client):
    def make(user) -> Api:
        return Api(client, tokens.token_create(user=user, name="review")[1] if user else None)

    return make


def _human():
    return Judgment.objects.filter(source=Judgment.Source.HUMAN)


def _rating(group: dict, score: int, **extra) -> dict:
    """Every completion scored `score` on every criterion the reviewer scores."""
    scores = {
        str(c["generation"]): {k["key"]: score for k in group["criteria"] if not k["rule"]}
        for c in group["completions"]
    }
    return {"submission_id": str(uuid.uuid4()), "scores": scores, **extra}


@pytest.mark.parametrize(("persona", "status"), [(None, 401), ("outsider", 403)])
def test_without_a_role_nothing_is_claimed_or_stored(request, as_user, world, persona, status):
    api = as_user(request.getfixturevalue(persona) if persona else None)
    assert api.post("/review/next").status_code == status
    assignment = Assignment.objects.create(
        group=Group.objects.first(), reviewer=world["reviewer"], leased_until="2099-01-01T00:00Z"
    )
    body = {"submission_id": str(uuid.uuid4()), "scores": {}}
    assert api.post(f"/review/{assignment.pk}/submit", body).status_code == status
    assert api.post(f"/review/{assignment.pk}/skip").status_code == status
    assert not Assignment.objects.exclude(pk=assignment.pk).exists() and not _human().exists()


@pytest.mark.parametrize("persona", ["reviewer", "admin_user"])
def test_a_reviewer_or_admin_claims_rates_and_empties_the_queue(request, as_user, pair, persona):
    user = request.getfixturevalue(persona)
    api = as_user(user)
    seen = set()
    while (response := api.post("/review/next")).status_code == 200:
        group = response.json()
        assert group["group"] not in seen
        seen.add(group["group"])
        assert group["run"] == pair["run"].pk
        assert group["criteria"] == [
            {"key": "voice", "description": "In voice", "scale_min": 1, "scale_max": 5, "rule": False}
        ]
        assignment = Assignment.objects.get(pk=group["assignment"])
        # The completions in the order this reviewer is shown them, lettered as on the page.
        assert [c["generation"] for c in group["completions"]] == assignment.shown_order
        assert [c["label"] for c in group["completions"]] == ["A", "B", "C"][: len(assignment.shown_order)]
        texts = {c["generation"]: c["text"] for c in group["completions"]}
        assert texts == {g.pk: g.text for g in Group.objects.get(pk=group["group"]).generations.all()}
        assert group["prompt"][-1]["role"] == "user" and all(m["role"] != "system" for m in group["prompt"])
        # The same group again while it is held: the hold, not a second claim.
        assert api.post("/review/next").json()["assignment"] == group["assignment"]
        body = _rating(group, 4)
        first = api.post(f"/review/{group['assignment']}/submit", body)
        assert (first.status_code, first.json()) == (200, {"stored": True})
        retry = api.post(f"/review/{group['assignment']}/submit", body)
        assert (retry.status_code, retry.json()) == (200, {"stored": False})
    assert response.status_code == 204 and response.content == b""
    assert seen == set(Group.objects.values_list("pk", flat=True))
    # Once per completion, whatever the retries; every group counted once.
    assert _human().count() == 5 and set(_human().values_list("reviewer", flat=True)) == {user.pk}
    assert set(CriterionScore.objects.filter(judgment__source="human").values_list("score", flat=True)) == {4}
    assert list(Group.objects.values_list("review_count", flat=True)) == [1, 1]
    assert set(Assignment.objects.values_list("status", flat=True)) == {"submitted"}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda body, gid: body["scores"][gid].update(voice=9), "scores.voice"),
        (lambda body, gid: body["scores"].pop(gid), "scores"),
        (lambda body, gid: body["scores"].update({"999999": {"voice": 3}}), "generation"),
        (lambda body, gid: body.update(ranks={gid: 1}), "rank"),
    ],
)
def test_a_bad_rating_is_a_400_naming_the_field_and_writes_nothing(as_user, reviewer, world, change, field):
    api = as_user(reviewer)
    group = api.post("/review/next").json()
    body = _rating(group, 3)
    change(body, str(group["completions"][0]["generation"]))
    response = api.post(f"/review/{group['assignment']}/submit", body)
    assert response.status_code == 400, response.content
    assert field in response.json()["errors"]
    assert not _human().exists() and not CriterionScore.objects.filter(judgment__source="human").exists()
    assert Assignment.objects.get(pk=group["assignment"]).status == "active"
    assert api.post(f"/review/{group['assignment']}/submit", _rating(group, 3)).json() == {"stored": True}


def test_a_body_of_the_wrong_shape_is_a_422(as_user, reviewer, world):
    api = as_user(reviewer)
    group = api.post("/review/next").json()
    response = api.post(f"/review/{group['assignment']}/submit", {"submission_id": "not-a-uuid", "scores": {}})
    assert response.status_code == 422 and "submission_id" in response.json()["errors"]
    assert not _human().exists()


def test_someone_elses_assignment_is_a_404_and_left_alone(as_user, reviewer, world):
    mine = as_user(reviewer).post("/review/next").json()
    other = as_user(_make_user("rob", REVIEWER))
    assert other.post(f"/review/{mine['assignment']}/submit", _rating(mine, 3)).status_code == 404
    assert other.post(f"/review/{mine['assignment']}/skip").status_code == 404
    assert other.post("/review/123456/submit", _rating(mine, 3)).status_code == 404
    assert not _human().exists()
    assert Assignment.objects.get(pk=mine["assignment"]).status == "active"


def test_a_skipped_group_is_not_offered_again_and_cannot_be_submitted(as_user, reviewer, pair):
    api = as_user(reviewer)
    group = api.post("/review/next").json()
    assert api.post(f"/review/{group['assignment']}/skip").json() == {"skipped": True}
    assert api.post(f"/review/{group['assignment']}/skip").status_code == 409
    refused = api.post(f"/review/{group['assignment']}/submit", _rating(group, 3))
    assert refused.status_code == 409 and "already" in refused.json()["detail"]
    following = api.post("/review/next").json()
    assert following["group"] != group["group"]
    api.post(f"/review/{following['assignment']}/skip")
    assert api.post("/review/next").status_code == 204
    assert not _human().exists()


def test_a_pair_takes_a_preference(as_user, reviewer, pair):
    api = as_user(reviewer)
    while len((group := api.post("/review/next").json())["completions"]) != 2:
        api.post(f"/review/{group['assignment']}/skip")
    a, b = (c["generation"] for c in group["completions"])
    assert api.post(f"/review/{group['assignment']}/submit", _rating(group, 3, preference="b")).json()["stored"]
    assert dict(_human().values_list("generation", "rank")) == {a: 2, b: 1}
