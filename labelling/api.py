"""The JSON API (django-ninja), at /api/ with OpenAPI docs at /api/docs.

Bearer tokens (`manage.py create_token USER`); writes need an admin's token. Errors
are JSON: {"detail": "...", "errors": {"field": "message"}}. Lists paginate with
?limit= and ?offset=.
"""

from datetime import datetime
from typing import Literal

from django.core.exceptions import ValidationError
from django.http import HttpRequest, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from ninja import Field, NinjaAPI, Path, Query, Schema, Status
from ninja.errors import HttpError
from ninja.errors import ValidationError as BodyInvalid
from ninja.pagination import LimitOffsetPagination, paginate
from ninja.security import HttpBearer

from labelling import errors
from labelling.access import roles, tokens
from labelling.catalogue import architext
from labelling.catalogue import selectors as catalogue_selectors
from labelling.catalogue.importers import ImportFailed, import_objects, import_text
from labelling.catalogue.schemas import GroupIn
from labelling.characters import services as character_services
from labelling.datasets import selectors as dataset_selectors
from labelling.datasets import services as dataset_services
from labelling.datasets import storage
from labelling.models import (
    Character,
    DatasetVersion,
    Generation,
    Judgment,
    PipelineRun,
    PromptSet,
    Rubric,
)
from labelling.runs import services as run_services


class TokenAuth(HttpBearer):
    def authenticate(self, request: HttpRequest, token: str):
        row = tokens.token_authenticate(token)
        if row is None:
            return None
        request.user = row.user
        return row


MAX_ID = 2**63 - 1  # the database's integer range: a larger id is a 422, not an overflow


class Pages(LimitOffsetPagination):
    """?limit= (1..500, default 100) and ?offset=."""

    class Input(Schema):
        limit: int = Field(100, ge=1, le=500)
        offset: int = Field(0, ge=0, le=10**9)


api = NinjaAPI(title="Shaping API", version="1", auth=TokenAuth(), urls_namespace="api")


@api.exception_handler(ValidationError)
def validation_error(request, exc: ValidationError):
    return api.create_response(
        request,
        {"detail": errors.validation_text(exc), "errors": errors.validation_fields(exc)},
        status=400,
    )


@api.exception_handler(BodyInvalid)
def body_invalid(request, exc: BodyInvalid):
    """A body, query or path value of the wrong shape or type: 422, naming each field."""
    errors = {}
    for err in exc.errors:
        loc = [str(x) for x in err.get("loc", ()) if x not in ("body", "payload", "query", "path")]
        errors[".".join(loc) or "body"] = str(err.get("msg", "invalid"))
    detail = "; ".join(f"{k}: {v}" for k, v in errors.items())
    return api.create_response(request, {"detail": detail, "errors": errors}, status=422)


@api.exception_handler(ImportFailed)
def import_failed(request, exc: ImportFailed):
    errors = {}
    for p in exc.problems:
        key = p.field or p.file
        if p.line and not p.field.startswith(p.file):
            key = f"line {p.line}: {key}"
        errors[key] = p.message
    return api.create_response(request, {"detail": str(exc), "errors": errors}, status=400)


@api.exception_handler(storage.DatasetCorrupt)
def dataset_corrupt(request, exc: storage.DatasetCorrupt):
    return api.create_response(request, {"detail": str(exc), "errors": {}}, status=409)


def _admin(request) -> None:
    if not roles.is_admin(request.user):
        raise HttpError(403, "this needs an admin's token")


# --- schemas ----------------------------------------------------------------------------


class Error(Schema):
    detail: str
    errors: dict[str, str] = {}


# What any endpoint may answer besides success: a missing or wrong token, a value of the
# wrong type in the path, query or body; ADMIN adds the refusal of a reviewer's token.
READ = {401: Error, 422: Error}
ADMIN = {**READ, 403: Error}


class CharacterOut(Schema):
    id: int
    slug: str
    name: str
    persona: str


class CriterionOut(Schema):
    key: str
    description: str
    scale_min: int
    scale_max: int
    weight: float


class RubricOut(Schema):
    id: int
    slug: str
    version: int
    name: str
    criteria: list[CriterionOut]

    @staticmethod
    def resolve_criteria(obj: Rubric) -> list:
        return list(obj.criteria.all())


class PromptSetOut(Schema):
    id: int
    slug: str
    name: str
    prompt_count: int

    @staticmethod
    def resolve_prompt_count(obj: PromptSet) -> int:
        return obj.prompts.count()


class ImportIn(Schema):
    name: str = Field("api.jsonl", description="file name: its extension picks JSONL / YAML / JSON")
    content: str = Field(..., min_length=1, description="the file's text")


