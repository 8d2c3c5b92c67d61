"""Review pages: the queue, a group, submit / skip / undo / rewrite, and the agreement stats.

Thin views: an access check plus one selector or service call."""

from __future__ import annotations

import json
import uuid
from collections import defaultdict

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from labelling import errors
from labelling.access import roles
from labelling.access.decorators import reviewer_required
from labelling.characters import sheets as sheet_lib
from labelling.models import Assignment, Group, Rubric
from labelling.review import agreement, selectors, services
from shaping_core import rules

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@require_GET
@reviewer_required
def review_queue(request: HttpRequest) -> HttpResponse:
    """The next group for this reviewer: the one they hold, else a newly claimed one."""
    policy = _policy(request)
    assignment = services.assignment_claim_next(reviewer=request.user, policy=policy)
    return _render_panel(request, assignment, policy)


@require_GET
@reviewer_required
def review_assignment(request: HttpRequest, assignment_id: int) -> HttpResponse:
    """A direct link to a held group; someone else's assignment is a 404."""
    assignment = selectors.assignment_for_reviewer(reviewer=request.user, assignment_id=assignment_id)
    if assignment.status != Assignment.Status.ACTIVE:
        return redirect("review_queue")
    return _render_panel(request, assignment, _policy(request))


@require_POST
@reviewer_required
def review_submit(request: HttpRequest, assignment_id: int) -> HttpResponse:
    try:
        stored = services.review_submit(
            assignment_id=assignment_id,
            reviewer=request.user,
            submission=_submission_from(request.POST),
        )
    except Assignment.DoesNotExist:  # not this reviewer's, or no such seat
        raise Http404("No such assignment.") from None
    except ValidationError as exc:
        return errors.refusal(errors.validation_text(exc), 400)
    except services.ReviewRefused as exc:
        return errors.refusal(exc.message, exc.status)
    assignment = Assignment.objects.only("group_id").get(pk=assignment_id)
    notice = f"Saved your scores for group #{assignment.group_id}." if stored else "Already saved."
    return _next(request, {"review-submitted": {"assignment": assignment_id, "stored": stored}}, notice=notice)


@require_POST
@reviewer_required
def review_skip(request: HttpRequest, assignment_id: int) -> HttpResponse:
    assignment = selectors.assignment_for_reviewer(reviewer=request.user, assignment_id=assignment_id)
    try:
        services.review_skip(assignment_id=assignment.pk, reviewer=request.user)
    except services.ReviewRefused as exc:
        return errors.refusal(exc.message, exc.status)
    return _next(
        request, {"review-skipped": {"assignment": assignment.pk}}, notice=f"Skipped group #{assignment.group_id}."
    )


@require_POST
@reviewer_required
def review_undo(request: HttpRequest) -> HttpResponse:
    try:
        assignment = services.review_undo(reviewer=request.user)
    except services.ReviewRefused as exc:
        return errors.refusal(exc.message, exc.status)
    return _next(
        request, {"review-undone": {"assignment": assignment.pk}}, notice=f"Group #{assignment.group_id} is back."
    )


@require_POST
@reviewer_required
def review_rewrite(request: HttpRequest, assignment_id: int, generation_id: int) -> HttpResponse:
    assignment = selectors.assignment_for_reviewer(reviewer=request.user, assignment_id=assignment_id)
    try:
        rewrite = services.generation_rewrite(
            assignment_id=assignment.pk,
            reviewer=request.user,
            generation_id=generation_id,
            text=request.POST.get(f"rewrite-{generation_id}", ""),
        )
    except ValidationError as exc:
        return errors.refusal(errors.validation_text(exc), 400)
    except services.ReviewRefused as exc:
        return errors.refusal(exc.message, exc.status)
    if not request.htmx:
        return redirect("review_queue")
    response = render(request, "review/queue.html#rewrite-saved", {"rewrite": rewrite})
    response["HX-Trigger"] = json.dumps({"rewrite-saved": {"generation": generation_id}})
    return response


# --- helpers --------------------------------------------------------------------------


def _policy(request: HttpRequest) -> str:
    """The queue order the reviewer picked (?policy=), remembered for the session."""
    asked = request.GET.get("policy") or request.POST.get("policy")
    if asked in selectors.QUEUE_POLICIES:
        # Every submit posts the policy: the session is written (a write transaction) only
        # when it changes.
        if request.session.get("review_policy") != asked:
            request.session["review_policy"] = asked
        return asked
    remembered = request.session.get("review_policy")
    return remembered if remembered in selectors.QUEUE_POLICIES else selectors.DEFAULT_POLICY


def _next(request: HttpRequest, trigger: dict, *, notice: str) -> HttpResponse:
    """After a write: the next group swaps in (htmx) under a line saying what was done, or a
    plain redirect to the queue. The queue's counts are taken afresh: the reviewer's own write
    changed them, and a count that does not drop after a submit reads as a lost one."""
    if not request.htmx:
        messages.success(request, notice)
        return redirect("review_queue")
    selectors.queue_totals_forget()
    policy = _policy(request)
    assignment = services.assignment_claim_next(reviewer=request.user, policy=policy)
    response = _render_panel(request, assignment, policy, notice=notice)
    response["HX-Trigger"] = json.dumps(trigger)
    return response


