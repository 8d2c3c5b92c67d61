"""Exactly once when a second actor arrives: a resume while the run is running, a worker that
lost its claim, a cancelled run whose worker died, a batch that came back short.

The races between processes run against a real huey consumer and the real tritonserver;
the rules each fix rests on (a claim counter, a unique constraint, a counter check) are also
checked on the rows directly.
"""

import subprocess
import sys
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone

from bench.faults import violations
from inference import execution, tasks
from inference.engine import Completion
from labelling.models import Generation, Judgment, PipelineRun, RunShard
from labelling.records import services as record_services
from labelling.runs import services as run_services
from tests.pipelines.conftest import ROOT, wait_for, wait_until, worker_env
from tests.pipelines.test_runs import FINAL, start


def _running(run: PipelineRun, *, beat_ago_s: float = 0, **fields) -> PipelineRun:
    PipelineRun.objects.filter(pk=run.pk).update(
        status=PipelineRun.Status.RUNNING,
        heartbeat_at=timezone.now() - timedelta(seconds=beat_ago_s),
        started_at=timezone.now(),
        **fields,
    )
    run.refresh_from_db()
    return run


def _queued_run(story, n=2) -> PipelineRun:
    character, prompt_set, rubric = story(n)
    run, _ = run_services.run_start(
        kind="generate", character=character, prompt_set=prompt_set, rubric=rubric, group_size=2, enqueue=False
    )
    return run


# --- resume ------------------------------------------------------------------------------


def test_resuming_a_run_whose_worker_is_alive_is_refused(story, settings):
    run = _running(_queued_run(story), beat_ago_s=1)
    with pytest.raises(ValidationError) as exc:
        run_services.run_resume(run=run)
    assert "is running (its worker is alive)" in exc.value.messages[0]
    run.refresh_from_db()
    assert run.status == PipelineRun.Status.RUNNING


def test_a_stalled_run_resumes_and_stays_running_for_the_next_claim(story, settings, huey_queue):
    run = _running(_queued_run(story), beat_ago_s=settings.RUN_STALE_AFTER_S + 5)
    with transaction.atomic():
        run_services.run_resume(run=run)
    assert huey_queue.pending_count() == 1
    run.refresh_from_db()
    assert run.status == PipelineRun.Status.RUNNING  # the claim takes it over, raising its execution
    claimed = execution.run_claim(run_id=run.pk, stale_after_s=settings.RUN_STALE_AFTER_S)
    assert claimed is not None and claimed.execution == run.execution + 1


@pytest.mark.parametrize(
    ("status", "done", "total", "resumes"),
    [
        (PipelineRun.Status.FAILED, 0, 2, True),
        (PipelineRun.Status.PARTIAL, 1, 2, True),
        (PipelineRun.Status.CANCELLED, 1, 2, True),
        (PipelineRun.Status.CANCELLED, 2, 2, False),
        (PipelineRun.Status.SUCCEEDED, 2, 2, False),
    ],
)
def test_which_finished_runs_resume(story, status, done, total, resumes):
    run = _queued_run(story)
    PipelineRun.objects.filter(pk=run.pk).update(status=status, done_items=done, total_items=total)
    run.refresh_from_db()
    assert run.is_resumable is resumes
    if resumes:
        assert run_services.run_resume(run=run).status == PipelineRun.Status.QUEUED
    else:
        with pytest.raises(ValidationError):
            run_services.run_resume(run=run)


def test_the_run_page_offers_resume_only_when_it_would_be_taken(admin_client, story):
    run = _running(_queued_run(story), beat_ago_s=1)
    page = admin_client.get(reverse("run_detail", args=[run.pk])).content.decode()
    assert reverse("run_resume", args=[run.pk]) not in page
    assert reverse("run_cancel", args=[run.pk]) in page
    PipelineRun.objects.filter(pk=run.pk).update(status=PipelineRun.Status.FAILED, finished_at=timezone.now())
    page = admin_client.get(reverse("run_detail", args=[run.pk])).content.decode()
    assert reverse("run_resume", args=[run.pk]) in page
    assert reverse("run_cancel", args=[run.pk]) not in page


