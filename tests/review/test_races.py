"""Second actors at the wrong moment, as real concurrent transactions (threads, each with its
own database connection): two tabs of one reviewer, a submission racing its own expiring
lease, a revise run racing a reviewer's rewrite of the same completion."""

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from labelling.models import Assignment, Generation, Group
from labelling.records import services as record_services
from labelling.review import services as review_services
from tests.review.conftest import review_form

pytestmark = pytest.mark.django_db(transaction=True)


def at_once(*actions) -> list:
    """Run the actions in threads released together; their results (or exceptions), in order."""
    barrier, results = threading.Barrier(len(actions)), [None] * len(actions)

    def run(i, action):
        try:
            barrier.wait()
            results[i] = action()
        except Exception as exc:  # reported to the test, which asserts on it
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, a)) for i, a in enumerate(actions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results


def test_one_reviewer_in_two_tabs_holds_one_group(demo, reviewer):
    for _ in range(5):
        Assignment.objects.filter(reviewer=reviewer).delete()
        first, second = at_once(*[lambda: review_services.assignment_claim_next(reviewer=reviewer)] * 2)
        assert isinstance(first, Assignment) and isinstance(second, Assignment), (first, second)
        assert first.pk == second.pk
        assert Assignment.objects.filter(reviewer=reviewer).count() == 1


def test_a_submission_racing_its_expiring_lease_never_overfills_the_group(demo, reviewer, reviewer2):
    Group.objects.exclude(prompt__external_id="packing").delete()
    group = Group.objects.get()
    for _ in range(6):
        Assignment.objects.all().delete()
        Group.objects.filter(pk=group.pk).update(review_count=0)
        _submit_at_expiry_while_another_claims(reviewer, reviewer2)
        seats = Assignment.objects.filter(group=group).exclude(status=Assignment.Status.SKIPPED)
        live = [a for a in seats if a.status == Assignment.Status.SUBMITTED or a.leased_until > timezone.now()]
        assert len(live) <= group.overlap_target, [(a.reviewer_id, a.status, a.leased_until) for a in seats]
        group.refresh_from_db()
        assert group.review_count <= group.overlap_target


def _submit_at_expiry_while_another_claims(reviewer, other) -> list:
    hold = review_services.assignment_claim_next(reviewer=reviewer)
    submission = _submission(review_form(hold))
    expiry = timezone.now() + timedelta(milliseconds=150)
    Assignment.objects.filter(pk=hold.pk).update(leased_until=expiry)

    def submit():
        _sleep_until(expiry)
        return review_services.review_submit(assignment_id=hold.pk, reviewer=reviewer, submission=submission)

    def claim():
        _sleep_until(expiry)
        return review_services.assignment_claim_next(reviewer=other)

    return at_once(submit, claim)


def test_a_revise_run_racing_a_reviewers_rewrite_stores_both(demo, reviewer):
    hold = review_services.assignment_claim_next(reviewer=reviewer)
    original = Generation.objects.get(pk=hold.shown_order[0])
    for round_ in range(4):
        revised, rewritten = _revise_and_rewrite(hold, original, reviewer, label=str(round_))
        assert isinstance(revised, Generation), revised
        assert isinstance(rewritten, Generation), rewritten
        assert revised.revision != rewritten.revision
    revisions = list(
        Generation.objects.filter(group=original.group, index=original.index).values_list("revision", flat=True)
    )
    assert sorted(revisions) == list(range(9))  # the original and 8 revisions, none lost, none twice


def _revise_and_rewrite(hold, original, reviewer, label: str) -> list:
    def revise():
        latest = Generation.objects.filter(group=original.group, index=original.index).order_by("-revision")[0]
        return record_services.generation_record(
            group=original.group,
            index=original.index,
            messages=original.messages,
            raw_text=f"revised {label}",
            producer=None,
            source=Generation.Source.REVISION,
            parent=latest,
        )

    def rewrite():
        return review_services.generation_rewrite(
            assignment_id=hold.pk, reviewer=reviewer, generation_id=original.pk, text=f"rewritten {label}"
        )

    return at_once(revise, rewrite)


def _sleep_until(moment) -> None:
    time.sleep(max(0.0, (moment - timezone.now()).total_seconds()))


def _submission(form: dict):
    from django.http import QueryDict

    from labelling.review.views import _submission_from

    query = QueryDict(mutable=True)
    query.update(form)
    return _submission_from(query)
