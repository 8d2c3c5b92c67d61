"""Hosts whose clocks differ, with real processes: a pipeline consumer whose clock runs five
minutes behind (libfaketime), a watchdog whose clock runs five minutes ahead, and this process
on the true time. Every time one host writes and another compares is the database's
(labelling/clock.py), so none of them takes a healthy run from its worker, readiness still sees
the consumer, and nothing is done twice.

PostgreSQL only: with SQLite the database runs inside each process and its clock is that
process's own, which is why the embedded default is one host (the second CI pass runs it)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

from inference import execution
from labelling import health
from labelling.models import Generation, PipelineRun
from tests.factories import generate_run
from tests.pipelines.conftest import ROOT, STALE_AFTER_S, Consumer, wait_for, wait_until, worker_env

pytestmark = [pytest.mark.triton, pytest.mark.slow]

LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")  # Debian's faketime (make test)
SKEW_S = 300


def skewed(env: dict, seconds: int) -> dict:
    """`env` for a process whose wall clock is `seconds` off (its monotonic clock is left alone)."""
    assert LIBFAKETIME.is_file(), "libfaketime is missing: apt-get install faketime (make test does)"
    return {**env, "LD_PRELOAD": str(LIBFAKETIME), "FAKETIME": f"{seconds:+d}", "FAKETIME_DONT_FAKE_MONOTONIC": "1"}


WATCHDOG = """
import json, django
django.setup()
from datetime import datetime, timezone
from inference import execution
from django.db import connection
with connection.cursor() as cursor:
    cursor.execute("SELECT clock_timestamp()")
    database_now = cursor.fetchone()[0]
print(json.dumps({
    "stale": execution.runs_stale(stale_after_s=%d),
    "claimed": execution.run_claim(run_id=%d, stale_after_s=%d) is not None,
    "own_clock_ahead_s": (datetime.now(timezone.utc) - database_now).total_seconds(),
}))
"""


@pytest.fixture
def postgres():
    if connection.vendor != "postgresql":
        pytest.skip("with SQLite the database's clock is each process's own: the PostgreSQL pass runs this")


def test_hosts_whose_clocks_differ_leave_a_healthy_run_to_its_worker(postgres, huey_queue, triton_url, story, tmp_path):
    character, prompt_set, rubric = story(24)
    env = worker_env(triton_url)
    behind = Consumer(skewed(env, -SKEW_S), tmp_path / "huey-behind.log").start()
    try:
        run = generate_run(
            character=character,
            prompt_set=prompt_set,
            rubric=rubric,
            group_size=4,
            max_tokens=48,
            workers=2,
            enqueue=True,
        )
        wait_for(run, {PipelineRun.Status.RUNNING}, timeout_s=60, log=behind.log)
        # Past the stale window, with the worker's heartbeats written all along.
        wait_until(lambda: run.refresh_from_db() or run.done_items >= 2, timeout_s=60, what="two items done")
        looks = []
        while True:
            run.refresh_from_db()
            if run.status != PipelineRun.Status.RUNNING:
                break
            # This host, on the true time: the run is neither stale nor claimable, and its consumer is alive.
            looks.append(
                {
                    "stale": execution.runs_stale(stale_after_s=STALE_AFTER_S),
                    "claimed": execution.run_claim(run_id=run.pk, stale_after_s=STALE_AFTER_S) is not None,
                    "alive": health.consumers_alive().get("pipeline"),
                }
            )
            if len(looks) == 1:
                # A watchdog host five minutes ahead looks too, as its periodic task would.
                ahead = subprocess.run(
                    [sys.executable, "-c", WATCHDOG % (STALE_AFTER_S, run.pk, STALE_AFTER_S)],
                    cwd=ROOT,
                    env=skewed({**env, "PYTHONPATH": str(ROOT)}, SKEW_S),
                    capture_output=True,
                    text=True,
                    timeout=120,
                )
                assert ahead.returncode == 0, ahead.stderr[-3000:]
                seen = json.loads(ahead.stdout.strip().splitlines()[-1])
                assert seen["own_clock_ahead_s"] > SKEW_S - 30  # its clock really was ahead
                assert seen["stale"] == [] and seen["claimed"] is False
        run = wait_for(run, {PipelineRun.Status.SUCCEEDED}, timeout_s=240, log=behind.log)
    finally:
        behind.stop()
    assert len(looks) >= 3, looks  # the run outlived several stale windows while looked at
    assert all(look == {"stale": [], "claimed": False, "alive": True} for look in looks), looks
    assert run.execution == 1  # claimed once, by the consumer whose clock runs behind, and never taken over
    # Nothing done twice: one completion per slot of every group.
    assert Generation.objects.filter(group__run=run).count() == 24 * 4
    assert run.done_items == run.total_items == 24 and run.failed_items == 0
    assert "taken over" not in (tmp_path / "huey-behind.log").read_text()


WEB_HOST = """
import django
django.setup()
from labelling.models import Character, PromptSet, Rubric
from labelling.runs import services
run, _ = services.run_start(
    kind="generate", character=Character.objects.get(pk=%d), prompt_set=PromptSet.objects.get(pk=%d),
    rubric=Rubric.objects.get(pk=%d), group_size=4, enqueue=False,
)
print(run.pk)
"""


def test_a_run_queued_by_a_host_whose_clock_runs_behind_is_not_taken_for_abandoned(postgres, story, triton_url):
    """A queued run nobody took up within the stale window may be resumed (queued again). Its age
    is its `created_at`: written by a web host five minutes behind with that host's own clock, the
    run would look abandoned the moment it was queued, and a resume would queue it twice."""
    character, prompt_set, rubric = story(2)
    made = subprocess.run(
        [sys.executable, "-c", WEB_HOST % (character.pk, prompt_set.pk, rubric.pk)],
        cwd=ROOT,
        env=skewed({**worker_env(triton_url), "PYTHONPATH": str(ROOT)}, -SKEW_S),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert made.returncode == 0, made.stderr[-3000:]
    run = PipelineRun.objects.get(pk=int(made.stdout.strip().splitlines()[-1]))
    with connection.cursor() as cursor:
        cursor.execute("SELECT clock_timestamp()")
        database_now = cursor.fetchone()[0]
    assert abs((database_now - run.created_at).total_seconds()) < 60  # the database's time, not the host's
    assert run.status == PipelineRun.Status.QUEUED and not run.is_resumable