@pytest.mark.slow
def test_a_resume_from_the_cli_while_the_run_runs_is_refused_and_it_runs_once(story, consumer, triton_url):
    """The reported case: a generate + judge run resumed from the CLI while it ran ran twice
    (done 9 of 6, 24 duplicate judge judgments). Now the CLI says no and the run runs once."""
    # Long enough (12 prompts x 8 x 128 tokens) that the run is still going when the CLI, a fresh
    # Django process, gets to look at it, even on a busy machine.
    character, prompt_set, rubric = story(12)
    run = start(character, prompt_set, rubric, group_size=8, max_tokens=128, workers=1)
    wait_until(lambda: PipelineRun.objects.get(pk=run.pk).done_items >= 1, what="the run to be under way")
    resume = subprocess.run(
        [sys.executable, "manage.py", "start_run", "--resume", str(run.pk)],
        cwd=ROOT,
        env=worker_env(triton_url),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert resume.returncode != 0
    assert f"run #{run.pk} is running (its worker is alive)" in resume.stderr
    run = wait_for(run, FINAL, log=consumer.log)
    assert run.status == PipelineRun.Status.SUCCEEDED, run.errors
    assert (run.done_items, run.failed_items, run.total_items) == (12, 0, 12)
    assert run.execution == 1
    # Every slot once, one judge judgment per completion (a judge answer that would not parse
    # counts: it is recorded as failed, never dropped), counters equal to what is stored.
    assert violations(run, prompts=12, group_size=8) == []


# --- claims ------------------------------------------------------------------------------


def test_a_worker_that_lost_its_claim_can_no_longer_write_the_run(story, settings):
    run = _queued_run(story)
    first = execution.run_claim(run_id=run.pk, stale_after_s=60)
    execution.run_set_total(run_id=run.pk, execution=first.execution, total=2, already_done=0)
    PipelineRun.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=120))
    second = execution.run_claim(run_id=run.pk, stale_after_s=60)
    assert second is not None and second.execution == first.execution + 1
    assert execution.run_claim(run_id=run.pk, stale_after_s=60) is None  # its heartbeat is fresh now

    assert execution.run_item_finished(run_id=run.pk, execution=first.execution, ok=True) is False
    with pytest.raises(execution.Superseded):
        execution.run_heartbeat(run_id=run.pk, execution=first.execution)
    assert execution.run_finish(run_id=run.pk, execution=first.execution, done=2).status == PipelineRun.Status.RUNNING
    assert execution.run_item_finished(run_id=run.pk, execution=second.execution, ok=True) is True
    run.refresh_from_db()
    assert (run.done_items, run.status) == (1, PipelineRun.Status.RUNNING)


def test_counters_never_pass_the_total(story):
    run = _queued_run(story)
    claimed = execution.run_claim(run_id=run.pk, stale_after_s=60)
    execution.run_set_total(run_id=run.pk, execution=claimed.execution, total=2, already_done=1)
    assert execution.run_item_finished(run_id=run.pk, execution=claimed.execution, ok=True) is True
    assert execution.run_item_finished(run_id=run.pk, execution=claimed.execution, ok=True) is False
    assert execution.run_item_finished(run_id=run.pk, execution=claimed.execution, ok=False) is False
    run.refresh_from_db()
    assert (run.done_items, run.failed_items) == (2, 0)
    with pytest.raises(IntegrityError), transaction.atomic():  # and the database says so too
        PipelineRun.objects.filter(pk=run.pk).update(failed_items=1)


def test_the_database_refuses_a_second_judge_judgment_from_one_run(story):
    run = _queued_run(story)
    prompt = run.prompt_set.prompts.first()
    group = record_services.group_for(run=run, prompt=prompt)
    generation = record_services.generation_record(group=group, index=0, messages=[], raw_text="x", producer=None)
    judge = record_services.producer_get_or_create(backend="test", model_name="judge")
    scores = {"in_character": 3, "helpful": 4}

    def record():
        record_services.judgment_record(
            generation=generation, rubric=run.rubric, source="judge", scores=scores, producer=judge, run=run
        )

    record()
    with pytest.raises(IntegrityError):
        record()
    assert Judgment.objects.filter(generation=generation).count() == 1


def test_a_run_cancelled_while_its_worker_died_ends_cancelled_and_is_not_requeued(story, settings, huey_queue):
    run = _running(_queued_run(story), beat_ago_s=settings.RUN_STALE_AFTER_S + 5, cancel_requested=True)
    assert tasks.resume_stale_runs.call_local() == []
    run.refresh_from_db()
    assert run.status == PipelineRun.Status.CANCELLED and run.finished_at is not None
    assert huey_queue.pending_count() == 0
    assert tasks.resume_stale_runs.call_local() == []  # and the next minute leaves it alone too
    assert huey_queue.pending_count() == 0


# --- short batches -----------------------------------------------------------------------


