"""An evaluation whose two sides "ran" without a model server: completions and judge scores
written as a worker would leave them. Shared by the unit tests and the browser test (which
calls `ab_evaluation` inside the running app through `manage.py shell`)."""

from django.db.models import Max

from labelling.models import Character, GeneratorVersion, Group, Judgment, PipelineRun, PromptSet, Rubric
from labelling.records import services as record_services
from labelling.versions.evaluation import services

# Judge scores per seed slot on a 1..5 scale: the candidate is better on every slot but the last.
CANDIDATE, BASELINE = [5, 5, 2], [1, 3, 4]


def _scaled(criterion, score: int) -> int:
    return criterion.scale_min + round((score - 1) / 4 * (criterion.scale_max - criterion.scale_min))


def ran(
    evaluation, rubric: Rubric, candidate: list[int] = CANDIDATE, baseline: list[int] = BASELINE, pad: str = ""
) -> None:
    """Both sides "ran": their completions judged (`candidate`, `baseline`: the judge's score per
    seed slot, on 1..5; the texts start with "cand" and "base", then `pad`), their runs succeeded."""
    judge = record_services.producer_get_or_create(backend="fixture", model_name="judge")
    criteria = [c for c in rubric.criteria.all() if not c.is_rule]  # rule criteria score themselves
    k = evaluation.completions_per_prompt
    for run, scores, who in (
        (evaluation.candidate_run, candidate[:k], "cand"),
        (evaluation.baseline_run, baseline[:k], "base"),
    ):
        for prompt in evaluation.prompt_set.prompts.all():
            group = record_services.group_for(run=run, prompt=prompt)
            for index, score in enumerate(scores):
                g = record_services.generation_record(
                    group=group,
                    index=index,
                    messages=prompt.messages,
                    producer=None,
                    run=run,
                    raw_text=f"{who}-{prompt.external_id}-{index}{pad}",
                )
                record_services.judgment_record(
                    generation=g,
                    rubric=rubric,
                    source=Judgment.Source.JUDGE,
                    scores={c.key: _scaled(c, score) for c in criteria},
                    run=run,
                    producer=judge,
                )
        PipelineRun.objects.filter(pk=run.pk).update(status="succeeded")


def ab_evaluation(
    *, rubric: str, prompt_set: str, character: str | None = None, human_pairs: int = 5, k: int = 3, pad: str = ""
):
    """Version 2 (a child of the shipped version 1) evaluated against it, both sides run, its blind
    pairs sent. The sides' groups stay out of the group review queue, so a shared app's other
    tests see the groups they expect."""
    parent = GeneratorVersion.objects.get(number=1)
    # A ready child of version 1 (2 on a fresh database; another test's may be training).
    child = GeneratorVersion.objects.filter(parent=parent, status="ready").order_by("number").first()
    if child is None:
        number = GeneratorVersion.objects.aggregate(top=Max("number"))["top"] + 1
        child = GeneratorVersion.objects.create(number=number, parent=parent, status="ready")
    rubric_row = Rubric.objects.filter(slug=rubric).order_by("-version").first()
    evaluation = services.evaluation_start(
        candidate=child.number,
        prompt_set=PromptSet.objects.get(slug=prompt_set),
        rubric=rubric_row,
        character=Character.objects.get(slug=character) if character else None,
        completions_per_prompt=k,
        human_pairs=human_pairs,
        enqueue=False,
    )
    ran(evaluation, rubric_row, pad=pad)
    Group.objects.filter(run__in=[evaluation.candidate_run_id, evaluation.baseline_run_id]).update(overlap_target=0)
    return services.evaluation_finish(evaluation=evaluation)
