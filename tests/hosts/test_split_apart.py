"""The app split over hosts, in production mode: each role on a host of its own (a network
namespace with its own address, bench/hosts.py, shared with bench/bench_hosts.py), talking only over the network.

    db        PostgreSQL and Redis
    triton    the bundled tritonserver, listening on its own address
    web1/2    daphne, DEBUG=0, behind
    proxy     nginx terminating TLS and spreading requests over web1 and web2
    worker1/2 `run_huey`: the pipeline consumers
    trainer   `run_train_worker`: the training consumer

The data directory is the shared volume: one folder, the same path on every host. The test
drives the loop through the proxy (docs/loop.md's script, as written: import, a generate + judge
run, reviews, a dataset version, a GRPO round on the training host, the new version loaded by
the Triton host, an evaluation), then faults across hosts: a consumer host lost mid-run, the
Triton host gone and back, the database restarted. Everything it made is removed at the end.

It brings its own PostgreSQL and Redis (on the db host), whichever database the rest of the
suite runs on: `.ci/run` runs it in the first pass only."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from bench import hosts
from tests.doc_blocks import python_block

# Also triton and slow: `make test-fast` leaves it out.
pytestmark = [pytest.mark.hosts, pytest.mark.triton, pytest.mark.slow, pytest.mark.timeout(1500)]


@pytest.fixture(scope="module")
def deployment():
    with hosts.deployment_up() as deployment:
        yield deployment


def test_the_loop_runs_through_the_proxy_with_every_role_on_its_own_host(deployment):
    """docs/loop.md's script as written, against the proxy: the version trains on the training
    host and the Triton host loads it from the shared volume before the evaluation runs on it."""
    ready = deployment.wait_ready()  # the answer that said 200, not a second sample of it
    assert ready["consumers"] == {"pipeline": True, "train": True} and ready["models"] == {"qwen3": True, "judge": True}
    done = subprocess.run(
        [sys.executable, "-c", python_block(hosts.ROOT / "docs" / "loop.md")],
        env={
            **deployment.env,
            "SHAPING_URL": deployment.proxy_url,
            "SHAPING_TOKEN": deployment.token,
            "SSL_CERT_FILE": str(deployment.cert),  # the proxy's certificate, trusted as a CA would be
        },
        capture_output=True,
        text=True,
        timeout=900,
    )
    tails = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-2000:]}" for p in deployment.all_logs())
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n{tails}"
    print(done.stdout)

    status, version = deployment.call("GET", "/model-versions/2")
    assert status == 200 and version["status"] == "ready", version
    # The training host trained it (it claimed the train run) ...
    (train,) = [r for r in deployment.call("GET", "/runs?limit=100")[1]["items"] if r["kind"] == "train"]
    assert train["status"] == "succeeded", train
    assert f"run {train['id']} (train): claimed" in deployment.log("trainer").read_text()
    # ... and the Triton host, another host, served it: the evaluation's candidate answers are version 2's.
    status, evaluation = deployment.call("GET", "/evaluations/1")
    assert status == 200 and evaluation["status"] == "done", evaluation
    candidate = hosts.completions(deployment, evaluation["candidate_run"])
    assert candidate and {c["model_version"] for c in candidate} == {2}
    # The proxy spread the requests over both web processes (daphne's access log).
    for name in ("web1", "web2"):
        assert '"GET /api/runs/' in (deployment.logs / f"{name}-access.txt").read_text(), name


PROMPTS = 24  # a run of the fault test


def test_a_host_without_the_shared_volume_refuses_to_start_saying_where_to_mount_it(deployment, tmp_path):
    local = tmp_path / "local-disk"
    local.mkdir()
    done = deployment.h["worker1"].call(
        [str(hosts.ENTRYPOINT), "pipeline"], env={**deployment.env, "DATA_DIR": str(local)}, timeout=120
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"this host has not mounted it; mount it at {deployment.data}" in done.stderr, done.stderr


def test_one_run_spread_over_both_consumer_hosts_a_host_lost_mid_run_leaves_its_part_to_the_other(deployment):
    hosts.catalogue_import(deployment, "north", PROMPTS)
    # One run in two parts (PIPELINE_SHARDS=2), each long enough that a consumer is still busy with
    # one part when the other part arrives (one worker a consumer): a part on each consumer host.
    run = hosts.generate_start(deployment, "north", max_tokens=64)
    hosts.wait_for(
        lambda: hosts.ran_on(deployment, run["id"]) == {"worker1", "worker2"},
        timeout_s=120,
        what="both consumer hosts at work on the run",
        logs=deployment.all_logs(),
    )
    (lost_part, _), *_ = hosts.parts_claimed(deployment, "worker1", run["id"])

    def some_done():
        status, now = deployment.call("GET", f"/runs/{run['id']}")
        return 0 < now["done_items"] < now["total_items"] and now

    part = hosts.wait_for(some_done, timeout_s=120, what="the run to be part-way", every_s=0.2)
    deployment.h["worker1"].lose()
    lost_at = time.monotonic()
    finished = deployment.run_finished(run["id"], timeout_s=240)
    outcome = (finished["status"], finished["done_items"], finished["failed_items"])
    assert outcome == ("succeeded", PROMPTS, 0), finished
    completions = hosts.completions(deployment, run["id"])
    originals = [(c["group_id"], c["index"]) for c in completions if c["revision"] == 0]
    assert len(originals) == 4 * PROMPTS and len(set(originals)) == 4 * PROMPTS  # each once, none doubled
    # The lost host's part was taken over by the other host (its second claim), the other's own part done there.
    taken = hosts.parts_claimed(deployment, "worker2", run["id"])
    assert (lost_part, 2) in taken and (1 - lost_part, 1) in taken, taken
    print(
        f"\nworker1 lost at {part['done_items']}/{PROMPTS} prompts of run {run['id']} (part {lost_part} its); worker2 "
        f"took that part over and finished the run {time.monotonic() - lost_at:.0f} s later; "
        f"{4 * PROMPTS} completions, none doubled"
    )
    deployment.start_consumer("worker1")  # the host comes back


def test_the_triton_host_gone_and_back_readiness_says_so_and_a_run_resumes_by_itself(deployment):
    deployment.h["triton"].lose()
    gone_at = time.monotonic()
    down = hosts.wait_for(
        lambda: (answer := deployment.ready())[0] == 503 and answer[1],
        timeout_s=60,
        what="/readyz to say the models are down",
    )
    assert down["models"] == {"qwen3": False, "judge": False} and down["database"] is True
    run = hosts.generate(deployment, "outage", 4)
    failed = deployment.run_finished(run["id"], timeout_s=120)
    assert failed["status"] == "failed", failed
    said_down = time.monotonic() - gone_at
    deployment.start_triton()
    deployment.wait_ready()
    back_at = time.monotonic()
    # The watchdog resumes a run that failed only because the backend was down (every minute).
    resumed = hosts.wait_for(
        lambda: (r := deployment.call("GET", f"/runs/{run['id']}")[1])["status"] == "succeeded" and r,
        timeout_s=180,
        what="the run to resume by itself once Triton was back",
        every_s=2,
        logs=deployment.all_logs(),
    )
    assert resumed["done_items"] == 4
    print(
        f"\nTriton host gone: /readyz 503 after {said_down:.1f} s, the run started meanwhile failed; back: "
        f"ready, and the run resumed by itself and succeeded {time.monotonic() - back_at:.0f} s later"
    )
    assert len([c for c in hosts.completions(deployment, run["id"]) if c["revision"] == 0]) == 16


def test_the_database_restarted_readiness_says_so_and_work_goes_on(deployment):
    db = deployment.h["db"]
    postgres = next(p for p in db.processes if "postgres" in " ".join(map(str, p.args)) and p.poll() is None)
    postmaster = int((deployment.pg / "postmaster.pid").read_text().split()[0])
    os.kill(postmaster, signal.SIGINT)  # PostgreSQL's fast shutdown, as a restart does
    postgres.wait(timeout=60)
    stopped_at = time.monotonic()
    down = hosts.wait_for(
        lambda: (answer := deployment.ready())[0] == 503 and answer[1], timeout_s=60, what="/readyz to say so"
    )
    assert down["database"] is False, down
    db.processes.remove(postgres)
    said_down = time.monotonic() - stopped_at
    deployment.start_db()
    deployment.wait_ready()
    ready_again = time.monotonic() - stopped_at
    run = hosts.generate(deployment, "after-restart", 4)
    finished = deployment.run_finished(run["id"], timeout_s=180)
    assert (finished["status"], finished["done_items"]) == ("succeeded", 4), finished
    print(f"\ndatabase restarted: /readyz 503 after {said_down:.1f} s, 200 again {ready_again:.1f} s after the stop")
