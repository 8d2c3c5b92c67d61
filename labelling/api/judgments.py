"""Judgments over the API: scores from a judge that runs elsewhere pushed in for one
generation against a rubric version, and judge and human judgments read back (admins only)."""

from datetime import datetime
from typing import Literal

from django.core.exceptions import ValidationError
from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from ninja import Field, Query, Router, Schema, Status
from ninja.pagination import paginate

from labelling import models
from labelling.api.common import ADMIN, MAX_ID, MAX_NUMBER, BodyIn, Error, Pages, admin_required
from labelling.records import services as record_services

router = Router(tags=["judgments"])


class JudgmentIn(BodyIn):
    generation: int = Field(..., ge=1, le=MAX_ID)
    rubric: str = Field(..., min_length=1, max_length=80, description="rubric slug")
    rubric_version: int | None = Field(None, ge=1, le=MAX_NUMBER, description="defaults to the latest version")
    scores: dict[str, int]
    rationale: str = Field("", max_length=20000)
    model: str = Field("external-judge", min_length=1, max_length=120, description="the judge's name")


class Judgment(Schema):
    id: int
    generation_id: int
    rubric_id: int
    source: str
    status: str
    overall: float | None
    scores: dict[str, int]
    rationale: str
    error: str
    created_at: datetime

    @staticmethod
    def resolve_scores(obj: models.Judgment) -> dict[str, int]:
        return {s.criterion.key: s.score for s in obj.scores.all()}


@router.post("", response={201: Judgment, 400: Error, 404: Error, **ADMIN}, operation_id="judgment_push")
def judgment_push(request: HttpRequest, body: JudgmentIn):
    """Scores from a judge that runs elsewhere, for one generation against a rubric version."""
    admin_required(request)
    generation = get_object_or_404(models.Generation, pk=body.generation)
    rubrics = models.Rubric.objects.filter(slug=body.rubric)
    rubric = (
        rubrics.filter(version=body.rubric_version) if body.rubric_version else rubrics.order_by("-version")
    ).first()
    if rubric is None:
        version = f" version {body.rubric_version}" if body.rubric_version else ""
        raise ValidationError({"rubric": f"no rubric {body.rubric!r}{version}"})
    judgment = record_services.judgment_record(
        generation=generation,
        rubric=rubric,
        source=models.Judgment.Source.JUDGE,
        scores=body.scores,
        rationale=body.rationale,
        producer=record_services.producer_get_or_create(backend="external", model_name=body.model),
    )
    return Status(201, judgment)


@router.get("", response={200: list[Judgment], **ADMIN}, operation_id="judgment_list")
@paginate(Pages)
def judgment_list(
    request: HttpRequest,
    generation: int | None = Query(None, ge=1, le=MAX_ID),
    run: int | None = Query(None, ge=1, le=MAX_ID),
    source: Literal["judge", "human"] | None = None,
):
    admin_required(request)
    rows = models.Judgment.objects.prefetch_related("scores__criterion").order_by("id")
    if generation is not None:
        rows = rows.filter(generation_id=generation)
    if run is not None:
        rows = rows.filter(generation__group__run_id=run)
    if source is not None:
        rows = rows.filter(source=source)
    return rows
