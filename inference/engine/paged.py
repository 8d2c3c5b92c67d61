"""Continuous batching on onnxruntime-genai's own engine (`og.Engine`), for GPU exports.

A model built with `build_model --target cuda --paged-attention` has PagedAttention in its
graph and an `engine.dynamic_batching` section in genai_config.json: onnxruntime-genai's
engine then schedules every request's tokens into one step, requests joining and leaving
between steps, with the cache in fixed-size blocks on the device. This class puts that
engine behind the project's `generate` contract, as inference/engine/cpu.py does for CPU
exports with the project's own batcher.

One driver thread owns the og.Engine: it begins each admitted sequence as an og request
(one per completion: n requests for a group of n, seeded seed + i), runs the engine's
steps and hands each token to its caller's queue. The caller's thread decodes the text,
applies stop strings (cutting the text as the other engines do, then cancelling the
sequence's turn) and streams the pieces. Admission is the CPU batcher's: interactive
requests first, then one request per client in turn, while `max_batch` sequences are in
flight; the rest wait in a bounded queue (full: `EngineBusy`).

Errors stay with their request: guidance that does not compile fails that request at
`begin_turn`; a sequence the engine fails fails its request; a failed engine step fails
the requests in flight and the driver goes on.

onnxruntime-genai's engine without dynamic batching (any build without paged attention,
which is every CPU build) runs a static scheduler of up to 4 sequences and refuses
per-request seeds: `open_engine` uses this class only for paged-attention builds. The
tests run it on the tiny CPU model to check the plumbing; bench/bench_gpu.py measures it
where it is meant to run.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from inference.engine.chat_template import ChatTemplate
from inference.engine.contract import POLL_S, Completion, Limits, OnStep, SamplingParams, SequenceText, checked_prompt
from inference.engine.fair_queue import FairQueue, tokens_per_s
from inference.errors import InferenceError, InvalidRequest

log = logging.getLogger("shaping.paged_engine")

EVENT_BUFFER = 1024  # events one engine step may report


def is_paged_export(config: dict) -> bool:
    """Whether a genai_config.json describes a build for onnxruntime-genai's dynamic batching."""
    return "dynamic_batching" in (config.get("engine") or {})


@dataclass(eq=False)
class _Job:
    tokens: np.ndarray
    params: SamplingParams
    client: str = ""
    priority: str = ""
    events: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)
    cancelled: threading.Event = field(default_factory=threading.Event)
    stopped: set[int] = field(default_factory=set)  # sequences the caller ended (a stop string)
    ending: set[int] = field(default_factory=set)  # sequences whose turn the driver has cancelled
    live: dict[int, tuple] = field(default_factory=dict)  # index -> (og request, turn id), on the driver