def _render_panel(request: HttpRequest, assignment: Assignment | None, policy: str, notice: str = "") -> HttpResponse:
    context = {
        "notice": notice,
        "policy": policy,
        "policies": selectors.QUEUE_POLICIES,
        "summary": selectors.review_queue_summary(reviewer=request.user, policy=policy),
        "assignment": assignment,
        **(_group_context(assignment) if assignment else {}),
    }
    template = "review/queue.html#review-panel" if request.htmx else "review/queue.html"
    return render(request, template, context)


def _group_context(assignment: Assignment) -> dict:
    group = assignment.group
    if not selectors.group_view_loaded(group):
        group = Group.objects.select_related(*selectors.GROUP_VIEW_RELATED).get(pk=assignment.group_id)
        assignment.group = group
    generations = selectors.review_generations(assignment)
    rubric = selectors.group_rubric(group)
    criteria = list(rubric.criteria.all()) if rubric else []
    for c in criteria:
        c.choices = [(v, c.levels.get(str(v), "")) for v in range(c.scale_min, c.scale_max + 1)]
    messages = generations[0].messages if generations else []
    sheets = bool(group.run and (group.run.params or {}).get("output") == "sheet")
    columns = []
    for position, generation in enumerate(generations):
        judge = generation.judge_judgments[0] if generation.judge_judgments else None
        column = {
            "generation": generation,
            "label": LETTERS[position % len(LETTERS)],
            "judge": judge,
            "judge_scores": _judge_scores(judge, criteria),
            # Rule criteria are shown scored (read-only): the submission fills them in from the rules.
            "cells": _cells(criteria, generation),
        }
        if sheets:  # a character sheet reads as a card with its 3D figure, not as raw JSON
            column["sheet"] = sheet_lib.parse_sheet(generation.text)
            column["sheet_problems"] = [] if column["sheet"] else sheet_lib.sheet_problems(generation.text)
        columns.append(column)
    return {
        "group": group,
        "rubric": rubric,
        "criteria": criteria,
        "system_messages": [m for m in messages if m.get("role") == "system"],
        "prompt_messages": [m for m in messages if m.get("role") != "system"],
        "columns": columns,
        "pair": len(columns) == 2,
        "submission_id": uuid.uuid4(),
        "live_run": group.run if group.run and not group.run.is_finished else None,
    }


def _cells(criteria: list, generation) -> list[tuple]:
    """(criterion, the rule's score for this completion, or None for a criterion the reviewer scores)."""
    scored = rules.rule_scores(criteria, generation.text, think_valid=generation.think_valid)
    return [(c, scored.get(c.key)) for c in criteria]


def _judge_scores(judge, criteria: list) -> list[tuple[str, int | None]]:
    # By key: the judge may have used an earlier version of the rubric.
    by_key = {s.criterion.key: s.score for s in judge.scores.all()} if judge else {}
    return [(c.key, by_key.get(c.key)) for c in criteria]


def _submission_from(post: QueryDict) -> services.ReviewSubmission:
    """Form fields -> a submission: score-<generation>-<criterion>, rank-<generation>,
    critique-<generation>, flag-<generation>, preference, submission_id."""
    try:
        submission_id = uuid.UUID(post.get("submission_id", ""))
    except ValueError:
        raise ValidationError({"submission_id": "missing or not a UUID"}) from None
    scores: dict[int, dict[str, int]] = defaultdict(dict)
    ranks: dict[int, int] = {}
    critiques: dict[int, str] = {}
    flagged: set[int] = set()
    for name, value in post.items():
        kind, _, rest = name.partition("-")
        if kind == "score":
            generation, _, key = rest.partition("-")
            scores[_int(generation, name)][key] = _int(value, name)
        elif kind == "rank" and value.strip():
            ranks[_int(rest, name)] = _int(value, name)
        elif kind == "critique":
            critiques[_int(rest, name)] = value
        elif kind == "flag":
            flagged.add(_int(rest, name))
    return services.ReviewSubmission(
        submission_id=submission_id,
        scores=dict(scores),
        ranks=ranks,
        critiques=critiques,
        flagged=frozenset(flagged),
        preference=post.get("preference") or None,
    )


def _int(raw: str, name: str) -> int:
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise ValidationError({name: f"{raw!r} is not a whole number"}) from None


@require_GET
@reviewer_required
def stats(request: HttpRequest) -> HttpResponse:
    """Agreement per criterion (reviewers with each other, humans with the judge) and progress.

    A reviewer sees their own progress; an admin sees every reviewer's."""
    rubrics = list(Rubric.objects.filter(judgments__source="human").distinct().order_by("slug", "-version"))
    chosen = request.GET.get("rubric", "")
    rubric = next((r for r in rubrics if str(r.pk) == chosen), None) or agreement.rubric_with_reviews()
    criteria = agreement.criterion_agreement(rubric) if rubric else []
    plots = [
        {
            "c": c,
            "human": agreement.bars(c.human_counts, c.scale),
            "judge": agreement.bars(c.judge_counts, c.scale),
            "width": 22 * len(c.scale),
        }
        for c in criteria
    ]
    people = [request.user]
    if roles.is_admin(request.user):
        people = (
            get_user_model()
            .objects.filter(groups__name__in=[roles.REVIEWER, roles.ADMIN])
            .distinct()
            .order_by("username")
        )
    context = {"rubrics": rubrics, "rubric": rubric, "plots": plots, "progress": agreement.reviewer_progress(people)}
    return render(request, "stats.html", context)
