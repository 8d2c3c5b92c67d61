"""The model versions page (admins): the generator's lineage, v1 -> v2 -> ..., with each
version's dataset, method, status, which one is current, its evaluation against its parent,
and per version the "Evaluate against parent" and "Make current" forms. Both call the services
the API calls (evaluation_start, generator_version_promote): the same checks, and the same
confirmation before a version not marked better on held-out prompts is made current."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from labelling import errors
from labelling.access.decorators import admin_required
from labelling.models import Character, DatasetVersion, GeneratorVersion, PromptSet, Rubric
from labelling.versions.evaluation import decisions as evaluation_decisions
from labelling.versions.evaluation import selectors as evaluation_selectors
from labelling.versions.evaluation import services as evaluation_services
from labelling.versions.generators import selectors
from labelling.versions.training import charts
from labelling.versions.training import selectors as training_selectors
from shaping_core import strict


def _reward_by_version(versions) -> dict | None:
    """Mean reward along the lineage, from each version's evaluation against its parent (the
    first one also gives its parent's): an SVG polyline, or None with fewer than two points."""
    points: dict[int, float] = {}
    for v in versions:
        f = v.against_parent
        if f:
            points.setdefault(f["baseline"], f["reward_baseline"])
            points[v.number] = f["reward_candidate"]
    if len(points) < 2:
        return None
    curve = [{"step": n, "reward_mean": r} for n, r in sorted(points.items())]
    line = charts.curve_lines(curve, 320, 80, 6)[0]
    return {"line": line, "points": sorted(points.items())}


TRAINABLE = (DatasetVersion.Kind.GRPO_PROMPTS, DatasetVersion.Kind.DPO, DatasetVersion.Kind.SFT)
ACTIONS = ("make_current", "evaluate")


@require_http_methods(["GET", "POST"])
@admin_required
def model_versions(request: HttpRequest) -> HttpResponse:
    """The page; a POST is one of its version forms (`action`: make_current or evaluate)."""
    if request.method == "POST":
        return _version_action(request)
    return model_versions_page(request)


def model_versions_page(
    request: HttpRequest,
    *,
    train_form=None,
    train_errors=None,
    confirm: dict | None = None,
    action_form: dict | None = None,
    status: int = 200,
) -> HttpResponse:
    """The page, with a form's refusal (`action_form`: the version, the action, the fields it
    sent and the errors by field) or a make-current question (`confirm`) where it applies."""
    versions = list(selectors.generator_versions())
    evaluated = evaluation_selectors.against_parent(versions)
    ready = [v for v in versions if v.status == GeneratorVersion.Status.READY]
    for v in versions:
        v.against_parent = evaluation_selectors.figures(evaluated.get(v.pk))
        lines = (  # each trained version's curve, as a sparkline: reward if it has one, else loss
            charts.curve_lines(training_selectors.training_curve(v.train_run_id), 160, 36, 2) if v.train_run_id else []
        )
        v.curve = lines[0] if lines else None
        if v.status == GeneratorVersion.Status.READY and not v.is_current:
            v.confirm_needed = evaluation_selectors.needs_confirmation(v, evaluated.get(v.pk))
        if v.parent_id and v.status == GeneratorVersion.Status.READY:
            v.evaluate = _evaluate_form(v, action_form)
    context = {
        "versions": versions,
        "reward_line": _reward_by_version(versions),
        "ready": ready,
        "datasets": DatasetVersion.objects.filter(kind__in=TRAINABLE).order_by("dataset", "-number")[:200],
        "evaluations": evaluation_selectors.evaluations_recent(20),
        "rubrics": Rubric.objects.order_by("slug", "-version")[:200],
        "characters": Character.objects.order_by("slug")[:200],
        "prompt_sets": PromptSet.objects.order_by("slug")[:500],
        "rule": evaluation_decisions.RULE.format(n=evaluation_decisions.min_prompts()),
        "train_form": train_form or {},
        "train_errors": train_errors or {},
        "confirm": confirm,
        "action_form": action_form,
    }
    return render(request, "generators/list.html", context, status=status)


