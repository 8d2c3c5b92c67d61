"""Continuous batching of one Qwen3 ONNX model over onnxruntime: requests join the running
batch between decoding steps and leave it when they finish.

One scheduler thread owns the model. A request (a prompt and n sequences) waits in a
queue; between two steps the scheduler admits waiting requests while the batch has room
(`max_batch` sequences, `max_step_tokens` prompt tokens prefilled per step), prefills each
admitted prompt once and copies its cache for its n sequences, then decodes every running
sequence one token per step in one call of the model.

The cache is right-padded: row i holds its own length L_i of keys and values and the rest
of the row is padding, the attention mask row has L_i + 1 ones, and the graph's
GroupQueryAttention takes each row's position from its mask and writes the new key at
L_i. A row's logits then do not depend on the other rows or on the padding (left padding
did: onnxruntime-genai 0.18 shifts positions under it). Whether they come out bit for bit
the same is a property of the kernels; bench/bench_batching.py measures how often a
seeded completion alone matches the same one batched.

Order between requests: interactive requests (a reviewer waiting) first, then one request
per client in turn (a client being a run), so a large run cannot starve anyone.

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
from collections import OrderedDict, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

import numpy as np
from onnxruntime import OrtValue

from inference.errors import BackendUnavailable, InferenceError, InvalidRequest
from inference.sampling import allowed_tokens, rng_for, sample

log = logging.getLogger("shaping.batching")

INTERACTIVE = "interactive"


@dataclass
class Completion:
    index: int
    text: str
    finish_reason: str  # "stop" (end of turn or a stop string), "length", "cancelled"
    prompt_tokens: int
    completion_tokens: int

    def as_dict(self) -> dict:
        return asdict(self)


def apply_stop(text: str, piece: str, stops: list[str]) -> tuple[str, str, bool]:
    """(new text, piece to emit, stopped): the text is cut before the first stop string
    that completes with this piece (one may span earlier pieces)."""
    combined = text + piece
    if not stops or not piece:
        return combined, piece, False
    hits = [pos for s in stops if (pos := combined.find(s, max(0, len(text) - len(s) + 1))) >= 0]
    if not hits:
        return combined, piece, False
    cut = min(hits)
    return combined[:cut], combined[len(text) : cut], True


class EngineBusy(BackendUnavailable):
    """The engine's queue is full: the request was not started. Transient: retry later."""


@dataclass
class Limits:
    max_batch: int = 16  # sequences decoded together
    max_step_tokens: int = 4096  # prompt tokens prefilled between two steps (one prompt always fits)
    max_queue: int = 256  # requests waiting; more are refused with EngineBusy
    prefix_cache_mb: int = 256  # recent prompts' keys and values kept for prompts that begin alike; 0: none


@dataclass
class ModelSpec:
    """The names and shapes the decoder graph takes (from genai_config.json)."""

    input_ids: str
    attention_mask: str
    logits: str
    past_names: list[str]
    present_names: list[str]
    kv_heads: int
    head_size: int
    kv_dtype: type
    ids_dtype: type
    mask_dtype: type
    position_ids: str | None = None


class PrefixCache:
    """The keys and values of recent prompts, so a prompt that begins like one of them (the
    judge's instructions and rubric, a character's persona) computes only the rest: its
    prefill runs the new tokens on the cached prefix as past. At most `max_bytes`, the least
    recently used dropped first."""

    MIN_TOKENS = 8  # a shorter shared beginning is not worth a lookup

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.bytes = 0
        self._entries: OrderedDict[bytes, tuple[np.ndarray, list[np.ndarray]]] = OrderedDict()

    def longest(self, tokens: np.ndarray) -> tuple[int, list[np.ndarray] | None]:
        """The longest cached beginning of `tokens` (at most all but the last token: a prefill
        needs one token for its logits) and the cache it is read from."""
        best, found = 0, None
        for key, (cached, _) in self._entries.items():
            most = min(len(cached), len(tokens) - 1)
            if most <= best:
                continue
            same = cached[:most] == tokens[:most]
            length = most if same.all() else int(np.argmin(same))
            if length > best:
                best, found = length, key
        if found is None or best < self.MIN_TOKENS:
            return 0, None
        self._entries.move_to_end(found)
        return best, self._entries[found][1]

    def add(self, tokens: np.ndarray, cache: list[np.ndarray]) -> None:
        key = tokens.tobytes()
        size = sum(c.nbytes for c in cache)
        if key in self._entries or size > self.max_bytes:
            return
        while self._entries and self.bytes + size > self.max_bytes:
            _, (_, dropped) = self._entries.popitem(last=False)
            self.bytes -= sum(c.nbytes for c in dropped)
        self._entries[key] = (tokens.copy(), cache)
        self.bytes += size

    def __len__(self) -> int:
        return len(self._entries)


