"""Bulk-filled databases for the benchmarks: a character, a two-criterion rubric, groups of
G completions, a judge judgment per completion, and optionally earlier human reviews.

Each benchmark keeps its database in a folder of its own under data/ (reused between runs
once filled; a fill that did not finish starts again). Also the benchmarks' shared helpers:
a percentile, and a child process that answers with one line of JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BATCH = 5000  # groups per transaction
GROUP_SIZE = 4


def setup(data_dir: Path, *, database_url: str | None = None, fresh: bool = False) -> None:
    """Point Django at the benchmark's own database, then set it up. `fresh` empties it first."""
    data_dir.mkdir(parents=True, exist_ok=True)
    # Production settings (DEBUG off: no query log, no debug tooling), served over plain
    # HTTP on loopback as behind a TLS-terminating proxy.
    os.environ.update(
        DATA_DIR=str(data_dir),
        DJANGO_SETTINGS_MODULE="shaping_web.settings",
        HUEY_NAME=f"bench-{data_dir.name}",
        DEBUG="0",
        SECRET_KEY="bench-" + "x" * 50,
        ALLOWED_HOSTS="127.0.0.1",
        SECURE_SSL_REDIRECT="0",
    )
    if database_url:
        os.environ["DATABASE_URL"] = database_url
    else:
        os.environ.pop("DATABASE_URL", None)
        if fresh:
            for f in data_dir.glob("*.sqlite3*"):
                f.unlink()
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    if fresh and database_url:
        from django.core.management import call_command

        call_command("flush", "--noinput", verbosity=0)


def catalogue(prompts: int) -> tuple:
    """The benchmarks' character, two-criterion rubric (voice, weight 2; helpful) and a prompt
    set of `prompts` prompts; call inside a transaction."""
    from labelling.catalogue import services as catalogue_services
    from labelling.catalogue.schemas import CharacterIn, CriterionIn, PromptIn, PromptSetIn, RubricIn

    character = catalogue_services.character_create(
        data=CharacterIn(slug="bench", name="Bench", persona="A patient lighthouse keeper who answers briefly.")
    )
    rubric = catalogue_services.rubric_create(
        data=RubricIn(
            slug="bench",
            name="Bench",
            criteria=[
                CriterionIn(key="voice", description="In voice", scale_min=1, scale_max=5, weight=2),
                CriterionIn(key="helpful", description="Helpful", scale_min=1, scale_max=5),
            ],
        )
    )
    prompt_set = catalogue_services.prompt_set_create(data=PromptSetIn(slug="bench", name="Bench"))
    made = catalogue_services.prompts_add(
        prompt_set=prompt_set,
        prompts=[
            PromptIn(id=f"p{i}", messages=[{"role": "user", "content": f"Question number {i}: what do you see?"}])
            for i in range(prompts)
        ],
    )
    return character, rubric, prompt_set, made


