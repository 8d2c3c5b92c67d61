"""Generation on onnxruntime-genai's runtime, for models exported for an accelerator.

A model built with `build_model --target cuda` names its execution provider in
genai_config.json; onnxruntime-genai keeps its cache on the device, which the batching
engine (inference/engine/cpu.py, numpy caches between steps) would copy every step. Each call
decodes its n sequences as one static batch; calls do not batch with each other.
`inference.engine.open_engine` picks this class for such models.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

from inference.engine.chat_template import ChatTemplate
from inference.engine.contract import Completion, OnStep, SamplingParams, SequenceText, checked_prompt
from inference.errors import InvalidRequest


class StaticEngine:
    """One loaded model on onnxruntime-genai's own runtime, each call decoding its n
    sequences as one static batch in a generator of its own (calls do not batch with each
    other). For models exported for an accelerator (genai_config names a provider), whose
    cache must stay on the device. Thread-safe."""

    def __init__(self, model_dir: str | Path, threads: int | None = None, limits=None):
        import onnxruntime_genai as og  # imported here so importing this module stays cheap

        self.og = og
        self.model_dir = Path(model_dir)
        if not (self.model_dir / "genai_config.json").is_file():
            raise FileNotFoundError(f"{self.model_dir} is not an onnxruntime-genai model (no genai_config.json)")
        config = json.loads((self.model_dir / "genai_config.json").read_text())
        self.context_length = int(config["model"]["context_length"])
        self.chat_template = ChatTemplate.from_model_dir(self.model_dir)
        og_config = og.Config(str(self.model_dir))
        # onnxruntime's default thread count left one of two cores idle here (measured:
        # bench/bench_inference.py); use every core unless told otherwise (`open_engine` passes
        # INFERENCE_THREADS).
        threads = threads or os.cpu_count() or 1
        og_config.overlay(json.dumps({"model": {"decoder": {"session_options": {"intra_op_num_threads": threads}}}}))
        self.threads = threads
        self.model = og.Model(og_config)
        self.tokenizer = og.Tokenizer(self.model)
        self.eos_ids = {int(t) for t in np.atleast_1d(self.tokenizer.eos_token_ids)}

    def stats(self) -> dict:
        return {}

    def close(self) -> None:
        pass

    def encode(self, text: str) -> np.ndarray:
        return np.asarray(self.tokenizer.encode(text), dtype=np.int32)

    def generate(
        self,
        *,
        messages: list[dict] | None = None,
        prompt: str | None = None,
        params: SamplingParams,
        on_step: OnStep | None = None,
        is_cancelled: Callable[[], bool] = lambda: False,
        client: str = "",
        priority: str = "",
    ) -> list[Completion]:
        """n completions of one prompt, generated as one batch. `on_step({index: piece})` is
        called after each decoding step that produced text; `is_cancelled()` is polled
        before each step and ends every sequence with finish_reason "cancelled"."""
        tokens = checked_prompt(self, messages=messages, prompt=prompt, params=params)
        if params.guidance_type and params.n > 1:
            # onnxruntime-genai 0.18 fails a guided batch as soon as one sequence's grammar has
            # finished while another's has not ("compute_mask() called after stop"), so each
            # guided sequence decodes on a generator of its own (seeded seed + its index), the
            # generators stepped in turn.
            lanes = [
                self._generator(tokens, replace(params, n=1, seed=None if params.seed is None else params.seed + i))
                for i in range(params.n)
            ]
        else:
            lanes = [self._generator(tokens, params)]
        return self._decode_loop(lanes, len(tokens), params, on_step, is_cancelled)

    def _generator(self, tokens: np.ndarray, params: SamplingParams):
        og = self.og
        gp = og.GeneratorParams(self.model)
        options = {
            "batch_size": params.n,
            "max_length": len(tokens) + params.max_tokens,
            "do_sample": params.temperature > 0,
            "temperature": max(params.temperature, 1e-5),
            "top_p": params.top_p,
            "top_k": params.top_k,
        }
        if params.seed is not None:
            options["random_seed"] = params.seed
        gp.set_search_options(**options)
        if params.guidance_type:
            try:
                gp.set_guidance(params.guidance_type, params.guidance)
            except Exception as exc:  # llguidance refuses what it cannot compile
                raise InvalidRequest(f"guidance: {exc}") from None
        generator = og.Generator(self.model, gp)
        try:
            generator.append_tokens(np.tile(tokens, (params.n, 1)))
        except Exception as exc:
            raise InvalidRequest(f"guidance: {exc}") from None
        return generator

    def _decode_loop(self, lanes: list, prompt_tokens: int, params: SamplingParams, on_step, is_cancelled):
        """Decode every sequence to its end. `lanes` are generators sharing the n sequences in
        order (one generator of n, or n generators of one); each takes a step while one of its
        sequences is unfinished."""
        n = params.n
        rows = n // len(lanes)
        seqs = [SequenceText(self.tokenizer.create_stream()) for _ in range(n)]
        while not all(s.finish for s in seqs):
            if is_cancelled():
                for s in seqs:
                    s.finish = s.finish or "cancelled"
                break
            pieces = {}
            for lane, generator in enumerate(lanes):
                mine = range(lane * rows, (lane + 1) * rows)
                if all(seqs[i].finish for i in mine):
                    continue
                if generator.is_done():
                    for i in mine:
                        seqs[i].finish = seqs[i].finish or "length"
                    continue
                generator.generate_next_token()
                next_tokens = generator.get_next_tokens()
                for row, i in enumerate(mine):
                    if not seqs[i].finish and (piece := seqs[i].push(int(next_tokens[row]), params, self.eos_ids)):
                        pieces[i] = piece
            if pieces and on_step:
                on_step(pieces)
        return [s.completion(i, prompt_tokens) for i, s in enumerate(seqs)]