class Sequence:
    __slots__ = ("job", "index", "rng", "matcher", "stream", "length", "next_token", "text", "count", "finish")

    def __init__(self, job: Job, index: int, matcher, stream):
        self.job = job
        self.index = index
        self.rng = rng_for(job.params.seed, index)
        self.matcher = matcher
        self.stream = stream
        self.length = 0  # tokens held in the cache
        self.next_token = -1  # the token the next step feeds
        self.text = ""
        self.count = 0
        self.finish: str | None = None


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
        self._waiting: dict[str, deque[Job]] = {}  # per client, in arrival order
        self._turns: deque[str] = deque()  # clients in the order they are served next
        self._queued = 0
        self._rows: list[Sequence] = []
        # Past keys/values, in spec.past_names order: numpy arrays after a join or a leave,
        # onnxruntime's own values after a step (fed back as they are: turning each step's
        # outputs into numpy copied the whole cache, 1.6x the step at a batch of 8).
        self._cache: list | None = None
        self._closed = False
        self._thread: threading.Thread | None = None
        self._guidance = None  # llguidance's executor, made at the first guided step
        self._mask_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="guidance")
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
            if self._queued >= self.limits.max_queue:
                raise EngineBusy(f"the engine's queue is full ({self._queued} requests waiting); retry later")
            key = INTERACTIVE if job.priority == INTERACTIVE else job.client
            if key not in self._waiting:
                self._waiting[key] = deque()
                if key == INTERACTIVE:
                    self._turns.appendleft(key)
                else:
                    self._turns.append(key)
            self._waiting[key].append(job)
            self._queued += 1
            self.counters["requests"] += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="batcher", daemon=True)
                self._thread.start()
            self._cond.notify()

    def stats(self) -> dict:
        with self._cond:
            recent = list(self._recent)
            rate = 0.0
            if len(recent) >= 2 and recent[-1][0] > recent[0][0]:
                rate = sum(t for _, t in recent[1:]) / (recent[-1][0] - recent[0][0])
            return {
                "batch": len(self._rows),
                "queue": self._queued,
                "max_batch": self.limits.max_batch,
                "max_queue": self.limits.max_queue,
                "tokens_per_s": round(rate, 1),
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
                while not self._closed and not self._rows and not self._queued:
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
        admitted: list[Job] = []
        while self._turns:
            key = self._turns[0]
            jobs = self._waiting[key]
            while jobs and jobs[0].cancelled.is_set():  # gone before it started
                self._queued -= 1
                self._finish_job(jobs.popleft(), cancelled=True)
            if jobs:
                job = jobs[0]
                alone = not admitted and not self._rows  # a prompt over the budget still runs, alone
                if job.n > room or (len(job.tokens) > budget and not alone):
                    break
                jobs.popleft()
                self._queued -= 1
                job.admitted_at = time.monotonic()
                admitted.append(job)
                room -= job.n
                budget -= len(job.tokens)
            if not jobs:
                del self._waiting[key]
                self._turns.popleft()
            elif key != INTERACTIVE:
                self._turns.rotate(-1)
        return admitted

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
            cache = [np.repeat(p, len(joining), axis=0) for p in outputs[1:]]
            self._join(joining, cache)
        self._finish_done([job])

    @staticmethod
    def _any_guided(rows: list[Sequence]) -> bool:
        return any(r.matcher is not None for r in rows)

    def _join(self, sequences: list[Sequence], cache: list[np.ndarray]) -> None:
        if self._cache is None or not self._rows:
            self._rows, self._cache = list(sequences), cache
            return
        old_cache = _arrays(self._cache)
        width = max(old_cache[0].shape[2], cache[0].shape[2])
        self._cache = [
            np.concatenate([_pad(old, width), _pad(new, width)]) for old, new in zip(old_cache, cache, strict=True)
        ]
        self._rows.extend(sequences)

    def _step(self) -> None:
        spec = self.spec
        rows = self._rows
        width = _width(self._cache[0])
        lengths = np.array([r.length for r in rows])
        arrays = {
            spec.input_ids: np.array([[r.next_token] for r in rows], dtype=spec.ids_dtype),
            spec.attention_mask: (np.arange(width + 1)[None, :] <= lengths[:, None]).astype(spec.mask_dtype),
        }
        if spec.position_ids:
            arrays[spec.position_ids] = lengths[:, None].astype(np.int64)
        past = [c if isinstance(c, OrtValue) else OrtValue.ortvalue_from_numpy(c) for c in self._cache]
        feeds = {
            **{name: OrtValue.ortvalue_from_numpy(value) for name, value in arrays.items()},
            **dict(zip(spec.past_names, past, strict=True)),
        }
        # The guidance's masks for this step depend only on the tokens chosen so far: computed
        # on another thread while the model runs (both leave the interpreter lock).
        masks = self._mask_pool.submit(self._masks, rows, self.vocab) if self._any_guided(rows) else None
        started = time.perf_counter()
        try:
            outputs = self.session.run_with_ort_values([spec.logits, *spec.present_names], feeds)
        finally:
            masks = masks.result() if masks is not None else None
        self.counters["decode_s"] += time.perf_counter() - started
        del arrays, past, feeds  # the inputs' memory stays alive until the call returns
        self._cache = outputs[1:]
        for r in rows:
            r.length += 1
        pieces = self._choose(rows, outputs[0].numpy()[:, -1], masks)
        with self._cond:
            self.counters["steps"] += 1
            self.counters["tokens"] += len(rows)
            self.counters["peak_batch"] = max(self.counters["peak_batch"], len(rows))
            self._recent.append((time.monotonic(), len(rows)))
        self._emit(pieces)
        self._leave()

    def _masks(self, sequences: list[Sequence], vocab: int) -> np.ndarray | None:
        """The guidance's allowed tokens of each guided sequence, as llguidance's bitmask rows
        (one row per sequence, all bits set for an unguided one), computed in parallel on
        llguidance's threads; None when no sequence is guided."""
        guided = [(seq.matcher, i) for i, seq in enumerate(sequences) if seq.matcher is not None and not seq.finish]
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
        # Greedy sequences (the judge's) in one argmax over their rows; the others draw one by one.
        greedy = [i for i in live if sequences[i].job.params.temperature <= 0]
        chosen: dict[int, int | None] = {}
        if greedy:
            scores = logits[greedy]
            if allowed is not None:
                scores = np.where(allowed[greedy], scores, -np.inf)
            for i, best in zip(greedy, scores.argmax(axis=1), strict=True):
                guided_out = allowed is not None and sequences[i].matcher is not None and not allowed[i].any()
                chosen[i] = None if guided_out else int(best)
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
        seq.count += 1
        seq.next_token = token
        if seq.matcher is not None and not seq.matcher.consume_token(token):
            seq.job.error = InvalidRequest(f"guidance: {seq.matcher.get_error() or 'token refused'}")
            for other in seq.job.sequences:
                other.finish = other.finish or "error"
            return ""
        if token in self.eos_ids:
            seq.finish = "stop"
            return ""
        texts = apply_stop(seq.text, seq.stream.decode(token), seq.job.params.stop)
        seq.text, piece, stopped = texts
        if stopped or (seq.matcher is not None and seq.matcher.is_stopped()):
            seq.finish = "stop"
        elif seq.count >= seq.job.params.max_tokens or seq.length + 1 >= self.context_length:
            seq.finish = "length"
        return piece

    def _emit(self, pieces: dict[Job, dict[int, str]]) -> None:
        for job, found in pieces.items():
            if job.stream:
                job.events.put(("pieces", found))

    def _leave(self) -> None:
        """Take finished sequences out of the batch and answer the requests they complete."""
        keep = [i for i, r in enumerate(self._rows) if not r.finish]
        if len(keep) == len(self._rows):
            return
        jobs = {r.job for r in self._rows if r.finish}
        self._rows = [self._rows[i] for i in keep]
        if not self._rows:
            self._cache = None
        else:
            width = max(r.length for r in self._rows)
            self._cache = [np.ascontiguousarray(c[keep, :, :width]) for c in _arrays(self._cache)]
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
        job.events.put(
            ("done", [Completion(s.index, s.text, s.finish, len(job.tokens), s.count) for s in job.sequences])
        )

    def _fail_job(self, job: Job, error: Exception) -> None:
        job.events.put(("error", error))

    def _fail_batch(self, error: Exception) -> None:
        for job in {r.job for r in self._rows}:
            self._fail_job(job, error)
        self._rows, self._cache = [], None

    def _fail_all(self, error: Exception) -> None:
        self._fail_batch(error)
        for jobs in self._waiting.values():
            for job in jobs:
                self._fail_job(job, error)
        self._waiting.clear()
        self._turns.clear()
        self._queued = 0


def _arrays(cache: list) -> list[np.ndarray]:
    return [c.numpy() if isinstance(c, OrtValue) else c for c in cache]


def _width(cache) -> int:
    return cache.shape()[2] if isinstance(cache, OrtValue) else cache.shape[2]


def _pad(cache: np.ndarray, width: int) -> np.ndarray:
    short = width - cache.shape[2]
    if not short:
        return cache
    return np.pad(cache, ((0, 0), (0, 0), (0, short), (0, 0)))