class PagedEngine:
    """One loaded paged-attention model on onnxruntime-genai's engine, shared by every
    caller: concurrent `generate` calls decode together. Thread-safe."""

    def __init__(self, model_dir: str | Path, limits: Limits | None = None):
        import onnxruntime_genai as og  # imported here so importing this module stays cheap

        self.og = og
        self.model_dir = Path(model_dir)
        config_path = self.model_dir / "genai_config.json"
        if not config_path.is_file():
            raise FileNotFoundError(f"{self.model_dir} is not an onnxruntime-genai model (no genai_config.json)")
        config = json.loads(config_path.read_text())
        self.dynamic = is_paged_export(config)
        self.context_length = int(config["model"]["context_length"])
        self.chat_template = ChatTemplate.from_model_dir(self.model_dir)
        self._cond = threading.Condition()
        self._queue = FairQueue((limits or Limits()).max_queue)
        self._jobs: list[_Job] = []  # admitted, with sequences in flight
        self._owners: dict[int, tuple[_Job, int]] = {}  # id(og request) -> (job, index)
        self._closed = False
        self.counters = {"steps": 0, "tokens": 0, "requests": 0, "peak_batch": 0, "decode_s": 0.0}
        self._recent: deque[tuple[float, int]] = deque(maxlen=64)
        # og.Engine answers only the thread that made it: the driver loads the model itself.
        self._loaded = threading.Event()
        self._load_error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(limits,), name="paged-engine", daemon=True)
        self._thread.start()
        self._loaded.wait()
        if self._load_error is not None:
            raise self._load_error

    # --- the contract ---------------------------------------------------------------------

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
        """n completions of one prompt, decoded in the engine's running batch with whatever
        else is in flight. The contract is `inference.engine.Engine`'s."""
        tokens = checked_prompt(self, messages=messages, prompt=prompt, params=params, max_batch=self.limits.max_batch)
        if params.seed is not None and not self.dynamic:
            raise InvalidRequest(
                "seeded requests need onnxruntime-genai's dynamic batching (a build with --paged-attention)"
            )
        job = _Job(tokens, params, client=client, priority=priority)
        self._submit(job)
        n = params.n
        seqs = [SequenceText(self.tokenizer.create_stream()) for _ in range(n)]
        try:
            while not all(s.finish for s in seqs):
                try:
                    batch = [job.events.get(timeout=POLL_S)]
                except queue.Empty:
                    if is_cancelled():
                        self._cancel(job)
                    continue
                while True:  # what else arrived from the same step
                    try:
                        batch.append(job.events.get_nowait())
                    except queue.Empty:
                        break
                pieces: dict[int, str] = {}
                for kind, index, value in batch:
                    if kind == "error":
                        raise value
                    seq = seqs[index]
                    if seq.finish:
                        continue
                    if kind == "finish":
                        seq.finish = value
                        continue
                    if piece := seq.push(value, params, self.eos_ids):
                        pieces[index] = pieces.get(index, "") + piece
                    if seq.finish == "stop" and value not in self.eos_ids:
                        self._stop(job, index)  # a stop string: the engine cannot see it
                if pieces and on_step:
                    on_step(pieces)
                if is_cancelled():
                    self._cancel(job)
            return [s.completion(i, len(tokens)) for i, s in enumerate(seqs)]
        finally:
            # A caller that leaves early (its on_step raised, it was interrupted) takes its
            # sequences out of the batch at the next step instead of leaving them decoding.
            if not all(s.finish for s in seqs):
                self._cancel(job)

    def stats(self) -> dict:
        """The batch now: sequences decoding, requests waiting, recent tokens/s."""
        with self._cond:
            return {
                "batch": len(self._owners),
                "queue": self._queue.count,
                "max_batch": self.limits.max_batch,
                "max_queue": self.limits.max_queue,
                "tokens_per_s": round(tokens_per_s(self._recent), 1),
                "dynamic_batching": self.dynamic,
                **self.counters,
                "decode_s": round(self.counters["decode_s"], 3),
            }

    def close(self) -> None:
        """Stop the driver thread: requests still waiting or decoding fail."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout=30)

    # --- callers' side ------------------------------------------------------------------

    def _submit(self, job: _Job) -> None:
        with self._cond:
            if self._closed:
                raise InferenceError("the engine is shut down")
            self._queue.push(job)
            self.counters["requests"] += 1
            self._cond.notify()

    def _cancel(self, job: _Job) -> None:
        with self._cond:
            job.cancelled.set()
            self._cond.notify()

    def _stop(self, job: _Job, index: int) -> None:
        with self._cond:
            job.stopped.add(index)
            self._cond.notify()

    # --- the driver thread ----------------------------------------------------------------

    def _run(self, limits: Limits | None) -> None:
        og = self.og
        try:
            self.model = og.Model(og.Config(str(self.model_dir)))
            self.tokenizer = og.Tokenizer(self.model)
            self.eos_ids = {int(t) for t in np.atleast_1d(self.tokenizer.eos_token_ids)}
            self.engine = og.Engine(self.model)
            configured = int(self.engine.get_capabilities().configured_max_batch_size) or 1
            # The build's own batch (genai_config's max_batch_size) is the default and the cap:
            # the CPU batcher's default of 16 is no guide to a GPU.
            given = limits or Limits(max_batch=configured)
            self.limits = Limits(
                max_batch=min(given.max_batch, configured),
                max_step_tokens=given.max_step_tokens,
                max_queue=given.max_queue,
                prefix_cache_mb=0,
            )
            buffer = self.engine.create_event_buffer(EVENT_BUFFER)
        except BaseException as exc:  # noqa: BLE001 - handed to the constructor's caller
            self._load_error = exc
            self._loaded.set()
            return
        self._loaded.set()
        self._loop(buffer)
        # og.Engine answers only this thread: let it go here, not wherever it is collected.
        del buffer
        self.engine = None

    def _loop(self, buffer) -> None:
        while True:
            with self._cond:
                while not self._closed and not self._owners and not self._queue.count:
                    self._cond.wait()
                if self._closed:
                    break
                admitted = self._admit()
            for job in admitted:
                self._begin(job)
            self._end_unwanted()
            if not self._owners:
                continue
            started = time.perf_counter()
            try:
                events = self.engine.run(buffer)
                self._dispatch(events)
            except Exception as exc:  # the step failed: the requests in flight fail, the engine goes on
                log.exception("engine step failed")
                for job in list(self._jobs):
                    self._fail(job, InferenceError(f"the model failed while decoding: {exc}"))
            elapsed = time.perf_counter() - started
            with self._cond:
                self.counters["steps"] += 1
                self.counters["decode_s"] += elapsed
                self.counters["peak_batch"] = max(self.counters["peak_batch"], len(self._owners))
        for job in list(self._jobs):
            self._fail(job, InferenceError("the engine is shut down"))
        with self._cond:
            for job in self._queue.drain():
                job.events.put(("error", 0, InferenceError("the engine is shut down")))

    def _admit(self) -> list[_Job]:
        """Waiting requests that fit in the batch, in the queue's fair order. Called with the
        lock held."""
        room = self.limits.max_batch - len(self._owners)

        def fits(job: _Job) -> bool:
            nonlocal room
            if job.params.n > room:
                return False
            room -= job.params.n
            return True

        return self._queue.admit(fits, self._gone)

    @staticmethod
    def _gone(job: _Job) -> None:
        for index in range(job.params.n):
            job.events.put(("finish", index, "cancelled"))

    def _options(self, request, params: SamplingParams, index: int):
        options = self.og.TurnOptions(request)
        options.set_max_generated_tokens(params.max_tokens)
        if params.temperature > 0:
            options.set_do_sample(True)
            options.set_temperature(params.temperature)
            options.set_top_p(params.top_p)
            options.set_top_k(params.top_k)
        else:
            options.set_do_sample(False)
        if params.seed is not None:
            options.set_seed(params.seed + index)
        if params.guidance_type:
            options.set_guidance(params.guidance_type, params.guidance)
        return options

    def _begin(self, job: _Job) -> None:
        """One og request per sequence. A request the engine refuses (guidance that does not
        compile, a prompt over its limits) fails alone, with what the engine said."""
        if job.cancelled.is_set():
            self._gone(job)
            return
        self._jobs.append(job)
        for index in range(job.params.n):
            request = self.engine.create_request()
            try:
                turn = request.begin_turn(job.tokens, self._options(request, job.params, index))
            except Exception as exc:
                request.close()
                what = "guidance" if job.params.guidance_type else "the engine refused the request"
                self._fail(job, InvalidRequest(f"{what}: {exc}"))
                return
            job.live[index] = (request, turn)
            with self._cond:
                self._owners[id(request)] = (job, index)

    def _end_unwanted(self) -> None:
        """Cancel, once, the turns of sequences their callers no longer want; each leaves with
        its TURN_FINISHED event."""
        for job in list(self._jobs):
            wanted = not job.cancelled.is_set()
            for index, (request, turn) in list(job.live.items()):
                if (not wanted or index in job.stopped) and index not in job.ending:
                    request.cancel_turn(turn)
                    job.ending.add(index)

    def _dispatch(self, events) -> None:
        og = self.og
        token_flag = int(og.EngineEventFlags.TOKEN)
        finished_flag = int(og.EngineEventFlags.TURN_FINISHED)
        failed_flag = int(og.EngineEventFlags.FAILED)
        tokens = 0
        for event in events:
            owner = self._owners.get(id(event.request))
            if owner is None:
                continue
            job, index = owner
            flags = int(event.flags)
            if flags & token_flag:
                job.events.put(("token", index, int(event.token)))
                tokens += 1
            if flags & failed_flag:
                self._fail(job, InferenceError(f"the engine failed a sequence: {event.error_code.name}"))
            elif flags & finished_flag:
                self._release(job, index)
                job.events.put(("finish", index, self._finish_reason(job, index, event.finish_reason)))
                if not job.live:
                    self._jobs.remove(job)
        with self._cond:
            self.counters["tokens"] += tokens
            self._recent.append((time.monotonic(), tokens))

    def _finish_reason(self, job: _Job, index: int, reason) -> str:
        name = reason.name
        if name == "CANCELLED":
            return "stop" if index in job.stopped else "cancelled"
        if name in ("MAX_GENERATED_TOKENS", "MAX_SESSION_TOKENS"):
            return "length"
        return "stop"  # EOS, STOP_STRING

    def _release(self, job: _Job, index: int) -> None:
        request, _ = job.live.pop(index)
        with self._cond:
            self._owners.pop(id(request), None)
        request.close()

    def _fail(self, job: _Job, error: Exception) -> None:
        for index in list(job.live):
            request, turn = job.live[index]
            with contextlib.suppress(Exception):  # already finished: closing it is what matters
                request.cancel_turn(turn)
            self._release(job, index)
        if job in self._jobs:
            self._jobs.remove(job)
        job.events.put(("error", 0, error))
