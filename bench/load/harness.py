"""The load test's harness: the app as `manage.py serve` runs it (daphne on loopback, the real
huey consumer, Triton), its database prepared (bulk-filled groups, reviewers already signed
in), locust run headless against it with the scenario in locustfile.py, and the ledger:
every submission the app acknowledged against what its database stored.

Shared by `bench/bench_load.py` (50 reviewers for minutes, the saturation steps: the figures
in docs/benchmarks.md) and `tests/review/test_load_smoke.py` (a few reviewers for seconds, in
CI). Every step that touches the app's database runs as a child process with the app's own
settings (`python -m bench.load.harness prepare|ledger`), so the caller's Django, if it has
one, is never pointed elsewhere.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LOCUSTFILE = Path(__file__).with_name("locustfile.py")
REVIEWER_PREFIX = "load-reviewer-"
ADMIN = "load-admin"
STREAM_PROMPT_SET = "bench"  # the filled database's prompt set: a generate run over it streams for minutes


def app_env(
    data_dir: Path,
    *,
    database_url: str | None = None,
    redis_url: str | None = None,
    triton_url: str | None = None,
    name: str = "load",
    debug: bool = False,
) -> dict[str, str]:
    """Production settings (DEBUG off), served over plain HTTP on loopback as behind a
    TLS-terminating proxy; SQLite under `data_dir` unless `database_url`; the bundled
    tritonserver started by `serve` unless `triton_url`. `debug`: DEBUG on instead, as the
    browser tests run the app (static files from their folders: no collectstatic to wait for)."""
    env = dict(os.environ)
    for variable in (
        "DATABASE_URL",
        "REDIS_URL",
        "TRITON_URL",
        "SQLITE_PATH",
        "HUEY_SQLITE_PATH",
        "DJANGO_SETTINGS_MODULE",
    ):
        env.pop(variable, None)
    env.update(
        DATA_DIR=str(data_dir),
        HUEY_NAME=f"bench-{name}",
        DEBUG="1" if debug else "0",
        SECRET_KEY="bench-" + "x" * 50,
        ALLOWED_HOSTS="127.0.0.1",
        SECURE_SSL_REDIRECT="0",
        INFERENCE_BACKEND="triton",
        PYTHONPATH=str(ROOT),
        DJANGO_SETTINGS_MODULE="shaping_web.settings",
    )
    if database_url:
        env["DATABASE_URL"] = database_url
    if redis_url:
        env["REDIS_URL"] = redis_url
    if triton_url:
        env["TRITON_URL"] = triton_url
    return env


def postgres_fresh(url: str) -> str:
    """Create the database `url` names, empty (dropped first if it exists); returns the URL."""
    import psycopg

    base, _, name = url.rpartition("/")
    with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    return url


def _child(env: dict, *args: str, timeout: float = 3600) -> str:
    result = subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}")
    return result.stdout


def prepare(env: dict, *, groups: int, reviewers: int, sessions: Path, log=None) -> dict:
    """Fill the app's database once (kept between runs: a marker in DATA_DIR), take back what
    the load reviewers did before, and sign `reviewers` reviewers and an admin in."""
    command = ["-m", "bench.load.harness", "prepare", "--groups", str(groups), "--reviewers", str(reviewers)]
    out = _child(env, *command, "--sessions", str(sessions))
    if log:
        log(out.strip())
    return json.loads(sessions.read_text())


def ledger(env: dict) -> dict:
    """What the database stored for the load reviewers (a child with the app's settings)."""
    return json.loads(_child(env, "-m", "bench.load.harness", "ledger").strip().splitlines()[-1])


class App:
    """`manage.py serve` on a free loopback port, in its own session (its children with it)."""

    def __init__(self, env: dict, log: Path, port: int | None = None):
        self.env, self.log = env, log
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self.log_ready_at = 0

    def manage(self, *args: str, timeout: float = 600) -> str:
        return _child(self.env, "manage.py", *args, timeout=timeout)

    def start(self, timeout_s: float = 180, ready: str = "/readyz") -> App:
        """Start it and wait for `ready` to answer 200 (/readyz: the models too; /healthz: the web process)."""
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "manage.py", "serve", "--port", str(self.port)],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}{ready}", timeout=5) as answer:  # noqa: S310 - loopback
                    if answer.status == 200:
                        self.log_ready_at = self.log.stat().st_size  # what it logs from here on counts
                        return self
            except OSError:  # refused while starting; 503 while Triton loads its models
                if self.process.poll() is not None:
                    break
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"the app did not become ready:\n{self.log.read_text()[-4000:]}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, 15)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait()

    def stream_start(self, *, max_tokens: int = 64, workers: int = 1) -> int:
        """A generate run over the filled prompt set (1,000 prompts, groups of 4): it streams
        tokens to the run's channel while the reviewers work, one prompt at a time (on these
        cores the bundled CPU tritonserver would otherwise take every cycle the web leaves)."""
        out = self.manage(
            "start_run",
            "--kind=generate",
            "--character=bench",
            f"--prompt-set={STREAM_PROMPT_SET}",
            "--rubric=bench",
            "--group-size=4",
            f"--max-tokens={max_tokens}",
            f"--workers={workers}",
        )
        return int(re.search(r"run #(\d+)", out).group(1))

    def stream_cancel(self, run_id: int) -> None:
        self.manage("start_run", f"--cancel={run_id}")

    def errors_logged(self) -> list[str]:
        """Tracebacks and 5xx the server logged once it was ready (Django logs every 5xx on
        `django.request`; /readyz answers 503 while Triton loads)."""
        with open(self.log, "rb") as log:
            log.seek(self.log_ready_at)
            text = log.read().decode(errors="replace")
        return [line for line in text.splitlines() if "Traceback" in line or " ERROR django.request" in line]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LoadResult:
    """One locust run, as the scenario recorded it (locustfile.py writes it when it stops)."""

    users: int
    seconds: float
    timings: dict[str, list[float]]  # ms per request name
    statuses: dict[str, dict[str, int]]  # request name -> status code -> count
    acked: list[str]  # submission ids the app acknowledged as stored
    acked_again: int  # resends of an acknowledged submission, answered "already stored"
    unanswered: int  # submissions sent that got no answer (a dropped connection, a timeout)
    frames: int = 0  # websocket frames the run watcher received
    problems: list[str] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return sum(sum(by_code.values()) for by_code in self.statuses.values())

    @property
    def server_errors(self) -> int:
        return sum(n for by_code in self.statuses.values() for code, n in by_code.items() if code.startswith("5"))


