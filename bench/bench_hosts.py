"""Scale across hosts: one pipeline consumer host against two, one web process against two, in
one run, through the proxy (the roles split over network namespaces: bench/hosts.py, as
tests/hosts/test_split_apart.py runs them; root only).

- **Pipeline**: `--runs` generate + judge runs (`--prompts` prompts × 4, `--max-tokens`) started
  together, timed until all succeeded: first with one pipeline host (the other's processes
  stopped), then with both. Each run is in two parts (PIPELINE_SHARDS=2, as compose.yaml) and
  each consumer works on one part at a time (HUEY_WORKERS=1): with `--runs 1`, one run on one
  host against the same run spread over two.
- **Web**: `--clients` API clients (threads of this process, each with its own keep-alive
  connection through the proxy) reading what a reviewer's and a script's pages read (a run, a
  page of its completions) for `--seconds`: first with the proxy sending everything to web1,
  then spread over web1 and web2.
- **Reviewers**: the load test's reviewers (locust, bench/load/locustfile.py: open the review
  page, score, submit, 5% sent twice) over HTTPS through the proxy, `--reviewers` of them for
  `--review-seconds`, on `--groups` filled groups (bench/fill.py; the database is emptied
  first), one web process against two; then every acknowledged submission is looked up.

Every role shares this machine's cores (the hosts are namespaces, not machines), so the figures
say what a second process adds when the first is the bottleneck, not what a second machine adds.

    sudo .venv/bin/python bench/bench_hosts.py [--runs 4] [--prompts 12] [--max-tokens 48] [--clients 8] [--seconds 20]
        [--only-pipeline | --only-reviewers]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import hosts  # noqa: E402
from bench.load import harness  # noqa: E402

# The filled database's sessions are signed with this key (bench/fill.py): the web processes use it too.
FILL_SECRET_KEY = "bench-" + "x" * 50


def pipeline_batch(deployment: hosts.Deployment, label: str, *, runs: int, prompts: int, max_tokens: int) -> float:
    slugs = [f"{label}-{i}" for i in range(runs)]
    for slug in slugs:
        hosts.catalogue_import(deployment, slug, prompts)
    started = time.monotonic()
    ids = [hosts.generate_start(deployment, slug, max_tokens=max_tokens)["id"] for slug in slugs]
    for run_id in ids:
        finished = deployment.run_finished(run_id, timeout_s=1800)
        assert finished["status"] == "succeeded", finished
    return time.monotonic() - started


def web_load(deployment: hosts.Deployment, *, clients: int, seconds: float, run_id: int) -> dict:
    timings: list[float] = []
    failures = [0]
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def client():
        call = hosts.api_client(f"{deployment.proxy_url}/api", deployment.token, deployment.cert)
        paths = (f"/runs/{run_id}", f"/generations?run={run_id}&limit=50")
        i = 0
        while time.monotonic() < stop:
            began = time.monotonic()
            status, _ = call("GET", paths[i % 2])
            took = time.monotonic() - began
            i += 1
            with lock:
                if status == 200:
                    timings.append(took)
                else:
                    failures[0] += 1

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    timings.sort()
    return {
        "requests_s": len(timings) / seconds,
        "p50_ms": statistics.median(timings) * 1000,
        "p95_ms": timings[int(len(timings) * 0.95) - 1] * 1000,
        "failed": failures[0],
    }


def review_load(deployment: hosts.Deployment, *, reviewers: int, seconds: int, sessions: Path, tag: str) -> dict:
    result = harness.run_locust(
        deployment.proxy_url,
        users=reviewers,
        seconds=seconds,
        sessions=sessions,
        out_dir=deployment.work / "locust",
        think=(0.2, 0.6),
        tag=tag,
    )
    print(f"reviewers, {tag} web process(es): statuses {result.statuses}, problems {result.problems[:3]}")
    both = sorted(result.timings.get("next", []) + result.timings.get("submit", []))
    return {
        "requests_s": result.requests / seconds,
        "p50_ms": statistics.median(both),
        "p95_ms": both[int(len(both) * 0.95) - 1],
        "server_errors": result.server_errors,
        "acked": result.acked,
    }


def proxy_to(deployment: hosts.Deployment, webs: list[str]) -> None:
    """Point the proxy at `webs` only (nginx reloads its file without dropping connections)."""
    conf = deployment.work / "nginx"
    text = deployment.proxy_conf(conf)
    for name in ("web1", "web2"):
        if name not in webs:
            text = text.replace(f"    server {deployment.h[name].address}:8000;\n", "")
    (conf / "nginx.conf").write_text(text)
    done = deployment.h["proxy"].call(
        ["/usr/sbin/nginx", "-c", str(conf / "nginx.conf"), "-p", str(conf), "-s", "reload"], env={}
    )
    assert done.returncode == 0, done.stderr
    time.sleep(2)  # the old workers finish their requests and leave


def reviewers_phase(deployment: hosts.Deployment, args) -> None:
    """The load test's reviewers through the proxy, one web process against two; prints its table."""
    sessions = deployment.work / "sessions.json"
    harness.prepare(deployment.env, groups=args.groups, reviewers=args.reviewers, sessions=sessions, log=print)
    os.environ["LOAD_CA_BUNDLE"] = str(deployment.cert)  # locust's client trusts the proxy's certificate
    proxy_to(deployment, ["web1"])
    one = review_load(deployment, reviewers=args.reviewers, seconds=args.review_seconds, sessions=sessions, tag="one")
    proxy_to(deployment, ["web1", "web2"])
    two = review_load(deployment, reviewers=args.reviewers, seconds=args.review_seconds, sessions=sessions, tag="two")
    stored = harness.reconcile(one["acked"] + two["acked"], harness.ledger(deployment.env))
    print(
        f"\nreviewers: {args.reviewers} locust reviewers for {args.review_seconds} s over HTTPS through the proxy "
        f"(review page, submit; think 0.2-0.6 s), {args.groups:,} filled groups"
    )
    print("| web processes | requests/s | p50 ms | p95 ms | 5xx | vs one |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for label, result in (("one", one), ("two", two)):
        print(
            f"| {label} | {result['requests_s']:.1f} | {result['p50_ms']:.0f} | {result['p95_ms']:.0f} | "
            f"{result['server_errors']} | {result['requests_s'] / one['requests_s']:.2f}x |"
        )
    print(
        f"submissions acknowledged {stored.acked}, stored {stored.stored}, lost {stored.lost}, "
        f"stored twice {stored.twice}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--prompts", type=int, default=12)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--reviewers", type=int, default=20)
    parser.add_argument("--review-seconds", type=int, default=30)
    parser.add_argument("--groups", type=int, default=3000)
    parser.add_argument("--only-reviewers", action="store_true", help="skip the pipeline and API phases")
    parser.add_argument("--only-pipeline", action="store_true", help="skip the API and reviewers' phases")
    args = parser.parse_args()
    batch = {"runs": args.runs, "prompts": args.prompts, "max_tokens": args.max_tokens}

    with hosts.deployment_up({"SECRET_KEY": FILL_SECRET_KEY}) as deployment:
        if args.only_reviewers:
            reviewers_phase(deployment, args)
            return
        deployment.h["worker2"].lose()
        one = pipeline_batch(deployment, "one", **batch)
        deployment.start_consumer("worker2")
        hosts.wait_for(
            lambda: "consumer started" in deployment.log("worker2").read_text(),
            timeout_s=120,
            what="worker2's consumer",
        )
        two = pipeline_batch(deployment, "two", **batch)
        if args.only_pipeline:
            web_one = web_two = None
        else:
            web_one, web_two = web_phase(deployment, args)
            # The reviewers' phase empties the database and fills it (bench/fill.py): it comes last.
            reviewers_phase(deployment, args)

    completions = args.runs * args.prompts * 4
    shards = deployment.env.get("PIPELINE_SHARDS", "1")
    print(
        f"\npipeline: {args.runs} runs of {args.prompts} prompts × 4 completions, {args.max_tokens} tokens, judged; "
        f"each run in {shards} parts (PIPELINE_SHARDS)"
    )
    print("| pipeline hosts | wall s | completions/s | vs one |")
    print("| --- | ---: | ---: | ---: |")
    for label, wall in (("one", one), ("two", two)):
        print(f"| {label} | {wall:.1f} | {completions / wall:.2f} | {one / wall:.2f}x |")
    if web_one is None:
        return
    print(
        f"\nweb: {args.clients} API clients for {args.seconds:.0f} s through the proxy (a run, a page of its completions)"
    )
    print("| web processes | requests/s | p50 ms | p95 ms | failed | vs one |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for label, result in (("one", web_one), ("two", web_two)):
        print(
            f"| {label} | {result['requests_s']:.1f} | {result['p50_ms']:.0f} | {result['p95_ms']:.0f} | "
            f"{result['failed']} | {result['requests_s'] / web_one['requests_s']:.2f}x |"
        )


def web_phase(deployment: hosts.Deployment, args) -> tuple[dict, dict]:
    """The API read load with the proxy sending everything to web1, then spread over both."""
    run_id = deployment.call("GET", "/runs?limit=1")[1]["items"][0]["id"]
    proxy_to(deployment, ["web1"])
    web_one = web_load(deployment, clients=args.clients, seconds=args.seconds, run_id=run_id)
    proxy_to(deployment, ["web1", "web2"])
    web_two = web_load(deployment, clients=args.clients, seconds=args.seconds, run_id=run_id)
    return web_one, web_two


if __name__ == "__main__":
    main()
