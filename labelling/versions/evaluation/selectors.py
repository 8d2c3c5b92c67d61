"""Reads of evaluations: the paired data, prompt by prompt, and the comparison of it."""

from __future__ import annotations

from collections import defaultdict

from django.db.models import Prefetch

from labelling.datasets.filters import DatasetFilter
from labelling.models import Character, CriterionScore, Evaluation, Generation, Judgment, PipelineRun, Rubric
from labelling.versions.evaluation import decisions, pairs
from shaping_core.stats import PromptPair, compare

DONE = {PipelineRun.Status.SUCCEEDED, PipelineRun.Status.PARTIAL}


def evaluation_finished(evaluation: Evaluation) -> bool:
    return evaluation.candidate_run.status in DONE and evaluation.baseline_run.status in DONE


def evaluation_status(evaluation: Evaluation) -> str:
    runs = (evaluation.candidate_run, evaluation.baseline_run)
    if all(r.status in DONE for r in runs):
        return "done"
    if any(r.status in (PipelineRun.Status.FAILED, PipelineRun.Status.CANCELLED) for r in runs):
        return "stopped"
    return "running"


def _side(run: PipelineRun, rubric_id: int) -> dict[int, dict]:
    """prompt id -> {"rewards", "lengths", "criteria": {key: [0..1 scores]}, "texts"} of a run's
    original completions, from the judge's judgments on the evaluation's rubric."""
    judgments = Judgment.objects.filter(rubric_id=rubric_id, source=Judgment.Source.JUDGE, status=Judgment.Status.OK)
    generations = (
        Generation.objects.filter(group__run=run, revision=0)
        .select_related("group")
        .prefetch_related(
            Prefetch(
                "judgments",
                queryset=judgments.prefetch_related(
                    Prefetch("scores", queryset=CriterionScore.objects.select_related("criterion"))
                ),
                to_attr="judged",
            )
        )
        .order_by("group__prompt_id", "index")
    )
    sides: dict[int, dict] = defaultdict(
        lambda: {"rewards": [], "lengths": [], "criteria": defaultdict(list), "texts": [], "parts": []}
    )
    unscored = 0
    for g in generations:
        if not g.judged:
            unscored += 1  # the judge could not score it: it takes no part, and is counted
            continue
        judgment = g.judged[0]
        side = sides[g.group.prompt_id]
        side["rewards"].append(judgment.overall)
        side["lengths"].append(len(g.text.split()))
        side["texts"].append(g.text)
        parts = {}
        for s in judgment.scores.all():
            c = s.criterion
            span = (c.scale_max - c.scale_min) or 1
            side["criteria"][c.key].append((s.score - c.scale_min) / span)
            parts[c.key] = ((s.score - c.scale_min) / span, c.weight, c.rule is not None)
        side["parts"].append(parts)
    sides = dict(sides)
    sides[UNSCORED] = unscored
    return sides


UNSCORED = -1  # the key under which _side counts the completions left unscored


def evaluation_pairs(
    evaluation: Evaluation, cand: dict | None = None, base: dict | None = None, *, rules: bool | None = None
) -> list[PromptPair]:
    """The prompts both sides scored; with `rules` True (False) each completion's reward is the
    weighted mean of its rule (judge) criteria alone."""
    cand = cand if cand is not None else _side(evaluation.candidate_run, evaluation.rubric_id)
    base = base if base is not None else _side(evaluation.baseline_run, evaluation.rubric_id)
    pairs = []
    for prompt_id in sorted((set(cand) & set(base)) - {UNSCORED}):
        c, b = cand[prompt_id], base[prompt_id]
        pairs.append(
            PromptPair(
                key=str(prompt_id),
                candidate=c["rewards"] if rules is None else _rewards_of(c["parts"], rules),
                baseline=b["rewards"] if rules is None else _rewards_of(b["parts"], rules),
                candidate_lengths=c["lengths"],
                baseline_lengths=b["lengths"],
                candidate_criteria={k: sum(v) / len(v) for k, v in c["criteria"].items()},
                baseline_criteria={k: sum(v) / len(v) for k, v in b["criteria"].items()},
            )
        )
    return pairs


def _rewards_of(parts: list[dict], rules: bool) -> list[float]:
    """Each completion's weighted mean over only its rule criteria (or only the others)."""
    rewards = []
    for scores in parts:
        chosen = [(value, weight) for value, weight, is_rule in scores.values() if is_rule == rules and weight > 0]
        total = sum(weight for _, weight in chosen)
        if total:
            rewards.append(sum(value * weight for value, weight in chosen) / total)
    return rewards


