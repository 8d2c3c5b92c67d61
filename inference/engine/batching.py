"""Continuous batching of one Qwen3 ONNX model over onnxruntime: requests join the running
batch between decoding steps and leave it when they finish.

One scheduler thread owns the model. A request (a prompt and n sequences) waits in a
queue; between two steps the scheduler admits waiting requests while the batch has room
(`max_batch` sequences, `max_step_tokens` prompt tokens prefilled per step), prefills each
admitted prompt once and copies its cache for its n sequences, then decodes every running
sequence one token per step in one call of the model.

The cache is one buffer per past input, [rows, kv_heads, capacity, head_size] (grown as
needed), sequence i in row i, right-padded: row i holds its own length L_i of keys and
values, the attention mask row has L_i + 1 ones, and the graph's GroupQueryAttention takes
each row's position from its mask and writes the new key and value at L_i, in place (the
present outputs are bound to the past inputs' memory, as onnxruntime-genai's generator
does with `past_present_share_buffer`): a step copies no cache, a sequence that joins
copies its prompt's cache into its row, and one that leaves is replaced by the last row.
A row's logits do not depend on the other rows or on the padding (left padding did:
onnxruntime-genai 0.18 shifts positions under it). Whether they come out bit for bit
the same is a property of the kernels; bench/bench_batching.py measures how often a
seeded completion alone matches the same one batched.

Order between requests: interactive requests (a reviewer waiting) first, then one request
per client in turn (a client being a run), so a large run cannot starve anyone.

One module (over 400 lines) because the scheduler is one loop over one batch: admitting,
prefilling, stepping and leaving all move the same rows of the same cache, and each reads
the state the others left. Its caches are `cache.py`, the waiting line `fair_queue.py`, the
next token `sampling.py`.

Errors stay with their request: guidance that does not compile or a prompt too long is
refused before it queues; a queue that is full refuses new requests (`EngineBusy`, worth
retrying); a cancelled request leaves at the next step; a failure of the model call fails
the requests in that batch and the scheduler goes on with the next.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from inference.engine.cache import KVBuffer, ModelSpec, PrefixCache
from inference.engine.contract import Completion, Limits, SequenceText
from inference.engine.fair_queue import FairQueue, tokens_per_s
from inference.engine.sampling import TopK, allowed_tokens, draw, rng_for, sample
from inference.errors import InferenceError, InvalidRequest

log = logging.getLogger("shaping.batching")


class Sequence(SequenceText):
    __slots__ = ("job", "index", "rng", "matcher", "length", "next_token")

    def __init__(self, job: Job, index: int, matcher, stream):
        super().__init__(stream)
        self.job = job
        self.index = index
        self.rng = rng_for(job.params.seed, index)
        self.matcher = matcher
        self.length = 0  # tokens held in the cache
        self.next_token = -1  # the token the next step feeds


@dataclass(eq=False)
class Job:
    tokens: np.ndarray
    params: object  # inference.engine.SamplingParams
    matchers: list  # one llguidance matcher per sequence, or Nones
    client: str = ""
    priority: str = ""
    stream: bool = True  # send its text step by step ("pieces" events), or only the end
    events: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)
    cancelled: threading.Event = field(default_factory=threading.Event)
    sequences: list[Sequence] = field(default_factory=list)
    admitted_at: float | None = None  # when it joined the batch
    error: Exception | None = None  # set when one of its sequences fails: the request fails

    @property
    def n(self) -> int:
        return self.params.n


class Batcher:
    def __init__(
        self, session, spec: ModelSpec, tokenizer, eos_ids: set[int], limits: Limits, *, context_length: int, vocab: int
    ):
        self.session = session
        self.spec = spec
        self.tokenizer = tokenizer
        self.eos_ids = eos_ids
        self.limits = limits
        self.context_length = context_length
        self._cond = threading.Condition()
        self._queue = FairQueue(limits.max_queue)
        self._rows: list[Sequence] = []  # row i of the cache is self._rows[i]'s
        self._kv = KVBuffer(spec, limits.max_batch, context_length)
        self._closed = False
        self._thread: threading.Thread | None = None
        self._guidance = None  # llguidance's executor, made at the first guided step
        self._mask_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="guidance")
        self._topk: TopK | None = None  # made at the first sampled step
        self.vocab = vocab
        self.prefix = PrefixCache(limits.prefix_cache_mb * 2**20) if limits.prefix_cache_mb else None
        self.counters = {
            "steps": 0,
            "tokens": 0,
            "prefill_tokens": 0,
            "prefix_tokens": 0,  # prompt tokens read from the prefix cache instead of computed
            "requests": 0,
            "peak_batch": 0,
            "prefill_s": 0.0,
            "decode_s": 0.0,
        }
        self._recent: deque[tuple[float, int]] = deque(maxlen=64)  # (time, tokens) per step

    # --- callers' side ------------------------------------------------------------------

    def submit(self, job: Job) -> None:
        with self._cond:
            if self._closed:
                raise InferenceError("the engine is shut down")
            self._queue.push(job)
            self.counters["requests"] += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="batcher", daemon=True)
                self._thread.start()
            self._cond.notify()

    def stats(self) -> dict:
        with self._cond:
            return {
                "batch": len(self._rows),
                "queue": self._queue.count,
                "max_batch": self.limits.max_batch,
                "max_queue": self.limits.max_queue,
                "tokens_per_s": round(tokens_per_s(self._recent), 1),
                "prefix_cache_mb": round((self.prefix.bytes if self.prefix else 0) / 2**20, 1),
                **self.counters,
                "prefill_s": round(self.counters["prefill_s"], 3),
                "decode_s": round(self.counters["decode_s"], 3),
            }

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self._mask_pool.shutdown(wait=False)

    # --- the scheduler thread -------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._closed and not self._rows and not self._queue.count:
                    self._cond.wait()
                if self._closed:
                    self._fail_all(InferenceError("the engine is shut down"))
                    return
                admitted = self._admit()
            for job in admitted:
                try:
                    self._prefill(job)
                except Exception as exc:  # this request fails alone
                    log.exception("prefill failed")
                    self._fail_job(job, InferenceError(f"the model failed on the prompt: {exc}"))
            try:
                self._drop_cancelled()
                if self._rows:
                    self._step()
            except Exception as exc:  # the model call failed: this batch fails, the engine goes on
                log.exception("decoding step failed")
                self._fail_batch(InferenceError(f"the model failed while decoding: {exc}"))

    def _admit(self) -> list[Job]:
        """Waiting requests that fit, interactive first, then one per client in turn. The
        head of the line waits for room: nobody smaller jumps it, so nobody starves."""
        room = self.limits.max_batch - len(self._rows)
        budget = self.limits.max_step_tokens
        taken = 0

        def fits(job: Job) -> bool:
            nonlocal room, budget, taken
            alone = not taken and not self._rows  # a prompt over the budget still runs, alone
            if job.n > room or (len(job.tokens) > budget and not alone):
                return False
            job.admitted_at = time.monotonic()
            room -= job.n
            budget -= len(job.tokens)
            taken += 1
            return True

        return self._queue.admit(fits, lambda job: self._finish_job(job, cancelled=True))

    def _prefill(self, job: Job) -> None:
        """Run the prompt once, copy its cache for the job's n sequences, choose their first
        tokens and add them to the batch."""
        if job.cancelled.is_set():
            self._finish_job(job, cancelled=True)
            return
        spec = self.spec
        length = len(job.tokens)
        started = time.perf_counter()
        hit, cached = self.prefix.longest(job.tokens) if self.prefix is not None else (0, None)
        if cached is not None:
            past = [np.ascontiguousarray(c[:, :, :hit]) for c in cached]
        else:
            past = [np.zeros((1, spec.kv_heads, 0, spec.head_size), dtype=spec.kv_dtype)] * len(spec.past_names)
        feeds = {
            spec.input_ids: job.tokens[None, hit:].astype(spec.ids_dtype),
            spec.attention_mask: np.ones((1, length), dtype=spec.mask_dtype),
            **dict(zip(spec.past_names, past, strict=True)),
        }
        if spec.position_ids:
            feeds[spec.position_ids] = np.arange(hit, length, dtype=np.int64)[None, :]
        outputs = self.session.run([spec.logits, *spec.present_names], feeds)
        if self.prefix is not None:
            self.prefix.add(job.tokens, outputs[1:])
        with self._cond:
            self.counters["prefill_tokens"] += length - hit
            self.counters["prefix_tokens"] += hit
            self.counters["prefill_s"] += time.perf_counter() - started
        logits = outputs[0][0, -1]
        sequences = [Sequence(job, i, job.matchers[i], self.tokenizer.create_stream()) for i in range(job.n)]
        for seq in sequences:
            seq.length = length
        job.sequences = sequences
        pieces = self._choose(sequences, np.broadcast_to(logits, (job.n, logits.shape[-1])))
        self._emit(pieces)
        joining = [s for s in sequences if not s.finish]
        if joining:
            self._join(joining, outputs[1:], length)
        self._finish_done([job])

    @staticmethod
    def _masked(seq: Sequence) -> bool:
        """Whether the sequence's next token needs its guidance's whole mask: a sampled guided
        one (a greedy one checks its best token and computes a mask only if it is refused)."""
        return seq.matcher is not None and not seq.finish and seq.job.params.temperature > 0

    def _join(self, sequences: list[Sequence], cache: list[np.ndarray], length: int) -> None:
        """The sequences of one prompt take the next rows, each a copy of the prompt's cache."""
        live = len(self._rows)
        self._kv.ensure(live + len(sequences), length + 1, live)
        for row in range(live, live + len(sequences)):
            self._kv.put(row, cache, length)
        self._rows.extend(sequences)

    def _step(self) -> None:
        spec = self.spec
        rows = self._rows
        lengths = np.array([r.length for r in rows])
        width = int(lengths.max())
        self._kv.ensure(len(rows), width + 1, len(rows))  # each row writes its new key at its own length
        binding = self.session.io_binding()
        binding.bind_cpu_input(spec.input_ids, np.array([[r.next_token] for r in rows], dtype=spec.ids_dtype))
        mask = (np.arange(width + 1)[None, :] <= lengths[:, None]).astype(spec.mask_dtype)
        binding.bind_cpu_input(spec.attention_mask, mask)
        if spec.position_ids:
            binding.bind_cpu_input(spec.position_ids, lengths[:, None].astype(np.int64))
        past = self._kv.values(len(rows))
        for name, value in zip(spec.past_names, past, strict=True):
            binding.bind_ortvalue_input(name, value)
        for name, value in zip(spec.present_names, past, strict=True):  # written in place
            binding.bind_ortvalue_output(name, value)
        binding.bind_output(spec.logits, "cpu")
        # The guidance's masks for this step depend only on the tokens chosen so far: computed
        # on another thread while the model runs (both leave the interpreter lock).
        masks = self._mask_pool.submit(self._masks, rows, self.vocab) if any(map(self._masked, rows)) else None
        started = time.perf_counter()
        try:
            self.session.run_with_iobinding(binding)
        finally:
            masks = masks.result() if masks is not None else None
        self.counters["decode_s"] += time.perf_counter() - started
        logits = binding.get_outputs()[-1].numpy()[:, -1]
        del binding, past  # the inputs' memory stays alive until the call returns
        for r in rows:
            r.length += 1
        pieces = self._choose(rows, logits, masks)
        with self._cond:
            self.counters["steps"] += 1
            self.counters["tokens"] += len(rows)
            self.counters["peak_batch"] = max(self.counters["peak_batch"], len(rows))
            self._recent.append((time.monotonic(), len(rows)))
        self._emit(pieces)
        self._leave()

    def _masks(self, sequences: list[Sequence], vocab: int, *, every: bool = False) -> np.ndarray | None:
        """The guidance's allowed tokens of each sampled guided sequence (of every guided one
        with `every`), as llguidance's bitmask rows (one row per sequence, all bits set for the
        others), computed in parallel on llguidance's threads; None when there is none."""
        guided = [
            (seq.matcher, i)
            for i, seq in enumerate(sequences)
            if (self._masked(seq) or (every and seq.matcher is not None and not seq.finish))
        ]
        if not guided:
            return None
        if self._guidance is None:
            from llguidance import LLExecutor

            self._guidance = LLExecutor()
        bitmask = np.full((len(sequences), (vocab + 31) // 32), -1, dtype=np.int32)
        self._guidance.unsafe_compute_mask_ptr(guided, bitmask.ctypes.data, bitmask.shape[1] * 4, len(sequences))
        return bitmask

    def _choose(
        self, sequences: list[Sequence], logits: np.ndarray, masks: np.ndarray | None = None
    ) -> dict[Job, dict[int, str]]:
        """Sample each sequence's next token (under its guidance's `masks` row, computed here
        unless given), record it, and say what text each job gained."""
        pieces: dict[Job, dict[int, str]] = {}
        vocab = logits.shape[-1]
        if masks is None:
            masks = self._masks(sequences, vocab)
        allowed = None if masks is None else allowed_tokens(masks, vocab)
        live = [i for i, seq in enumerate(sequences) if not seq.finish]
        chosen: dict[int, int | None] = {}
        # Greedy sequences (the judge's) in one argmax over their rows. A guided one keeps its
        # best token if its guidance takes it (then it is also the best allowed one); only the
        # refused ones compute their mask and take the best allowed token. Computing every
        # mask every step cost more than the tiny model's whole step.
        greedy = [i for i in live if sequences[i].job.params.temperature <= 0]
        refused = []
        for i, best in zip(greedy, logits[greedy].argmax(axis=1) if greedy else (), strict=True):
            matcher = sequences[i].matcher
            if matcher is None or matcher.validate_tokens([int(best)]) == 1:
                chosen[i] = int(best)
            else:
                refused.append(i)
        if refused:
            allowed_refused = allowed_tokens(self._masks([sequences[i] for i in refused], vocab, every=True), vocab)
            scores = np.where(allowed_refused, logits[refused], -np.inf)
            for row, i in enumerate(refused):
                chosen[i] = int(scores[row].argmax()) if allowed_refused[row].any() else None
        # Sampled sequences with a top-k: the candidates of all of them in one TopK call, then
        # a draw per sequence from its own; without a top-k, sample() over the whole row.
        topk = [i for i in live if i not in chosen and sequences[i].job.params.top_k > 0]
        if topk:
            scores = logits[topk] if allowed is None else np.where(allowed[topk], logits[topk], -np.inf)
            if self._topk is None:
                self._topk = TopK()
            values, ids = self._topk(scores, max(sequences[i].job.params.top_k for i in topk))
            for row, i in enumerate(topk):
                params = sequences[i].job.params
                finite = np.isfinite(values[row, : params.top_k])  # -inf: refused by the guidance
                chosen[i] = (
                    draw(
                        ids[row, : params.top_k][finite],
                        values[row, : params.top_k][finite],
                        temperature=params.temperature,
                        top_p=params.top_p,
                        rng=sequences[i].rng,
                    )
                    if finite.any()
                    else None
                )
        for i in live:
            seq = sequences[i]
            if i not in chosen:
                params = seq.job.params
                try:
                    chosen[i] = sample(
                        logits[i],
                        temperature=params.temperature,
                        top_p=params.top_p,
                        top_k=params.top_k,
                        rng=seq.rng,
                        allowed=allowed[i] if seq.matcher is not None else None,
                    )
                except ValueError:
                    chosen[i] = None
            if chosen[i] is None:
                seq.finish = "stop"  # the guidance allows nothing more: its grammar is complete
                continue
            piece = self._record(seq, chosen[i])
            if piece:
                pieces.setdefault(seq.job, {})[seq.index] = piece
        return pieces

    def _record(self, seq: Sequence, token: int) -> str:
        seq.next_token = token
        if seq.matcher is not None and not seq.matcher.consume_token(token):
            seq.count += 1
            seq.job.error = InvalidRequest(f"guidance: {seq.matcher.get_error() or 'token refused'}")
            for other in seq.job.sequences:
                other.finish = other.finish or "error"
            return ""
        done = seq.matcher is not None and seq.matcher.is_stopped()
        piece = seq.push(token, seq.job.params, self.eos_ids, done=done)
        if not seq.finish and seq.length + 1 >= self.context_length:
            seq.finish = "length"
        return piece

    def _emit(self, pieces: dict[Job, dict[int, str]]) -> None:
        for job, found in pieces.items():
            if job.stream:
                job.events.put(("pieces", found))

    def _leave(self) -> None:
        """Take finished sequences out of the batch and answer the requests they complete."""
        rows = self._rows
        if all(not r.finish for r in rows):
            return
        jobs = {r.job for r in rows if r.finish}
        live = sum(not r.finish for r in rows)
        # Rows past the live count that still decode move into the holes below it.
        holes = [i for i in range(live) if rows[i].finish]
        movers = [i for i in range(live, len(rows)) if not rows[i].finish]
        for target, source in zip(holes, movers, strict=True):
            self._kv.move(source, target, rows[source].length)
            rows[target] = rows[source]
        self._rows = rows[:live]
        if not self._rows:
            self._kv.clear()
        self._finish_done(jobs)

    def _drop_cancelled(self) -> None:
        cancelled = {r.job for r in self._rows if r.job.cancelled.is_set()}
        if not cancelled:
            return
        for r in self._rows:
            if r.job in cancelled:
                r.finish = r.finish or "cancelled"
        for job in cancelled:
            for seq in job.sequences:
                seq.finish = seq.finish or "cancelled"
        self._leave()

    def _finish_done(self, jobs) -> None:
        for job in jobs:
            if job.sequences and all(s.finish for s in job.sequences):
                self._finish_job(job)

    def _finish_job(self, job: Job, *, cancelled: bool = False) -> None:
        if job.error is not None:
            job.events.put(("error", job.error))
            return
        if cancelled and not job.sequences:
            job.events.put(("done", [Completion(i, "", "cancelled", len(job.tokens), 0) for i in range(job.n)]))
            return
        job.events.put(("done", [s.completion(s.index, len(job.tokens)) for s in job.sequences]))

    def _fail_job(self, job: Job, error: Exception) -> None:
        job.events.put(("error", error))

    def _fail_batch(self, error: Exception) -> None:
        for job in {r.job for r in self._rows}:
            self._fail_job(job, error)
        self._rows = []
        self._kv.clear()

    def _fail_all(self, error: Exception) -> None:
        self._fail_batch(error)
        for job in self._queue.drain():
            self._fail_job(job, error)
