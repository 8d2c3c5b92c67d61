"""The catalogue over the API: characters, rubrics (every version, with their criteria) and
prompt sets to read, and the one import endpoint that writes any of them."""

from django.core.exceptions import ValidationError
from django.http import HttpRequest
from ninja import Field, Router, Schema, Status
from ninja.pagination import paginate

from labelling import models
from labelling.api.common import ADMIN, READ, BodyIn, Error, Pages, admin_required
from labelling.catalogue import selectors as catalogue_selectors
from labelling.catalogue.importers import import_text

router = Router(tags=["catalogue"])


class Character(Schema):
    id: int
    slug: str
    name: str
    persona: str


class Criterion(Schema):
    key: str
    description: str
    scale_min: int
    scale_max: int
    weight: float
    rule: dict | None = Field(None, description="scored by this rule, without a model (docs/import-format.md)")


class Rubric(Schema):
    id: int
    slug: str
    version: int
    name: str
    criteria: list[Criterion]

    @staticmethod
    def resolve_criteria(obj: models.Rubric) -> list:
        return list(obj.criteria.all())


class PromptSet(Schema):
    id: int
    slug: str
    name: str
    prompt_count: int

    @staticmethod
    def resolve_prompt_count(obj: models.PromptSet) -> int:
        return obj.prompts.count()


class ImportIn(BodyIn):
    name: str = Field("api.jsonl", description="file name: its extension picks JSONL / YAML / JSON")
    content: str = Field(..., min_length=1, description="the file's text")


class ImportSummary(Schema):
    summary: str
    characters: int
    rubrics: int
    prompt_sets: int
    prompts: int
    groups: int


def rubric_named(slug: str | None) -> models.Rubric | None:
    """The latest version of a rubric a body names; a 400 naming the field if there is none."""
    if slug is None:
        return None
    rubric = catalogue_selectors.rubric_latest(slug)
    if rubric is None:
        raise ValidationError({"rubric": f"no rubric {slug!r}"})
    return rubric


@router.get("/characters", response={200: list[Character], **READ}, operation_id="character_list")
@paginate(Pages)
def character_list(request: HttpRequest):
    return models.Character.objects.order_by("id")


@router.get("/rubrics", response={200: list[Rubric], **READ}, operation_id="rubric_list")
@paginate(Pages)
def rubric_list(request: HttpRequest):
    return models.Rubric.objects.prefetch_related("criteria").order_by("slug", "version")


@router.get("/prompt-sets", response={200: list[PromptSet], **READ}, operation_id="prompt_set_list")
@paginate(Pages)
def prompt_set_list(request: HttpRequest):
    return models.PromptSet.objects.order_by("id")


@router.post("/import", response={201: ImportSummary, 400: Error, **ADMIN}, operation_id="catalogue_import")
def catalogue_import(request: HttpRequest, body: ImportIn):
    """Characters, rubrics, prompt sets, prompts or completion groups: all or nothing."""
    admin_required(request)
    summary = import_text(body.name, body.content)
    counts = {k: getattr(summary, k) for k in ("characters", "rubrics", "prompt_sets", "prompts", "groups")}
    return Status(201, {"summary": str(summary), **counts})
