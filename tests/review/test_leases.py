"""Leases: a group is held for a while, offered to as many reviewers as its overlap
target asks, never twice to one reviewer, and back in the queue when a hold runs out."""

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from labelling.models import Assignment, Group
from labelling.review import services as review_services
from tests.review.conftest import held


def _claim_all(user) -> list[int]:
    """Take every group the queue will give this reviewer, skipping each in turn."""
    taken = []
    while (a := review_services.assignment_claim_next(reviewer=user)) is not None:
        taken.append(a.group_id)
        review_services.review_skip(assignment_id=a.pk, reviewer=user)
    return taken


def test_reloading_returns_the_group_already_held(reviewer_client, reviewer, demo):
    reviewer_client.get("/review/")
    first = held(reviewer)
    reviewer_client.get("/review/")
    assert held(reviewer) == first and Assignment.objects.count() == 1


def test_a_lease_lasts_the_configured_minutes(reviewer, demo, settings):
    settings.REVIEW_LEASE_MINUTES = 7
    a = review_services.assignment_claim_next(reviewer=reviewer)
    assert timedelta(minutes=6) < a.leased_until - timezone.now() <= timedelta(minutes=7)


def test_with_overlap_one_a_second_reviewer_never_gets_the_same_group(reviewer, reviewer2, demo):
    first = review_services.assignment_claim_next(reviewer=reviewer)
    second = _claim_all(reviewer2)
    assert first.group_id not in second and len(second) == 4


def test_an_expired_lease_returns_the_group_to_the_queue(reviewer, reviewer2, demo):
    Group.objects.exclude(prompt__external_id="packing").delete()
    first = review_services.assignment_claim_next(reviewer=reviewer)
    assert review_services.assignment_claim_next(reviewer=reviewer2) is None
    Assignment.objects.filter(pk=first.pk).update(leased_until=timezone.now() - timedelta(seconds=1))
    second = review_services.assignment_claim_next(reviewer=reviewer2)
    assert second.group_id == first.group_id


def test_a_reviewer_whose_lease_ran_out_gets_the_group_back_while_it_is_free(reviewer, demo):
    first = review_services.assignment_claim_next(reviewer=reviewer)
    Assignment.objects.filter(pk=first.pk).update(leased_until=timezone.now() - timedelta(seconds=1))
    again = review_services.assignment_claim_next(reviewer=reviewer)
    assert again.pk == first.pk and again.leased_until > timezone.now()


def test_with_overlap_two_two_reviewers_get_it_and_a_third_does_not(reviewer, reviewer2, reviewer3, demo):
    Group.objects.exclude(prompt__external_id="stars").delete()
    Group.objects.update(overlap_target=2)
    a = review_services.assignment_claim_next(reviewer=reviewer)
    b = review_services.assignment_claim_next(reviewer=reviewer2)
    assert a.group_id == b.group_id
    assert review_services.assignment_claim_next(reviewer=reviewer3) is None


def test_a_skipped_group_is_never_offered_to_the_same_reviewer_again(reviewer, demo):
    assert sorted(_claim_all(reviewer)) == sorted(Group.objects.values_list("pk", flat=True))
    assert review_services.assignment_claim_next(reviewer=reviewer) is None


def test_the_shown_order_is_a_shuffle_kept_for_the_reviewer(reviewer, demo):
    a = review_services.assignment_claim_next(reviewer=reviewer)
    ids = sorted(a.group.generations.values_list("pk", flat=True))
    assert sorted(a.shown_order) == ids
    for _ in range(2):
        assert review_services.assignment_claim_next(reviewer=reviewer).shown_order == a.shown_order


@pytest.mark.django_db(transaction=True)
def test_two_reviewers_clicking_at_once_take_one_seat(demo, reviewer, reviewer2):
    Group.objects.exclude(prompt__external_id="packing").delete()
    barrier, results = threading.Barrier(2), {}

    def claim(user):
        try:
            barrier.wait()
            results[user.username] = review_services.assignment_claim_next(reviewer=user)
        finally:
            connection.close()

    threads = [threading.Thread(target=claim, args=(u,)) for u in (reviewer, reviewer2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r is None for r in results.values()) == [False, True]
    assert Assignment.objects.count() == 1