def _by_source(evaluation: Evaluation, cand: dict, base: dict) -> dict | None:
    """The verdict on rule criteria alone and on judge criteria alone, beside the whole
    rubric's: how much the judge (which may share the baseline's weights and prefer its
    answers) moves the verdict. None unless the rubric has criteria of both kinds."""
    kinds = {
        rule is not None for rule in evaluation.rubric.criteria.filter(weight__gt=0).values_list("rule", flat=True)
    }
    if kinds != {True, False}:
        return None
    found = {}
    for name, rules in (("rules", True), ("judge", False)):
        result = compare(evaluation_pairs(evaluation, cand, base, rules=rules))
        found[name] = {
            "prompts": result["prompts"],
            "wins": result["wins"],
            "ties": result["ties"],
            "losses": result["losses"],
            "win_rate": result["win_rate"],
            "sign_test_p": result["sign_test_p"],
            "verdict": verdict(result),
        }
    return found


def evaluation_compare(evaluation: Evaluation) -> dict:
    """The comparison over what succeeded, with what did not counted beside it (completions the
    judge could not score, prompts with no scored completion on one side or both), and the
    worst regressions' answers side by side (the first of each side)."""
    cand = _side(evaluation.candidate_run, evaluation.rubric_id)
    base = _side(evaluation.baseline_run, evaluation.rubric_id)
    result = compare(evaluation_pairs(evaluation, cand, base))
    result["by_source"] = _by_source(evaluation, cand, base)
    prompts = dict(evaluation.prompt_set.prompts.values_list("pk", "external_id"))
    result["failures"] = {
        "unscored_completions": {"candidate": cand[UNSCORED], "baseline": base[UNSCORED]},
        "prompts_left_out": len(prompts) - result["prompts"],
        "prompts_total": len(prompts),
    }
    for row in result["worst_regressions"]:
        prompt_id = int(row["key"])
        row["prompt"] = prompts.get(prompt_id, row["key"])
        row["candidate_text"] = cand[prompt_id]["texts"][0][:2000]
        row["baseline_text"] = base[prompt_id]["texts"][0][:2000]
    return result


def verdict(result: dict | None) -> str | None:
    """The verdict of a comparison (decisions.verdict): better, worse, undecided, or None."""
    return decisions.verdict(result)


def evaluation_result(evaluation: Evaluation) -> dict | None:
    """The stored comparison with its per-source verdicts read again (they follow
    EVALUATION_MIN_PROMPTS as it is now, not as it was when the comparison was stored)."""
    result = evaluation.result
    if not result or not result.get("by_source"):
        return result
    by_source = {
        name: {**b, "verdict": decisions.verdict(b), "reason": decisions.verdict_reason(b)}
        for name, b in result["by_source"].items()
    }
    return {**result, "by_source": by_source}


def evaluation_decision(evaluation: Evaluation, human: dict | None = None) -> dict:
    """The verdict that counts for an evaluation (decisions.RULE), from the judge's comparison
    and the blind A/B figures (`human`, read here unless given)."""
    return decisions.decision(evaluation.result, human if human is not None else pairs.human_figures(evaluation))


def evaluations_recent(limit: int = 20) -> list[Evaluation]:
    """The latest evaluations, each with the prompts it ran on (`prompt_set_use`) and, once
    finished, its decision (`decision`)."""
    evaluations = list(
        Evaluation.objects.select_related(
            "candidate__parent", "candidate__dataset_version", "baseline", "prompt_set"
        ).order_by("-created_at", "-pk")[:limit]
    )
    cache: dict = {}
    for e in evaluations:
        e.prompt_set_use = decisions.prompt_set_use(e, cache=cache)
        e.decision = evaluation_decision(e) if e.result is not None else None
    return evaluations


def against_parent(versions) -> dict[int, Evaluation]:
    """Each version's finished evaluation against its parent that counts: the latest one on
    held-out prompts, else the latest one (on training prompts, or prompts of unknown use).
    Each carries `prompt_set_use`. {version pk: evaluation}."""
    found: dict[int, Evaluation] = {}
    pks = [v.pk for v in versions if v.parent_id]
    evaluations = (
        Evaluation.objects.filter(candidate_id__in=pks, result__isnull=False)
        .select_related("candidate__parent", "candidate__dataset_version", "baseline", "prompt_set")
        .order_by("created_at", "pk")
    )
    cache: dict = {}
    for e in evaluations:
        if e.baseline_id != e.candidate.parent_id:
            continue
        e.prompt_set_use = decisions.prompt_set_use(e, cache=cache)
        kept = found.get(e.candidate_id)
        if kept is None or e.prompt_set_use["kind"] == "held_out" or kept.prompt_set_use["kind"] != "held_out":
            found[e.candidate_id] = e  # the latest wins, a held-out one over any other
    return found


