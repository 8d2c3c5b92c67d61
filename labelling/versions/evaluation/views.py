"""The evaluation page (admins): the candidate against the baseline, with the prompts it ran on
(held out or not), the verdict that counts and why, intervals, length effects and the worst
regressions side by side, and the blind A/B figures; and the blind A/B
review itself (reviewers): two answers, A and B, chosen from the keyboard."""

from __future__ import annotations

import uuid

from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET, require_POST

from labelling import errors
from labelling.access.decorators import admin_required, reviewer_required
from labelling.models import Evaluation, PairChoice
from labelling.review.services import ReviewRefused
from labelling.versions.evaluation import decisions, pairs, selectors, services


@require_GET
@admin_required
def evaluation_detail(request: HttpRequest, evaluation_id: int) -> HttpResponse:
    evaluation = get_object_or_404(
        Evaluation.objects.select_related(
            "candidate", "baseline", "prompt_set", "rubric", "candidate_run", "baseline_run"
        ),
        pk=evaluation_id,
    )
    evaluation = services.evaluation_finish(evaluation=evaluation)
    human = pairs.human_figures(evaluation)
    return render(
        request,
        "evaluation/detail.html",
        {
            "evaluation": evaluation,
            "status": selectors.evaluation_status(evaluation),
            "r": selectors.evaluation_result(evaluation),
            "h": human,
            "decision": selectors.evaluation_decision(evaluation, human),
            "use": decisions.prompt_set_use(evaluation),
        },
    )


# --- blind A/B review (reviewers) ---------------------------------------------------------


@require_GET
@reviewer_required
def ab_queue(request: HttpRequest) -> HttpResponse:
    """The pair this reviewer holds, else the next open one."""
    return _ab_panel(request, pairs.pair_claim_next(reviewer=request.user))


@require_POST
@reviewer_required
def ab_choose(request: HttpRequest, choice_id: int) -> HttpResponse:
    try:
        submission_id = uuid.UUID(request.POST.get("submission_id", ""))
    except ValueError:
        return errors.refusal("submission_id: missing or not a UUID", 400)
    try:
        pairs.pair_choose(
            choice_id=choice_id,
            reviewer=request.user,
            choice=request.POST.get("choice", ""),
            submission_id=submission_id,
        )
    except PairChoice.DoesNotExist:
        raise Http404("No such pair.") from None
    except ValidationError as exc:
        return errors.refusal(errors.validation_text(exc), 400)
    except ReviewRefused as exc:
        return errors.refusal(exc.message, exc.status)
    revealed = pairs.pair_hold(reviewer=request.user, choice_id=choice_id)
    return _ab_panel(request, pairs.pair_claim_next(reviewer=request.user), revealed=revealed)


@require_POST
@reviewer_required
def ab_skip(request: HttpRequest, choice_id: int) -> HttpResponse:
    try:
        pairs.pair_skip(choice_id=choice_id, reviewer=request.user)
    except ReviewRefused as exc:
        return errors.refusal(exc.message, exc.status)
    return _ab_panel(request, pairs.pair_claim_next(reviewer=request.user))


def _ab_panel(request: HttpRequest, hold: PairChoice | None, revealed: PairChoice | None = None) -> HttpResponse:
    """The pair on screen (answers only: no version until chosen), and the versions of the pair
    just chosen on, revealed."""
    shown = pairs.pair_shown(hold) if hold else None
    context = {
        "shown": shown,
        **(_persona(shown) if shown else {}),
        "open": pairs.pairs_open_count(reviewer=request.user),
        "submission_id": uuid.uuid4(),
        "revealed": _revealed(revealed) if revealed else None,
    }
    template = "evaluation/pairs.html#ab-panel" if request.htmx else "evaluation/pairs.html"
    return render(request, template, context)


def _persona(shown: pairs.Shown) -> dict:
    """Whose answers these are: the character, and the system prompt both versions were given
    (the one in the completion's own messages, else the character's persona)."""
    generation = shown.hold.pair.candidate
    character = generation.group.character
    system = [m for m in generation.messages or [] if m.get("role") == "system"]
    if not system and character and character.persona:
        system = [{"role": "system", "content": character.persona}]
    return {"shown_character": character, "shown_system": system}


def _revealed(hold: PairChoice) -> dict:
    evaluation = hold.pair.evaluation
    candidate, baseline = f"v{evaluation.candidate.number}", f"v{evaluation.baseline.number}"
    return {
        "choice": hold.get_choice_display(),
        "left": candidate if hold.candidate_left else baseline,
        "right": baseline if hold.candidate_left else candidate,
    }
