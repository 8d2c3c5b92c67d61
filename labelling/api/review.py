"""Reviewing over the API: claim the next group, submit its rating, skip it. The same queue,
leases and checks as the review page (labelling/review/views.py), for a script that rates."""

import uuid
from datetime import datetime
from typing import Literal

from django.http import Http404, HttpRequest
from ninja import Field, Path, Router, Schema, Status

from labelling.api.common import ADMIN, MAX_ID, BodyIn, Error, reviewer_required
from labelling.models import Assignment
from labelling.review import selectors, services

router = Router(tags=["review"])

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


class ReviewCriterion(Schema):
    key: str
    description: str
    scale_min: int
    scale_max: int
    rule: bool = Field(description="scored by its rule: leave it out of `scores`")


class ReviewCompletion(Schema):
    generation: int
    label: str = Field(description="A, B, ...: the reviewer's order (shuffled per reviewer and group)")
    text: str = Field(description="the visible answer, think block removed")


class ReviewGroup(Schema):
    assignment: int
    group: int
    run: int | None = Field(description="the run that made the group (None: imported or pushed completions)")
    prompt: list[dict] = Field(description="the conversation, the character's system message left out")
    completions: list[ReviewCompletion]
    criteria: list[ReviewCriterion]
    leased_until: datetime


class ReviewIn(BodyIn):
    submission_id: uuid.UUID = Field(description="made by the client: a retry with the same id stores nothing twice")
    scores: dict[int, dict[str, int]] = Field(
        description="generation id -> criterion key -> score, every completion, every criterion without a rule"
    )
    ranks: dict[int, int] = Field(default_factory=dict, description="generation id -> rank (1 best), all or none")
    critiques: dict[int, str] = Field(default_factory=dict, description="generation id -> a note")
    preference: Literal["a", "b", "tie", "both_bad"] | None = Field(
        None, description="groups of two: A or B as shown, a tie, or both bad"
    )


class Stored(Schema):
    stored: bool = Field(description="false for a retry of a submission already stored")


class Skipped(Schema):
    skipped: bool


def _group(assignment: Assignment) -> dict:
    """What the review page shows of a held group (views._group_context), as data."""
    generations = selectors.review_generations(assignment)
    rubric = selectors.group_rubric(assignment.group)
    messages = generations[0].messages if generations else []
    return {
        "assignment": assignment.pk,
        "group": assignment.group_id,
        "run": assignment.group.run_id,
        "prompt": [m for m in messages if m.get("role") != "system"],
        "completions": [
            {"generation": g.pk, "label": LETTERS[i % len(LETTERS)], "text": g.text} for i, g in enumerate(generations)
        ],
        "criteria": [
            {
                "key": c.key,
                "description": c.description,
                "scale_min": c.scale_min,
                "scale_max": c.scale_max,
                "rule": c.is_rule,
            }
            for c in (rubric.criteria.all() if rubric else [])
        ],
        "leased_until": assignment.leased_until,
    }


@router.post("/next", response={200: ReviewGroup, 204: None, **ADMIN}, operation_id="review_next")
def review_next(request: HttpRequest):
    """The group this token's user holds, else the next one from the queue under a new lease;
    204 when nothing is left to review."""
    reviewer_required(request)
    assignment = services.assignment_claim_next(reviewer=request.user)
    if assignment is None:
        return Status(204, None)
    return _group(assignment)


@router.post(
    "/{assignment_id}/submit",
    response={200: Stored, 400: Error, 404: Error, 409: Error, **ADMIN},
    operation_id="review_submit",
)
def review_submit(request: HttpRequest, body: ReviewIn, assignment_id: int = Path(..., ge=1, le=MAX_ID)):
    """Store the rating of a held group. A score outside its scale, a missing completion or
    criterion is a 400 and stores nothing; a lapsed or finished hold is a 409."""
    reviewer_required(request)
    submission = services.ReviewSubmission(
        submission_id=body.submission_id,
        scores=body.scores,
        ranks=body.ranks,
        critiques=body.critiques,
        preference=body.preference,
    )
    try:
        stored = services.review_submit(assignment_id=assignment_id, reviewer=request.user, submission=submission)
    except Assignment.DoesNotExist:  # not this user's, or no such assignment
        raise Http404("no such assignment") from None
    except services.ReviewRefused as exc:
        return Status(exc.status, {"detail": exc.message})
    return {"stored": stored}


@router.post(
    "/{assignment_id}/skip",
    response={200: Skipped, 404: Error, 409: Error, **ADMIN},
    operation_id="review_skip",
)
def review_skip(request: HttpRequest, assignment_id: int = Path(..., ge=1, le=MAX_ID)):
    """Give a held group back unrated; it is not offered to this user again."""
    reviewer_required(request)
    assignment = selectors.assignment_for_reviewer(reviewer=request.user, assignment_id=assignment_id)
    try:
        services.review_skip(assignment_id=assignment.pk, reviewer=request.user)
    except services.ReviewRefused as exc:
        return Status(exc.status, {"detail": exc.message})
    return {"skipped": True}
