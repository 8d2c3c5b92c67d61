"""Review benchmark: "next group" and "submit" under 8 concurrent reviewers.

For each database size (default 1,000 groups as the baseline and 100,000 groups: 400,000
completions and 1,000,000 judgments, with 3 earlier reviews on half of the groups), a child
process fills its own database (kept under data/ between runs), then 8 reviewers take
turns: GET /review/ (claims and renders the next group) and POST its submit (stores the
review and renders the next group), timed server-side: the full Django request
(middleware, views, database, templates) in the process, without the network. A trivial
page (/healthz) between them is the floor.

Live streaming latency, Triton to the reviewer's page, is bench/bench_live.py.

    python bench/bench_review.py [--groups 100000] [--rounds 40] [--database-url postgres://...]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fill  # noqa: E402

REVIEWERS = 8


def _review_rounds(users, rounds: int, out: dict, errors: list) -> None:
    """The reviewers take turns: each round, every one of them asks for the next group and
    submits it. One thread, as daphne runs Django's sync views: a request's time is its own."""
    from django.test import Client

    from labelling.review import selectors as review_selectors

    clients = {}
    for user in users:
        clients[user.pk] = Client(HTTP_HOST="127.0.0.1")
        clients[user.pk].force_login(user)
        clients[user.pk].get("/healthz")  # warm: the first request of a process pays one-time setup
    for _ in range(rounds):
        for user in users:
            client = clients[user.pk]
            started = time.perf_counter()
            client.get("/healthz")
            out["floor"].append(time.perf_counter() - started)
            started = time.perf_counter()
            response = client.get("/review/")
            out["next"].append(time.perf_counter() - started)
            assignment = review_selectors.assignment_current(reviewer=user)
            if response.status_code != 200 or assignment is None:
                errors.append(f"{user.username}: no group ({response.status_code})")
                return
            rubric = review_selectors.group_rubric(assignment.group)
            form = {"submission_id": str(uuid.uuid4())}
            for generation in review_selectors.review_generations(assignment):
                for c in rubric.criteria.all():
                    form[f"score-{generation.pk}-{c.key}"] = "3"
            started = time.perf_counter()
            response = client.post(f"/review/{assignment.pk}/submit", form, headers={"HX-Request": "true"})
            out["submit"].append(time.perf_counter() - started)
            if response.status_code != 200:
                errors.append(f"{user.username}: submit answered {response.status_code}")
                return


def child(groups: int, rounds: int, database_url: str | None) -> None:
    data_dir = fill.ROOT / "data" / (f"bench-review-{groups}-pg" if database_url else f"bench-review-{groups}")
    if database_url:  # a database per size (created when missing), kept between runs like SQLite's files
        database_url = fill.postgres_database(f"{database_url}_{groups}")
    fresh = not fill.filled(data_dir)
    fill.setup(data_dir, database_url=database_url, fresh=fresh)
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection

    from labelling.access.roles import REVIEWER, ensure_roles

    call_command("migrate", verbosity=0)
    call_command("collectstatic", "--noinput", verbosity=0)  # DEBUG is off: pages use the manifest
    if fresh:
        print(f"filling {groups:,} groups", file=sys.stderr, flush=True)
        fill.fill(groups, reviewed_groups=groups // 2, reviewers=3, log=lambda m: print(m, file=sys.stderr, flush=True))
        fill.mark_filled(data_dir)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:  # planner statistics, as autovacuum keeps them after a bulk load
            cursor.execute("ANALYZE")
    users = []
    for i in range(REVIEWERS):
        user, _ = get_user_model().objects.get_or_create(username=f"bench-reviewer-{i}")
        user.groups.add(ensure_roles()[REVIEWER])
        users.append(user)
    fill.forget_reviews(users)  # each run starts from the filled database, not from the last run's reviews
    out = {"next": [], "submit": [], "floor": []}
    errors: list[str] = []
    _review_rounds(users, rounds, out, errors)
    if errors:
        raise SystemExit("\n".join(errors))
    print(json.dumps({"groups": groups, **{k: [round(v * 1000, 3) for v in vs] for k, vs in out.items()}}))


def run_child(groups: int, rounds: int, database_url: str | None) -> dict:
    command = [sys.executable, __file__, "--child", str(groups), "--rounds", str(rounds)]
    if database_url:
        command += ["--database-url", database_url]
    return fill.child_json(command, f"the {groups}-group run")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--groups", type=int, default=100_000)
    parser.add_argument("--baseline-groups", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=40, help="next + submit per reviewer")
    parser.add_argument(
        "--database-url",
        help="PostgreSQL base URL (one database per size, NAME_GROUPS, "
        "created and filled once); SQLite under data/ otherwise",
    )
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.rounds, args.database_url)
        return
    backend = "PostgreSQL" if args.database_url else "SQLite"
    results = [run_child(n, args.rounds, args.database_url) for n in (args.baseline_groups, args.groups)]
    print(f"\n{REVIEWERS} reviewers x {args.rounds} rounds on {backend}, server-side ms\n")
    print(f"{'groups':>9} {'request':<8} {'p50':>7} {'p95':>7} {'max':>7}")
    for r in results:
        for key in ("floor", "next", "submit"):
            values = r[key]
            print(
                f"{r['groups']:>9,} {key:<8} {statistics.median(values):>7.1f} {fill.pct(values, 95):>7.1f} "
                f"{max(values):>7.1f}"
            )
    small, large = results
    for key in ("next", "submit"):
        print(
            f"p95 {key}: {args.groups:,} / {args.baseline_groups:,} groups = "
            f"{fill.pct(large[key], 95) / fill.pct(small[key], 95):.2f}x; "
            f"over the floor: {fill.pct(large[key], 95) / fill.pct(large['floor'], 95):.1f}x"
        )


if __name__ == "__main__":
    main()
