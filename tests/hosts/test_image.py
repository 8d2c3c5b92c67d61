"""The container image under a container runtime: Debian's podman (daemonless: this machine runs
no Docker engine) builds the Dockerfile's `app` target and runs its roles as compose.yaml does:
`migrate` once, then `triton`, `pipeline` and `web`, each its own container, as the image's
non-root user, in production mode, on one shared volume, against PostgreSQL and Redis. Through
the web container's API a generate + judge run goes through the pipeline container and the
Triton container; the Triton container restarted on the same volume serves again.

Offline: the Dockerfile's base, python:3.11-slim-bookworm, cannot be pulled here, so a local
image of that name is made first (tests/hosts/python-base.Containerfile: Debian bookworm from its
own archive, with Debian's Python 3.11); the Dockerfile is built unchanged. This machine's
sandbox refuses crun's cgroup setup and rlimits above its own, hence runc, cgroupfs and the
explicit limits. Root only; containers, the app image and the database are removed at the end."""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from bench import hosts

ROOT = Path(__file__).resolve().parents[2]
PODMAN = ["podman", "--runtime", "runc", "--cgroup-manager", "cgroupfs"]
LIMITS = ["--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096"]
BASE = "docker.io/library/python:3.11-slim-bookworm"
ROOTFS = "localhost/shaping-bookworm-rootfs:latest"
APP_UID = 10001  # the Dockerfile's user

pytestmark = [pytest.mark.hosts, pytest.mark.slow, pytest.mark.timeout(1800)]


