"""Scale across hosts: one pipeline consumer host against two, one web process against two, in
one run, through the proxy (the roles split over network namespaces: bench/hosts.py, as
tests/hosts/test_split_apart.py runs them; root only).

- **Pipeline**: `--runs` generate + judge runs (`--prompts` prompts × 4, `--max-tokens`) started
  together, timed until all succeeded: first with one pipeline host (the other's processes
  stopped), then with both. Each consumer runs one run at a time (HUEY_WORKERS=1).
- **Web**: `--clients` API clients (threads of this process, each with its own keep-alive
  connection through the proxy) reading what a reviewer's and a script's pages read (a run, a
  page of its completions) for `--seconds`: first with the proxy sending everything to web1,
  then spread over web1 and web2.

Every role shares this machine's cores (the hosts are namespaces, not machines), so the figures
say what a second process adds when the first is the bottleneck, not what a second machine adds.

    sudo .venv/bin/python bench/bench_hosts.py [--runs 4] [--prompts 12] [--max-tokens 48] [--clients 8] [--seconds 20]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import hosts  # noqa: E402


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--prompts", type=int, default=12)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20)
    args = parser.parse_args()
    batch = {"runs": args.runs, "prompts": args.prompts, "max_tokens": args.max_tokens}

    with hosts.deployment_up() as deployment:
        deployment.h["worker2"].lose()
        one = pipeline_batch(deployment, "one", **batch)
        deployment.start_consumer("worker2")
        hosts.wait_for(
            lambda: "consumer started" in deployment.log("worker2").read_text(),
            timeout_s=120,
            what="worker2's consumer",
        )
        two = pipeline_batch(deployment, "two", **batch)

        run_id = deployment.call("GET", "/runs?limit=1")[1]["items"][0]["id"]
        proxy_to(deployment, ["web1"])
        web_one = web_load(deployment, clients=args.clients, seconds=args.seconds, run_id=run_id)
        proxy_to(deployment, ["web1", "web2"])
        web_two = web_load(deployment, clients=args.clients, seconds=args.seconds, run_id=run_id)

    completions = args.runs * args.prompts * 4
    print(f"\npipeline: {args.runs} runs of {args.prompts} prompts × 4 completions, {args.max_tokens} tokens, judged")
    print("| pipeline hosts | wall s | completions/s | vs one |")
    print("| --- | ---: | ---: | ---: |")
    for label, wall in (("one", one), ("two", two)):
        print(f"| {label} | {wall:.1f} | {completions / wall:.2f} | {one / wall:.2f}x |")
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


if __name__ == "__main__":
    main()