class ImportOut(Schema):
    summary: str
    characters: int
    rubrics: int
    prompt_sets: int
    prompts: int
    groups: int


class RunIn(Schema):
    kind: Literal["generate", "judge", "revise"]
    character: str | None = Field(None, description="character slug (generate)")
    prompt_set: str | None = Field(None, description="prompt set slug (generate)")
    rubric: str | None = Field(None, description="rubric slug, latest version (judges each completion)")
    source_run: int | None = Field(None, ge=1, le=MAX_ID, description="the run whose completions to judge / revise")
    group_size: int = Field(4, ge=1, le=16)
    max_tokens: int = Field(128, ge=1, le=4096)
    revise: bool = False
    revise_threshold: float = Field(0.5, ge=0, le=1)
    max_rounds: int = Field(1, ge=1, le=5)


class RunOut(Schema):
    id: int
    kind: str
    status: str
    total_items: int
    done_items: int
    failed_items: int
    progress_percent: int
    errors: list[dict]
    created_at: datetime
    finished_at: datetime | None


class GenerationsIn(Schema):
    groups: list[GroupIn] = Field(..., min_length=1, max_length=1000)


class GenerationsOut(Schema):
    run_id: int
    groups: int


class GenerationOut(Schema):
    id: int
    group_id: int
    index: int
    revision: int
    parent_id: int | None
    source: str
    text: str
    thinking: str
    think_valid: bool
    created_at: datetime


class JudgmentIn(Schema):
    generation: int = Field(..., ge=1, le=MAX_ID)
    rubric: str = Field(..., min_length=1, max_length=80, description="rubric slug")
    rubric_version: int | None = Field(None, ge=1, le=2**31 - 1, description="defaults to the latest version")
    scores: dict[str, int]
    rationale: str = Field("", max_length=20000)
    model: str = Field("external-judge", min_length=1, max_length=120, description="the judge's name")


class JudgmentOut(Schema):
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
    def resolve_scores(obj: Judgment) -> dict[str, int]:
        return {s.criterion.key: s.score for s in obj.scores.all()}


class DatasetIn(Schema):
    dataset: str = Field(..., min_length=1, max_length=80)
    kind: Literal["grpo", "grpo_prompts", "dpo", "kto", "sft"]
    filter: dict = Field(default_factory=dict)


class DatasetOut(Schema):
    id: int
    dataset: str
    number: int
    kind: str
    row_count: int
    sha256: str
    filter: dict
    reward_policy: dict
    stats: dict
    created_at: datetime


# --- characters, rubrics, prompt sets ------------------------------------------------------


@api.get("/characters", response={200: list[CharacterOut], **READ}, tags=["catalogue"])
@paginate(Pages)
def characters(request):
    return Character.objects.order_by("id")


@api.get("/rubrics", response={200: list[RubricOut], **READ}, tags=["catalogue"])
@paginate(Pages)
def rubrics(request):
    return Rubric.objects.prefetch_related("criteria").order_by("slug", "version")


@api.get("/prompt-sets", response={200: list[PromptSetOut], **READ}, tags=["catalogue"])
@paginate(Pages)
def prompt_sets(request):
    return PromptSet.objects.order_by("id")


@api.post("/import", response={201: ImportOut, 400: Error, **ADMIN}, tags=["catalogue"])
def import_file(request, body: ImportIn):
    """Characters, rubrics, prompt sets, prompts or completion groups: all or nothing."""
    _admin(request)
    summary = import_text(body.name, body.content)
    counts = {k: getattr(summary, k) for k in ("characters", "rubrics", "prompt_sets", "prompts", "groups")}
    return Status(201, {"summary": str(summary), **counts})


# --- runs -----------------------------------------------------------------------------------


def _slug(model, slug: str | None, field: str):
    if slug is None:
        return None
    row = model.objects.filter(slug=slug).first()
    if row is None:
        raise ValidationError({field: f"no {model._meta.verbose_name} {slug!r}"})
    return row


def _rubric(slug: str | None) -> Rubric | None:
    """The latest version of a rubric named in a body; a 400 naming the field if there is none."""
    if slug is None:
        return None
    rubric = catalogue_selectors.rubric_latest(slug)
    if rubric is None:
        raise ValidationError({"rubric": f"no rubric {slug!r}"})
    return rubric


