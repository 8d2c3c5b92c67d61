"""Load: reviewers working the review queue over real HTTP while a generate run streams.

The app runs as `manage.py serve` runs it (daphne on loopback, the huey consumer, the bundled
tritonserver; production settings, DEBUG off) on the review benchmark's filled database
(100,000 groups by default: bench/fill.py, shared with bench/bench_review.py). Locust
(headless, bench/load/locustfile.py) plays the reviewers: each opens the queue (GET /review/,
"next"), thinks, and submits the group as the page does ("submit"; 5% are sent a second time,
as a double click or a retry does), while an admin watches a generate run's stream on the
live websocket. First the main phase (50 reviewers for 3 minutes), then steps of more and
more reviewers for the saturation point: the first step whose p95 of next or submit passes
200 ms. Afterwards, every submission the app acknowledged is looked up in the database:
acknowledged and stored must be the same set, and none stored twice.

    python bench/bench_load.py [--users 50] [--seconds 180] [--steps 10,25,50,100,150] [--step-seconds 60]
    python bench/bench_load.py --database-url postgres://postgres@127.0.0.1:5432/load_review \\
        --redis-url redis://127.0.0.1:6379/12
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import fill  # noqa: E402

from bench.load import harness  # noqa: E402

SATURATED_MS = 200


def _row(phase: str, result: harness.LoadResult) -> dict:
    def p(name: str, q: float) -> float | None:
        values = result.timings.get(name, [])
        return (statistics.median(values) if q == 50 else fill.pct(values, q)) if values else None

    return {
        "phase": phase,
        "reviewers": result.users,
        "seconds": result.seconds,
        "requests": result.requests,
        "5xx": result.server_errors,
        "acknowledged": len(result.acked),
        "again": result.acked_again,
        "unanswered": result.unanswered,
        "next_p50": p("next", 50),
        "next_p95": p("next", 95),
        "submit_p50": p("submit", 50),
        "submit_p95": p("submit", 95),
        "frames": result.frames,
        "problems": result.problems[:5],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--groups", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=50, help="reviewers in the main phase")
    parser.add_argument("--seconds", type=int, default=180, help="length of the main phase (0: none)")
    parser.add_argument("--steps", default="10,25,50,100,150", help="reviewers per saturation step ('' for none)")
    parser.add_argument("--step-seconds", type=int, default=60)
    parser.add_argument("--think", default="5,15", help="seconds a reviewer spends on a group: min,max")
    parser.add_argument("--no-stream", action="store_true", help="no generate run meanwhile (the web alone)")
    parser.add_argument("--database-url", help="PostgreSQL base URL (the database NAME_GROUPS); SQLite otherwise")
    parser.add_argument("--redis-url", help="with --database-url: huey and the channel layer on Redis")
    args = parser.parse_args()
    think = tuple(float(x) for x in args.think.split(","))
    steps = [int(x) for x in args.steps.split(",") if x.strip()]

    data_dir = fill.ROOT / "data" / f"bench-review-{args.groups}"  # bench_review.py's SQLite database
    database_url = args.database_url
    if database_url:
        database_url = fill.postgres_database(f"{database_url}_{args.groups}")
        data_dir = fill.ROOT / "data" / f"bench-{database_url.rpartition('/')[2]}"
    out_dir = data_dir / "load"
    env = harness.app_env(data_dir, database_url=database_url, redis_url=args.redis_url, name="load")
    sessions = data_dir / "load-sessions.json"
    harness.prepare(
        env,
        groups=args.groups,
        reviewers=max([args.users, *steps]),
        sessions=sessions,
        log=lambda m: print(m, file=sys.stderr),
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    app = harness.App(env, out_dir / "serve.log").start()
    rows, acked = [], []
    try:
        phases = [("main", args.users, args.seconds)] if args.seconds else []
        phases += [("step", n, args.step_seconds) for n in steps]
        for phase, users, seconds in phases:
            run = None if args.no_stream else app.stream_start()  # a fresh run each phase, streaming throughout
            print(f"{phase}: {users} reviewers for {seconds} s, run #{run} streaming", file=sys.stderr, flush=True)
            result = harness.run_locust(
                app.url,
                users=users,
                seconds=seconds,
                sessions=sessions,
                out_dir=out_dir,
                think=think,
                watch_run=run,
                tag=f"-{phase}",
            )
            if run:
                app.stream_cancel(run)
            rows.append(_row(phase, result))
            acked += result.acked
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
        errors = app.errors_logged()
    finally:
        app.stop()
    ledger = harness.reconcile(acked, harness.ledger(env))
    backend = "PostgreSQL + Redis" if database_url else "SQLite"
    stream = "no run" if args.no_stream else "a generate run streaming"
    print(
        f"\n{args.groups:,} groups, {backend}, {stream}, think {think[0]:g}-{think[1]:g} s, ms as locust measured them\n"
    )
    print(
        f"{'phase':<6} {'reviewers':>9} {'s':>4} {'requests':>8} {'5xx':>4} {'acked':>6} {'again':>5} "
        f"{'next p50':>8} {'p95':>6} {'submit p50':>10} {'p95':>6} {'frames':>6}"
    )
    for r in rows:
        print(
            f"{r['phase']:<6} {r['reviewers']:>9} {r['seconds']:>4} {r['requests']:>8} {r['5xx']:>4} "
            f"{r['acknowledged']:>6} {r['again']:>5} {r['next_p50']:>8.1f} {r['next_p95']:>6.1f} "
            f"{r['submit_p50']:>10.1f} {r['submit_p95']:>6.1f} {r['frames']:>6}"
        )
    saturated = next(
        (r["reviewers"] for r in rows if r["phase"] == "step" and max(r["next_p95"], r["submit_p95"]) > SATURATED_MS),
        None,
    )
    print(
        f"\nacknowledged {ledger.acked}, stored {ledger.stored}, acknowledged but not stored {ledger.lost}, "
        f"stored but not acknowledged {ledger.unacknowledged}, stored twice {ledger.twice}"
    )
    print(
        f"saturation (p95 of next or submit over {SATURATED_MS} ms): "
        + (f"{saturated} reviewers" if saturated else "not reached")
    )
    if errors:
        print("the server logged errors:\n" + "\n".join(errors[:20]))
    (out_dir / "summary.json").write_text(json.dumps({"rows": rows, "ledger": ledger.__dict__, "errors": errors[:50]}))


if __name__ == "__main__":
    main()
