"""Undo takes back the last submission, skip passes a group on, and a reviewer may
rewrite a completion (a new generation whose parent is the original)."""

import json
from datetime import timedelta

from django.utils import timezone

from labelling.models import Assignment, Generation, Group, Judgment
from tests.review.conftest import held, review_form

HX = {"HTTP_HX_REQUEST": "true"}


def _submit(client, assignment):
    return client.post(f"/review/{assignment.pk}/submit", review_form(assignment), **HX)


def test_skip_serves_the_next_group_and_never_offers_it_again(reviewer_client, reviewer, demo):
    reviewer_client.get("/review/")
    first = held(reviewer)
    response = reviewer_client.post(f"/review/{first.pk}/skip", **HX)
    assert json.loads(response["HX-Trigger"]) == {"review-skipped": {"assignment": first.pk}}
    first.refresh_from_db()
    assert first.status == Assignment.Status.SKIPPED
    assert held(reviewer).group_id != first.group_id
    assert not Judgment.objects.filter(source="human").exists()


def test_a_skipped_assignment_cannot_be_skipped_again(reviewer_client, reviewer, demo):
    reviewer_client.get("/review/")
    first = held(reviewer)
    reviewer_client.post(f"/review/{first.pk}/skip", **HX)
    assert reviewer_client.post(f"/review/{first.pk}/skip", **HX).status_code == 409


def test_undo_removes_the_last_submission_and_gives_the_group_back(reviewer_client, reviewer, demo):
    reviewer_client.get("/review/")
    first = held(reviewer)
    _submit(reviewer_client, first)
    handed_since = held(reviewer)
    response = reviewer_client.post("/review/undo", **HX)
    assert response.status_code == 200
    assert json.loads(response["HX-Trigger"]) == {"review-undone": {"assignment": first.pk}}
    assert not Judgment.objects.filter(source="human").exists()
    assert Group.objects.get(pk=first.group_id).review_count == 0
    assert held(reviewer) == first and held(reviewer).status == Assignment.Status.ACTIVE
    # The group handed out after the submission goes back to the queue.
    assert not Assignment.objects.filter(pk=handed_since.pk).exists()
    assert f'action="/review/{first.pk}/submit"' in response.content.decode()


def test_after_undo_the_same_group_can_be_submitted_again(reviewer_client, reviewer, demo):
    reviewer_client.get("/review/")
    first = held(reviewer)
    _submit(reviewer_client, first)
    reviewer_client.post("/review/undo", **HX)
    assert _submit(reviewer_client, first).status_code == 200
    assert Judgment.objects.filter(source="human").count() == 4


def test_undo_with_nothing_to_undo_is_refused(reviewer_client, demo):
    response = reviewer_client.post("/review/undo", **HX)
    assert response.status_code == 409 and "Nothing to undo" in response.content.decode()


def test_undo_only_takes_back_a_recent_submission(reviewer_client, reviewer, demo, settings):
    settings.REVIEW_UNDO_MINUTES = 5
    reviewer_client.get("/review/")
    first = held(reviewer)
    _submit(reviewer_client, first)
    Assignment.objects.filter(pk=first.pk).update(completed_at=timezone.now() - timedelta(minutes=6))
    assert reviewer_client.post("/review/undo", **HX).status_code == 409
    assert Judgment.objects.filter(source="human").count() == 4


def test_undo_never_touches_another_reviewers_submission(reviewer_client, client_for, reviewer, reviewer2, demo):
    reviewer_client.get("/review/")
    _submit(reviewer_client, held(reviewer))
    assert client_for(reviewer2).post("/review/undo", **HX).status_code == 409
    assert Judgment.objects.filter(source="human").count() == 4


def test_a_rewrite_is_a_new_generation_whose_parent_is_the_original(reviewer_client, reviewer, demo):
    reviewer_client.get("/review/")
    a = held(reviewer)
    original = Generation.objects.get(pk=a.shown_order[0])
    url = f"/review/{a.pk}/rewrite/{original.pk}"
    response = reviewer_client.post(url, {f"rewrite-{original.pk}": "<think>ok</think>Better."}, **HX)
    assert response.status_code == 200 and "Saved rewrite r1" in response.content.decode()
    rewrite = Generation.objects.get(parent=original)
    assert rewrite.source == Generation.Source.HUMAN_REWRITE and rewrite.author == reviewer
    assert (rewrite.group_id, rewrite.index, rewrite.revision) == (a.group_id, original.index, 1)
    assert rewrite.text == "Better." and rewrite.thinking == "ok"
    # The group still asks for a rating of the G originals.
    assert len(held(reviewer).shown_order) == 4


def test_a_rewrite_of_another_groups_completion_is_refused(reviewer_client, reviewer, demo):
    reviewer_client.get("/review/")
    a = held(reviewer)
    other = Generation.objects.exclude(group=a.group).first()
    url = f"/review/{a.pk}/rewrite/{other.pk}"
    assert reviewer_client.post(url, {f"rewrite-{other.pk}": "x"}, **HX).status_code == 400
    assert not Generation.objects.filter(source="human_rewrite").exists()


def test_an_empty_rewrite_is_refused(reviewer_client, reviewer, demo):
    reviewer_client.get("/review/")
    a = held(reviewer)
    gid = a.shown_order[0]
    response = reviewer_client.post(f"/review/{a.pk}/rewrite/{gid}", {f"rewrite-{gid}": "  "}, **HX)
    assert response.status_code == 400
    assert not Generation.objects.filter(source="human_rewrite").exists()


def test_someone_elses_assignment_cannot_be_rewritten(client_for, reviewer_client, reviewer, reviewer2, demo):
    reviewer_client.get("/review/")
    a = held(reviewer)
    gid = a.shown_order[0]
    response = client_for(reviewer2).post(f"/review/{a.pk}/rewrite/{gid}", {f"rewrite-{gid}": "x"})
    assert response.status_code == 404