@api.post("/runs", response={201: RunOut, 200: RunOut, 400: Error, **ADMIN}, tags=["runs"])
def run_create(request, body: RunIn):
    """Queue a run. Send an Idempotency-Key header: the same key returns the same run (200)."""
    _admin(request)
    rubric = _rubric(body.rubric)
    source = None
    if body.source_run is not None:
        source = PipelineRun.objects.filter(pk=body.source_run).first()
        if source is None:
            raise ValidationError({"source_run": f"no run {body.source_run}"})
    run, created = run_services.run_start(
        kind=body.kind,
        character=_slug(Character, body.character, "character"),
        prompt_set=_slug(PromptSet, body.prompt_set, "prompt_set"),
        rubric=rubric,
        source_run=source,
        group_size=body.group_size,
        created_by=request.user,
        idempotency_key=request.headers.get("Idempotency-Key") or None,
        params={
            "sampling": {"max_tokens": body.max_tokens},
            "revise": body.revise,
            "revise_threshold": body.revise_threshold,
            "max_rounds": body.max_rounds,
        },
    )
    return Status(201 if created else 200, run)


@api.get("/runs", response={200: list[RunOut], **READ}, tags=["runs"])
@paginate(Pages)
def runs(request):
    return PipelineRun.objects.order_by("-id")


@api.get("/runs/{run_id}", response={200: RunOut, 404: Error, **READ}, tags=["runs"])
def run_status(request, run_id: int = Path(..., ge=1, le=MAX_ID)):
    return get_object_or_404(PipelineRun, pk=run_id)


@api.post("/runs/{run_id}/cancel", response={200: RunOut, 404: Error, **ADMIN}, tags=["runs"])
def run_cancel(request, run_id: int = Path(..., ge=1, le=MAX_ID)):
    _admin(request)
    return run_services.run_cancel(run=get_object_or_404(PipelineRun, pk=run_id))


# --- external generations and judgments ------------------------------------------------------


@api.post("/generations", response={201: GenerationsOut, 400: Error, **ADMIN}, tags=["generations"])
def generations_push(request, body: GenerationsIn):
    """Completions made elsewhere, one group per prompt, queued for review (all or nothing)."""
    _admin(request)
    summary = import_objects("groups", "group", [g.model_dump(exclude_unset=True) for g in body.groups])
    return Status(201, {"run_id": summary.run_id, "groups": summary.groups})


@api.get("/generations", response={200: list[GenerationOut], **READ}, tags=["generations"])
@paginate(Pages)
def generations(
    request, run: int | None = Query(None, ge=1, le=MAX_ID), group: int | None = Query(None, ge=1, le=MAX_ID)
):
    rows = Generation.objects.order_by("id")
    if run is not None:
        rows = rows.filter(group__run_id=run)
    if group is not None:
        rows = rows.filter(group_id=group)
    return rows


@api.post("/judgments", response={201: JudgmentOut, 400: Error, 404: Error, **ADMIN}, tags=["judgments"])
def judgment_push(request, body: JudgmentIn):
    """Scores from a judge that runs elsewhere, for one generation against a rubric version."""
    _admin(request)
    generation = get_object_or_404(Generation, pk=body.generation)
    rubrics = Rubric.objects.filter(slug=body.rubric)
    rubric = (
        rubrics.filter(version=body.rubric_version) if body.rubric_version else rubrics.order_by("-version")
    ).first()
    if rubric is None:
        raise ValidationError(
            {
                "rubric": f"no rubric {body.rubric!r}"
                + (f" version {body.rubric_version}" if body.rubric_version else "")
            }
        )
    judgment = run_services.judgment_record(
        generation=generation,
        rubric=rubric,
        source=Judgment.Source.JUDGE,
        scores=body.scores,
        rationale=body.rationale,
        model_version=run_services.model_version_get_or_create(backend="external", model_name=body.model),
    )
    return Status(201, judgment)


@api.get("/judgments", response={200: list[JudgmentOut], **ADMIN}, tags=["judgments"])
@paginate(Pages)
def judgments(
    request,
    generation: int | None = Query(None, ge=1, le=MAX_ID),
    run: int | None = Query(None, ge=1, le=MAX_ID),
    source: Literal["judge", "human"] | None = None,
):
    _admin(request)
    rows = Judgment.objects.prefetch_related("scores__criterion").order_by("id")
    if generation is not None:
        rows = rows.filter(generation_id=generation)
    if run is not None:
        rows = rows.filter(generation__group__run_id=run)
    if source is not None:
        rows = rows.filter(source=source)
    return rows


# --- character sheets -------------------------------------------------------------------------


class SheetsIn(Schema):
    concept: str = Field(..., min_length=1, max_length=2000, description="what kind of character to design")
    count: int = Field(4, ge=1, le=16, description="sheets to generate (one GRPO group)")
    max_tokens: int = Field(2048, ge=64, le=8192)
    rubric: str | None = Field(None, description="rubric slug to judge the sheets with (coherence)")


class PromoteIn(Schema):
    slug: str = Field(..., min_length=1, max_length=80)


