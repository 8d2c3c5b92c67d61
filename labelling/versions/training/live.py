"""Reviewers inside the RL step: the groups a GRPO step sends to reviewers, made reviewable at
the head of the queue, and what reviewers scored of them by the step's deadline.

Each request of a train run becomes a run of its own (kind generate, already succeeded, never
queued: the trainer made its completions) whose groups go to one reviewer each, ahead of every
other group in the queue. At the deadline what is scored is read and the groups still open are
closed, so nobody rates a completion the step no longer waits for. Every request is recorded on
the train run (`params["live_review_log"]`): groups in the step, sent, scored, seconds waited.
"""

from __future__ import annotations

import functools
import json
import statistics
import time
from collections import defaultdict

from django.db import transaction
from django.db.models import F, Prefetch

from labelling import clock
from labelling.datasets.storage import dataset_path
from labelling.models import DatasetVersion, Generation, Group, Judgment, PipelineRun
from labelling.records import services as record_services
from labelling.records.queue_state import BUCKET_NO_SIGNAL


def _key(messages: list[dict]) -> str:
    return json.dumps([{"role": m["role"], "content": m["content"]} for m in messages], sort_keys=True)


@functools.lru_cache(maxsize=8)
def _source_groups(dataset_version_id: int) -> dict[str, int]:
    """A dataset version's rows: a prompt's messages -> the group its row came from (read once
    per version and process: a frozen version never changes)."""
    version = DatasetVersion.objects.get(pk=dataset_version_id)
    out = {}
    with dataset_path(version).open(encoding="utf-8") as rows:
        for line in rows:
            row = json.loads(line)
            if str(row.get("id", "")).startswith("g"):
                out[_key(row["prompt"])] = int(row["id"][1:])
    return out


def live_groups_open(*, train_run: PipelineRun, request: str, groups: list[dict], sources=None) -> PipelineRun:
    """The request's completions as reviewable groups, first in the queue; the run holding them.
    The same request twice (a retried message) gives the run made the first time."""
    key = f"train/{train_run.pk}/live/{request}"
    if (made := PipelineRun.objects.filter(idempotency_key=key).first()) is not None:
        return made
    sources = sources if sources is not None else _source_groups(train_run.params["dataset_version"])
    originals = {
        g.pk: g for g in Group.objects.filter(pk__in=set(sources.values())).select_related("prompt", "character")
    }
    first = originals.get(sources.get(_key(groups[0]["prompt"]))) if groups else None
    with transaction.atomic():
        run = PipelineRun.objects.create(
            kind=PipelineRun.Kind.GENERATE,
            status=PipelineRun.Status.SUCCEEDED,
            params={"live_review_of": train_run.pk, "request": request, "step_groups": len(groups)},
            character=first.character if first else None,
            prompt_set=first.prompt.prompt_set if first else None,
            rubric=train_run.rubric,
            group_size=max((len(g["completions"]) for g in groups), default=1),
            total_items=len(groups),
            done_items=len(groups),
            idempotency_key=key,
            started_at=clock.now(),
            finished_at=clock.now(),
        )
        used = set()
        for g in groups:
            source = originals.get(sources.get(_key(g["prompt"])))
            if source is None or source.prompt_id in used:
                continue  # a prompt the dataset does not hold (or twice): nothing to show it against
            used.add(source.prompt_id)
            group = Group.objects.create(
                run=run, prompt=source.prompt, character=source.character, size=len(g["completions"])
            )
            for index, text in enumerate(g["completions"]):
                record_services.generation_record(
                    group=group, index=index, messages=g["prompt"], raw_text=text, producer=None, run=run
                )
        # Ahead of every other group: the step is waiting for these.
        Group.objects.filter(run=run).update(queue_bucket=BUCKET_NO_SIGNAL, overlap_target=1)
    return run


def live_scores(run: PipelineRun, groups: list[dict]) -> dict[str, list]:
    """What reviewers scored, per group as sent (its index): one {criterion: mean score} or None
    per completion; a group not made (no source) or not scored at all is left out."""
    originals = Prefetch("generations", queryset=Generation.objects.filter(revision=0).order_by("index"))
    by_prompt = {}  # a prompt's messages -> its group's completions, in order
    for group in Group.objects.filter(run=run).prefetch_related(originals):
        generations = list(group.generations.all())
        if generations:
            by_prompt[_key(generations[0].messages)] = generations
    scores: dict[int, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for judgment in Judgment.objects.filter(
        generation__group__run=run, source=Judgment.Source.HUMAN, status=Judgment.Status.OK
    ).prefetch_related("scores__criterion"):
        for s in judgment.scores.all():
            scores[judgment.generation_id][s.criterion.key].append(s.score)
    out = {}
    for index, g in enumerate(groups):
        generations = by_prompt.get(_key(g["prompt"]))
        if generations is None:
            continue
        per = [
            {k: statistics.fmean(v) for k, v in scores[gen.pk].items()} if gen.pk in scores else None
            for gen in generations
        ]
        if any(p is not None for p in per):
            out[str(index)] = per
    return out


def live_review(*, train_run: PipelineRun, request: str, groups: list[dict], deadline_s: float) -> dict:
    """Open the groups, wait until reviewers scored them all or the deadline passed, close what
    is still open, and return what was scored (`live_scores`)."""
    run = live_groups_open(train_run=train_run, request=request, groups=groups)
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if not Group.objects.filter(run=run, review_count__lt=F("overlap_target")).exists():
            break
        time.sleep(0.25)
    Group.objects.filter(run=run, review_count__lt=F("overlap_target")).update(overlap_target=F("review_count"))
    return live_scores(run, groups)


def live_review_record(*, train_run_id: int, entry: dict) -> None:
    """One request's figures on the train run (its step, groups, sent, scored, seconds waited)."""
    with transaction.atomic():
        run = PipelineRun.objects.select_for_update().get(pk=train_run_id)
        run.params = {**run.params, "live_review_log": [*run.params.get("live_review_log", []), entry]}
        run.save(update_fields=["params"])
