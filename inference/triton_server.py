"""Start, watch and stop the tritonserver bundled in the nvidia-pytriton wheel (Triton 2.51, CPU).

What it takes (checked on this project's machines):
- a backend directory whose `python/` holds the wheel's Python backend plus the stub
  built for the running Python version, copied in as `triton_python_backend_stub`;
- LD_LIBRARY_PATH with this interpreter's own libpython directory first, then the
  wheel's bundled libraries (nvidia_pytriton.libs);
- this virtualenv's bin first on PATH: the stub's embedded Python is isolated (it
  ignores PYTHONPATH) and takes its prefix from the `python3` it finds there, so it
  uses this environment's packages (numpy<2 matters) rather than the base install's;
- PYTHONPATH with the project root and site-packages, which model.py puts on
  sys.path itself (for containers where the packages live elsewhere).

On the shipped repository (triton_models/) the server loads every model at start and
nothing after. On a generated one (inference/versions/repository.py: several versions of the
generator side by side) it runs with explicit model control, so that `model_load` makes it
serve a new set of versions without a restart.

Free of Django: `manage.py triton`, the test fixture and the benchmarks use it.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
MODEL_REPOSITORY = PROJECT_ROOT / "triton_models"
MODELS = ("qwen3", "judge")


class TritonStartError(RuntimeError):
    pass


class ModelLoadError(RuntimeError):
    """The server could not (re)load a model, or a version of it: the message says why."""


def wheel_dir() -> Path:
    try:
        import pytriton
    except ImportError as exc:  # pragma: no cover - a dependency of the project
        raise TritonStartError("nvidia-pytriton is not installed: pip install -e .") from exc
    return Path(pytriton.__file__).parent / "tritonserver"


def prepare_backend_dir(target: Path) -> Path:
    """`target/python/` = the wheel's Python backend + the stub for this Python."""
    source = wheel_dir()
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = source / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise TritonStartError(f"the bundled Triton has no Python-backend stub for Python {version}")
    python_dir = target / "python"
    python_dir.mkdir(parents=True, exist_ok=True)
    for item in (source / "backends" / "python").iterdir():
        if item.is_file():
            _replace(item, python_dir / item.name)
    _replace(stub, python_dir / "triton_python_backend_stub")
    return target


def _replace(source: Path, target: Path) -> None:
    """Copy `source` to `target` under another name, then rename it into place: a tritonserver
    still running the old stub (another Triton host on the shared volume, or one not yet gone
    on a restart) keeps its file, where writing into it would fail ("Text file busy"), and a
    copy left read-only by an earlier start is replaced, not opened for writing."""
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    shutil.copy2(source, partial)
    os.replace(partial, target)


