"""The in-process backend: the engine Triton's models run, loaded into this process.

For hosts where the bundled server cannot run, and as the reference the Triton
backend is tested against (one contract suite runs on both).
"""

from __future__ import annotations

import threading
from pathlib import Path

from inference.backends.base import (
    GENERATOR_MODEL,
    JUDGE_MODEL,
    GenerateRequest,
    Health,
    JudgeRequest,
    OnDelta,
)
from inference.engine import Completion, Engine
from inference.judging import JudgeResult, run_judge


class InProcessBackend:
    name = "inprocess"

    def __init__(self, generator_dir: str | Path, judge_dir: str | Path | None = None):
        self.generator_dir = Path(generator_dir)
        self.judge_dir = Path(judge_dir or generator_dir)
        self._engines: dict[Path, Engine] = {}
        self._lock = threading.Lock()

    def _engine(self, model_dir: Path) -> Engine:
        with self._lock:  # load each model once, lazily
            if model_dir not in self._engines:
                self._engines[model_dir] = Engine(model_dir)
            return self._engines[model_dir]

    def generate(self, request: GenerateRequest, on_delta: OnDelta | None = None) -> list[Completion]:
        def on_step(pieces: dict[int, str]) -> None:
            for index, piece in pieces.items():
                on_delta(index, piece)

        request.params.validate()
        return self._engine(self.generator_dir).generate(
            messages=request.messages,
            prompt=request.prompt,
            params=request.params,
            on_step=on_step if on_delta else None,
        )

    def judge(self, request: JudgeRequest) -> JudgeResult:
        return run_judge(
            self._engine(self.judge_dir), request.rubric, request.messages, request.completion, seed=request.seed
        )

    def health(self) -> Health:
        models = {}
        detail = []
        for name, path in ((GENERATOR_MODEL, self.generator_dir), (JUDGE_MODEL, self.judge_dir)):
            models[name] = (path / "genai_config.json").is_file()
            if not models[name]:
                detail.append(f"{name}: no model at {path}")
        return Health(self.name, str(self.generator_dir), True, models, "; ".join(detail))

    def close(self) -> None:
        with self._lock:
            self._engines.clear()
