"""Campaigns over the API: create one (every check before anything is made), start a round by
hand, pause and resume, and read each round's figures (the campaign page shows the same)."""

from datetime import datetime

from django.core.exceptions import ValidationError
from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from ninja import Field, Path, Router, Schema, Status

from labelling import errors
from labelling.api.catalogue import rubric_named
from labelling.api.common import ADMIN, BodyIn, Error, admin_required, named
from labelling.campaigns import selectors, services
from labelling.models import Campaign as CampaignRow
from labelling.models import Character, PromptSet

router = Router(tags=["campaigns"])
SLUG = Path(..., max_length=80)


class CampaignIn(BodyIn):
    slug: str = Field(..., max_length=60)
    name: str = Field("", max_length=120)
    character: str = Field(..., max_length=80, description="character slug")
    rubric: str = Field(..., max_length=80, description="rubric slug (latest version); it needs a judge criterion")
    prompt_set: str = Field(..., max_length=80, description="the prompt pool's slug")
    held_out: float = Field(0.3, description="the pool's share kept out of training: every evaluation's prompts")
    method: str = Field("grpo", max_length=10, description="grpo, dpo or sft")
    dataset_kind: str | None = Field(
        None, max_length=20, description="optional: refused unless the method trains on it"
    )
    trigger: str = Field("manual", max_length=12, description="manual, continuous, reviews or schedule")
    rounds: int = Field(3, description="rounds to run, 1 to 100")
    policy: dict = Field(default_factory=dict, description="docs/campaigns.md lists every field and its default")


class Campaign(Schema):
    slug: str
    name: str
    character: str
    rubric: str
    prompt_set: str
    held_out_prompt_set: str
    method: str
    trigger: str
    rounds_planned: int
    policy: dict
    status: str = Field(description="active, paused, stopped or finished")
    status_reason: str
    figures: dict = Field(
        description="`current_version`; `rounds`, each with its step, outcome and reason, versions, runs, dataset, "
        "evaluation, win rate with its interval, reward per criterion, routing, calibration and stage times; "
        "`reviewers`: groups waiting, reviewed, and reviewed in the last hour"
    )
    created_at: datetime

    @staticmethod
    def resolve_character(obj) -> str:
        return obj.character.slug

    @staticmethod
    def resolve_rubric(obj) -> str:
        return f"{obj.rubric.slug}@v{obj.rubric.version}"

    @staticmethod
    def resolve_prompt_set(obj) -> str:
        return obj.prompt_set.slug

    @staticmethod
    def resolve_held_out_prompt_set(obj) -> str:
        return obj.held_out.slug

    @staticmethod
    def resolve_figures(obj) -> dict:
        return selectors.campaign_figures(obj)


def _campaign(slug: str) -> CampaignRow:
    return get_object_or_404(
        CampaignRow.objects.select_related("character", "rubric", "prompt_set", "held_out"), slug=slug
    )


@router.post("", response={201: Campaign, 400: Error, **ADMIN}, operation_id="campaign_create")
def campaign_create(request: HttpRequest, body: CampaignIn):
    """Create a campaign; nothing is made when a check refuses it (the field is named)."""
    admin_required(request)
    character = named(Character, body.character, "character")
    prompt_set = named(PromptSet, body.prompt_set, "prompt_set")
    campaign = services.campaign_create(
        slug=body.slug,
        name=body.name,
        character=character,
        rubric=rubric_named(body.rubric),
        prompt_set=prompt_set,
        held_out=body.held_out,
        method=body.method,
        dataset_kind=body.dataset_kind,
        trigger=body.trigger,
        rounds=body.rounds,
        policy=body.policy,
        created_by=request.user,
    )
    return Status(201, _campaign(campaign.slug))


@router.get("", response={200: list[Campaign], **ADMIN}, operation_id="campaign_list")
def campaign_list(request: HttpRequest):
    admin_required(request)
    return list(CampaignRow.objects.select_related("character", "rubric", "prompt_set", "held_out"))


@router.get("/{slug}", response={200: Campaign, 404: Error, **ADMIN}, operation_id="campaign_detail")
def campaign_detail(request: HttpRequest, slug: str = SLUG):
    admin_required(request)
    return _campaign(slug)


def _conflict(exc: ValidationError) -> Status:
    return Status(409, {"detail": errors.validation_text(exc), "errors": errors.validation_fields(exc)})


@router.post(
    "/{slug}/rounds", response={201: Campaign, 404: Error, 409: Error, **ADMIN}, operation_id="campaign_round_start"
)
def campaign_round_start(request: HttpRequest, slug: str = SLUG):
    """Start the next round now. 409 while one is open (rounds never overlap), when the campaign
    is not active, or when every planned round has run."""
    admin_required(request)
    try:
        services.round_start(campaign=_campaign(slug))
    except ValidationError as exc:
        return _conflict(exc)
    return Status(201, _campaign(slug))


@router.post("/{slug}/pause", response={200: Campaign, 404: Error, **ADMIN}, operation_id="campaign_pause")
def campaign_pause(request: HttpRequest, slug: str = SLUG):
    """Pause: the open round stops at its step (runs already queued finish)."""
    admin_required(request)
    services.campaign_pause(campaign=_campaign(slug), reason=f"paused by {request.user.get_username()}")
    return _campaign(slug)


@router.post(
    "/{slug}/resume", response={200: Campaign, 404: Error, 409: Error, **ADMIN}, operation_id="campaign_resume"
)
def campaign_resume(request: HttpRequest, slug: str = SLUG):
    """Resume a paused or stopped campaign: the open round goes on from its step (a failed run of
    it is resumed first). 409 for a campaign that is active or has run every round."""
    admin_required(request)
    try:
        services.campaign_resume(campaign=_campaign(slug))
    except ValidationError as exc:
        return _conflict(exc)
    return _campaign(slug)
