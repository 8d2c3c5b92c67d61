"""The campaign pages (admins): every campaign with its status, and one campaign's rounds as a
timeline with the figures the API returns (`selectors.campaign_figures`), plus its actions."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from labelling.access.decorators import admin_required
from labelling.campaigns import selectors, services
from labelling.models import Campaign


@require_GET
@admin_required
def campaign_list(request: HttpRequest) -> HttpResponse:
    return render(request, "campaigns/list.html", {"campaigns": selectors.campaigns(), "nav_section": "campaigns"})


@require_GET
@admin_required
def campaign_detail(request: HttpRequest, slug: str) -> HttpResponse:
    campaign = get_object_or_404(
        Campaign.objects.select_related("character", "rubric", "prompt_set", "held_out"), slug=slug
    )
    return render(
        request,
        "campaigns/detail.html",
        {"campaign": campaign, "f": selectors.campaign_figures(campaign), "nav_section": "campaigns"},
    )


@require_POST
@admin_required
def campaign_action(request: HttpRequest, slug: str) -> HttpResponse:
    campaign = get_object_or_404(Campaign, slug=slug)
    action = request.POST.get("action")
    try:
        if action == "round":
            opened = services.round_start(campaign=campaign)
            messages.success(request, f"Round {opened.number} started.")
        elif action == "pause":
            services.campaign_pause(campaign=campaign, reason=f"paused by {request.user.get_username()}")
            messages.success(request, "Paused.")
        elif action == "resume":
            services.campaign_resume(campaign=campaign)
            messages.success(request, "Resumed.")
        else:
            messages.error(request, "Unknown action.")
    except ValidationError as exc:
        messages.error(request, "; ".join(exc.messages))
    return redirect("campaign_detail", slug=slug)
