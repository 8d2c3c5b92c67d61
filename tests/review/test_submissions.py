"""Submitting a review: human judgments committed before the next group appears,
once per submission id; bad input is a clear 4xx and writes nothing. By persona."""

import json
import uuid
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from labelling.models import Assignment, CriterionScore, Group, Judgment
from labelling.review import selectors as review_selectors
from labelling.review import services as review_services
from tests.review.conftest import held, review_form


def _submit(client, assignment, data, htmx=True):
    headers = {"HTTP_HX_REQUEST": "true"} if htmx else {}
    return client.post(f"/review/{assignment.pk}/submit", data, **headers)


def _human():
    return Judgment.objects.filter(source=Judgment.Source.HUMAN)


@pytest.fixture
def holding(reviewer_client, reviewer, demo):
    """The reviewer has opened the queue and holds the first group."""
    reviewer_client.get("/review/")
    return held(reviewer)


def test_a_submission_stores_one_human_judgment_per_completion(reviewer_client, reviewer, holding):
    shown = holding.shown_order
    data = review_form(holding, score=3)
    data[f"critique-{shown[0]}"] = "too long"
    data[f"flag-{shown[1]}"] = "on"
    response = _submit(reviewer_client, holding, data)
    assert response.status_code == 200
    judgments = {j.generation_id: j for j in _human()}
    assert set(judgments) == set(shown)
    assert all(j.reviewer == reviewer and str(j.submission_id) == data["submission_id"] for j in judgments.values())
    assert judgments[shown[0]].rationale == "too long" and judgments[shown[1]].flagged
    # Each judgment covers the whole rubric: the reviewer's 2 criteria and the 3 rule criteria.
    assert CriterionScore.objects.filter(judgment__source="human").count() == 4 * 5
    holding.refresh_from_db()
    assert holding.status == Assignment.Status.SUBMITTED and holding.completed_at
    assert Group.objects.get(pk=holding.group_id).review_count == 1


def test_success_sends_an_event_and_swaps_in_the_next_group(reviewer_client, reviewer, holding):
    response = _submit(reviewer_client, holding, review_form(holding))
    trigger = json.loads(response["HX-Trigger"])
    assert trigger["review-submitted"] == {"assignment": holding.pk, "stored": True}
    following = held(reviewer)
    assert following.group_id != holding.group_id
    assert response.content.decode().lstrip().startswith('<div id="review-panel"')
    assert f'id="completion-{following.shown_order[0]}"' in response.content.decode()


def test_without_htmx_a_submission_redirects_to_the_queue(reviewer_client, holding):
    response = _submit(reviewer_client, holding, review_form(holding), htmx=False)
    assert response.status_code == 302 and response.url == "/review/"


def test_ranks_follow_the_scores_when_left_empty(reviewer_client, holding):
    data = review_form(holding, score=2)
    best = holding.shown_order[2]
    for key in ("in-character", "helpfulness"):
        data[f"score-{best}-{key}"] = "5"
    _submit(reviewer_client, holding, data)
    ranks = {j.generation_id: j.rank for j in _human()}
    assert ranks[best] == 1 and sorted(ranks.values()) == [1, 2, 2, 2]


def test_explicit_ranks_override_the_scores(reviewer_client, holding):
    data = review_form(holding)
    for rank, gid in enumerate(holding.shown_order, start=1):
        data[f"rank-{gid}"] = str(rank)
    _submit(reviewer_client, holding, data)
    assert [_human().get(generation_id=g).rank for g in holding.shown_order] == [1, 2, 3, 4]


def test_a_retried_submission_stores_one_review(reviewer_client, reviewer, holding):
    data = review_form(holding)
    first = _submit(reviewer_client, holding, data)
    retry = _submit(reviewer_client, holding, data)
    assert first.status_code == retry.status_code == 200
    assert json.loads(retry["HX-Trigger"])["review-submitted"]["stored"] is False
    assert _human().count() == 4 and Group.objects.get(pk=holding.group_id).review_count == 1


@pytest.mark.parametrize("bad", ["9", "0", "x", ""])
def test_a_score_outside_the_scale_is_refused_and_nothing_is_written(reviewer_client, holding, bad):
    data = review_form(holding)
    data[f"score-{holding.shown_order[3]}-helpfulness"] = bad
    response = _submit(reviewer_client, holding, data)
    assert response.status_code == 400 and "helpfulness" in response.content.decode()
    assert not _human().exists() and not CriterionScore.objects.filter(judgment__source="human").exists()
    holding.refresh_from_db()
    assert holding.status == Assignment.Status.ACTIVE


def test_an_unknown_generation_is_refused(reviewer_client, holding):
    other = Group.objects.exclude(pk=holding.group_id).first().generations.first()
    data = review_form(holding)
    data[f"score-{other.pk}-helpfulness"] = "3"
    response = _submit(reviewer_client, holding, data)
    assert response.status_code == 400 and "not a completion of this group" in response.content.decode()
    assert not _human().exists()


def test_a_completion_left_unscored_is_refused(reviewer_client, holding):
    data = review_form(holding)
    for key in [k for k in data if k.startswith(f"score-{holding.shown_order[0]}-")]:
        del data[key]
    assert _submit(reviewer_client, holding, data).status_code == 400
    assert not _human().exists()


