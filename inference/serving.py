"""Which backend serves a request: the one the settings name (one instance per process), one
per OpenAI-compatible endpoint a run names (`backend_for`), and a run's pair of them
(`backends_for_run`). Above both `inference.backends` (the runtimes' clients) and
`inference.versions` (which generator versions are served): it wires one to the other.

`generator_dirs` (version number -> that version's ONNX folder) is how the in-process
backend serves requests that name a generator version; Triton ignores it (the server serves
the versions of its repository, inference/versions/repository.py).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from inference.backends.base import Backend

_backend: Backend | None = None
_endpoints: dict[str, Backend] = {}
_lock = threading.Lock()


def make_backend(name: str | None = None, *, generator_dirs: Callable[[int], Path] | None = None) -> Backend:
    """The backend the settings name. Generator versions come from the rows (inference.versions.served):
    a request that names no version gets the current one, and the in-process backend finds a
    version's ONNX folder there unless `generator_dirs` says otherwise."""
    from django.conf import settings

    from inference.versions import served as served_versions

    name = name or settings.INFERENCE_BACKEND
    if name == "triton":
        from inference.backends.triton import TritonBackend

        return TritonBackend(
            settings.TRITON_URL, timeout_s=settings.INFERENCE_TIMEOUT_S, default_version=served_versions.current_version
        )
    if name == "inprocess":
        from inference.backends.inprocess import InProcessBackend
        from labelling.versions.generators.selectors import judge_model_dir

        return InProcessBackend(
            served_versions.base_dir(),
            judge_model_dir(),
            generator_dirs=generator_dirs or served_versions.version_dir,
            default_version=served_versions.current_version,
        )
    raise ValueError(f"unknown inference backend {name!r} (triton or inprocess)")


def get_backend(*, generator_dirs: Callable[[int], Path] | None = None) -> Backend:
    """The shared backend; `generator_dirs` goes to it when this call is the one that makes it."""
    global _backend
    with _lock:
        if _backend is None:
            _backend = make_backend(generator_dirs=generator_dirs)
        return _backend


def endpoint_named(name: str):
    """The settings' OpenAI-compatible endpoint of that name; LookupError naming those there are."""
    from django.conf import settings

    endpoint = settings.OPENAI_ENDPOINTS.get(name)
    if endpoint is None:
        configured = ", ".join(sorted(settings.OPENAI_ENDPOINTS)) or "none"
        raise LookupError(f"no endpoint {name!r} is configured (OPENAI_ENDPOINTS: {configured})")
    return endpoint


def backend_for(endpoint: str | None) -> Backend:
    """The backend of an endpoint a run names (one per name per process: its client, connections
    and concurrency limit are shared by every run); None: the default backend."""
    if not endpoint:
        return get_backend()
    with _lock:
        if endpoint not in _endpoints:
            from inference.backends.openai import OpenAIBackend

            _endpoints[endpoint] = OpenAIBackend(endpoint_named(endpoint))
        return _endpoints[endpoint]


class RunBackends:
    """A run's two backends behind the one interface the task manager drives: it generates
    through one and judges through the other."""

    def __init__(self, generator: Backend, judge: Backend):
        self.generator, self.judge_backend = generator, judge
        self.name = generator.name if generator is judge else f"{generator.name}+{judge.name}"
        self.capabilities = generator.capabilities

    def generate(self, request, on_delta=None):
        return self.generator.generate(request, on_delta=on_delta)

    def judge(self, request):
        return self.judge_backend.judge(request)

    def health(self):
        return self.generator.health()

    def close(self) -> None:
        """Nothing: both are shared (`backend_for`)."""


def backends_for_run(params: dict) -> RunBackends:
    """The backends a run's params name: `generator_endpoint`, `judge_endpoint` (absent: the default)."""
    return RunBackends(backend_for(params.get("generator_endpoint")), backend_for(params.get("judge_endpoint")))


def reset_backend() -> None:
    """Forget the shared backends (settings changed, tests)."""
    global _backend
    with _lock:
        for backend in [_backend, *_endpoints.values()]:
            if backend is not None:
                backend.close()
        _backend = None
        _endpoints.clear()
