"""Blind A/B over the API, for reviewers: take the next pair (two answers, A and B, no versions),
choose on it (stored once per submission id), or skip it. The versions are revealed with the
answer to a choice, as in the browser."""

import uuid
from typing import Literal

from django.http import HttpRequest
from ninja import Field, Path, Router, Schema, Status

from labelling.api.common import MAX_ID, READ, BodyIn, Error, reviewer_required
from labelling.models import PairChoice
from labelling.review.services import ReviewRefused
from labelling.versions.evaluation import pairs

router = Router(tags=["review"])


class Answer(Schema):
    label: Literal["A", "B"]
    text: str


class Pair(Schema):
    choice_id: int = Field(description="the reviewer's seat on the pair: choose or skip with it")
    prompt: list[dict] = Field(description="the conversation, without the system message")
    answers: list[Answer] = Field(description="A (shown left) and B (shown right)")
    leased_until: str


class ChoiceIn(BodyIn):
    choice: Literal["a", "b", "tie", "both_bad"]
    submission_id: uuid.UUID = Field(description="made by the client: a retry with it stores nothing twice")


class Chosen(Schema):
    stored: bool = Field(description="false for a retry of a choice already stored")
    a: int = Field(description="the version that wrote A")
    b: int = Field(description="the version that wrote B")


def _refused(exc: ReviewRefused):
    return Status(exc.status, {"detail": exc.message})


@router.post("/next", response={200: Pair, 204: None, **READ}, operation_id="pair_next")
def pair_next(request: HttpRequest):
    """The pair this reviewer holds, else the next open one (204 when none is waiting)."""
    reviewer_required(request)
    hold = pairs.pair_claim_next(reviewer=request.user)
    if hold is None:
        return Status(204, None)
    shown = pairs.pair_shown(hold)
    return {
        "choice_id": hold.pk,
        "prompt": [{"role": m.get("role"), "content": m.get("content")} for m in shown.messages],
        "answers": [{"label": "A", "text": shown.left.text}, {"label": "B", "text": shown.right.text}],
        "leased_until": hold.leased_until.isoformat(),
    }


@router.post(
    "/{choice_id}/choose",
    response={200: Chosen, 400: Error, 404: Error, 409: Error, **READ},
    operation_id="pair_choose",
)
def pair_choose(request: HttpRequest, body: ChoiceIn, choice_id: int = Path(..., ge=1, le=MAX_ID)):
    """`a` or `b` for the better answer, `tie`, or `both_bad`."""
    reviewer_required(request)
    try:
        stored = pairs.pair_choose(
            choice_id=choice_id,
            reviewer=request.user,
            choice={"a": "left", "b": "right"}.get(body.choice, body.choice),
            submission_id=body.submission_id,
        )
    except PairChoice.DoesNotExist:
        return Status(404, {"detail": f"no pair {choice_id} held by you"})
    except ReviewRefused as exc:
        return _refused(exc)
    hold = pairs.pair_hold(reviewer=request.user, choice_id=choice_id)
    evaluation = hold.pair.evaluation
    cand, base = evaluation.candidate.number, evaluation.baseline.number
    return {"stored": stored, "a": cand if hold.candidate_left else base, "b": base if hold.candidate_left else cand}


@router.post(
    "/{choice_id}/skip",
    response={204: None, 404: Error, 409: Error, **READ},
    operation_id="pair_skip",
)
def pair_skip(request: HttpRequest, choice_id: int = Path(..., ge=1, le=MAX_ID)):
    """Give the pair back unchosen; it is not offered to this reviewer again."""
    reviewer_required(request)
    if not PairChoice.objects.filter(pk=choice_id, reviewer=request.user).exists():
        return Status(404, {"detail": f"no pair {choice_id} held by you"})
    try:
        pairs.pair_skip(choice_id=choice_id, reviewer=request.user)
    except ReviewRefused as exc:
        return _refused(exc)
    return Status(204, None)