@api.post("/sheets", response={201: RunOut, 200: RunOut, 400: Error, **ADMIN}, tags=["characters"])
def sheets_generate(request, body: SheetsIn):
    """Queue a run generating character sheets under the sheet's JSON schema (Idempotency-Key as for runs)."""
    _admin(request)
    run, created = character_services.sheet_run_start(
        concept=body.concept,
        count=body.count,
        max_tokens=body.max_tokens,
        rubric=_rubric(body.rubric),
        created_by=request.user,
        idempotency_key=request.headers.get("Idempotency-Key") or None,
    )
    return Status(201 if created else 200, run)


@api.post(
    "/sheets/{generation_id}/promote",
    response={201: CharacterOut, 400: Error, 404: Error, **ADMIN},
    tags=["characters"],
)
def sheet_promote(request, body: PromoteIn, generation_id: int = Path(..., ge=1, le=MAX_ID)):
    """Make a character of a completion holding a valid sheet (with its glTF figure)."""
    _admin(request)
    generation = get_object_or_404(Generation, pk=generation_id)
    return Status(201, character_services.sheet_promote(generation=generation, slug=body.slug))


class PuzzlesIn(Schema):
    name: str = Field("puzzles.jsonl", min_length=1, max_length=200)
    content: str = Field(..., min_length=1, description="Architext rows, one JSON object per line")
    prompt_set: str = Field(..., min_length=1, max_length=80, description="slug of the new prompt set")


@api.post("/puzzles", response={201: PromptSetOut, 400: Error, **ADMIN}, tags=["characters"])
def puzzles_import(request, body: PuzzlesIn):
    """Architext decision puzzles become a prompt set of decision prompts (all or nothing)."""
    _admin(request)
    return Status(201, architext.puzzles_import(body.name, body.content, prompt_set=body.prompt_set))


# --- datasets ---------------------------------------------------------------------------------


@api.post("/datasets", response={201: DatasetOut, 400: Error, **ADMIN}, tags=["datasets"])
def dataset_create(request, body: DatasetIn):
    _admin(request)
    version = dataset_services.dataset_build(
        dataset=body.dataset, kind=body.kind, filter=body.filter, created_by=request.user
    )
    return Status(201, version)


@api.get("/datasets", response={200: list[DatasetOut], **ADMIN}, tags=["datasets"])
@paginate(Pages)
def dataset_list(request):
    _admin(request)
    return DatasetVersion.objects.order_by("dataset", "number")


class CompareOut(Schema):
    added: list[str]
    removed: list[str]
    changed: list[str]
    unchanged: int


@api.get("/datasets/{dataset}/compare", response={200: CompareOut, 404: Error, 409: Error, **ADMIN}, tags=["datasets"])
def dataset_compare(
    request, dataset: str, old: int = Query(..., ge=1, le=2**31 - 1), new: int = Query(..., ge=1, le=2**31 - 1)
):
    """Rows added, removed and changed from version `old` to version `new`."""
    _admin(request)
    a = get_object_or_404(DatasetVersion, dataset=dataset, number=old)
    b = get_object_or_404(DatasetVersion, dataset=dataset, number=new)
    return dataset_selectors.dataset_compare(a, b)


@api.get("/datasets/{dataset}/{number}", response={200: DatasetOut, 404: Error, **ADMIN}, tags=["datasets"])
def dataset_detail(request, dataset: str, number: int = Path(..., ge=1, le=2**31 - 1)):
    _admin(request)
    return get_object_or_404(DatasetVersion, dataset=dataset, number=number)


@api.get(
    "/datasets/{dataset}/{number}/download", response={200: None, 404: Error, 409: Error, **ADMIN}, tags=["datasets"]
)
def dataset_download(request, dataset: str, number: int = Path(..., ge=1, le=2**31 - 1)):
    """The version's JSONL, streamed; a version whose file is missing or changed answers 409."""
    _admin(request)
    version = get_object_or_404(DatasetVersion, dataset=dataset, number=number)
    storage.dataset_verify(version)
    response = StreamingHttpResponse(storage.dataset_stream(version), content_type="application/x-ndjson")
    response["Content-Disposition"] = f'attachment; filename="{version.dataset}-v{version.number}-{version.kind}.jsonl"'
    response["X-Content-SHA256"] = version.sha256
    return response


@api.api_operation(["GET", "POST", "PUT", "PATCH", "DELETE"], "/{path:rest}", auth=None, include_in_schema=False)
def not_found(request, rest: str):
    """Any other path under /api/: JSON, like every other answer."""
    return api.create_response(request, {"detail": f"no endpoint /api/{rest}", "errors": {}}, status=404)
