"""Real processes for pipeline runs: a huey consumer (a subprocess on the test's own
database and queue) talking to the real tritonserver; the docs' API scripts, run as written."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

# The consumer process and its settings are the fault-injection harness's (bench/faults.py).
from bench.faults import ROOT, STALE_AFTER_S, Consumer, worker_env  # noqa: F401 - used by the tests here
from labelling.catalogue import services as catalogue_services
from labelling.catalogue.schemas import CharacterIn, CriterionIn, PromptIn, PromptSetIn, RubricIn
from labelling.models import Character, PipelineRun, PromptSet, Rubric


@pytest.fixture
def huey_queue(transactional_db):
    from huey.contrib.djhuey import HUEY

    HUEY.flush()  # nothing left over from an earlier test
    yield HUEY
    HUEY.flush()


@pytest.fixture
def consumer(huey_queue, triton_url, tmp_path):
    worker = Consumer(worker_env(triton_url), tmp_path / "huey.log").start()
    yield worker
    worker.stop()


@pytest.fixture
def story(transactional_db):
    """A character, a two-criterion rubric and a prompt set of `n` prompts."""

    def make(n: int = 6) -> tuple[Character, PromptSet, Rubric]:
        character = catalogue_services.character_create(
            data=CharacterIn(slug="mira", name="Mira", persona="Mira is a lighthouse keeper: patient, wry, precise.")
        )
        rubric = catalogue_services.rubric_create(
            data=RubricIn(
                slug="voice",
                name="Voice",
                criteria=[
                    CriterionIn(key="in_character", description="Sounds like Mira", scale_min=1, scale_max=5),
                    CriterionIn(key="helpful", description="Answers the question", scale_min=1, scale_max=5),
                ],
            )
        )
        prompt_set = catalogue_services.prompt_set_create(data=PromptSetIn(slug="keeper", name="Keeper"))
        catalogue_services.prompts_add(
            prompt_set=prompt_set,
            prompts=[
                PromptIn(id=f"p{i}", messages=[{"role": "user", "content": f"Question {i}: what do you see tonight?"}])
                for i in range(n)
            ],
        )
        return character, prompt_set, rubric

    return make


def wait_for(run: PipelineRun, statuses: set[str], timeout_s: float = 120, log: Path | None = None) -> PipelineRun:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        run.refresh_from_db()
        if run.status in statuses:
            return run
        time.sleep(0.2)
    tail = log.read_text()[-3000:] if log and log.exists() else ""
    raise AssertionError(
        f"run #{run.pk} is {run.status} ({run.done_items}/{run.total_items}) after {timeout_s}s\n{tail}"
    )


def wait_until(predicate, timeout_s: float = 60, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def run_script(code: str, *, url: str, token: str, cwd: Path, logs: list[Path]) -> str:
    """The script in a fresh interpreter, as a user runs it; its output, or a failure with the workers' logs."""
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "SHAPING_URL": url, "SHAPING_TOKEN": token},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=540,
    )
    tails = "\n".join(f"--- {log.name}\n{log.read_text()[-3000:]}" for log in logs if log.exists())
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n{tails}"
    return done.stdout