def test_a_missing_submission_id_is_refused(reviewer_client, holding):
    data = review_form(holding)
    del data["submission_id"]
    response = _submit(reviewer_client, holding, data)
    assert response.status_code == 400 and "submission_id" in response.content.decode()


def test_a_rank_outside_the_group_is_refused(reviewer_client, holding):
    data = review_form(holding)
    for gid in holding.shown_order:
        data[f"rank-{gid}"] = "5"
    assert _submit(reviewer_client, holding, data).status_code == 400
    assert not _human().exists()


def test_an_expired_lease_is_refused_and_nothing_is_written(reviewer_client, holding):
    Assignment.objects.filter(pk=holding.pk).update(leased_until=timezone.now() - timedelta(seconds=1))
    response = _submit(reviewer_client, holding, review_form(holding))
    assert response.status_code == 409 and "expired" in response.content.decode()
    assert not _human().exists() and Group.objects.get(pk=holding.group_id).review_count == 0


def test_someone_elses_assignment_is_not_found(client_for, reviewer2, holding):
    other = client_for(reviewer2)
    assert other.get(f"/review/{holding.pk}/").status_code == 404
    assert _submit(other, holding, review_form(holding)).status_code == 404
    assert other.post(f"/review/{holding.pk}/skip").status_code == 404
    assert not _human().exists()


def test_a_reviewer_opens_their_own_assignment_by_link(reviewer_client, holding):
    page = reviewer_client.get(f"/review/{holding.pk}/").content.decode()
    assert f'action="/review/{holding.pk}/submit"' in page


def test_an_admin_reviews_too(admin_client, admin_user, demo):
    admin_client.get("/review/")
    a = held(admin_user)
    assert _submit(admin_client, a, review_form(a)).status_code == 200
    assert _human().filter(reviewer=admin_user).count() == 4


def test_a_user_in_no_role_cannot_review(client_for, outsider, demo):
    c = client_for(outsider)
    assert c.get("/review/").status_code == 403
    assert not Assignment.objects.exists()


def test_anonymous_visitors_are_sent_to_sign_in(client, demo):
    response = client.get("/review/")
    assert response.status_code == 302 and response.url.startswith("/accounts/login/")
    assert client.post("/review/1/submit").status_code == 302


def test_wrong_methods_are_refused(reviewer_client, holding):
    assert reviewer_client.post("/review/").status_code == 405
    assert reviewer_client.get(f"/review/{holding.pk}/submit").status_code == 405
    assert reviewer_client.get("/review/undo").status_code == 405


def test_a_post_without_the_csrf_token_is_refused(reviewer, holding):
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(reviewer)
    assert _submit(strict, holding, review_form(holding)).status_code == 403
    assert not _human().exists()


def test_model_text_is_escaped_never_run(reviewer_client, reviewer, demo):
    nebula = Group.objects.get(prompt__external_id="nebula")
    Group.objects.exclude(pk=nebula.pk).delete()
    page = reviewer_client.get("/review/").content.decode()
    assert "&lt;script&gt;alert(&#x27;this is shown as text&#x27;)&lt;/script&gt;" in page
    assert "<script>alert" not in page and "<b>a cloud</b>" not in page


def test_judge_scores_are_on_the_page_but_hidden_until_asked(reviewer_client, holding):
    page = reviewer_client.get("/review/").content.decode()
    assert 'class="completions judge-hidden"' in page and "overall <b>" in page


def test_think_tag_problems_are_flagged(reviewer_client, reviewer, demo):
    Group.objects.exclude(prompt__external_id="human").delete()
    page = reviewer_client.get("/review/").content.decode()
    assert 'class="badge warn"' in page and "think tags:" in page


def test_a_pair_is_rated_a_against_b(reviewer_client, reviewer, demo):
    group = Group.objects.get(prompt__external_id="stars")
    Group.objects.exclude(pk=group.pk).delete()
    group.generations.filter(index__gte=2).delete()
    Group.objects.filter(pk=group.pk).update(size=2)
    assert 'name="preference" value="both_bad"' in reviewer_client.get("/review/").content.decode()
    a = held(reviewer)
    _submit(reviewer_client, a, review_form(a, preference="b"))
    first, second = a.shown_order
    assert {j.generation_id: j.rank for j in _human()} == {first: 2, second: 1}


@pytest.mark.parametrize(
    ("preference", "ranks", "flagged"),
    [("a", [1, 2], False), ("tie", [1, 1], False), ("both_bad", [2, 2], True)],
)
def test_a_pair_choice_is_stored_as_ranks(reviewer, demo, preference, ranks, flagged):
    group = Group.objects.get(prompt__external_id="stars")
    Group.objects.exclude(pk=group.pk).delete()
    group.generations.filter(index__gte=2).delete()
    Group.objects.filter(pk=group.pk).update(size=2)
    a = review_services.assignment_claim_next(reviewer=reviewer)
    criteria = review_selectors.group_rubric(group).criteria.all()
    submission = review_services.ReviewSubmission(
        submission_id=uuid.uuid4(),
        scores={gid: {c.key: c.scale_max for c in criteria} for gid in a.shown_order},
        preference=preference,
    )
    review_services.review_submit(assignment_id=a.pk, reviewer=reviewer, submission=submission)
    stored = [_human().get(generation_id=g) for g in a.shown_order]
    assert [j.rank for j in stored] == ranks and all(j.flagged == flagged for j in stored)