def _evaluate_form(version: GeneratorVersion, sent: dict | None) -> dict:
    """A version's "Evaluate against parent" form: what was sent (after a refusal) or the defaults."""
    if sent and sent["version"] == version.number and sent["action"] == "evaluate":
        return {**sent["fields"], "errors": sent["errors"], "open": True}
    defaults = evaluation_selectors.evaluation_defaults(version)
    return {
        "rubric": str(defaults["rubric"].pk) if defaults["rubric"] else "",
        "character": str(defaults["character"].pk) if defaults["character"] else "",
        "prompt_set": "",
        "held_out": defaults["held_out"],
        "human_pairs": "0",
        "idempotency_key": "",
        "errors": {},
        "open": False,
    }


def _version_action(request: HttpRequest) -> HttpResponse:
    form = request.POST
    action = form.get("action", "")
    number = strict.whole_number(form.get("version", ""))
    version = selectors.generator_versions().filter(number=number).first() if number else None
    if action not in ACTIONS:
        messages.error(request, "Unknown action: choose Evaluate against parent or Make current.")
        return redirect("model_versions")
    if version is None:
        raise Http404("No such model version.")
    if action == "make_current":
        return _make_current(request, version, confirmed=form.get("confirm") == "yes")
    return _evaluate(request, version)


def _make_current(request: HttpRequest, version: GeneratorVersion, *, confirmed: bool) -> HttpResponse:
    try:
        evaluation_services.generator_version_promote(version=version, confirmed=confirmed)
    except evaluation_services.ConfirmationNeeded as exc:
        return model_versions_page(request, confirm={"version": version, "reason": exc.reason}, status=409)
    except ValidationError as exc:
        messages.error(request, f"Version {version.number} was not made current: {errors.validation_text(exc)}")
        return redirect(reverse("model_versions") + f"#model-version-{version.number}")
    messages.success(request, f"Version {version.number} is current: runs that pin no version generate with it.")
    return redirect(reverse("model_versions") + f"#model-version-{version.number}")


def _evaluate(request: HttpRequest, version: GeneratorVersion) -> HttpResponse:
    form = request.POST
    fields = {name: form.get(name, "") for name in ("rubric", "character", "prompt_set", "human_pairs")}
    fields["idempotency_key"] = form.get("idempotency_key", "")
    try:
        human_pairs = strict.whole_number(fields["human_pairs"] or "0")
        if human_pairs is None:
            raise ValidationError({"human_pairs": "a whole number is required"})
        evaluation = evaluation_services.evaluation_start(
            candidate=version.number,
            rubric=_chosen(Rubric, fields["rubric"], "rubric", "choose the rubric that scores both sides"),
            prompt_set=_chosen(PromptSet, fields["prompt_set"], "prompt_set"),
            character=_chosen(Character, fields["character"], "character"),
            human_pairs=human_pairs,
            created_by=request.user,
            idempotency_key=fields["idempotency_key"] or None,
            user=request.user,
        )
    except ValidationError as exc:
        sent = {"version": version.number, "action": "evaluate", "fields": fields}
        sent["errors"] = errors.validation_fields(exc) or {"": errors.validation_text(exc)}
        if "idempotency_key" in sent["errors"]:  # used for another request: sent again, a fresh key is a new one
            fields["idempotency_key"] = ""
        return model_versions_page(request, action_form=sent, status=400)
    messages.success(
        request,
        f"Evaluation #{evaluation.pk}: v{evaluation.candidate.number} against v{evaluation.baseline.number} on "
        f"{evaluation.prompt_set.slug}; its comparison appears here when both sides have run.",
    )
    return redirect("evaluation_detail", evaluation_id=evaluation.pk)


def _chosen(model, pk: str, field: str, missing: str | None = None):
    """The row a select named by its id; None for the empty choice (or a refusal, `missing`)."""
    if not pk:
        if missing:
            raise ValidationError({field: missing})
        return None
    row = model.objects.filter(pk=n).first() if (n := strict.whole_number(pk)) is not None else None
    if row is None:
        raise ValidationError({field: "no such choice: reload the page and choose again"})
    return row