def figures(evaluation: Evaluation | None) -> dict | None:
    """The few numbers a lineage shows for a version's evaluation against its parent: the
    judge's, the reviewers', the prompts it ran on, and the verdict that counts (`verdict`,
    with `decision` saying whose it is and why)."""
    if evaluation is None:
        return None
    r = evaluation.result
    human = pairs.human_figures(evaluation)
    decided = evaluation_decision(evaluation, human)
    use = getattr(evaluation, "prompt_set_use", None) or decisions.prompt_set_use(evaluation)
    return {
        "evaluation": evaluation.pk,
        "baseline": evaluation.baseline.number,
        "prompt_set": evaluation.prompt_set.slug,
        "prompt_set_use": use,
        "prompts": r["prompts"],
        "win_rate": r["win_rate"],
        "reward_delta": r["reward"]["delta"],
        "reward_candidate": r["reward"]["candidate"]["estimate"],
        "reward_baseline": r["reward"]["baseline"]["estimate"],
        "criteria": r["criteria"],
        "verdict": decided["verdict"],
        "judge_verdict": decided["judge"]["verdict"],
        "decision": decided,
        "human": human_summary(human),
    }


def human_summary(human: dict | None) -> dict | None:
    """What a lineage shows of the blind A/B: the win rate once there are choices, the counts,
    the reviewers' own verdict and why."""
    if human is None:
        return None
    as_result = {"prompts": human.get("prompts"), "win_rate": human.get("win_rate")}
    return {
        "pairs": human["pairs"],
        "choices": human.get("choices", 0),
        "prompts": human.get("prompts", 0),
        "win_rate": human.get("win_rate"),
        "verdict": decisions.verdict(as_result),
        "reason": decisions.verdict_reason(as_result),
    }


_LOOKED_UP = object()


def needs_confirmation(version, evaluation=_LOOKED_UP) -> str | None:
    """Why making `version` current should be confirmed, or None: a version with no parent (a
    rollback to the first version) or one whose evaluation against its parent on held-out
    prompts says better (by decisions.RULE). Asked are: a version never evaluated against its
    parent, one evaluated only on prompts it (or a version it was trained from) trained on or
    whose use is unknown, and one not marked better. `evaluation`: the one against_parent
    keeps for it, when the caller has it already."""
    if version.parent_id is None:
        return None
    if evaluation is _LOOKED_UP:
        evaluation = against_parent([version]).get(version.pk)
    parent = f"v{version.parent.number}"
    if evaluation is None:
        return f"version {version.number} has not been evaluated against its parent ({parent})"
    f = figures(evaluation)
    use = f["prompt_set_use"]
    if use["kind"] != "held_out":
        return (
            f"version {version.number} has been evaluated against {parent} only on {use['label']} "
            f"({use['text']}), never on held-out prompts: its verdict ({f['verdict'] or 'none'}) may not hold "
            "on prompts it has not seen"
        )
    if f["verdict"] != "better":
        said = f["verdict"] or "without a verdict"
        return f"version {version.number} is {said} against {parent} on held-out prompts: {f['decision']['reason']}"
    return None


def evaluation_defaults(version) -> dict:
    """What an evaluation of `version` against its parent takes by default, for the Models
    page's form: the rubric it was trained with (its train run's, else its dataset version's),
    the character whose persona led its dataset's prompts, and whether its dataset held prompts
    out (`held_out`: the default prompt set's description, or None: a prompt set must be named)."""
    defaults = {"rubric": None, "character": None, "held_out": None}
    run = version.train_run
    if run is not None and run.rubric_id:
        defaults["rubric"] = run.rubric
    spec = ((run.params or {}).get("rubric_spec") if run is not None else None) or {}
    dataset = version.dataset_version
    named = spec.get("slug") and (spec.get("slug"), spec.get("version"))
    if dataset is not None and not named:
        slug, _, number = str((dataset.reward_policy or {}).get("rubric") or "").partition("@v")
        named = slug and (slug, int(number) if number.isdigit() else None)
    if defaults["rubric"] is None and named:
        rubrics = Rubric.objects.filter(slug=named[0]).order_by("-version")
        defaults["rubric"] = rubrics.filter(version=named[1]).first() or rubrics.first()
    if dataset is not None:
        f = DatasetFilter.from_dict(dataset.filter or {})
        if f.character:
            defaults["character"] = Character.objects.filter(slug=f.character).first()
        if defaults["character"] is None and f.runs:
            run_with = PipelineRun.objects.filter(pk__in=f.runs, character__isnull=False).order_by("-pk").first()
            defaults["character"] = run_with.character if run_with else None
        if f.held_out:
            defaults["held_out"] = f"the prompts {dataset.dataset} v{dataset.number} held out ({f.held_out:.0%})"
    return defaults
