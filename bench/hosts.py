"""The app split over hosts on one machine, for tests/hosts/test_split_apart.py and
bench/bench_hosts.py: the roles, each on its own host, through the image's entrypoint.

Several hosts on one machine: each a Linux network namespace with its own address on a
bridge the harness creates (and removes), so that a process reaches another only at that
host's address, as across machines. Files are shared as a shared volume would share them
(one directory, the same path on every host); the network is not.

Root only (`ip netns`). Every name the harness makes carries one random tag, and `remove()`
kills every process in the namespaces and deletes the namespaces, the links and the bridge,
whatever state the test left them in.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
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
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


def free_subnet() -> str:
    """A 10.x.y.0/24 no interface of this machine is on (the first three parts)."""
    used = _ip("-4", "-o", "addr").stdout
    while True:
        prefix = f"10.{random.randint(100, 250)}.{random.randint(0, 255)}"
        if f" {prefix}." not in used:
            return prefix


@dataclass
class Host:
    network: Network
    name: str
    namespace: str
    address: str
    link: str  # its veth's end on the bridge (what this host sends, the link receives)
    processes: list[subprocess.Popen] = field(default_factory=list)

    def run(self, argv: list[str], *, env: dict, log: Path, user: str | None = None, cwd=None) -> subprocess.Popen:
        """Start `argv` on this host, its output to `log`."""
        as_user = ["/usr/sbin/runuser", "-u", user, "--"] if user else []
        with open(log, "ab") as out:
            process = subprocess.Popen(
                ["ip", "netns", "exec", self.namespace, *as_user, *argv],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                start_new_session=True,
            )
        self.processes.append(process)
        return process

    def call(self, argv: list[str], *, env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
        """Run `argv` on this host to its end."""
        return subprocess.run(
            ["ip", "netns", "exec", self.namespace, *argv], env=env, capture_output=True, text=True, timeout=timeout
        )

    def pids(self) -> list[int]:
        listed = _ip("netns", "pids", self.namespace, check=False).stdout.split()
        return [int(pid) for pid in listed if pid.isdigit()]

    def lose(self) -> None:
        """The host is gone: every process on it killed at once (SIGKILL), no goodbye."""
        for _ in range(50):
            pids = self.pids()
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)
        for process in self.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)
        self.processes.clear()


@dataclass
class Network:
    """A bridge with this machine on .1 and a host per namespace on .2 and up."""

    prefix: str = field(default_factory=free_subnet)
    tag: str = field(default_factory=lambda: f"{random.randrange(16**4):04x}")
    hosts: dict[str, Host] = field(default_factory=dict)

    @property
    def bridge(self) -> str:
        return f"sh{self.tag}b"

    def create(self) -> Network:
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.prefix}.1/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        return self

    def add(self, name: str) -> Host:
        index = len(self.hosts) + 2
        namespace, outside, inside = f"sh{self.tag}-{name}", f"sh{self.tag}v{index}", f"sh{self.tag}p{index}"
        _ip("netns", "add", namespace)
        _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
        _ip("link", "set", inside, "netns", namespace)
        _ip("link", "set", outside, "master", self.bridge, "up")
        address = f"{self.prefix}.{index}"
        _ip("-n", namespace, "addr", "add", f"{address}/24", "dev", inside)
        _ip("-n", namespace, "link", "set", inside, "up")
        _ip("-n", namespace, "link", "set", "lo", "up")
        host = Host(self, name, namespace, address, outside)
        self.hosts[name] = host
        return host

    def remove(self) -> None:
        for host in self.hosts.values():
            host.lose()
            _ip("link", "del", host.link, check=False)  # and its peer inside
            _ip("netns", "del", host.namespace, check=False)
        _ip("link", "del", self.bridge, check=False)

    def leftovers(self) -> list[str]:
        """Anything of this network still on the machine (nothing, after remove(); the kernel
        takes a moment to drop a namespace's links)."""
        for _ in range(50):
            links = [line for line in _ip("-o", "link").stdout.splitlines() if f"sh{self.tag}" in line]
            spaces = [line for line in _ip("netns", "list").stdout.splitlines() if f"sh{self.tag}-" in line]
            if not links + spaces:
                break
            time.sleep(0.1)
        return links + spaces


def wait_for(predicate, *, timeout_s: float, what: str, every_s: float = 0.5, logs: list[Path] = ()):
    """Poll `predicate` until it returns something true; fail naming `what` with the logs' tails."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except Exception as exc:  # a host on its way up refuses connections
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(every_s)
    tails = "\n".join(f"--- {log.name}\n{log.read_text(errors='replace')[-2500:]}" for log in logs if log.exists())
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what} (last: {last!r})\n{tails}")


ROOT = Path(__file__).resolve().parents[1]
ENTRYPOINT = ROOT / "deploy" / "entrypoint.sh"  # the container image's: each role as the image runs it
PG_BIN = max(Path("/usr/lib/postgresql").glob("*/bin"), default=Path("/usr/lib/postgresql/bin"))


def api_client(base: str, token: str, cafile: Path | None):
    """`call(method, path, body, **headers)` -> (status, JSON or text) against `base`: https
    trusting `cafile`, or plain http where it is None."""
    context = ssl.create_default_context(cafile=str(cafile)) if cafile else None

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
            "PIPELINE_SHARDS": "2",  # as compose.yaml: each run in two parts, one for each consumer host
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
            ["/usr/sbin/nginx", "-c", str(conf / "nginx.conf"), "-p", str(conf), "-g", "daemon off;"],
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
        status, answer = api_client(f"{self.proxy_url}/api", self.token, self.cert)(method, path, body, **headers)
        if status in (502, 503, 504) and not isinstance(answer, dict):
            # The proxy's own answer (the app's are JSON): what nginx said about it goes with it.
            answer = f"{answer}\nthe proxy's error log ends:\n{self.proxy_errors()}"
        return status, answer

    def proxy_errors(self, lines: int = 20) -> str:
        log = self.work / "nginx" / "error.log"
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else "(none)"

    def ready(self) -> tuple[int, object]:
        return api_client(self.proxy_url, "", self.cert)("GET", "/readyz")

    def web_answers(self, name: str) -> bool:
        """Web host `name` answers /healthz itself (not through the proxy, which needs one only)."""
        request = urllib.request.Request(  # noqa: S310 - plain http to a host this test made
            f"http://{self.h[name].address}:8000/healthz", headers={"Host": self.h["proxy"].address}
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
                return response.status == 200
        except (OSError, urllib.error.URLError):
            return False

    def wait_ready(self, timeout_s: float = 240) -> dict:
        """Ready through the proxy, and every web process answering on its own: a request sent on
        as soon as one of them is ready could reach the other while it starts (a 502 seen once
        right after /readyz answered 200)."""
        wait_for(
            lambda: all(self.web_answers(name) for name in ("web1", "web2")),
            timeout_s=timeout_s,
            what="both web processes answering /healthz",
            every_s=0.5,
            logs=self.all_logs(),
        )
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


@contextlib.contextmanager
def deployment_up(env: dict | None = None) -> Iterator[Deployment]:
    """Every role started on its own host, ready through the proxy (with `env` over the
    roles' settings); all removed afterwards (a leftover namespace or link fails it)."""
    # Not under a test's tmp_path: PostgreSQL runs as its own user, who must reach its folder.
    work = Path(tempfile.mkdtemp(prefix="shaping-hosts-"))
    work.chmod(0o755)
    deployment = Deployment(work)
    deployment.env.update(env or {})
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


def catalogue_import(deployment: Deployment, slug: str, prompts: int) -> None:
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


def generate_start(deployment: Deployment, slug: str, *, max_tokens: int = 24) -> dict:
    """A generate + judge run on `slug`'s prompts, G=4."""
    body = {"kind": "generate", "character": slug, "prompt_set": slug, "rubric": slug, "group_size": 4}
    status, run = deployment.call(
        "POST", "/runs", {**body, "max_tokens": max_tokens}, **{"Idempotency-Key": f"{slug}-{uuid.uuid4()}"}
    )
    assert status in (200, 201), run
    return run


def generate(deployment: Deployment, slug: str, prompts: int, *, max_tokens: int = 24) -> dict:
    catalogue_import(deployment, slug, prompts)
    return generate_start(deployment, slug, max_tokens=max_tokens)


def completions(deployment: Deployment, run_id: int) -> list[dict]:
    items, offset = [], 0
    while True:
        status, page = deployment.call("GET", f"/generations?run={run_id}&limit=100&offset={offset}")
        assert status == 200, page
        items += page["items"]
        offset += 100
        if offset >= page["count"]:
            return items


def ran_on(deployment: Deployment, run_id: int) -> set[str]:
    """The consumer hosts whose logs show them executing the run (or a part of it)."""
    claimed = re.compile(rf"run {run_id} \(generate\)( part \d+)?: claimed")
    return {
        name
        for name in ("worker1", "worker2")
        if deployment.log(name).exists() and claimed.search(deployment.log(name).read_text())
    }


def parts_claimed(deployment: Deployment, name: str, run_id: int) -> list[tuple[int, int]]:
    """(part, execution) of each claim of a part of the run in host `name`'s log."""
    claimed = re.compile(rf"run {run_id} \(generate\) part (\d+): claimed, execution (\d+)")
    text = deployment.log(name).read_text() if deployment.log(name).exists() else ""
    return [(int(part), int(execution)) for part, execution in claimed.findall(text)]
