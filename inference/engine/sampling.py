"""Choosing the next token from one row of logits: guidance mask, temperature, top-k, top-p.

Each sequence has its own random generator, so a seeded sequence draws the same numbers
whatever else shares its batch. `sample` does one row in numpy. The batcher takes the
top-k of every sampled row of a step in one onnxruntime TopK call (`TopK`: over Qwen3's
151,936 tokens numpy's argpartition took 1.4 ms a row, the whole draw 4.1 ms, as much as
a tenth of a decoding step per sequence) and then `draw`s each row from its k candidates.
Free of Django.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

TOPK_MODEL = Path(__file__).with_name("topk.onnx")


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
    return draw(candidates[order], values[order], temperature=temperature, top_p=top_p, rng=rng)


def draw(candidates: np.ndarray, values: np.ndarray, *, temperature: float, top_p: float, rng) -> int:
    """One of `candidates` (token ids, most likely first, with their finite logits `values`):
    softmax at `temperature`, cut to the smallest set whose probability reaches top_p."""
    values = np.asarray(values, dtype=np.float64) / temperature
    probs = np.exp(values - values[0])
    probs /= probs.sum()
    if top_p < 1:
        cut = int(np.searchsorted(np.cumsum(probs), top_p)) + 1
        candidates, probs = candidates[:cut], probs[:cut] / probs[:cut].sum()
    return int(candidates[min(int(np.searchsorted(np.cumsum(probs), rng.random(), side="right")), probs.size - 1)])


class TopK:
    """The k largest logits of each row and their token ids, largest first (ties: the lower
    id), by onnxruntime's TopK operator (inference/engine/topk.onnx, made by `topk_model`)."""

    def __init__(self):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(TOPK_MODEL), options, providers=["CPUExecutionProvider"])

    def __call__(self, logits: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        k = min(k, logits.shape[-1])
        values, ids = self.session.run(
            None, {"logits": np.ascontiguousarray(logits, dtype=np.float32), "k": np.array([k], dtype=np.int64)}
        )
        return values, ids


def topk_model() -> bytes:
    """The ONNX graph of `TopK` (needs the onnx package: `pip install -e '.[build]'`);
    tests/inference/test_engine_units.py checks the shipped file is this."""
    from onnx import TensorProto, helper

    node = helper.make_node("TopK", ["logits", "k"], ["values", "ids"], axis=-1, largest=1, sorted=1)
    graph = helper.make_graph(
        [node],
        "topk",
        [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["rows", "vocab"]),
            helper.make_tensor_value_info("k", TensorProto.INT64, [1]),
        ],
        [
            helper.make_tensor_value_info("values", TensorProto.FLOAT, ["rows", "k"]),
            helper.make_tensor_value_info("ids", TensorProto.INT64, ["rows", "k"]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="shaping")
    model.ir_version = 8
    return model.SerializeToString()
