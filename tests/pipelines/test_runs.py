"""Database runs end to end: a real huey consumer, the real tritonserver, the real database.

Each test checks the one invariant that matters after whatever happened: every
prompt has exactly one group, every group slot exactly one original completion,
and every completion exactly one judgment from this run.
"""

import re
from collections import Counter

from django.db import transaction
from django.urls import reverse

from labelling.models import Generation, Group, Judgment, PipelineRun
from labelling.runs import services as run_services
from tests.pipelines.conftest import STALE_AFTER_S, Consumer, wait_for, wait_until, worker_env

FINAL = {
    PipelineRun.Status.SUCCEEDED,
    PipelineRun.Status.PARTIAL,
    PipelineRun.Status.FAILED,
    PipelineRun.Status.CANCELLED,
}


def start(character, prompt_set, rubric, *, group_size=4, max_tokens=24, **params) -> PipelineRun:
    with transaction.atomic():  # enqueued once committed, as from the web or the API
        run, created = run_services.run_start(
            kind="generate",
            character=character,
            prompt_set=prompt_set,
            rubric=rubric,
            group_size=group_size,
            params={"sampling": {"max_tokens": max_tokens}, **params},
        )
    assert created
    return run


def assert_complete_exactly_once(run: PipelineRun, prompts: int, group_size: int) -> None:
    groups = Group.objects.filter(run=run)
    assert groups.count() == prompts
    slots = Counter(Generation.objects.filter(group__run=run, revision=0).values_list("group_id", "index"))
    assert set(slots.values()) == {1}, "a group slot holds more than one completion"
    assert len(slots) == prompts * group_size
    judged = Counter(
        Judgment.objects.filter(run=run, source=Judgment.Source.JUDGE).values_list("generation_id", flat=True)
    )
    assert len(judged) == prompts * group_size
    assert set(judged.values()) == {1}, "a completion was judged twice"
    failed = list(Judgment.objects.filter(run=run, status=Judgment.Status.FAILED).values("error", "raw_output"))
    assert not failed, failed  # what the judge answered, to tell a parse failure from a cut stream


def test_a_generate_and_judge_run_completes(story, consumer, admin_client):
    character, prompt_set, rubric = story(6)
    run = wait_for(start(character, prompt_set, rubric), FINAL, log=consumer.log)
    assert run.status == PipelineRun.Status.SUCCEEDED, run.errors
    assert (run.done_items, run.failed_items, run.total_items) == (6, 0, 6)
    assert_complete_exactly_once(run, 6, 4)
    generation = Generation.objects.filter(group__run=run).first()
    assert generation.messages[0]["role"] == "system"  # the character's persona, snapshotted
    assert 1 <= generation.completion_tokens <= 24  # the run's max_tokens
    assert (generation.producer.backend, generation.producer.model_name) == ("triton", "qwen3")
    # The run's throughput, over the run's own time.
    tokens = sum(Generation.objects.filter(run=run).values_list("completion_tokens", flat=True))
    rate = tokens / (run.finished_at - run.started_at).total_seconds()
    page = admin_client.get(reverse("run_detail", args=[run.pk])).content.decode()
    assert f"Generated {tokens} tokens" in page
    shown = float(re.search(r"([\d.]+) tokens/s", page).group(1))
    assert abs(shown - rate) <= 0.05 + 1e-9


def test_a_run_started_twice_with_one_key_is_one_run(story, huey_queue):
    character, prompt_set, rubric = story(1)
    first, created = run_services.run_start(
        kind="generate", character=character, prompt_set=prompt_set, rubric=rubric, idempotency_key="k-1", enqueue=False
    )
    again, created_again = run_services.run_start(
        kind="generate", character=character, prompt_set=prompt_set, rubric=rubric, idempotency_key="k-1", enqueue=False
    )
    assert created and not created_again and first.pk == again.pk
    assert PipelineRun.objects.count() == 1


def test_revise_links_each_revision_to_its_parent(story, consumer):
    character, prompt_set, rubric = story(2)
    generated = wait_for(start(character, prompt_set, rubric, group_size=2), FINAL, log=consumer.log)
    with transaction.atomic():
        run, _ = run_services.run_start(
            kind="revise",
            rubric=rubric,
            source_run=generated,
            params={"sampling": {"max_tokens": 16}, "revise_threshold": 1.01, "max_rounds": 1},
        )
    run = wait_for(run, FINAL, log=consumer.log)
    assert run.status == PipelineRun.Status.SUCCEEDED, run.errors
    revisions = Generation.objects.filter(run=run, source=Generation.Source.REVISION)
    assert revisions.count() == 4  # threshold above the maximum: every completion is revised once
    for revision in revisions:
        assert revision.parent.group_id == revision.group_id
        assert revision.parent.index == revision.index
        assert revision.revision == revision.parent.revision + 1
        assert revision.judgments.filter(run=run, status=Judgment.Status.OK).count() == 1


def test_cancel_stops_a_run_mid_way(story, consumer):
    character, prompt_set, rubric = story(40)
    run = start(character, prompt_set, rubric, max_tokens=200, workers=1)
    wait_until(lambda: Group.objects.filter(run=run).exists(), what="the run to start")
    run_services.run_cancel(run=PipelineRun.objects.get(pk=run.pk))
    run = wait_for(run, FINAL, log=consumer.log)
    assert run.status == PipelineRun.Status.CANCELLED
    assert Group.objects.filter(run=run).count() < 40


def test_triton_killed_mid_run_then_resumed_completes_exactly_once(story, consumer, triton_server):
    character, prompt_set, rubric = story(30)
    run = start(character, prompt_set, rubric, max_tokens=48)
    wait_until(lambda: PipelineRun.objects.get(pk=run.pk).done_items >= 3, what="some items done")
    triton_server.kill()
    run = wait_for(run, FINAL, log=consumer.log)
    assert run.status in {PipelineRun.Status.PARTIAL, PipelineRun.Status.FAILED}
    assert run.failed_items > 0 and run.errors, "the failures are recorded with their items"
    assert {e["error"] for e in run.errors} <= {"BackendUnavailable", "ModelNotReady", "InferenceError"}
    triton_server.start(timeout_s=120)
    run_services.run_resume(run=run)
    run = wait_for(run, {PipelineRun.Status.SUCCEEDED}, log=consumer.log)
    assert_complete_exactly_once(run, 30, 4)


def test_consumer_killed_mid_run_is_taken_over_by_the_next(story, consumer, triton_url):
    character, prompt_set, rubric = story(30)
    run = start(character, prompt_set, rubric, max_tokens=48)
    wait_until(lambda: PipelineRun.objects.get(pk=run.pk).done_items >= 3, what="some items done")
    consumer.kill()
    run.refresh_from_db()
    assert run.status == PipelineRun.Status.RUNNING
    # A new consumer finds the run without a heartbeat and resumes only the missing items.
    replacement = Consumer(worker_env(triton_url), consumer.log).start()
    try:
        run = wait_for(run, FINAL, timeout_s=120 + STALE_AFTER_S, log=consumer.log)
    finally:
        replacement.stop()
    assert run.status == PipelineRun.Status.SUCCEEDED, run.errors
    assert_complete_exactly_once(run, 30, 4)
