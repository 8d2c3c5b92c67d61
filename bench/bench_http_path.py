"""The HTTP path, one reviewer at a time: what a reviewer waits for per group ("submit and
render the next group"), measured from outside over HTTP against the same flow in-process.

The app runs as `manage.py serve` does (daphne on loopback, the huey consumer; production
settings, DEBUG off) on the review benchmark's filled database (100,000 groups by default:
bench/fill.py, shared with bench/bench_review.py). One reviewer posts each group's form as
the page does (htmx headers, the CSRF header, a client-made submission id) over one
keep-alive connection; another reviewer does the same through Django's test client in this
process, against the same database. A trivial page (/healthz) is the floor of each path.
The two paths take turns, request by request, so the machine's other work falls on both.

    python bench/bench_http_path.py [--groups 100000] [--rounds 300]
    python bench/bench_http_path.py --database-url postgres://postgres@127.0.0.1:5432/load_review \\
        --redis-url redis://127.0.0.1:6379/12
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import statistics
import sys
import time
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import fill  # noqa: E402

from bench.load import harness  # noqa: E402
from bench.load.review_form import HTMX_HEADERS, csrf_token, review_form  # noqa: E402

FLOWS = ("floor", "next", "submit")


class HttpReviewer:
    """A browser's requests over one keep-alive connection; cookies kept by hand (the app sets
    them secure, as in production, and is reached over plain HTTP on loopback)."""

    def __init__(self, port: int, session: str):
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.cookies = {"sessionid": session}
        self.csrf = ""

    def request(self, method: str, path: str, body: dict | None = None, headers: dict | None = None) -> tuple:
        sent = {"Host": "127.0.0.1", "Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}
        data = None
        if body is not None:
            data = urlencode(body).encode()
            sent["Content-Type"] = "application/x-www-form-urlencoded"
        self.connection.request(method, path, body=data, headers={**sent, **(headers or {})})
        answer = self.connection.getresponse()
        text = answer.read().decode()
        for header in answer.headers.get_all("Set-Cookie") or []:
            for name, morsel in SimpleCookie(header).items():
                self.cookies[name] = morsel.value
        return answer.status, answer.headers, text


class InProcessReviewer:
    """The same requests through Django's test client in this process (no server, no network)."""

    def __init__(self, session: str):
        from django.test import Client

        self.client = Client(HTTP_HOST="127.0.0.1")
        self.client.cookies["sessionid"] = session
        self.csrf = ""

    def request(self, method: str, path: str, body: dict | None = None, headers: dict | None = None) -> tuple:
        if method == "GET":
            response = self.client.get(path, headers=headers)
        else:
            response = self.client.post(path, body, headers=headers)
        return response.status_code, response.headers, response.content.decode()


def one_group(reviewer, out: dict, rng: random.Random) -> None:
    """Floor, open the queue (the full page), then submit the group (the answer is the next group)."""
    started = time.perf_counter()
    status, _, _ = reviewer.request("GET", "/healthz")
    out["floor"].append(time.perf_counter() - started)
    assert status == 200, status
    started = time.perf_counter()
    status, _, page = reviewer.request("GET", "/review/")
    out["next"].append(time.perf_counter() - started)
    assert status == 200, (status, page[:300])
    reviewer.csrf = csrf_token(page) or reviewer.csrf
    assignment, fields = review_form(page, rng) or (None, None)
    assert assignment is not None, "the queue ran dry"
    headers = {**HTMX_HEADERS, "HX-Current-URL": "http://127.0.0.1/review/", "X-CSRFToken": reviewer.csrf}
    started = time.perf_counter()
    status, answer_headers, page = reviewer.request("POST", f"/review/{assignment}/submit", fields, headers)
    out["submit"].append(time.perf_counter() - started)
    assert status == 200, (status, page[:300])
    assert json.loads(answer_headers["HX-Trigger"])["review-submitted"]["stored"] is True


def measure(groups: int, rounds: int, database_url: str | None, redis_url: str | None) -> dict:
    data_dir = fill.ROOT / "data" / f"bench-review-{groups}"  # bench_review.py's SQLite database
    if database_url:  # a database per size (created when missing), its state in a folder of its own
        database_url = fill.postgres_database(f"{database_url}_{groups}")
        data_dir = fill.ROOT / "data" / f"bench-{database_url.rpartition('/')[2]}"
    # TRITON_URL set: `serve` starts no tritonserver (this flow needs none).
    env = harness.app_env(
        data_dir, database_url=database_url, redis_url=redis_url, triton_url="127.0.0.1:9", name="http-path"
    )
    sessions = harness.prepare(
        env, groups=groups, reviewers=2, sessions=data_dir / "sessions.json", log=lambda m: print(m, file=sys.stderr)
    )
    os.environ.update(env)  # this process reads the same database in-process
    import django

    django.setup()
    app = harness.App(env, data_dir / "serve-http-path.log").start(ready="/healthz")
    try:
        over_http = HttpReviewer(app.port, sessions["reviewers"][0])
        in_process = InProcessReviewer(sessions["reviewers"][1])
        rng = random.Random(20261130)  # noqa: S311
        results = {"http": {k: [] for k in FLOWS}, "in-process": {k: [] for k in FLOWS}}
        for _ in range(5):  # warm: the first requests of a process pay one-time setup
            one_group(over_http, {k: [] for k in FLOWS}, rng)
            one_group(in_process, {k: [] for k in FLOWS}, rng)
        for _ in range(rounds):
            one_group(over_http, results["http"], rng)
            one_group(in_process, results["in-process"], rng)
        errors = app.errors_logged()
    finally:
        app.stop()
    if errors:
        raise SystemExit("the server logged errors:\n" + "\n".join(errors[:20]))
    return {path: {k: [v * 1000 for v in vs] for k, vs in flows.items()} for path, flows in results.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--groups", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=300, help="groups each reviewer submits")
    parser.add_argument("--database-url", help="PostgreSQL base URL (the database NAME_GROUPS); SQLite otherwise")
    parser.add_argument("--redis-url", help="with --database-url: huey and the channel layer on Redis")
    args = parser.parse_args()
    results = measure(args.groups, args.rounds, args.database_url, args.redis_url)
    backend = "PostgreSQL + Redis" if args.database_url else "SQLite"
    print(f"\n{args.groups:,} groups, {args.rounds} groups per path, {backend}; ms as the client waits\n")
    print(f"{'path':<11} {'request':<8} {'p50':>7} {'p95':>7} {'max':>7}")
    for path, flows in results.items():
        for key in FLOWS:
            values = flows[key]
            print(
                f"{path:<11} {key:<8} {statistics.median(values):>7.1f} {fill.pct(values, 95):>7.1f} {max(values):>7.1f}"
            )
    http, local = results["http"], results["in-process"]
    for key in FLOWS:
        print(
            f"{key}: HTTP / in-process p50 {statistics.median(http[key]) / statistics.median(local[key]):.2f}x, "
            f"p95 {fill.pct(http[key], 95) / fill.pct(local[key], 95):.2f}x"
        )
    print(
        f"submit over HTTP, p95 over the HTTP floor's p95: {fill.pct(http['submit'], 95) / fill.pct(http['floor'], 95):.1f}x"
    )


if __name__ == "__main__":
    main()
