"""Fault injection for pipeline runs: a generate + judge run, then at a random moment one fault
(a SIGKILL of the huey consumer, a SIGKILL of the tritonserver, or a second actor: the
run resumed while it runs), the processes back, the run driven to its end as a user would
(resume once the backend is back), and the invariants checked.

Shared by `bench/bench_faults.py` (many seeded iterations, the figure in docs/reliability.md)
and `tests/pipelines/test_fault_injection.py` (a few, in CI). Needs Django set up on a
database a consumer subprocess can reach.
"""

from __future__ import annotations

import contextlib
import os
import random
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STALE_AFTER_S = 3  # the consumers' RUN_STALE_AFTER_S: a dead worker's run is taken over after this


def worker_env(triton_url: str, *, stale_after_s: int = STALE_AFTER_S) -> dict[str, str]:
    """This process's settings for a child process: the same database, the same queue."""
    from django.conf import settings
    from django.db import connection

    env = dict(os.environ)
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        env["SQLITE_PATH"] = str(db["NAME"])
        env.pop("DATABASE_URL", None)
    else:
        password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
        env["DATABASE_URL"] = f"postgres://{db['USER']}{password}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    env.update(
        DATA_DIR=str(settings.DATA_DIR),
        INFERENCE_BACKEND="triton",
        TRITON_URL=triton_url,
        RUN_STALE_AFTER_S=str(stale_after_s),
        PIPELINE_WORKERS="2",
        HUEY_WORKERS="2",
        HUEY_NAME=settings.HUEY["name"],
        DJANGO_SETTINGS_MODULE="shaping_web.settings",
    )
    if settings.HUEY.get("filename"):  # the same queue file, wherever DATA_DIR points now
        env["HUEY_SQLITE_PATH"] = settings.HUEY["filename"]
    return env


class Consumer:
    """A real huey consumer process (`manage.py run_huey`, or another consumer command such as
    `run_train_worker`), in its own session."""

    def __init__(
        self, env: dict, log: Path, command: tuple[str, ...] = ("run_huey", "--workers", "2", "--worker-type", "thread")
    ):
        self.env, self.log, self.command = env, log, command
        self.process: subprocess.Popen | None = None

    def start(self) -> Consumer:
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "manage.py", *self.command],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        if self.alive():
            os.killpg(self.process.pid, 9)
            self.process.wait()

    def stop(self) -> None:
        if self.alive():
            os.killpg(self.process.pid, 15)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class Outcome:
    run_id: int
    fault: str
    killed_at_s: float  # seconds after the run was started
    resumes: int
    seconds: float
    status: str
    violations: list[str] = field(default_factory=list)


def story(prompts: int, tag: str):
    """A character, a two-criterion rubric and a prompt set of `prompts` prompts."""
    from labelling.catalogue import services as catalogue_services
    from labelling.catalogue.schemas import CharacterIn, CriterionIn, PromptIn, PromptSetIn, RubricIn

    character = catalogue_services.character_create(
        data=CharacterIn(slug=f"keeper-{tag}", name="Keeper", persona="A lighthouse keeper: patient, wry, precise.")
    )
    rubric = catalogue_services.rubric_create(
        data=RubricIn(
            slug=f"voice-{tag}",
            name="Voice",
            criteria=[
                CriterionIn(key="in_character", description="Sounds like the keeper", scale_min=1, scale_max=5),
                CriterionIn(key="helpful", description="Answers the question", scale_min=1, scale_max=5),
            ],
        )
    )
    prompt_set = catalogue_services.prompt_set_create(data=PromptSetIn(slug=f"nights-{tag}", name="Nights"))
    catalogue_services.prompts_add(
        prompt_set=prompt_set,
        prompts=[
            PromptIn(id=f"p{i}", messages=[{"role": "user", "content": f"Night {i}: what do you see?"}])
            for i in range(prompts)
        ],
    )
    return character, prompt_set, rubric


def start_run(character, prompt_set, rubric, *, group_size: int, max_tokens: int):
    from django.db import transaction

    from labelling.runs import services as run_services

    with transaction.atomic():  # enqueued once committed, as from the web or the API
        run, _ = run_services.run_start(
            kind="generate",
            character=character,
            prompt_set=prompt_set,
            rubric=rubric,
            group_size=group_size,
            params={"sampling": {"max_tokens": max_tokens}, "workers": 2},
        )
    return run


FAULTS = ("consumer", "triton", "resume")


