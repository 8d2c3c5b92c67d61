"""The in-process backend: the engine Triton's models run, loaded into this process.

For hosts where the bundled server cannot run, and as the reference the Triton
backend is tested against (one contract suite runs on both).

Versions of the generator: `generator_dir` is version 1 and what a request without a
version gets, as on the shipped Triton repository (triton_models/ serves version 1 only).
With a `generator_dirs` resolver (version number -> its ONNX folder; the Django side reads
GeneratorVersion rows) a request for version n gets an engine over that folder, loaded once
and kept. Without one, a request for a version other than 1 fails with ModelNotReady, as
Triton answers for a version it does not serve.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from inference.backends.base import (
    GENERATOR_MODEL,
    JUDGE_MODEL,
    Capabilities,
    GenerateRequest,
    Health,
    JudgeRequest,
    OnDelta,
)
from inference.engine import Completion, Engine, SamplingParams, open_engine
from inference.errors import ModelNotReady
from inference.judging import JudgeResult, run_judge

# How long a model's answer to the health probe counts (in seconds): probes more often than
# this (a load balancer's every few seconds) cost nothing.
PROBE_TTL_S = 30.0
PROBE = SamplingParams(max_tokens=1, temperature=0.0, seed=0)


class InProcessBackend:
    name = "inprocess"
    capabilities = Capabilities()

    def __init__(
        self,
        generator_dir: str | Path,
        judge_dir: str | Path | None = None,
        *,
        generator_dirs: Callable[[int], Path] | None = None,
        default_version: Callable[[], int | None] | None = None,
    ):
        self.generator_dir = Path(generator_dir)
        # Names the version of a request that names none (the Django side: the current one).
        self.default_version = default_version
        self.judge_dir = Path(judge_dir or generator_dir)
        # Called for every request that names a version: it may raise LookupError (or return
        # None) for a version that is not served.
        self.generator_dirs = generator_dirs
        self._engines: dict[Path, Engine] = {}
        self._lock = threading.Lock()
        # Per model folder: (monotonic time of the probe, its failure or "" for an answer).
        self._probed: dict[Path, tuple[float, str]] = {}

    def _engine(self, model_dir: Path) -> Engine:
        with self._lock:  # load each model once, lazily
            if model_dir not in self._engines:
                self._engines[model_dir] = open_engine(model_dir)
            return self._engines[model_dir]

    def generate(self, request: GenerateRequest, on_delta: OnDelta | None = None) -> list[Completion]:
        def on_step(pieces: dict[int, str]) -> None:
            for index, piece in pieces.items():
                on_delta(index, piece)

        request.params.validate()
        return self._generator(request.model_version).generate(
            messages=request.messages,
            prompt=request.prompt,
            params=request.params,
            on_step=on_step if on_delta else None,
            client=request.client,
            priority=request.priority,
        )

    def _generator(self, version: int | None) -> Engine:
        if version is None and self.default_version is not None:
            version = self.default_version()
        if version is None:
            return self._engine(self.generator_dir)
        not_loaded = f"version {version} of {GENERATOR_MODEL} is not loaded"
        if self.generator_dirs is None:
            if version != 1:
                raise ModelNotReady(f"{not_loaded} (in process without a version resolver, only version 1 is)")
            return self._engine(self.generator_dir)
        try:
            model_dir = self.generator_dirs(version)
        except LookupError as exc:
            raise ModelNotReady(f"{not_loaded} ({exc})") from None
        if model_dir is None:
            raise ModelNotReady(not_loaded)
        model_dir = Path(model_dir)
        if not (model_dir / "genai_config.json").is_file():
            raise ModelNotReady(f"{not_loaded}: no model at {model_dir}")
        try:
            return self._engine(model_dir)
        except Exception as exc:  # what Triton says of a version that fails to load
            raise ModelNotReady(f"version {version} of {GENERATOR_MODEL} failed to load: {exc}") from exc

    def judge(self, request: JudgeRequest) -> JudgeResult:
        return run_judge(
            self._engine(self.judge_dir),
            request.rubric,
            request.messages,
            request.completion,
            seed=request.seed,
            client=request.client,
            priority=request.priority,
        )

    def health(self) -> Health:
        """A model is ready when it answers: its engine loads in this process and gives one
        token for a one-word prompt. An answer counts for PROBE_TTL_S."""
        models = {}
        detail = []
        for name, path in ((GENERATOR_MODEL, self.generator_dir), (JUDGE_MODEL, self.judge_dir)):
            failure = self._probe(path)
            models[name] = not failure
            if failure:
                detail.append(f"{name}: {failure}")
        with self._lock:
            loaded = dict(self._engines)
        engines = {
            name: loaded[path].stats()
            for name, path in ((GENERATOR_MODEL, self.generator_dir), (JUDGE_MODEL, self.judge_dir))
            if path in loaded
        }
        return Health(self.name, str(self.generator_dir), True, models, "; ".join(detail), engines)

    def _probe(self, path: Path) -> str:
        """Why the model in `path` does not answer ("" when it does), asked at most every
        PROBE_TTL_S: a model that failed is asked again after as long, not at every probe."""
        now = time.monotonic()
        with self._lock:
            probed = self._probed.get(path)
        if probed is not None and now - probed[0] < PROBE_TTL_S:
            return probed[1]
        if not (path / "genai_config.json").is_file():
            failure = f"no model at {path}"
        else:
            try:
                answer = self._engine(path).generate(prompt="Hello", params=PROBE)
                failure = "" if len(answer) == 1 else f"it gave {len(answer)} answers to one request"
            except Exception as exc:
                failure = f"it does not answer ({type(exc).__name__}: {exc})"
        with self._lock:
            self._probed[path] = (now, failure)
        return failure

    def close(self) -> None:
        with self._lock:
            engines, self._engines = self._engines, {}
        for engine in engines.values():
            engine.close()
