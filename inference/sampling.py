"""Choosing the next token from one row of logits: guidance mask, temperature, top-k, top-p.

Numpy only, one row at a time, each sequence with its own random generator, so a seeded
sequence draws the same numbers whatever else shares its batch. Free of Django and of
the runtime.
"""

from __future__ import annotations

import numpy as np


def rng_for(seed: int | None, index: int) -> np.random.Generator:
    """The random generator of sequence `index` of a request: seeded requests get one
    derived from (seed, index), so sequence i of a group of n draws what the single
    request for sequence i would; unseeded ones get fresh entropy."""
    if seed is None:
        return np.random.default_rng()
    return np.random.default_rng([seed & 0xFFFF_FFFF_FFFF_FFFF, index])


def allowed_tokens(bitmask: np.ndarray, vocab: int) -> np.ndarray:
    """Booleans of `vocab` per row from llguidance's int32 bitmask (bit i of word i // 32),
    for one row or a matrix of them."""
    bits = np.unpackbits(np.ascontiguousarray(bitmask).view(np.uint8), axis=-1, bitorder="little")
    return bits[..., :vocab].astype(bool)


def sample(
    logits: np.ndarray,
    *,
    temperature: float,
    top_p: float,
    top_k: int,
    rng: np.random.Generator,
    allowed: np.ndarray | None = None,
) -> int:
    """The next token: the most likely (temperature 0) or a draw from the top-k tokens,
    cut to the smallest set whose probability reaches top_p. Tokens outside `allowed`
    are never chosen; with none allowed this raises ValueError."""
    scores = np.asarray(logits, dtype=np.float64)
    if allowed is not None:
        if not allowed.any():
            raise ValueError("the guidance allows no token")
        scores = np.where(allowed, scores, -np.inf)
    if temperature <= 0:
        return int(np.argmax(scores))
    candidates = np.flatnonzero(np.isfinite(scores))
    values = scores[candidates]
    if 0 < top_k < values.size:
        keep = np.argpartition(-values, top_k - 1)[:top_k]
        candidates, values = candidates[keep], values[keep]
    order = np.argsort(-values, kind="stable")
    candidates, values = candidates[order], values[order] / temperature
    probs = np.exp(values - values[0])
    probs /= probs.sum()
    if top_p < 1:
        cut = int(np.searchsorted(np.cumsum(probs), top_p)) + 1
        candidates, probs = candidates[:cut], probs[:cut] / probs[:cut].sum()
    return int(candidates[min(int(np.searchsorted(np.cumsum(probs), rng.random(), side="right")), probs.size - 1)])