def server_env(generator_dir: Path | None = None, judge_dir: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    # Beside the pytriton package, wherever it is installed (this environment's site-packages,
    # a --target folder, a path a .pth file adds).
    libs = wheel_dir().parent.parent / "nvidia_pytriton.libs"
    lib_path = [sysconfig.get_config_var("LIBDIR") or "", str(libs), env.get("LD_LIBRARY_PATH", "")]
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in lib_path if p)
    # The stub embeds Python with an isolated config: it ignores PYTHONPATH and finds its
    # prefix through the `python3` on PATH. This environment's bin first makes it use this
    # virtualenv's site-packages (numpy<2, onnxruntime-genai) instead of the base install's.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    py_path = [str(PROJECT_ROOT), sysconfig.get_paths()["purelib"], env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in py_path if p)
    if generator_dir:
        env["SHAPING_GENERATOR_MODEL_DIR"] = str(generator_dir)
    if judge_dir:
        env["SHAPING_JUDGE_MODEL_DIR"] = str(judge_dir)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class TritonProcess:
    """One tritonserver, on loopback unless `address` says otherwise (a Triton host of its own
    serving other hosts). `start()` returns once every model is ready."""

    work_dir: Path
    grpc_port: int = 8001
    address: str = "127.0.0.1"  # what gRPC listens on
    metrics_port: int = 8002
    generator_dir: Path | None = None
    judge_dir: Path | None = None
    model_repository: Path = MODEL_REPOSITORY
    models: tuple[str, ...] = MODELS
    log_path: Path | None = None
    extra_args: list[str] = field(default_factory=list)
    # Explicit model control (load `models` at start, later loads through `model_load`).
    # None: explicit for a generated repository, i.e. any but the shipped triton_models/.
    explicit: bool | None = None
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        # Listening on every address: this machine reaches it on loopback.
        host = "127.0.0.1" if self.address in ("0.0.0.0", "::", "") else self.address  # noqa: S104
        return f"[{host}]:{self.grpc_port}" if ":" in host else f"{host}:{self.grpc_port}"

    @property
    def model_control_explicit(self) -> bool:
        if self.explicit is not None:
            return self.explicit
        return Path(self.model_repository).resolve() != MODEL_REPOSITORY.resolve()

    def command(self) -> list[str]:
        backend_dir = prepare_backend_dir(Path(self.work_dir) / "backends")
        control = ["--exit-on-error=true"]
        if self.model_control_explicit:
            # A model that fails to load at start must not take the server down: the others
            # serve, and a later `model_load` can mend it without a restart. (Triton 2.51 loads
            # a model's versions all or nothing at start: one broken version folder leaves the
            # generator unavailable. `wait_ready` says which.) And with strict readiness, one
            # version that ever failed to load keeps the server "not ready" until it restarts,
            # even once that version is removed: readiness is each model's (wait_ready and
            # TritonBackend.health ask each model).
            control = [
                "--exit-on-error=false",
                "--strict-readiness=false",
                "--model-control-mode=explicit",
                *(f"--load-model={m}" for m in self.models),
            ]
        return [
            str(wheel_dir() / "bin" / "tritonserver"),
            f"--model-repository={self.model_repository}",
            f"--backend-directory={backend_dir}",
            "--allow-http=false",  # the app speaks gRPC; no port to collide with the web server
            f"--grpc-address={self.address}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-port={self.metrics_port}",
            "--allow-metrics=false",
            "--allow-gpu-metrics=false",
            "--log-verbose=0",
            *control,
            *self.extra_args,
        ]

    def start(self, timeout_s: float = 120.0, *, wait: bool = True) -> TritonProcess:
        """Start the server; with `wait`, return once every model is ready (else at once)."""
        Path(self.work_dir).mkdir(parents=True, exist_ok=True)
        log_path = self.log_path or Path(self.work_dir) / "tritonserver.log"
        log = open(log_path, "ab")  # noqa: SIM115 - the child owns it while it runs
        self.process = subprocess.Popen(
            self.command(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=server_env(self.generator_dir, self.judge_dir),
            cwd=PROJECT_ROOT,
        )
        log.close()
        self.log_path = log_path
        if not wait:
            return self
        try:
            self.wait_ready(timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ready(self, timeout_s: float) -> None:
        import tritonclient.grpc as grpcclient

        deadline = time.monotonic() + timeout_s
        client = grpcclient.InferenceServerClient(self.url)
        try:
            while time.monotonic() < deadline:
                if self.process is not None and self.process.poll() is not None:
                    raise TritonStartError(
                        f"tritonserver exited with code {self.process.returncode}:\n{self.log_tail()}"
                    )
                failed = ""
                try:
                    if client.is_server_ready() and all(client.is_model_ready(m) for m in self.models):
                        return
                    if self.model_control_explicit:
                        failed = _failed_loads(client, self.models)
                except Exception:  # noqa: S110 - not listening yet
                    pass
                if failed:
                    raise TritonStartError(f"tritonserver could not load {failed}")
                time.sleep(0.2)
        finally:
            client.close()
        raise TritonStartError(f"tritonserver not ready after {timeout_s:.0f}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path or not Path(self.log_path).exists():
            return ""
        return "\n".join(Path(self.log_path).read_text(errors="replace").splitlines()[-lines:])

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM (Triton finishes in-flight requests), then SIGKILL the whole group."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """Die now, stubs included: what a crash looks like to clients."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


# --- a running server's models (explicit model control) -----------------------------------


def model_load(url: str, model: str, versions: list[int], timeout_s: float = 120.0) -> None:
    """Have the server at `url` (re)load `model` from its repository, and return once each of
    `versions` is ready. Versions no longer in the repository are unloaded; those still there
    keep answering meanwhile. Raises ModelLoadError with what the server said if the load
    fails (a version that does not load fails it: the others keep serving), or if a listed
    version is not ready within `timeout_s`."""
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    deadline = time.monotonic() + timeout_s
    client = grpcclient.InferenceServerClient(url)
    try:
        try:
            # Returns once the load is over, the versions that loaded serving.
            client.load_model(model, client_timeout=timeout_s)
        except InferenceServerException as exc:
            # Triton 2.51 names the version and its error: "load failed for model 'qwen3':
            # version 3 is at UNAVAILABLE state: Internal: RuntimeError: ...". The index keeps
            # failures of versions removed since, so its reasons are no guide to this load.
            try:
                ready = [n for n in _version_states(client, model) if client.is_model_ready(model, str(n))]
                serving = ", ".join(map(str, ready)) or "none"
            except InferenceServerException:
                serving = "unknown"
            said = _without_traceback(_server_message(exc)).rstrip(";")
            if f"'{model}'" not in said:  # not the server's verdict on the load (unreachable, timed out)
                said = f"could not load {model}: {said}"
            raise ModelLoadError(f"{said} (serving version(s): {serving})") from None
        while True:
            waiting = [n for n in versions if not client.is_model_ready(model, str(n))]
            if not waiting:
                return
            states = _version_states(client, model)
            missing = [n for n in waiting if n not in states]
            if missing:
                raise ModelLoadError(f"{model} has no version {', '.join(map(str, missing))} in its repository")
            if time.monotonic() >= deadline:
                described = (f"version {n}: {' '.join(filter(None, states[n]))}" for n in waiting)
                raise ModelLoadError(f"{model} not ready after {timeout_s:.0f}s: {'; '.join(described)}")
            time.sleep(0.2)
    finally:
        client.close()


def model_versions_ready(url: str, model: str) -> list[int]:
    """The versions of `model` the server at `url` is serving now, in order."""
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url)
    try:
        return [n for n in _version_states(client, model) if client.is_model_ready(model, str(n))]
    finally:
        client.close()


def _version_states(client, model: str) -> dict[int, tuple[str, str]]:
    """{version: (state, reason)} of `model` from the repository index (READY, UNAVAILABLE,
    LOADING, UNLOADING; the reason of a failed load without the Python traceback)."""
    states = {}
    for entry in client.get_model_repository_index(as_json=True).get("models", []):
        if entry.get("name") == model and str(entry.get("version", "")).isdigit():
            reason = _without_traceback(entry.get("reason", ""))
            states[int(entry["version"])] = (entry.get("state", ""), reason)
    return dict(sorted(states.items()))


def _failed_loads(client, models: tuple[str, ...]) -> str:
    """'qwen3 (version 3: <reason>)' for each of `models` whose load is over without a version
    serving; '' while they load or if they serve."""
    failed = []
    for model in models:
        states = _version_states(client, model)
        if not states or any(state in ("READY", "LOADING") for state, _ in states.values()):
            continue
        reasons = [f"version {n}: {reason}" for n, (_, reason) in states.items() if reason and reason != "unloaded"]
        if reasons:
            failed.append(f"{model} ({'; '.join(reasons)})")
    return ", ".join(failed)


def _server_message(exc: BaseException) -> str:
    message = getattr(exc, "message", None)
    return (message() if callable(message) else str(exc)) or type(exc).__name__


def _without_traceback(message: str) -> str:
    """A Python-backend error without the "At: <file>(<line>)" lines the stub appends."""
    return re.sub(r"\n+At:\n(?:[ \t]+.*\n?)*", "", message).strip()
