"""The load test, briefly, in CI: a few reviewers claim, score and submit groups over real HTTP
(locust, headless, bench/load/locustfile.py) against the app as `manage.py serve` runs it,
while a generate run streams through the session's tritonserver to an admin's live websocket.
No server error, and every submission the app acknowledged is stored, once; a submission sent
twice (a double click, a retry) is acknowledged as already stored. On the suite's PostgreSQL +
Redis when it runs there (a database of its own). bench/bench_load.py is the long run."""

import os

from bench.load import harness


def _database_url() -> str | None:
    suite = os.environ.get("DATABASE_URL")
    return harness.postgres_fresh(f"{suite}_load_smoke") if suite else None


def test_reviewers_under_load_meet_no_server_error_and_every_acknowledged_review_is_stored_once(
    tmp_path, triton_server
):
    env = harness.app_env(
        tmp_path,
        database_url=_database_url(),
        redis_url=os.environ.get("REDIS_URL") or None,
        triton_url=triton_server.url,
        name=f"load-smoke-{os.getpid()}",
        debug=True,
    )
    sessions = tmp_path / "sessions.json"
    harness.prepare(env, groups=200, reviewers=4, sessions=sessions)
    app = harness.App(env, tmp_path / "serve.log").start()
    try:
        run = app.stream_start(max_tokens=16)
        result = harness.run_locust(
            app.url,
            users=4,
            seconds=15,
            sessions=sessions,
            out_dir=tmp_path,
            think=(0.2, 0.6),
            retry_share=0.25,
            watch_run=run,
        )
        app.stream_cancel(run)
        logged = app.errors_logged()
    finally:
        app.stop()
    stored = harness.reconcile(result.acked, harness.ledger(env))

    assert result.server_errors == 0, result.statuses
    assert (result.problems, logged) == ([], [])
    assert result.statuses["submit"] == {"200": len(result.acked)}, result.statuses
    assert len(result.acked) >= 10 and result.acked_again >= 1, (len(result.acked), result.acked_again)
    assert result.frames > 0  # the run streamed to its watcher meanwhile
    assert stored == harness.Ledger(
        acked=len(result.acked), stored=len(result.acked), lost=0, unacknowledged=0, twice=0
    )