def one_iteration(
    rng: random.Random,
    *,
    fault: str,
    tag: str,
    consumer: Consumer,
    start_consumer,
    kill_triton,
    start_triton,
    prompts: int = 6,
    group_size: int = 4,
    max_tokens: int = 24,
    reviewer=None,
    timeout_s: float = 300,
) -> Outcome:
    """One run, one fault at a random moment of it, the processes back, the run driven to
    its end; returns what happened and every invariant broken."""
    from django.core.exceptions import ValidationError

    from labelling.models import PipelineRun
    from labelling.runs import services as run_services

    character, prompt_set, rubric = story(prompts, tag)
    started = time.monotonic()
    run = start_run(character, prompt_set, rubric, group_size=group_size, max_tokens=max_tokens)
    _wait(lambda: PipelineRun.objects.filter(pk=run.pk, status=PipelineRun.Status.RUNNING).exists(), 120)
    reviews = ReviewsDuringFaults(reviewer) if reviewer is not None else None
    if reviews:
        reviews.start()
    # The moment: after a random number of the run's items are done (so it lands mid-run
    # whatever the machine's speed), plus a little jitter inside the next item.
    at_item = rng.randrange(0, max(1, prompts - 1))
    _wait(lambda: PipelineRun.objects.get(pk=run.pk).done_items >= at_item, 120)
    time.sleep(rng.uniform(0.0, 0.3))
    killed_at = time.monotonic() - started
    if fault == "consumer":
        consumer.kill()
        time.sleep(rng.uniform(0.0, 1.0))
        start_consumer()
    elif fault == "triton":
        kill_triton()
        time.sleep(rng.uniform(0.0, 1.0))
        start_triton()
    elif fault == "resume":  # a user resuming the run while it runs (refused while its worker is alive)
        run.refresh_from_db()
        with contextlib.suppress(ValidationError):
            run_services.run_resume(run=run)
    elif fault != "none":  # "none": the baseline, timed the same way
        raise ValueError(f"unknown fault {fault!r}")
    run, resumes = drive_to_end(run, timeout_s=timeout_s)
    submitted = reviews.stop() if reviews else None
    outcome = Outcome(run.pk, fault, killed_at, resumes, time.monotonic() - started, run.status)
    outcome.violations = violations(run, prompts=prompts, group_size=group_size)
    if reviews:
        outcome.violations += reviews.violations(submitted)
    return outcome


def drive_to_end(run, *, timeout_s: float, max_resumes: int = 5):
    """Wait for the run to end; resume it (as its user would) while it ends short of success."""
    from django.core.exceptions import ValidationError

    from labelling.models import PipelineRun
    from labelling.runs import services as run_services

    deadline = time.monotonic() + timeout_s
    resumes = 0
    while time.monotonic() < deadline:
        run.refresh_from_db()
        if run.status == PipelineRun.Status.SUCCEEDED:
            break
        if run.status in PipelineRun.FINISHED:
            if resumes >= max_resumes:
                break
            try:
                run_services.run_resume(run=run)
                resumes += 1
            except ValidationError:
                pass
        time.sleep(0.2)
    run.refresh_from_db()
    return run, resumes


def violations(run, *, prompts: int, group_size: int) -> list[str]:
    """Every invariant the run breaks, in words ([] when it holds them all)."""
    from inference.pipelines import RunContext, run_items
    from labelling.models import Generation, Group, Judgment, PipelineRun

    found = []
    if run.status not in PipelineRun.FINISHED:
        found.append(f"run #{run.pk} is not in a terminal state: {run.status}")
    if run.status != PipelineRun.Status.SUCCEEDED:
        found.append(f"run #{run.pk} ended {run.status}: {run.errors[-2:]}")
    groups = Counter(Group.objects.filter(run=run).values_list("prompt_id", flat=True))
    if len(groups) != prompts or set(groups.values()) - {1}:
        found.append(f"groups: {len(groups)} prompts with groups, counts {sorted(set(groups.values()))}")
    slots = Counter(Generation.objects.filter(group__run=run, revision=0).values_list("group_id", "index"))
    if set(slots.values()) - {1}:
        found.append("a group slot holds more than one completion")
    if len(slots) != prompts * group_size:
        found.append(f"{len(slots)} slots filled of {prompts * group_size}")
    judged = Counter(
        Judgment.objects.filter(run=run, source=Judgment.Source.JUDGE).values_list("generation_id", "rubric_id")
    )
    if set(judged.values()) - {1}:
        found.append(f"{sum(n - 1 for n in judged.values())} duplicate judge judgments")
    if len(judged) != len(slots):
        found.append(f"{len(judged)} completions judged of {len(slots)}")
    total, left = run_items(RunContext(run, "triton"))
    stored_done = total - len(list(left))
    if (run.done_items, run.total_items) != (stored_done, total):
        found.append(f"counters {run.done_items}/{run.total_items}, stored {stored_done}/{total}")
    if run.done_items + run.failed_items > run.total_items:
        found.append(f"counters past the total: {run.done_items} + {run.failed_items} > {run.total_items}")
    return found


class ReviewsDuringFaults:
    """A reviewer rating groups while the faults happen: every accepted review must survive."""

    def __init__(self, reviewer):
        self.reviewer = reviewer
        self.submitted: set[uuid.UUID] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> set[uuid.UUID]:
        self._stop.set()
        self._thread.join(timeout=30)
        return set(self.submitted)

    def _loop(self) -> None:
        from django.db import connection

        from labelling.review import selectors as review_selectors
        from labelling.review import services as review_services

        try:
            while not self._stop.wait(0.2):
                hold = review_services.assignment_claim_next(reviewer=self.reviewer)
                if hold is None:
                    continue
                rubric = review_selectors.group_rubric(hold.group)
                if rubric is None:
                    review_services.review_skip(assignment_id=hold.pk, reviewer=self.reviewer)
                    continue
                scores = {
                    g.pk: {c.key: c.scale_max for c in rubric.criteria.all()}
                    for g in review_selectors.review_generations(hold)
                }
                submission = review_services.ReviewSubmission(submission_id=uuid.uuid4(), scores=scores)
                if review_services.review_submit(assignment_id=hold.pk, reviewer=self.reviewer, submission=submission):
                    self.submitted.add(submission.submission_id)
        finally:
            connection.close()

    def violations(self, submitted: set[uuid.UUID]) -> list[str]:
        from labelling.models import Judgment

        stored = set(
            Judgment.objects.filter(reviewer=self.reviewer, submission_id__in=submitted).values_list(
                "submission_id", flat=True
            )
        )
        lost = submitted - stored
        return [f"{len(lost)} of {len(submitted)} accepted reviews lost"] if lost else []


def _wait(predicate, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise TimeoutError("timed out")