def fill(groups: int, *, group_size: int = GROUP_SIZE, reviewed_groups: int = 0, reviewers: int = 0, log=print) -> dict:
    """Fill an empty, migrated database; returns the rows it made (counts)."""
    from django.contrib.auth import get_user_model
    from django.db import transaction
    from django.utils import timezone

    from labelling.access.roles import REVIEWER, ensure_roles
    from labelling.models import (
        Assignment,
        CriterionScore,
        Generation,
        Group,
        Judgment,
        PipelineRun,
    )
    from labelling.records import queue_state
    from labelling.records import services as record_services
    from shaping_core import scoring

    started = time.perf_counter()
    with transaction.atomic():
        character, rubric, prompt_set, prompts = catalogue(1000)
        runs = [
            PipelineRun.objects.create(
                kind="generate",
                status="succeeded",
                character=character,
                prompt_set=prompt_set,
                rubric=rubric,
                group_size=group_size,
            )
            for _ in range(-(-groups // len(prompts)))
        ]  # a run holds one group per prompt
        judge = record_services.producer_get_or_create(backend="bench", model_name="judge")
        criteria = list(rubric.criteria.all())
        role = ensure_roles()[REVIEWER]
        past = []
        for i in range(reviewers):
            user = get_user_model().objects.create_user(username=f"past{i}")
            user.groups.add(role)
            past.append(user)
    counts = {"groups": 0, "generations": 0, "judgments": 0}
    for start in range(0, groups, BATCH):
        n = min(BATCH, groups - start)
        with transaction.atomic():
            made = Group.objects.bulk_create(
                Group(
                    run=runs[(start + i) // len(prompts)],
                    prompt=prompts[(start + i) % len(prompts)],
                    character=character,
                    size=group_size,
                    review_count=len(past) if start + i < reviewed_groups else 0,
                )
                for i in range(n)
            )
            gens = Generation.objects.bulk_create(
                Generation(
                    group=g,
                    index=k,
                    run=g.run,
                    producer=judge,
                    messages=[character.system_message(), *prompts[(start + i) % len(prompts)].messages],
                    text=f"Answer {k} to question {start + i}: the light turns, the sea is calm.",
                    raw_text=f"Answer {k} to question {start + i}: the light turns, the sea is calm.",
                )
                for i, g in enumerate(made)
                for k in range(group_size)
            )
            judgments, scores = [], []
            for j, g in enumerate(gens):
                pair = ((start + j) * 7 % 5 + 1, (start + j) * 3 % 5 + 1)
                judgments.append(
                    Judgment(
                        generation=g,
                        rubric=rubric,
                        source="judge",
                        producer=judge,
                        run=g.run,
                        overall=scoring.overall(criteria, dict(zip(("voice", "helpful"), pair, strict=True))),
                    )
                )
                scores.append(pair)
                if g.group.review_count:
                    for r, user in enumerate(past):
                        human = ((pair[0] + r) % 5 + 1, pair[1])
                        judgments.append(
                            Judgment(
                                generation=g,
                                rubric=rubric,
                                source="human",
                                reviewer=user,
                                overall=scoring.overall(criteria, dict(zip(("voice", "helpful"), human, strict=True))),
                            )
                        )
                        scores.append(human)
            made_judgments = Judgment.objects.bulk_create(judgments)
            CriterionScore.objects.bulk_create(
                CriterionScore(judgment=j, criterion=c, score=s)
                for j, pair in zip(made_judgments, scores, strict=True)
                for c, s in zip(criteria, pair, strict=True)
            )
            now = timezone.now()
            Assignment.objects.bulk_create(
                Assignment(
                    group=g,
                    reviewer=user,
                    status=Assignment.Status.SUBMITTED,
                    leased_until=now,
                    completed_at=now,
                    shown_order=[],
                )
                for g in made
                if g.review_count
                for user in past
            )
            queue_state.groups_queue_refresh([g.pk for g in made])  # ready, queue bucket: as the app keeps them
        counts["groups"] += n
        counts["generations"] += len(gens)
        counts["judgments"] += len(made_judgments)
        if (start // BATCH) % 10 == 9 or start + n == groups:
            log(
                f"  {counts['groups']:,} groups, {counts['judgments']:,} judgments "
                f"({time.perf_counter() - started:.0f} s)"
            )
    return counts


def forget_reviews(users) -> None:
    """Take back what the bench reviewers did in an earlier run: their judgments, their
    seats, and the review counts and queue buckets of the groups they touched."""
    from django.db import transaction
    from django.db.models import Count, OuterRef, Q, Subquery
    from django.db.models.functions import Coalesce

    from labelling.models import Assignment, Group, Judgment
    from labelling.records import queue_state

    with transaction.atomic():
        touched = list(
            set(Assignment.objects.filter(reviewer__in=users).values_list("group_id", flat=True))
            | set(Judgment.objects.filter(reviewer__in=users).values_list("generation__group_id", flat=True))
        )
        Judgment.objects.filter(reviewer__in=users).delete()
        Assignment.objects.filter(reviewer__in=users).delete()
        submitted = (
            Assignment.objects.filter(group=OuterRef("pk"))
            .values("group")
            .annotate(n=Count("pk", filter=Q(status=Assignment.Status.SUBMITTED)))
            .values("n")
        )
        for start in range(0, len(touched), 500):
            chunk = touched[start : start + 500]
            Group.objects.filter(pk__in=chunk).update(review_count=Coalesce(Subquery(submitted), 0))
            queue_state.groups_queue_refresh(chunk)


def postgres_database(url: str) -> str:
    """Create the database `url` names if it is missing; returns the URL."""
    import psycopg

    base, _, name = url.rpartition("/")
    with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
        if not admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            admin.execute(f'CREATE DATABASE "{name}"')
    return url


def filled(data_dir: Path) -> bool:
    return (data_dir / "filled").exists()


def mark_filled(data_dir: Path) -> None:
    (data_dir / "filled").touch()


def pct(values: list[float], p: float) -> float:
    """The p-th percentile (nearest rank) of `values`."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def child_json(command: list[str], what: str) -> dict:
    """Run a benchmark's child process (its own memory, its own database settings) and
    return the JSON object on the last line it printed."""
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if result.returncode != 0:
        raise SystemExit(f"{what} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def triton_stack(name: str, **env: str):
    """A fresh data directory, the bundled tritonserver on free ports, Django set up and migrated
    (SQLite there, unless DATABASE_URL is set): what a pipeline benchmark runs against.
    Returns (data_dir, server); the caller stops the server."""
    import tempfile

    data_dir = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
    os.environ.setdefault("DATA_DIR", str(data_dir))
    os.environ.setdefault("HUEY_NAME", f"bench-{name}")
    os.environ.update(DJANGO_SETTINGS_MODULE="shaping_web.settings", INFERENCE_BACKEND="triton", **env)
    sys.path.insert(0, str(ROOT))
    from inference.triton_server import TritonProcess, free_port

    server = TritonProcess(data_dir / "triton", grpc_port=free_port(), metrics_port=free_port()).start()
    os.environ["TRITON_URL"] = server.url
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return data_dir, server
