"""The data explorer over HTTP: a 100,000-completion run, listed page by page.

Builds one generate run of 25,000 groups x 4 completions in a temporary database (a judge
judgment with two criterion scores per completion, two reviewers' scores on one group in ten,
a judge failure in one group of a hundred), serves the app as `manage.py serve` does (daphne
on loopback, production settings, DEBUG off), and times, from outside over one keep-alive
connection, the explorer's first page, a page halfway through (its key cursor), sorted and
filtered pages, beside two baselines in the same run: /healthz (the floor of a request) and
the run page. The requests take turns, round by round, so the machine's other work falls on
all of them alike. The goal: the first page under 300 ms.

    python bench/bench_explorer.py [--groups 25000] [--rounds 20] [--keep DIR]
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import fill  # noqa: E402

from bench.load import harness  # noqa: E402

BATCH = 2500  # groups per transaction
GROUP_SIZE = 4


def build(groups: int, log=print) -> dict:
    """The run, its judgments and reviews, an admin signed in; returns what the requests need."""
    from django.contrib.auth import get_user_model
    from django.db import transaction
    from django.test import Client

    from labelling.access.roles import ADMIN, REVIEWER, ensure_roles
    from labelling.models import CriterionScore, Generation, Group, Judgment, PipelineRun
    from labelling.records import services as record_services
    from shaping_core import scoring

    started = time.perf_counter()
    with transaction.atomic():
        character, rubric, prompt_set, prompts = fill.catalogue(groups)
        run = PipelineRun.objects.create(
            kind="generate",
            status="succeeded",
            character=character,
            prompt_set=prompt_set,
            rubric=rubric,
            group_size=GROUP_SIZE,
            total_items=groups,
            done_items=groups,
        )
        judge = record_services.producer_get_or_create(backend="bench", model_name="judge")
        roles = ensure_roles()
        reviewers = []
        for i in range(2):
            user = get_user_model().objects.create_user(username=f"reviewer{i}")
            user.groups.add(roles[REVIEWER])
            reviewers.append(user)
        admin = get_user_model().objects.create_user(username="bench-admin", is_staff=True)
        admin.groups.add(roles[ADMIN])
    criteria = list(rubric.criteria.all())
    keys = ("voice", "helpful")
    for start in range(0, groups, BATCH):
        n = min(BATCH, groups - start)
        with transaction.atomic():
            made = Group.objects.bulk_create(
                Group(run=run, prompt=prompts[start + i], character=character, size=GROUP_SIZE, ready=True)
                for i in range(n)
            )
            gens = Generation.objects.bulk_create(
                Generation(
                    group=g,
                    index=k,
                    run=run,
                    producer=judge,
                    messages=[character.system_message(), *prompts[start + i].messages],
                    text=f"Answer {k} to question {start + i}: the light turns, the sea is calm.",
                    raw_text=f"Answer {k} to question {start + i}: the light turns, the sea is calm.",
                    finish_reason="length" if (start + i) % 50 == 0 else "stop",
                )
                for i, g in enumerate(made)
                for k in range(GROUP_SIZE)
            )
            judgments, scores = [], []
            for j, g in enumerate(gens):
                number = start * GROUP_SIZE + j
                group_number = number // GROUP_SIZE
                if group_number % 100 == 7:  # the judge's answer did not parse
                    judgments.append(
                        Judgment(generation=g, rubric=rubric, source="judge", producer=judge, run=run, status="failed")
                    )
                    scores.append(None)
                else:
                    pair = (number * 7 % 5 + 1, number * 3 % 5 + 1)
                    overall = scoring.overall(criteria, dict(zip(keys, pair, strict=True)))
                    judgments.append(
                        Judgment(generation=g, rubric=rubric, source="judge", producer=judge, run=run, overall=overall)
                    )
                    scores.append(pair)
                if group_number % 10 == 3:  # reviewed by both reviewers
                    for r, user in enumerate(reviewers):
                        human = ((number + r) % 5 + 1, (number + 2 * r) % 5 + 1)
                        overall = scoring.overall(criteria, dict(zip(keys, human, strict=True)))
                        judgments.append(
                            Judgment(generation=g, rubric=rubric, source="human", reviewer=user, overall=overall)
                        )
                        scores.append(human)
            made_judgments = Judgment.objects.bulk_create(judgments)
            CriterionScore.objects.bulk_create(
                CriterionScore(judgment=j, criterion=c, score=s)
                for j, pair in zip(made_judgments, scores, strict=True)
                if pair is not None
                for c, s in zip(criteria, pair, strict=True)
            )
        if (start // BATCH) % 4 == 3 or start + n == groups:
            log(
                f"  {start + n:,} groups, {(start + n) * GROUP_SIZE:,} completions ({time.perf_counter() - started:.0f} s)"
            )
    client = Client()
    client.force_login(admin)
    ids = list(Generation.objects.filter(run=run).order_by("pk").values_list("pk", flat=True))
    return {
        "run": run.pk,
        "session": client.cookies["sessionid"].value,
        "completions": len(ids),
        "middle": ids[len(ids) // 2],
        "reviewer": reviewers[0].pk,
    }


class Browser:
    """Requests over one keep-alive connection with the admin's session cookie."""

    def __init__(self, port: int, session: str):
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        self.cookie = f"sessionid={session}"

    def get(self, path: str) -> tuple[float, int, str]:
        started = time.perf_counter()
        self.connection.request("GET", path, headers={"Host": "127.0.0.1", "Cookie": self.cookie})
        answer = self.connection.getresponse()
        body = answer.read().decode()
        return (time.perf_counter() - started) * 1000, answer.status, body


