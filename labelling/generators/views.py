"""The model versions page (admins): the generator's lineage, v1 -> v2 -> ..., with each
version's dataset, method, status and which one is current."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from labelling.access.decorators import admin_required
from labelling.generators import selectors


@require_GET
@admin_required
def model_versions(request: HttpRequest) -> HttpResponse:
    return render(request, "generators/list.html", {"versions": selectors.generator_versions()})