class ShortBackend:
    """Returns one completion fewer than asked (a unit stand-in for a misbehaving server)."""

    name = "short"

    def generate(self, request, on_delta=None):
        return [Completion(i, f"slot text {i}", "stop", 3, 3) for i in range(request.params.n - 1)]

    def judge(self, request):
        raise AssertionError("nothing is judged: the item failed before")

    def close(self):
        pass


def test_a_batch_that_comes_back_short_is_a_recorded_failure_for_the_missing_slots(story):
    character, prompt_set, _ = story(1)
    run, _ = run_services.run_start(
        kind="generate", character=character, prompt_set=prompt_set, group_size=3, enqueue=False
    )
    assert tasks.execute(run.pk, backend=ShortBackend()) == PipelineRun.Status.FAILED
    run.refresh_from_db()
    assert (run.done_items, run.failed_items, run.total_items) == (0, 1, 1)
    assert run.errors[0]["error"] == "IncompleteBatch"
    assert "returned 2 of 3 completions; slots [2] are missing" in run.errors[0]["message"]
    assert sorted(Generation.objects.filter(group__run=run).values_list("index", flat=True)) == [0, 1]


# --- resuming after an outage ------------------------------------------------------------


class HealthOnly:
    """A backend that only answers health (the watchdog asks nothing else before resuming)."""

    def __init__(self, ready: bool):
        self.ready = ready

    def health(self):
        from inference.backends.base import Health

        return Health("stub", "stub", self.ready, {"qwen3": self.ready, "judge": self.ready})


def _failed(run: PipelineRun, *errors: str) -> PipelineRun:
    PipelineRun.objects.filter(pk=run.pk).update(
        status=PipelineRun.Status.PARTIAL,
        total_items=2,
        done_items=1,
        failed_items=1,
        finished_at=timezone.now(),
        errors=[{"item": "prompt:p0", "error": e, "message": "down"} for e in errors],
    )
    run.refresh_from_db()
    return run


def test_a_run_that_failed_on_a_down_backend_resumes_itself_once_it_is_back(story, huey_queue):
    outage = _failed(_queued_run(story), "BackendUnavailable", "ModelNotReady")
    assert tasks.resume_after_outage(backend=HealthOnly(ready=False)) == []  # still down: wait
    assert PipelineRun.objects.get(pk=outage.pk).status == PipelineRun.Status.PARTIAL
    with transaction.atomic():
        assert tasks.resume_after_outage(backend=HealthOnly(ready=True)) == [outage.pk]
    outage.refresh_from_db()
    assert (outage.status, outage.params["auto_resumed"]) == (PipelineRun.Status.QUEUED, 1)
    assert huey_queue.pending_count() == 1


def test_only_outages_resume_themselves_and_at_most_three_times(story):
    first = _queued_run(story)
    other = _failed(first, "BackendUnavailable", "InvalidRequest")  # a failure a person must look at
    second, _ = run_services.run_start(
        kind="generate", character=first.character, prompt_set=first.prompt_set, group_size=2, enqueue=False
    )
    tired = _failed(second, "BackendUnavailable")
    PipelineRun.objects.filter(pk=tired.pk).update(params={**tired.params, "auto_resumed": execution.AUTO_RESUMES})
    assert tasks.resume_after_outage(backend=HealthOnly(ready=True)) == []
    assert set(PipelineRun.objects.filter(pk__in=[other.pk, tired.pk]).values_list("status", flat=True)) == {
        PipelineRun.Status.PARTIAL
    }


def test_a_cancel_that_comes_after_the_last_item_leaves_the_run_succeeded(story):
    """Cancel requested once every item was done stopped nothing: the run did it all (it read
    "cancelled" at 2 of 2). One that stops a run short still ends cancelled."""
    character, prompt_set, rubric = story(2)
    for done, status in ((2, PipelineRun.Status.SUCCEEDED), (1, PipelineRun.Status.CANCELLED)):
        run, _ = run_services.run_start(
            kind="generate", character=character, prompt_set=prompt_set, rubric=rubric, group_size=2, enqueue=False
        )
        claimed = execution.run_claim(run_id=run.pk, stale_after_s=60)
        execution.run_set_total(run_id=run.pk, execution=claimed.execution, total=2, already_done=0)
        for _ in range(done):
            execution.run_item_finished(run_id=run.pk, execution=claimed.execution, ok=True)
        PipelineRun.objects.filter(pk=run.pk).update(cancel_requested=True)
        finished = execution.run_finish(run_id=run.pk, execution=claimed.execution, done=done, cancelled=True)
        assert (finished.status, finished.done_items) == (status, done)


