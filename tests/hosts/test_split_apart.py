"""The app split over hosts, in production mode: each role on a host of its own (a network
namespace with its own address, tests/hosts/netns.py), talking only over the network.

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

import json
import os
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.doc_blocks import python_block
from tests.hosts.netns import Network, wait_for

ROOT = Path(__file__).resolve().parents[2]
ENTRYPOINT = ROOT / "deploy" / "entrypoint.sh"  # the container image's: each role as the image runs it
PG_BIN = max(Path("/usr/lib/postgresql").glob("*/bin"), default=Path("/usr/lib/postgresql/bin"))

# Also triton and slow: `make test-fast` leaves it out.
pytestmark = [pytest.mark.hosts, pytest.mark.triton, pytest.mark.slow, pytest.mark.timeout(1500)]


def _api(base: str, token: str, cafile: Path):
    context = ssl.create_default_context(cafile=str(cafile))

    def call(method: str, path: str, body=None, **headers):
        request = urllib.request.Request(  # noqa: S310 - https to the proxy, built here
            f"{base}{path}",
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json", **headers},
        )
        try:
            with urllib.request.urlopen(request, context=context, timeout=30) as response:  # noqa: S310
                data = response.read()
                return response.status, (json.loads(data) if data else None)
        except urllib.error.HTTPError as error:
            data = error.read()
            try:
                return error.code, json.loads(data)
            except ValueError:
                return error.code, data.decode(errors="replace")

    return call


class Deployment:
    """The hosts, their processes and logs, and what the test calls through the proxy."""

    def __init__(self, work: Path):
        self.work = work
        self.logs = work / "logs"
        self.logs.mkdir()
        self.data = work / "shared"  # the shared volume
        self.data.mkdir()
        self.net = Network().create()
        for name in ("db", "triton", "web1", "web2", "proxy", "worker1", "worker2", "trainer"):
            self.net.add(name)
        self.h = self.net.hosts
        self.proxy_url = f"https://{self.h['proxy'].address}"
        self.redis_password = secrets.token_hex(16)
        self.env = {
            "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": str(work),
            "LANG": "C.UTF-8",
            "DJANGO_SETTINGS_MODULE": "shaping_web.settings",
            "DEBUG": "0",
            "SECRET_KEY": secrets.token_urlsafe(48),
            "ALLOWED_HOSTS": self.h["proxy"].address,
            "CSRF_TRUSTED_ORIGINS": self.proxy_url,
            "DATABASE_URL": f"postgres://postgres@{self.h['db'].address}:5432/postgres",
            "REDIS_URL": f"redis://:{self.redis_password}@{self.h['db'].address}:6379/0",
            "DATA_DIR": str(self.data),
            "HUEY_NAME": "shaping-hosts",
            "HUEY_WORKERS": "1",  # one run at a time per consumer: two runs go to two consumers
            "PIPELINE_WORKERS": "2",
            "INFERENCE_BACKEND": "triton",
            "TRITON_URL": f"{self.h['triton'].address}:8001",
            "RUN_STALE_AFTER_S": "6",  # a lost consumer's run is taken over within the next watchdog minute
            "PYTHONPATH": str(ROOT),
            "SHAPING_HOME": str(ROOT),  # the entrypoint's /app
        }
        self.token = ""

    def log(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def all_logs(self) -> list[Path]:
        return sorted(self.logs.glob("*.log"))

    # --- the roles ---------------------------------------------------------------------------

    def start_db(self) -> None:
        db = self.h["db"]
        if not (self.pg / "PG_VERSION").exists():
            self.pg.mkdir(exist_ok=True)
            shutil.chown(self.pg, "postgres", "postgres")
            subprocess.run(
                ["runuser", "-u", "postgres", "--", str(PG_BIN / "initdb"), "-D", str(self.pg), "--auth=trust"],
                check=True,
                capture_output=True,
            )
            with open(self.pg / "pg_hba.conf", "a") as hba:
                hba.write(f"host all all {self.net.prefix}.0/24 trust\n")
        db.run(
            [
                str(PG_BIN / "postgres"),
                "-D",
                str(self.pg),
                "-c",
                f"listen_addresses={db.address}",
                "-c",
                f"unix_socket_directories={self.pg}",
                "-c",
                "fsync=off",
            ],
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"},
            log=self.log("postgres"),
            user="postgres",
        )
        if not any("redis-server" in " ".join(p.args) for p in db.processes if p.poll() is None):
            db.run(
                [
                    "redis-server",
                    "--bind",
                    db.address,
                    "--port",
                    "6379",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--requirepass",
                    self.redis_password,
                ],
                env={"PATH": "/usr/bin:/bin"},
                log=self.log("redis"),
            )
        wait_for(
            lambda: (
                subprocess.run(
                    [str(PG_BIN / "pg_isready"), "-h", db.address, "-p", "5432", "-U", "postgres"], capture_output=True
                ).returncode
                == 0
            ),
            timeout_s=60,
            what="PostgreSQL on the db host",
            logs=[self.log("postgres")],
        )

    @property
    def pg(self) -> Path:
        return self.work / "pg"

    def manage(self, *args: str, host: str = "web1") -> str:
        done = self.h[host].call([sys.executable, str(ROOT / "manage.py"), *args], env=self.env, timeout=300)
        assert done.returncode == 0, f"manage.py {' '.join(args)} on {host}:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def start_triton(self) -> None:
        triton = self.h["triton"]
        triton.run([str(ENTRYPOINT), "triton"], env=self.env, log=self.log("triton"), cwd=ROOT)

    def start_web(self, name: str) -> None:
        host = self.h[name]
        host.run(
            [
                sys.executable,
                "-m",
                "daphne",
                "-b",
                host.address,
                "-p",
                "8000",
                "--access-log",
                str(self.logs / f"{name}-access.txt"),
                "shaping_web.asgi:application",
            ],
            env=self.env,
            log=self.log(name),
            cwd=ROOT,
        )

    def start_consumer(self, name: str) -> None:
        role = "train" if name == "trainer" else "pipeline"
        self.h[name].run([str(ENTRYPOINT), role], env=self.env, log=self.log(name), cwd=ROOT)

    def start_proxy(self) -> None:
        proxy = self.h["proxy"]
        conf = self.work / "nginx"
        conf.mkdir(exist_ok=True)
        subprocess.run(
            [
                "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                "-keyout", str(conf / "key.pem"), "-out", str(conf / "cert.pem"),
                "-subj", "/CN=shaping-proxy", "-addext", f"subjectAltName=IP:{proxy.address}",
            ],
            check=True,
            capture_output=True,
        )  # fmt: skip
        (conf / "nginx.conf").write_text(self.proxy_conf(conf))
        proxy.run(
            ["nginx", "-c", str(conf / "nginx.conf"), "-p", str(conf), "-g", "daemon off;"],
            env={"PATH": "/usr/sbin:/usr/bin:/bin"},
            log=self.log("proxy"),
        )

    def proxy_conf(self, conf: Path) -> str:
        """deploy/nginx.conf, the compose file's, with this network's addresses and this test's paths."""
        text = (ROOT / "deploy" / "nginx.conf").read_text()
        for name in ("web1", "web2"):
            text = text.replace(f"server {name}:8000;", f"server {self.h[name].address}:8000;")
        text = text.replace("listen 443 ssl;", f"listen {self.h['proxy'].address}:443 ssl;")
        text = text.replace("/etc/nginx/certs/", f"{conf}/")
        temp = "".join(
            f"  {kind}_temp_path {conf}/{kind};\n" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        text = text.replace("http {\n", f"http {{\n  access_log {conf}/access.log;\n{temp}", 1)
        assert f"{self.h['web2'].address}:8000" in text and str(conf) in text  # the file still reads as expected
        return f"pid {conf}/nginx.pid;\nerror_log {conf}/error.log;\n{text}"

    @property
    def cert(self) -> Path:
        return self.work / "nginx" / "cert.pem"

    # --- through the proxy -------------------------------------------------------------------

    def call(self, method: str, path: str, body=None, **headers):
        return _api(f"{self.proxy_url}/api", self.token, self.cert)(method, path, body, **headers)

    def ready(self) -> tuple[int, object]:
        return _api(self.proxy_url, "", self.cert)("GET", "/readyz")

    def wait_ready(self, timeout_s: float = 240) -> dict:
        return wait_for(
            lambda: (answer := self.ready())[0] == 200 and answer[1],
            timeout_s=timeout_s,
            what="/readyz through the proxy",
            every_s=1,
            logs=self.all_logs(),
        )

    def run_finished(self, run_id: int, timeout_s: float = 300) -> dict:
        def finished():
            status, run = self.call("GET", f"/runs/{run_id}")
            return status == 200 and run["status"] in ("succeeded", "partial", "failed", "cancelled") and run

        return wait_for(finished, timeout_s=timeout_s, what=f"run {run_id} to finish", every_s=1, logs=self.all_logs())


@pytest.fixture(scope="module")
def deployment():
    # Not under pytest's tmp_path: PostgreSQL runs as its own user, who must reach its folder.
    work = Path(tempfile.mkdtemp(prefix="shaping-hosts-"))
    work.chmod(0o755)
    deployment = Deployment(work)
    try:
        deployment.start_db()
        done = deployment.h["web1"].call([str(ENTRYPOINT), "migrate"], env=deployment.env, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        out = deployment.manage("create_user", "loop", "--role", "admin")
        assert "loop" in out
        deployment.token = deployment.manage("create_token", "loop").strip().split()[-1]
        deployment.start_triton()
        for name in ("web1", "web2"):
            deployment.start_web(name)
        deployment.start_proxy()
        for name in ("worker1", "worker2", "trainer"):
            deployment.start_consumer(name)
        deployment.wait_ready()
        yield deployment
    finally:
        deployment.net.remove()
        leftovers = deployment.net.leftovers()
        shutil.rmtree(work, ignore_errors=True)
        assert leftovers == [], leftovers


def _import(deployment: Deployment, slug: str, prompts: int) -> None:
    """A character, a rubric (a rule and a judged criterion) and a prompt set, all named `slug`."""
    records = [
        {"kind": "character", "slug": slug, "name": "Mira", "persona": "Mira keeps the lighthouse."},
        {
            "kind": "rubric",
            "slug": slug,
            "name": slug,
            "criteria": [  # a rule and the judge: a generate + judge run
                {"key": "name", "description": "names herself", "scale_min": 0, "scale_max": 1,
                 "rule": {"kind": "regex", "pattern": "Mira"}},
                {"key": "voice", "description": "sounds like Mira", "scale_min": 1, "scale_max": 5},
            ],
        },
        {
            "kind": "prompt_set",
            "slug": slug,
            "name": slug,
            "prompts": [
                {"id": f"{slug}-{i}", "messages": [{"role": "user", "content": f"Night {i}: what do you see?"}]}
                for i in range(prompts)
            ],
        },
    ]  # fmt: skip
    status, answer = deployment.call(
        "POST", "/import", {"name": f"{slug}.jsonl", "content": "\n".join(json.dumps(r) for r in records)}
    )
    assert status == 201, answer


def _start(deployment: Deployment, slug: str, *, max_tokens: int = 24) -> dict:
    """A generate + judge run on `slug`'s prompts, G=4."""
    body = {"kind": "generate", "character": slug, "prompt_set": slug, "rubric": slug, "group_size": 4}
    status, run = deployment.call(
        "POST", "/runs", {**body, "max_tokens": max_tokens}, **{"Idempotency-Key": f"{slug}-{uuid.uuid4()}"}
    )
    assert status in (200, 201), run
    return run


def _generate(deployment: Deployment, slug: str, prompts: int, *, max_tokens: int = 24) -> dict:
    _import(deployment, slug, prompts)
    return _start(deployment, slug, max_tokens=max_tokens)


def _completions(deployment: Deployment, run_id: int) -> list[dict]:
    items, offset = [], 0
    while True:
        status, page = deployment.call("GET", f"/generations?run={run_id}&limit=100&offset={offset}")
        assert status == 200, page
        items += page["items"]
        offset += 100
        if offset >= page["count"]:
            return items


def _ran_on(deployment: Deployment, run_id: int) -> set[str]:
    """The consumer hosts whose logs show them executing the run."""
    marker = f"run {run_id} (generate): claimed"
    return {
        name
        for name in ("worker1", "worker2")
        if deployment.log(name).exists()
        and any(marker in line for line in deployment.log(name).read_text().splitlines())
    }


def test_the_loop_runs_through_the_proxy_with_every_role_on_its_own_host(deployment):
    """docs/loop.md's script as written, against the proxy: the version trains on the training
    host and the Triton host loads it from the shared volume before the evaluation runs on it."""
    ready = deployment.ready()[1]
    assert ready["consumers"] == {"pipeline": True, "train": True} and ready["models"] == {"qwen3": True, "judge": True}
    done = subprocess.run(
        [sys.executable, "-c", python_block(ROOT / "docs" / "loop.md")],
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
    candidate = _completions(deployment, evaluation["candidate_run"])
    assert candidate and {c["model_version"] for c in candidate} == {2}
    # The proxy spread the requests over both web processes (daphne's access log).
    for name in ("web1", "web2"):
        assert '"GET /api/runs/' in (deployment.logs / f"{name}-access.txt").read_text(), name


PROMPTS = 24  # a run of the fault test


def test_a_host_without_the_shared_volume_refuses_to_start_saying_where_to_mount_it(deployment, tmp_path):
    local = tmp_path / "local-disk"
    local.mkdir()
    done = deployment.h["worker1"].call(
        [str(ENTRYPOINT), "pipeline"], env={**deployment.env, "DATA_DIR": str(local)}, timeout=120
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"this host has not mounted it; mount it at {deployment.data}" in done.stderr, done.stderr


def test_a_consumer_host_lost_mid_run_its_run_finishes_on_the_other_and_nothing_is_doubled(deployment):
    _import(deployment, "north", PROMPTS)
    _import(deployment, "south", PROMPTS)
    # Started together, each long enough that the first consumer is still busy with one when
    # the other arrives (one worker a consumer): one run on each consumer host.
    first, second = _start(deployment, "north", max_tokens=64), _start(deployment, "south", max_tokens=64)

    def both_running():
        hosts = {run["id"]: _ran_on(deployment, run["id"]) for run in (first, second)}
        return all(hosts.values()) and hosts

    hosts = wait_for(both_running, timeout_s=120, what="both runs taken by a consumer", logs=deployment.all_logs())
    assert hosts[first["id"]] | hosts[second["id"]] == {"worker1", "worker2"}  # one run on each consumer host
    (lost,) = hosts[first["id"]]

    def some_done():
        status, run = deployment.call("GET", f"/runs/{first['id']}")
        return 0 < run["done_items"] < run["total_items"] and run

    part = wait_for(some_done, timeout_s=120, what="the first run to be part-way", every_s=0.2)
    deployment.h[lost].lose()
    lost_at = time.monotonic()
    for run in (first, second):
        finished = deployment.run_finished(run["id"], timeout_s=240)
        outcome = (finished["status"], finished["done_items"], finished["failed_items"])
        assert outcome == ("succeeded", PROMPTS, 0), finished
        completions = _completions(deployment, run["id"])
        originals = [(c["group_id"], c["index"]) for c in completions if c["revision"] == 0]
        assert len(originals) == 4 * PROMPTS and len(set(originals)) == 4 * PROMPTS  # each once, none doubled
    survivor = ({"worker1", "worker2"} - {lost}).pop()
    assert survivor in _ran_on(deployment, first["id"])  # taken over by the other host
    print(
        f"\n{lost} lost at {part['done_items']}/{PROMPTS} prompts of run {first['id']}; {survivor} finished it "
        f"{time.monotonic() - lost_at:.0f} s later; {4 * PROMPTS} completions a run, none doubled"
    )
    deployment.start_consumer(lost)  # the host comes back


def test_the_triton_host_gone_and_back_readiness_says_so_and_a_run_resumes_by_itself(deployment):
    deployment.h["triton"].lose()
    gone_at = time.monotonic()
    down = wait_for(
        lambda: (answer := deployment.ready())[0] == 503 and answer[1],
        timeout_s=60,
        what="/readyz to say the models are down",
    )
    assert down["models"] == {"qwen3": False, "judge": False} and down["database"] is True
    run = _generate(deployment, "outage", 4)
    failed = deployment.run_finished(run["id"], timeout_s=120)
    assert failed["status"] == "failed", failed
    said_down = time.monotonic() - gone_at
    deployment.start_triton()
    deployment.wait_ready()
    back_at = time.monotonic()
    # The watchdog resumes a run that failed only because the backend was down (every minute).
    resumed = wait_for(
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
    assert len([c for c in _completions(deployment, run["id"]) if c["revision"] == 0]) == 16


def test_the_database_restarted_readiness_says_so_and_work_goes_on(deployment):
    db = deployment.h["db"]
    postgres = next(p for p in db.processes if "postgres" in " ".join(map(str, p.args)) and p.poll() is None)
    postmaster = int((deployment.pg / "postmaster.pid").read_text().split()[0])
    os.kill(postmaster, signal.SIGINT)  # PostgreSQL's fast shutdown, as a restart does
    postgres.wait(timeout=60)
    stopped_at = time.monotonic()
    down = wait_for(
        lambda: (answer := deployment.ready())[0] == 503 and answer[1], timeout_s=60, what="/readyz to say so"
    )
    assert down["database"] is False, down
    db.processes.remove(postgres)
    said_down = time.monotonic() - stopped_at
    deployment.start_db()
    deployment.wait_ready()
    ready_again = time.monotonic() - stopped_at
    run = _generate(deployment, "after-restart", 4)
    finished = deployment.run_finished(run["id"], timeout_s=180)
    assert (finished["status"], finished["done_items"]) == ("succeeded", 4), finished
    print(f"\ndatabase restarted: /readyz 503 after {said_down:.1f} s, 200 again {ready_again:.1f} s after the stop")
