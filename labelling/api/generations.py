"""Generations over the API: completions made elsewhere pushed in for review, and every
completion (answer, thinking, think-tag validity, revision links, the model version that wrote
it) read back by run, group or model version."""

from datetime import datetime

from django.http import HttpRequest
from ninja import Field, Query, Router, Schema, Status
from ninja.pagination import paginate

from labelling import models
from labelling.api.common import ADMIN, MAX_ID, MAX_NUMBER, BodyIn, Error, Pages, admin_required
from labelling.catalogue.importers import import_objects
from labelling.catalogue.schemas import GroupIn
from shaping_core.weights import GENERATOR_MODEL

router = Router(tags=["generations"])


class GenerationsIn(BodyIn):
    groups: list[GroupIn] = Field(..., min_length=1, max_length=1000)


class GenerationsPushed(Schema):
    run_id: int
    groups: int


class Producer(Schema):
    backend: str = Field(description="triton, inprocess, openai, external or human")
    endpoint: str = Field(description="the OpenAI-compatible endpoint's name (openai backend), else empty")
    model_name: str
    model_version: str


class Generation(Schema):
    id: int
    group_id: int
    index: int
    revision: int
    parent_id: int | None
    source: str
    text: str
    thinking: str
    think_valid: bool
    model_version: int | None = Field(
        None, description="the generator version (number) that wrote it; null for imports, endpoints and people"
    )
    producer: Producer | None = Field(None, description="what produced it (null when nothing was recorded)")
    created_at: datetime

    @staticmethod
    def resolve_model_version(obj) -> int | None:
        producer = obj.producer
        return producer.generator.number if producer is not None and producer.generator_id else None


@router.post("", response={201: GenerationsPushed, 400: Error, **ADMIN}, operation_id="generation_push")
def generation_push(request: HttpRequest, body: GenerationsIn):
    """Completions made elsewhere, one group per prompt, queued for review (all or nothing)."""
    admin_required(request)
    summary = import_objects("groups", "group", [g.model_dump(exclude_unset=True) for g in body.groups])
    return Status(201, {"run_id": summary.run_id, "groups": summary.groups})


@router.get("", response={200: list[Generation], **ADMIN}, operation_id="generation_list")
@paginate(Pages)
def generation_list(
    request: HttpRequest,
    run: int | None = Query(None, ge=1, le=MAX_ID),
    group: int | None = Query(None, ge=1, le=MAX_ID),
    model_version: int | None = Query(None, ge=1, le=MAX_NUMBER, description="only what this generator version wrote"),
):
    """Completions with their thinking, revision links and the model version that wrote them (an
    admin's token: a reviewer sees the completions of the group they hold, through the review
    endpoints)."""
    admin_required(request)
    rows = models.Generation.objects.select_related("producer__generator").order_by("id")
    if run is not None:
        rows = rows.filter(group__run_id=run)
    if group is not None:
        rows = rows.filter(group_id=group)
    if model_version is not None:
        rows = rows.filter(producer__generator__model_name=GENERATOR_MODEL, producer__generator__number=model_version)
    return rows
