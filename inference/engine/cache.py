"""The CPU engine's caches, over the decoder graph's names (`ModelSpec`): the running batch's
keys and values (`KVBuffer`, one buffer per past input, grown and given back as sequences come
and go) and recent prompts' keys and values (`PrefixCache`), so a prompt that begins like one
of them computes only the rest."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from onnxruntime import OrtValue


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
    recently used dropped first.

    Found through an index of every cached prompt's beginnings, a block of MIN_TOKENS at a
    time (a chain of hashes, as vLLM's prefix caching does), so a lookup costs the prompt's
    length in dictionary reads, not one comparison per cached prompt (thousands of judge
    prompts fit in the cache of a small model)."""

    MIN_TOKENS = 8  # a shorter shared beginning is not worth a lookup; also the index's block

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.bytes = 0
        # prompt key -> (its tokens, its cache, its beginnings' hashes)
        self._entries: OrderedDict[bytes, tuple[np.ndarray, list[np.ndarray], list[int]]] = OrderedDict()
        self._index: dict[int, bytes] = {}  # hash of a beginning -> the latest prompt that has it

    @classmethod
    def _chain(cls, tokens: np.ndarray, length: int) -> Iterator[int]:
        """The hashes of tokens[:B], tokens[:2B], ... up to `length` (B = MIN_TOKENS), lazily:
        a lookup stops at its first miss."""
        last = 0
        for end in range(cls.MIN_TOKENS, length + 1, cls.MIN_TOKENS):
            last = hash((last, tokens[end - cls.MIN_TOKENS : end].tobytes()))
            yield last

    def longest(self, tokens: np.ndarray) -> tuple[int, list[np.ndarray] | None]:
        """The longest cached beginning of `tokens` (at most all but the last token: a prefill
        needs one token for its logits) and the cache it is read from."""
        most = len(tokens) - 1
        found = None
        for digest in self._chain(tokens, most):
            key = self._index.get(digest)
            if key is None:
                break
            found = key
        if found is None:
            return 0, None
        cached = self._entries[found][0]
        most = min(len(cached), most)
        same = cached[:most] == tokens[:most]
        length = most if same.all() else int(np.argmin(same))  # checked: hashes can collide
        if length < self.MIN_TOKENS:
            return 0, None
        self._entries.move_to_end(found)
        return length, self._entries[found][1]

    def add(self, tokens: np.ndarray, cache: list[np.ndarray]) -> None:
        key = tokens.tobytes()
        size = sum(c.nbytes for c in cache)
        if key in self._entries or size > self.max_bytes:
            return
        while self._entries and self.bytes + size > self.max_bytes:
            dropped, (_, arrays, hashes) = self._entries.popitem(last=False)
            self.bytes -= sum(c.nbytes for c in arrays)
            for digest in hashes:
                if self._index.get(digest) == dropped:
                    del self._index[digest]
        hashes = list(self._chain(tokens, len(tokens)))
        self._entries[key] = (tokens.copy(), cache, hashes)
        for digest in hashes:
            self._index[digest] = key
        self.bytes += size

    def __len__(self) -> int:
        return len(self._entries)


class KVBuffer:
    """The running sequences' keys and values: per past input one array [rows, kv_heads,
    capacity, head_size], row r holding sequence r's first `length` positions. The decoding
    step reads and writes it in place. Rows and positions grow (doubling, up to the batch
    and the context) as sequences join and lengthen, and the memory is given back when the
    batch empties: a batch of max_batch rows at full capacity from the start cost a 0.6B
    model 0.9 GB of zeroing for a single request."""

    MIN_CAPACITY = 256

    def __init__(self, spec: ModelSpec, max_rows: int, context_length: int):
        self.spec = spec
        self.max_rows = max_rows
        self.context_length = context_length
        self.arrays: list[np.ndarray] | None = None

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, positions) held now."""
        return (0, 0) if self.arrays is None else (self.arrays[0].shape[0], self.arrays[0].shape[2])

    def ensure(self, rows: int, positions: int, live: int) -> None:
        """Room for `rows` rows of `positions` positions; the first `live` rows keep their content."""
        have_rows, have_positions = self.shape
        if rows <= have_rows and positions <= have_positions:
            return
        rows = min(self.max_rows, max(rows, 2 * have_rows)) if rows > have_rows else have_rows
        if positions > have_positions:
            positions = min(self.context_length, max(positions, 2 * have_positions, self.MIN_CAPACITY))
        else:
            positions = have_positions
        shape = (rows, self.spec.kv_heads, positions, self.spec.head_size)
        grown = [np.zeros(shape, dtype=self.spec.kv_dtype) for _ in self.spec.past_names]
        if self.arrays is not None and live:
            for new, old in zip(grown, self.arrays, strict=True):
                new[:live, :, : old.shape[2]] = old[:live]
        self.arrays = grown

    def put(self, row: int, cache: list[np.ndarray], length: int) -> None:
        """Row `row` takes a prompt's cache (arrays [1, kv_heads, >= length, head_size])."""
        for array, prompt in zip(self.arrays, cache, strict=True):
            array[row, :, :length] = prompt[0, :, :length]

    def move(self, source: int, target: int, length: int) -> None:
        for array in self.arrays:
            array[target, :, :length] = array[source, :, :length]

    def values(self, live: int) -> list[OrtValue]:
        """The first `live` rows as onnxruntime values over the same memory (a leading slice
        of a C-ordered array is contiguous: no copy)."""
        return [OrtValue.ortvalue_from_numpy(array[:live]) for array in self.arrays]

    def clear(self) -> None:
        self.arrays = None
