"""The explorer's pages (admins): a run's or a dataset version's completions, filtered, sorted
and paged by key; one group with every score; a frozen version's file, row by row."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from labelling.access.decorators import admin_required
from labelling.datasets import storage
from labelling.explorer import selectors
from labelling.models import DatasetVersion, Group, PipelineRun


@require_GET
@admin_required
def run_rows(request: HttpRequest, run_id: int) -> HttpResponse:
    run = get_object_or_404(PipelineRun.objects.select_related("rubric", "character", "prompt_set"), pk=run_id)
    generations, rubric = selectors.run_scope(run)
    return _rows_page(request, generations, rubric, {"run": run})


@require_GET
@admin_required
def dataset_rows(request: HttpRequest, version_id: int) -> HttpResponse:
    version = get_object_or_404(DatasetVersion, pk=version_id)
    generations, rubric = selectors.dataset_scope(version)
    return _rows_page(request, generations, rubric, {"version": version})


def _rows_page(request: HttpRequest, generations, rubric, context: dict) -> HttpResponse:
    query = selectors.Query.from_params(request.GET)
    page = selectors.explore(generations, rubric, query)
    context.update(
        page=page,
        query=query,
        rubric=rubric,
        sorts=selectors.SORTS,
        failures=selectors.FAILURES,
        reviewers=selectors.reviewers_of(generations),
        next_params=query.params(after=page["after"]) if page["after"] else None,
        first_params=query.params(after="") if query.after else None,
    )
    return render(request, "explorer/rows.html", context)


@require_GET
@admin_required
def group_detail(request: HttpRequest, group_id: int) -> HttpResponse:
    group = get_object_or_404(Group.objects.select_related("prompt", "run__rubric", "character"), pk=group_id)
    rows = selectors.group_rows(group, group.run.rubric)
    return render(request, "explorer/group.html", {"group": group, "rows": rows, "rubric": group.run.rubric})


@require_GET
@admin_required
def dataset_preview(request: HttpRequest, version_id: int) -> HttpResponse:
    version = get_object_or_404(DatasetVersion, pk=version_id)
    after = request.GET.get("after", "")
    offset = int(after) if after.isascii() and after.isdigit() and len(after) < 18 else 0
    try:
        page = selectors.dataset_file_page(version, offset=offset)
    except storage.DatasetCorrupt as exc:
        return render(request, "explorer/dataset.html", {"version": version, "corrupt": str(exc)}, status=409)
    return render(request, "explorer/dataset.html", {"version": version, "page": page, "offset": offset})
