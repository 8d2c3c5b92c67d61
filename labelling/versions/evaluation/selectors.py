"""Reads of evaluations: the paired data, prompt by prompt, and the comparison of it."""

from __future__ import annotations

from collections import defaultdict

from django.db.models import Prefetch

from labelling.models import CriterionScore, Evaluation, Generation, Judgment, PipelineRun
from labelling.versions.evaluation import pairs
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
    """better: the win rate's interval lies above 0.5; worse: below; undecided otherwise; None
    without a finished comparison."""
    if not result or not result.get("prompts"):
        return None
    win = result["win_rate"]
    if win["low"] > 0.5:
        return "better"
    if win["high"] < 0.5:
        return "worse"
    return "undecided"


def against_parent(versions) -> dict[int, Evaluation]:
    """Each version's latest finished evaluation against its parent: {version pk: evaluation}."""
    found: dict[int, Evaluation] = {}
    pks = [v.pk for v in versions if v.parent_id]
    evaluations = (
        Evaluation.objects.filter(candidate_id__in=pks, result__isnull=False)
        .select_related("candidate", "baseline")
        .order_by("created_at")
    )
    for e in evaluations:
        if e.baseline_id == e.candidate.parent_id:
            found[e.candidate_id] = e  # the latest wins
    return found


def figures(evaluation: Evaluation | None) -> dict | None:
    """The few numbers a lineage shows for a version's evaluation against its parent."""
    if evaluation is None:
        return None
    r = evaluation.result
    return {
        "evaluation": evaluation.pk,
        "baseline": evaluation.baseline.number,
        "prompts": r["prompts"],
        "win_rate": r["win_rate"],
        "reward_delta": r["reward"]["delta"],
        "reward_candidate": r["reward"]["candidate"]["estimate"],
        "reward_baseline": r["reward"]["baseline"]["estimate"],
        "criteria": r["criteria"],
        "verdict": verdict(r),
        "human": human_summary(pairs.human_figures(evaluation)),
    }


def human_summary(human: dict | None) -> dict | None:
    """What a lineage shows of the blind A/B: the win rate once there are choices, the counts."""
    if human is None:
        return None
    return {
        "pairs": human["pairs"],
        "choices": human.get("choices", 0),
        "prompts": human.get("prompts", 0),
        "win_rate": human.get("win_rate"),
        "verdict": verdict({"prompts": human.get("prompts"), "win_rate": human.get("win_rate")}),
    }


def needs_confirmation(version) -> str | None:
    """Why making `version` current should be confirmed (it is not marked better than its
    parent), or None (it is, or it has no parent: a rollback to the first version)."""
    if version.parent_id is None:
        return None
    f = figures(against_parent([version]).get(version.pk))
    if f is None:
        return f"version {version.number} has not been evaluated against its parent (v{version.parent.number})"
    if f["verdict"] != "better":
        w = f["win_rate"]
        return (
            f"version {version.number} is {f['verdict']} against v{f['baseline']}: win rate {w['estimate']:.3f} "
            f"[{w['low']:.3f}, {w['high']:.3f}] over {f['prompts']} prompts"
        )
    return None
