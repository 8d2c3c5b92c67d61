"""Dataset versions over the API (admins only): freeze one from a filter, list them, read
one, compare two versions row by row, and download a version's JSONL, verified first."""

from datetime import datetime
from typing import Literal

from django.http import HttpRequest, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from ninja import Field, Path, Query, Router, Schema, Status
from ninja.pagination import paginate

from labelling import models
from labelling.api.common import ADMIN, MAX_NUMBER, BodyIn, Error, Pages, admin_required
from labelling.datasets import selectors as dataset_selectors
from labelling.datasets import services as dataset_services
from labelling.datasets import storage

router = Router(tags=["datasets"])


class DatasetIn(BodyIn):
    dataset: str = Field(..., min_length=1, max_length=80)
    kind: Literal["grpo", "grpo_prompts", "dpo", "kto", "sft"]
    filter: dict = Field(default_factory=dict)


class DatasetVersion(Schema):
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


class DatasetCompare(Schema):
    added: list[str]
    removed: list[str]
    changed: list[str]
    unchanged: int


@router.post("", response={201: DatasetVersion, 400: Error, **ADMIN}, operation_id="dataset_create")
def dataset_create(request: HttpRequest, body: DatasetIn):
    admin_required(request)
    version = dataset_services.dataset_build(
        dataset=body.dataset, kind=body.kind, filter=body.filter, created_by=request.user
    )
    return Status(201, version)


@router.get("", response={200: list[DatasetVersion], **ADMIN}, operation_id="dataset_list")
@paginate(Pages)
def dataset_list(request: HttpRequest):
    admin_required(request)
    return models.DatasetVersion.objects.order_by("dataset", "number")


# Before /datasets/{dataset}/{number}: that path would take "compare" for a number.
@router.get(
    "/{dataset}/compare",
    response={200: DatasetCompare, 404: Error, 409: Error, **ADMIN},
    operation_id="dataset_compare",
)
def dataset_compare(
    request: HttpRequest,
    dataset: str,
    old: int = Query(..., ge=1, le=MAX_NUMBER),
    new: int = Query(..., ge=1, le=MAX_NUMBER),
):
    """Rows added, removed and changed from version `old` to version `new`."""
    admin_required(request)
    a = get_object_or_404(models.DatasetVersion, dataset=dataset, number=old)
    b = get_object_or_404(models.DatasetVersion, dataset=dataset, number=new)
    return dataset_selectors.dataset_compare(a, b)


@router.get(
    "/{dataset}/{number}",
    response={200: DatasetVersion, 404: Error, **ADMIN},
    operation_id="dataset_detail",
)
def dataset_detail(request: HttpRequest, dataset: str, number: int = Path(..., ge=1, le=MAX_NUMBER)):
    admin_required(request)
    return get_object_or_404(models.DatasetVersion, dataset=dataset, number=number)


@router.get(
    "/{dataset}/{number}/download",
    response={200: None, 404: Error, 409: Error, **ADMIN},
    operation_id="dataset_download",
)
def dataset_download(request: HttpRequest, dataset: str, number: int = Path(..., ge=1, le=MAX_NUMBER)):
    """The version's JSONL, streamed; a version whose file is missing or changed answers 409."""
    admin_required(request)
    version = get_object_or_404(models.DatasetVersion, dataset=dataset, number=number)
    storage.dataset_verify(version)
    response = StreamingHttpResponse(storage.dataset_stream(version), content_type="application/x-ndjson")
    response["Content-Disposition"] = f'attachment; filename="{version.dataset}-v{version.number}-{version.kind}.jsonl"'
    response["X-Content-SHA256"] = version.sha256
    return response
