"""Review fixtures: more reviewers, a client per user, and filled-in review forms."""

import uuid

import pytest
from django.test import Client

from labelling.access.roles import REVIEWER
from labelling.models import Assignment
from labelling.review import selectors as review_selectors
from tests.conftest import _make_user


@pytest.fixture
def reviewer2(db):
    return _make_user("rob", REVIEWER)


@pytest.fixture
def reviewer3(db):
    return _make_user("ria", REVIEWER)


@pytest.fixture
def client_for():
    def make(user) -> Client:
        c = Client()
        c.force_login(user)
        return c

    return make


def review_form(assignment: Assignment, score: int | None = None, **extra) -> dict:
    """A complete, valid form for the assignment's group: every criterion scored
    (its maximum unless `score` is given), a fresh submission id."""
    rubric = review_selectors.group_rubric(assignment.group)
    data = {"submission_id": str(uuid.uuid4())}
    for generation in review_selectors.review_generations(assignment):
        for c in rubric.criteria.all():
            data[f"score-{generation.pk}-{c.key}"] = str(c.scale_max if score is None else score)
    data.update(extra)
    return data


def held(user) -> Assignment | None:
    return review_selectors.assignment_current(reviewer=user)
