"""Reads of evaluations: the paired data, prompt by prompt, and the comparison of it."""

from __future__ import annotations

from collections import defaultdict

from django.db.models import Prefetch

from labelling.evaluation.stats import PromptPair, compare
from labelling.models import CriterionScore, Evaluation, Generation, Judgment, PipelineRun

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
        lambda: {"rewards": [], "lengths": [], "criteria": defaultdict(list), "texts": []}
    )
    for g in generations:
        if not g.judged:
            continue  # a completion the judge could not score takes no part (the run lists it as failed)
        judgment = g.judged[0]
        side = sides[g.group.prompt_id]
        side["rewards"].append(judgment.overall)
        side["lengths"].append(len(g.text.split()))
        side["texts"].append(g.text)
        for s in judgment.scores.all():
            c = s.criterion
            span = (c.scale_max - c.scale_min) or 1
            side["criteria"][c.key].append((s.score - c.scale_min) / span)
    return sides


def evaluation_pairs(evaluation: Evaluation) -> list[PromptPair]:
    cand = _side(evaluation.candidate_run, evaluation.rubric_id)
    base = _side(evaluation.baseline_run, evaluation.rubric_id)
    pairs = []
    for prompt_id in sorted(set(cand) & set(base)):
        c, b = cand[prompt_id], base[prompt_id]
        pairs.append(
            PromptPair(
                key=str(prompt_id),
                candidate=c["rewards"],
                baseline=b["rewards"],
                candidate_lengths=c["lengths"],
                baseline_lengths=b["lengths"],
                candidate_criteria={k: sum(v) / len(v) for k, v in c["criteria"].items()},
                baseline_criteria={k: sum(v) / len(v) for k, v in b["criteria"].items()},
            )
        )
    return pairs


def evaluation_compare(evaluation: Evaluation) -> dict:
    """The comparison, with the worst regressions' answers side by side (the first of each side)."""
    result = compare(evaluation_pairs(evaluation))
    cand = _side(evaluation.candidate_run, evaluation.rubric_id)
    base = _side(evaluation.baseline_run, evaluation.rubric_id)
    prompts = dict(evaluation.prompt_set.prompts.values_list("pk", "external_id"))
    for row in result["worst_regressions"]:
        prompt_id = int(row["key"])
        row["prompt"] = prompts.get(prompt_id, row["key"])
        row["candidate_text"] = cand[prompt_id]["texts"][0][:2000]
        row["baseline_text"] = base[prompt_id]["texts"][0][:2000]
    return result