def run_locust(
    url: str,
    *,
    users: int,
    seconds: int,
    sessions: Path,
    out_dir: Path,
    think: tuple[float, float] = (5.0, 15.0),
    retry_share: float = 0.05,
    watch_run: int | None = None,
    spawn_rate: float | None = None,
    tag: str = "",
) -> LoadResult:
    """Run the scenario headless: `users` reviewers (plus one admin watching the run's stream
    when `watch_run`), ramped up at `spawn_rate` a second, for `seconds`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    results = out_dir / f"results{tag}-{users}.json"
    results.unlink(missing_ok=True)
    env = {
        **os.environ,
        "LOAD_SESSIONS": str(sessions),
        "LOAD_RESULTS": str(results),
        "LOAD_THINK": f"{think[0]},{think[1]}",
        "LOAD_RETRY_SHARE": str(retry_share),
        "LOAD_WATCH_RUN": str(watch_run or ""),
    }
    total = users + (1 if watch_run else 0)
    command = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "--host",
        url,
        "--users",
        str(total),
        "--spawn-rate",
        str(spawn_rate or max(1.0, users / 5)),
        "--run-time",
        f"{seconds}s",
        "--stop-timeout",
        "30",
        "--only-summary",
        "--loglevel",
        "WARNING",
        "--exit-code-on-error",
        "0",  # failures are counted from the results, not from locust's exit code
    ]
    with open(out_dir / f"locust{tag}-{users}.log", "wb") as log:
        done = subprocess.run(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=seconds + 120)
    if done.returncode != 0 or not results.exists():
        raise RuntimeError(
            f"locust failed ({done.returncode}):\n{(out_dir / f'locust{tag}-{users}.log').read_text()[-4000:]}"
        )
    data = json.loads(results.read_text())
    return LoadResult(users=users, seconds=seconds, **data)


@dataclass
class Ledger:
    acked: int  # distinct submission ids acknowledged as stored
    stored: int  # distinct submission ids in the database
    lost: int  # acknowledged, not stored
    unacknowledged: int  # stored, never acknowledged (its answer did not reach the client)
    # Submissions stored with more than one judgment per completion, or groups one reviewer reviewed twice.
    twice: int


def reconcile(acked: list[str], stored: dict) -> Ledger:
    acked_ids = set(acked)
    stored_ids = set(stored["submissions"])
    return Ledger(
        acked=len(acked_ids),
        stored=len(stored_ids),
        lost=len(acked_ids - stored_ids),
        unacknowledged=len(stored_ids - acked_ids),
        twice=stored["twice"],
    )


# --- the child processes: they run with the app's settings ---------------------------------


def _prepare_child(groups: int, reviewers: int, sessions: Path) -> None:
    sys.path.insert(0, str(ROOT / "bench"))
    import fill

    data_dir = Path(os.environ["DATA_DIR"])
    database_url = os.environ.get("DATABASE_URL") or None
    production = os.environ.get("DEBUG") == "0"  # before fill.setup sets its own settings
    fresh = not fill.filled(data_dir)
    # A PostgreSQL database is emptied below, once migrated (it may be new: nothing to flush).
    fill.setup(data_dir, database_url=database_url, fresh=fresh and not database_url)
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client

    from labelling.access.roles import ADMIN as ADMIN_ROLE
    from labelling.access.roles import REVIEWER, ensure_roles
    from labelling.models import PipelineRun
    from labelling.versions.generators import services as generator_services

    call_command("migrate", verbosity=0)
    if production:
        call_command("collectstatic", "--noinput", verbosity=0)  # DEBUG is off: pages use the manifest
    if fresh and database_url:
        call_command("flush", "--noinput", verbosity=0)
    if fresh:
        print(f"filling {groups:,} groups", file=sys.stderr, flush=True)
        fill.fill(groups, reviewed_groups=groups // 2, reviewers=3, log=lambda m: print(m, file=sys.stderr, flush=True))
        fill.mark_filled(data_dir)
    generator_services.generator_version_shipped_restore()  # a flushed PostgreSQL database lost version 1
    # Earlier load runs' streams, and what they made, go: each run starts from the filled database.
    # (The fill's own runs carry no sampling parameters.)
    PipelineRun.objects.filter(prompt_set__slug=STREAM_PROMPT_SET, params__has_key="sampling").delete()
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:  # planner statistics, as autovacuum keeps them after a bulk load
            cursor.execute("ANALYZE")
    roles = ensure_roles()
    users = []
    for i in range(reviewers):
        user, _ = get_user_model().objects.get_or_create(username=f"{REVIEWER_PREFIX}{i}")
        user.groups.add(roles[REVIEWER])
        users.append(user)
    fill.forget_reviews(users)
    admin, _ = get_user_model().objects.get_or_create(username=ADMIN, defaults={"is_staff": True})
    admin.groups.add(roles[ADMIN_ROLE])

    def session(user) -> str:  # signed in as the login page does, without paying PBKDF2 per reviewer
        client = Client()
        client.force_login(user)
        return client.cookies["sessionid"].value

    sessions.write_text(json.dumps({"reviewers": [session(u) for u in users], "admin": session(admin)}))
    print(f"{groups:,} groups; {reviewers} reviewers signed in")


def _ledger_child() -> None:
    import django

    django.setup()
    from django.db.models import Count

    from labelling.models import Judgment

    human = Judgment.objects.filter(source=Judgment.Source.HUMAN, reviewer__username__startswith=REVIEWER_PREFIX)
    per_submission = human.values("submission_id").annotate(
        n=Count("pk"), generations=Count("generation", distinct=True), groups=Count("generation__group", distinct=True)
    )
    submissions, twice = [], 0
    for row in per_submission:
        submissions.append(str(row["submission_id"]))
        twice += row["n"] != row["generations"] or row["groups"] != 1
    # One reviewer, one group, two submissions: stored twice under two ids (two tabs, a lost answer).
    twice += (
        human.values("reviewer", "generation__group")
        .annotate(ids=Count("submission_id", distinct=True))
        .filter(ids__gt=1)
        .count()
    )
    print(json.dumps({"submissions": submissions, "twice": twice}))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("step", choices=["prepare", "ledger"])
    parser.add_argument("--groups", type=int, default=1000)
    parser.add_argument("--reviewers", type=int, default=10)
    parser.add_argument("--sessions", type=Path)
    args = parser.parse_args()
    if args.step == "prepare":
        _prepare_child(args.groups, args.reviewers, args.sessions)
    else:
        _ledger_child()