# --- a run in parts (PIPELINE_SHARDS) -----------------------------------------------------


def _run_in_parts(story, settings, n=4) -> PipelineRun:
    settings.PIPELINE_SHARDS = 2
    run = _queued_run(story, n)
    assert execution.shards_prepare(run_id=run.pk, total=n, missing=n) == [0, 1]
    return run


def test_a_part_is_claimed_once_and_a_part_that_lost_its_claim_can_no_longer_write(story, settings):
    run = _run_in_parts(story, settings)
    first = execution.shard_claim(run_id=run.pk, index=0, stale_after_s=60)
    assert first.execution == 1 and execution.shard_claim(run_id=run.pk, index=0, stale_after_s=60) is None
    run.refresh_from_db()
    assert run.status == PipelineRun.Status.RUNNING and run.execution == 1  # the first part set it running
    assert execution.run_item_finished(run_id=run.pk, execution=1, ok=True, shard=0) is True
    RunShard.objects.filter(run=run, index=0).update(heartbeat_at=timezone.now() - timedelta(seconds=120))
    assert execution.shards_stale(stale_after_s=60) == [(run.pk, 0)]
    second = execution.shard_claim(run_id=run.pk, index=0, stale_after_s=60)
    assert second.execution == 2
    assert execution.run_item_finished(run_id=run.pk, execution=1, ok=True, shard=0) is False
    with pytest.raises(execution.Superseded):
        execution.run_heartbeat(run_id=run.pk, execution=1, shard=0)
    assert execution.shard_finish(run_id=run.pk, index=0, execution=1, cancelled=False, recount=lambda: 4) == (
        "superseded"
    )
    assert execution.run_item_finished(run_id=run.pk, execution=2, ok=False, error={"item": "p1"}, shard=0) is True
    run.refresh_from_db()
    assert (run.done_items, run.failed_items, run.execution) == (1, 1, 1)  # a takeover of a part leaves the run's
    part = RunShard.objects.get(run=run, index=0)
    assert (part.done_items, part.failed_items) == (1, 1)


def test_the_last_part_to_finish_ends_the_run_with_what_the_database_holds(story, settings):
    run = _run_in_parts(story, settings)
    parts = [execution.shard_claim(run_id=run.pk, index=i, stale_after_s=60) for i in (0, 1)]
    assert [p.execution for p in parts] == [1, 1]
    assert execution.shard_finish(run_id=run.pk, index=1, execution=1, cancelled=False, recount=lambda: 0) == (
        "part done"
    )
    run.refresh_from_db()
    assert run.status == PipelineRun.Status.RUNNING  # the other part is still at work
    assert execution.shard_finish(run_id=run.pk, index=0, execution=1, cancelled=False, recount=lambda: 3) == (
        PipelineRun.Status.PARTIAL
    )
    run.refresh_from_db()
    assert (run.done_items, run.failed_items, run.status) == (3, 1, PipelineRun.Status.PARTIAL)
    # resumed: it is split the same way, its parts start afresh with its counters
    settings.PIPELINE_SHARDS = 1
    run_services.run_resume(run=run)
    assert execution.shards_prepare(run_id=run.pk, total=4, missing=1) == [0, 1]
    run.refresh_from_db()
    assert (run.done_items, run.failed_items, run.status) == (3, 0, PipelineRun.Status.QUEUED)
    assert set(RunShard.objects.filter(run=run).values_list("status", "done_items")) == {("queued", 0)}


def test_a_cancelled_run_ends_when_its_last_part_ends_even_one_nobody_started(story, settings):
    run = _run_in_parts(story, settings)
    execution.shard_claim(run_id=run.pk, index=0, stale_after_s=60)
    run_services.run_cancel(run=run)
    assert execution.shard_finish(run_id=run.pk, index=0, execution=1, cancelled=True, recount=lambda: 1) == (
        "part done"
    )
    # The part still queued arrives: it does not run, and as the last part it ends the run.
    assert execution.shard_claim(run_id=run.pk, index=1, stale_after_s=60) is None
    run.refresh_from_db()
    assert run.status == PipelineRun.Status.CANCELLED
    assert execution.shards_prepare(run_id=run.pk, total=4, missing=3) == []  # a cancelled run is not handed out


def test_items_split_by_their_keys_the_same_way_every_time():
    keys = [f"prompt:p{i}" for i in range(40)]
    split = [execution.shard_of(key, 3) for key in keys]
    assert split == [execution.shard_of(key, 3) for key in keys] and set(split) == {0, 1, 2}
    assert all(execution.shard_of(key, 1) == 0 for key in keys)