def podman(*args: str, timeout: float = 900, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([*PODMAN, *args], capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(f"podman {' '.join(args[:3])} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done


def base_stand_in(work: Path) -> None:
    """python:3.11-slim-bookworm, made here once and kept for the next run (made again when its
    Containerfile has changed: the image carries the file's hash)."""
    containerfile = ROOT / "tests" / "hosts" / "python-base.Containerfile"
    made_from = hashlib.sha256(containerfile.read_bytes()).hexdigest()[:16]
    label = podman("image", "inspect", BASE, "--format", '{{index .Labels "shaping.stand-in"}}', check=False)
    if label.returncode == 0 and label.stdout.strip() == made_from:
        return
    if podman("image", "exists", ROOTFS, check=False).returncode != 0:
        rootfs = work / "rootfs"
        subprocess.run(
            ["debootstrap", "--variant=minbase", "bookworm", str(rootfs), "http://deb.debian.org/debian"],
            check=True,
            capture_output=True,
            timeout=900,
        )
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        imported = subprocess.run([*PODMAN, "import", "-", ROOTFS], stdin=tar.stdout, capture_output=True, text=True)
        tar.wait()
        assert imported.returncode == 0, imported.stderr
        shutil.rmtree(rootfs, ignore_errors=True)
    context = work / "base"
    context.mkdir()
    shutil.copy(containerfile, context / "Containerfile")
    shutil.copy("/etc/ssl/certs/ca-certificates.crt", context / "ca-certificates.crt")
    podman("build", *LIMITS, "--label", f"shaping.stand-in={made_from}", "-t", BASE, str(context))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Stack:
    """The roles' containers on the host's network, the shared volume a folder of this machine."""

    def __init__(self, image: str, work: Path):
        self.image, self.tag = image, uuid.uuid4().hex[:8]
        self.volume = work / "data"
        self.volume.mkdir()
        os.chown(self.volume, APP_UID, APP_UID)
        self.database = f"shaping_image_{self.tag}"
        self.port, triton_port = free_port(), free_port()
        self.env = {
            "DEBUG": "0",
            "SECRET_KEY": secrets.token_urlsafe(48),
            "ALLOWED_HOSTS": "127.0.0.1",
            "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{self.database}",
            "REDIS_URL": "redis://127.0.0.1:6379/0",
            "HUEY_NAME": f"shaping-image-{self.tag}",
            "PORT": str(self.port),
            "TRITON_PORT": str(triton_port),
            "TRITON_URL": f"127.0.0.1:{triton_port}",
            "READY_QUEUES": "pipeline",
        }
        self.names: list[str] = []
        self.token = ""

    def options(self) -> list[str]:
        env = [arg for key, value in self.env.items() for arg in ("-e", f"{key}={value}")]
        return ["--network", "host", *LIMITS, *env, "-v", f"{self.volume}:/data"]

    def once(self, *command: str) -> str:
        return podman("run", "--rm", *self.options(), self.image, *command, timeout=600).stdout

    def start(self, role: str) -> None:
        name = f"shaping-{role}-{self.tag}"
        podman("run", "-d", "--name", name, *self.options(), self.image, role)
        if name not in self.names:
            self.names.append(name)

    def remove(self, role: str) -> None:
        podman("rm", "-f", "-t", "10", f"shaping-{role}-{self.tag}", check=False)

    def logs(self) -> str:
        return "\n".join(
            f"--- {name}\n" + podman("logs", "--tail", "30", name, check=False).stderr[-3000:] for name in self.names
        )

    def call(self, method: str, path: str, body=None, **headers):
        """The API (`path` under /api/), as bench/hosts.py's helpers call a deployment's."""
        return self.request(method, f"/api{path}", body, **headers)

    def request(self, method: str, path: str, body=None, **headers):
        # As the proxy sends it: the app in production mode redirects plain http otherwise.
        call = hosts.api_client(f"http://127.0.0.1:{self.port}", self.token, None)
        try:
            return call(method, path, body, **{"X-Forwarded-Proto": "https", **headers})
        except OSError as error:  # not listening yet
            return 0, str(error)

    def ready(self, timeout_s: float = 300) -> dict:
        deadline = time.monotonic() + timeout_s
        answer: object = None
        while time.monotonic() < deadline:
            status, answer = self.request("GET", "/readyz")
            if status == 200:
                return answer
            time.sleep(2)
        raise AssertionError(f"/readyz never answered 200; last: {answer}\n{self.logs()}")


def psql(sql: str) -> None:
    subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", sql], check=True, capture_output=True)


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    for tool in ("podman", "runc", "debootstrap"):
        assert shutil.which(tool), f"{tool} is missing: apt-get install podman runc debootstrap (make test does)"
    work = tmp_path_factory.mktemp("image")
    base_stand_in(work)
    tag = f"localhost/shaping:test-{uuid.uuid4().hex[:8]}"
    podman("build", "--pull=never", *LIMITS, "--target", "app", "-t", tag, str(ROOT), timeout=1200)
    yield tag
    podman("rmi", "-f", tag, check=False)
    podman("image", "prune", "-f", check=False)  # the build's untagged layers (about 1 GB)


@pytest.fixture
def stack(image, tmp_path):
    stack = Stack(image, tmp_path)
    psql(f"CREATE DATABASE {stack.database}")
    try:
        yield stack
    finally:
        for name in stack.names:
            podman("rm", "-f", "-t", "10", name, check=False)
        psql(f"DROP DATABASE IF EXISTS {stack.database} WITH (FORCE)")
        shutil.rmtree(stack.volume, ignore_errors=True)
        left = podman("ps", "-a", "--format", "{{.Names}}", check=False).stdout
        assert stack.tag not in left, left


def test_the_image_runs_each_role_in_its_own_container(stack):
    stack.once("migrate")
    stack.once("manage", "create_user", "ada", "--role", "admin")
    stack.token = stack.once("manage", "create_token", "ada").strip().split()[-1]
    for role in ("triton", "pipeline", "web"):
        stack.start(role)
    ready = stack.ready()
    assert ready["models"] == {"qwen3": True, "judge": True} and ready["consumers"] == {"pipeline": True}

    # Every role runs as the image's own user, and what it wrote on the volume is that user's.
    web = f"shaping-web-{stack.tag}"
    assert podman("exec", web, "id", "-u").stdout.strip() == str(APP_UID)
    assert {path.stat().st_uid for path in stack.volume.rglob("*")} == {APP_UID}

    # A generate + judge run, started through the web container, done by the pipeline container
    # with the Triton container's models.
    hosts.catalogue_import(stack, "image", 3)
    run = hosts.generate_start(stack, "image", max_tokens=16)
    finished = wait_run(stack, run["id"])
    assert (finished["status"], finished["done_items"], finished["failed_items"]) == ("succeeded", 3, 0), finished
    status, page = stack.call("GET", f"/generations?run={run['id']}&limit=100")
    assert status == 200 and page["count"] == 12

    # Triton's container replaced on the same volume (a restart, an upgrade): it serves again.
    stack.remove("triton")
    stack.start("triton")
    ready = stack.ready()
    assert ready["models"] == {"qwen3": True, "judge": True}


def test_the_entrypoint_refuses_an_unknown_role(image):
    done = podman("run", "--rm", *LIMITS, image, "webb", check=False)
    assert done.returncode == 64 and "unknown role 'webb'" in done.stderr


def wait_run(stack: Stack, run_id: int, timeout_s: float = 300) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status, run = stack.call("GET", f"/runs/{run_id}")
        if status == 200 and run["status"] in ("succeeded", "partial", "failed", "cancelled"):
            return run
        time.sleep(1)
    raise AssertionError(f"run {run_id} did not finish\n{stack.logs()}")
