"""One run spread over several pipeline consumers (PIPELINE_SHARDS): its items split into parts by
a hash of their keys, each part claimed, kept alive and taken over as a whole run is. Real huey
consumers on the test's database and queue, the real tritonserver."""

import pytest
from django.urls import reverse

from inference import execution, tasks
from labelling.models import Generation, Group, PipelineRun, RunShard
from labelling.runs import services as run_services
from tests.factories import generate_run
from tests.pipelines.conftest import Consumer, wait_for, wait_until, worker_env
from tests.pipelines.test_run_page import parts_in_the_api

pytestmark = [pytest.mark.triton, pytest.mark.slow]

# One worker thread each, and polling the queue every half second at most: a consumer at work on
# one part leaves the other part to the other consumer.
ONE_AT_A_TIME = ("run_huey", "--workers", "1", "--worker-type", "thread", "--max-delay", "0.5")


def start(story, settings, prompts: int) -> PipelineRun:
    settings.PIPELINE_SHARDS = 2
    character, prompt_set, rubric = story(prompts)
    run = generate_run(
        character=character, prompt_set=prompt_set, rubric=rubric, group_size=4, max_tokens=48, workers=2, enqueue=True
    )
    assert run.params["shards"] == 2  # recorded: a resume splits it the same way whatever the setting then
    return run


def nothing_doubled(run: PipelineRun, prompts: int) -> None:
    assert Group.objects.filter(run=run).count() == prompts
    assert Generation.objects.filter(group__run=run, revision=0).count() == prompts * 4
    run.refresh_from_db()
    assert run.status == PipelineRun.Status.SUCCEEDED
    assert (run.done_items, run.failed_items, run.total_items) == (prompts, 0, prompts)


def test_a_run_split_in_two_is_worked_on_by_two_consumers_and_nothing_is_done_twice(
    story, settings, huey_queue, triton_url, tmp_path
):
    env = worker_env(triton_url)
    consumers = [Consumer(env, tmp_path / f"huey-{i}.log", ONE_AT_A_TIME).start() for i in range(2)]
    try:
        run = start(story, settings, 24)
        run = wait_for(run, {PipelineRun.Status.SUCCEEDED}, timeout_s=240, log=consumers[0].log)
    finally:
        for consumer in consumers:
            consumer.stop()
    nothing_doubled(run, 24)
    parts = list(RunShard.objects.filter(run=run))
    assert [(p.index, p.status, p.execution) for p in parts] == [(0, "done", 1), (1, "done", 1)]
    assert sum(p.done_items for p in parts) == 24 and all(p.done_items > 0 for p in parts)
    # Each part's items are the ones its key hashes to.
    expected = [sum(1 for i in range(24) if execution.shard_of(f"prompt:p{i}", 2) == index) for index in (0, 1)]
    assert [p.done_items for p in parts] == expected
    # Each consumer claimed one part.
    claims = [c.log.read_text().count(f"run {run.pk} (generate) part ") for c in consumers]
    assert claims == [1, 1], claims


def test_a_lost_consumers_part_is_taken_over_and_the_run_finishes_once(
    story, settings, huey_queue, triton_url, tmp_path, admin_client, admin_user
):
    settings.RUN_STALE_AFTER_S = 3  # the consumers' (worker_env), for the watchdog run here
    env = worker_env(triton_url)
    first = Consumer(env, tmp_path / "huey-lost.log", ONE_AT_A_TIME).start()
    second = Consumer(env, tmp_path / "huey-kept.log", ONE_AT_A_TIME).start()
    try:
        run = start(story, settings, 24)
        wait_until(
            lambda: RunShard.objects.filter(run=run, status="running", done_items__gte=1).count() == 2,
            timeout_s=120,
            what="both parts at work",
        )
        first.kill()  # SIGKILL: its part stops beating mid-way
        lost = RunShard.objects.get(run=run, status="running", index=_part_of(first, run))
        wait_until(lambda: execution.shards_stale(stale_after_s=3) != [], timeout_s=60, what="the lost part stale")
        # The run page and the API say which part has stopped, before the watchdog acts.
        stale = {p["index"]: p["stale"] for p in parts_in_the_api(admin_client, admin_user, run)}
        assert stale == {lost.index: True, 1 - lost.index: False}
        assert "no heartbeat: to be taken over" in part_row(admin_client, run, lost.index)
        # The watchdog (any consumer's, every minute; here at once) queues the lost part again.
        tasks.resume_stale_runs.call_local()
        run = wait_for(run, {PipelineRun.Status.SUCCEEDED}, timeout_s=240, log=second.log)
    finally:
        first.kill()
        second.stop()
    nothing_doubled(run, 24)
    lost.refresh_from_db()
    assert lost.status == "done" and lost.execution == 2  # taken over once, by the other consumer
    assert f"run {run.pk} (generate) part {lost.index}: claimed, execution 2" in second.log.read_text()
    shown = {p["index"]: p for p in parts_in_the_api(admin_client, admin_user, run)}
    assert (shown[lost.index]["status"], shown[lost.index]["claims"], shown[lost.index]["stale"]) == ("done", 2, False)
    assert "no heartbeat" not in part_row(admin_client, run, lost.index)
    assert part_row(admin_client, run, lost.index).endswith("</time></td>")  # its last beat, by its new consumer


def test_a_run_cancelled_while_a_part_waits_for_a_consumer_ends_cancelled(
    story, settings, huey_queue, triton_url, tmp_path
):
    """One consumer, one worker thread: the second part waits in the queue; a cancel ends the part
    at work, and the waiting one ends without running, so the run ends cancelled at once."""
    only = Consumer(worker_env(triton_url), tmp_path / "huey.log", ONE_AT_A_TIME).start()
    try:
        run = start(story, settings, 24)
        wait_until(lambda: RunShard.objects.filter(run=run, status="running").exists(), timeout_s=60, what="a part")
        run_services.run_cancel(run=run)
        run = wait_for(run, {PipelineRun.Status.CANCELLED, PipelineRun.Status.SUCCEEDED}, timeout_s=120, log=only.log)
    finally:
        only.stop()
    assert run.status == PipelineRun.Status.CANCELLED
    assert set(RunShard.objects.filter(run=run).values_list("status", flat=True)) == {"done"}
    assert run.done_items < run.total_items
    # and a resume does what is missing, split the same way
    settings.PIPELINE_SHARDS = 1
    resumed = run_services.run_resume(run=run)
    assert resumed.status == PipelineRun.Status.QUEUED and resumed.params["shards"] == 2


def part_row(client, run: PipelineRun, index: int) -> str:
    html = client.get(reverse("run_detail", args=[run.pk])).content.decode()
    return html.split(f'id="part-{index}"')[1].split("</tr>")[0]


def _part_of(consumer: Consumer, run: PipelineRun) -> int:
    text = consumer.log.read_text()
    marker = f"run {run.pk} (generate) part "
    return int(text[text.index(marker) + len(marker)])