def requests_of(built: dict) -> dict[str, str]:
    rows = f"/runs/{built['run']}/rows"
    return {
        "/healthz (floor)": "/healthz",
        "run page": f"/runs/{built['run']}/",
        "explorer, first page": rows,
        "explorer, page at row 50,000": f"{rows}?after={built['middle']}",
        "sorted by reward": f"{rows}?sort=reward",
        "sorted by disagreement": f"{rows}?sort=disagreement",
        "judge failures": f"{rows}?failure=judge",
        "one reviewer's rows": f"{rows}?reviewer={built['reviewer']}",
        "reward sort, not reviewed": f"{rows}?sort=-reward&human=no",
    }


def measure(groups: int, rounds: int, keep: Path | None) -> tuple[dict, dict]:
    data_dir = keep or Path(tempfile.mkdtemp(prefix="bench-explorer-"))
    os.environ.pop("SQLITE_PATH", None)
    fresh = not fill.filled(data_dir)
    fill.setup(data_dir, fresh=fresh)
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    call_command("collectstatic", "--noinput", verbosity=0)  # DEBUG is off: pages use the manifest
    if fresh:
        print(f"building a run of {groups:,} groups x {GROUP_SIZE}", file=sys.stderr, flush=True)
        built = build(groups, log=lambda m: print(m, file=sys.stderr, flush=True))
        (data_dir / "built.txt").write_text(repr(built))
        fill.mark_filled(data_dir)
    else:
        import ast

        built = ast.literal_eval((data_dir / "built.txt").read_text())
    env = harness.app_env(data_dir, triton_url="127.0.0.1:9", name="explorer")
    app = harness.App(env, data_dir / "serve.log").start(ready="/healthz")
    try:
        browser = Browser(app.port, built["session"])
        paths = requests_of(built)
        timings: dict[str, list[float]] = {name: [] for name in paths}
        for name, path in paths.items():  # warm: each first request pays one-time setup
            _, status, body = browser.get(path)
            assert status == 200, (name, status, body[:300])
            if "explorer" in name or "sort" in name:
                assert 'id="row-' in body, (name, body[:300])
        for _ in range(rounds):
            for name, path in paths.items():
                elapsed, status, _ = browser.get(path)
                assert status == 200, (name, status)
                timings[name].append(elapsed)
        errors = app.errors_logged()
    finally:
        app.stop()
        if keep is None:
            shutil.rmtree(data_dir, ignore_errors=True)
    if errors:
        raise SystemExit("the server logged errors:\n" + "\n".join(errors[:20]))
    return built, timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--groups", type=int, default=25_000, help="groups of 4 completions in the run")
    parser.add_argument("--rounds", type=int, default=20, help="times each request is timed")
    parser.add_argument("--keep", type=Path, help="a folder for the database, kept and reused between runs")
    args = parser.parse_args()
    built, timings = measure(args.groups, args.rounds, args.keep)
    floor = statistics.median(timings["/healthz (floor)"])
    first = statistics.median(timings["explorer, first page"])
    print(f"\n{built['completions']:,} completions in one run, {args.rounds} rounds; ms as the client waits (SQLite)\n")
    print(f"{'request':<30} {'p50':>8} {'p95':>8} {'max':>8} {'p50 / floor':>12} {'p50 / first page':>17}")
    for name, values in timings.items():
        p50 = statistics.median(values)
        print(
            f"{name:<30} {p50:>8.1f} {fill.pct(values, 95):>8.1f} {max(values):>8.1f}"
            f" {p50 / floor:>11.1f}x {p50 / first:>16.2f}x"
        )
    verdict = "under" if fill.pct(timings["explorer, first page"], 95) < 300 else "OVER"
    print(
        f"\nexplorer first page p95 {fill.pct(timings['explorer, first page'], 95):.1f} ms: {verdict} the 300 ms goal"
    )


if __name__ == "__main__":
    main()
