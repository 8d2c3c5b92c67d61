"""Engine pieces that need no model: sampling checks and stop strings."""

import pytest

from inference.engine import SamplingParams, apply_stop
from inference.errors import InvalidRequest


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"max_tokens": 0}, "max_tokens"),
        ({"n": 0}, "n must be"),
        ({"n": 99}, "n must be"),
        ({"top_p": 0}, "top_p"),
        ({"temperature": -1}, "temperature"),
        ({"stop": [""]}, "stop"),
        ({"guidance_type": "regex"}, "go together"),
        ({"guidance_type": "regex", "guidance": "(unclosed"}, "invalid regex"),
        ({"guidance_type": "json_schema", "guidance": "{nope"}, "invalid JSON schema"),
        ({"guidance_type": "xml", "guidance": "x"}, "guidance_type"),
        ({"colour": "blue"}, "unknown sampling parameter"),
    ],
)
def test_bad_sampling_params_are_refused(params, message):
    with pytest.raises(InvalidRequest, match=message):
        SamplingParams.from_dict(params)


@pytest.mark.parametrize(
    ("text", "piece", "stops", "expected"),
    [
        ("Hello", " world", ["\n"], ("Hello world", " world", False)),
        ("Hello", " wor\nld", ["\n"], ("Hello wor", " wor", True)),
        ("Hello EN", "D more", ["END"], ("Hello ", "", True)),  # a stop spanning two pieces
        ("abc", "def", ["zz", "de"], ("abc", "", True)),
        ("abc", "", ["a"], ("abc", "", False)),
    ],
)
def test_stop_strings_cut_the_text(text, piece, stops, expected):
    assert apply_stop(text, piece, stops) == expected


def test_sampling_keeps_to_the_guidance_and_the_top_k_and_top_p():
    import numpy as np

    from inference.engine.sampling import allowed_tokens, rng_for, sample

    logits = np.array([5.0, 4.0, 3.0, 2.0, 1.0, 0.0])
    draws = {sample(logits, temperature=1.0, top_p=1.0, top_k=2, rng=rng_for(1, i)) for i in range(200)}
    assert draws == {0, 1}
    # top_p 0.5: token 0 alone holds more than half of the mass.
    assert {sample(logits, temperature=1.0, top_p=0.5, top_k=0, rng=rng_for(2, i)) for i in range(50)} == {0}
    allowed = np.array([False, False, True, False, True, False])
    draws = {
        sample(logits, temperature=1.0, top_p=1.0, top_k=0, rng=rng_for(3, i), allowed=allowed) for i in range(200)
    }
    assert draws == {2, 4}
    assert sample(logits, temperature=0, top_p=1.0, top_k=0, rng=rng_for(None, 0), allowed=allowed) == 2
    with pytest.raises(ValueError, match="allows no token"):
        sample(logits, temperature=0.7, top_p=1.0, top_k=0, rng=rng_for(4, 0), allowed=np.zeros(6, dtype=bool))
    # llguidance's bitmask: bit i of 32-bit word i // 32.
    bitmask = np.array([0b10100, 1], dtype=np.int32)
    assert np.flatnonzero(allowed_tokens(bitmask, 40)).tolist() == [2, 4, 32]
    # A seeded sequence draws the same numbers whoever else is drawing.
    assert rng_for(7, 1).random() == rng_for(7, 1).random() != rng_for(7, 2).random()


def test_the_batched_top_k_draws_what_sampling_one_row_draws():
    import numpy as np

    from inference.engine.sampling import TOPK_MODEL, TopK, draw, rng_for, sample, topk_model

    assert TOPK_MODEL.read_bytes() == topk_model()  # the shipped graph is the one made here
    rows = np.random.default_rng(0).standard_normal((3, 5000)).astype(np.float32)
    rows[2, :4000] = -np.inf  # a guided row: most tokens refused
    values, ids = TopK()(rows, 20)
    assert values.shape == ids.shape == (3, 20)
    for row in range(3):
        assert ids[row].tolist() == np.argsort(-rows[row], kind="stable")[:20].tolist()
        for i in range(20):
            kwargs = {"temperature": 0.7, "top_p": 0.8}
            one = sample(rows[row], top_k=20, rng=rng_for(i, row), **kwargs)
            assert draw(ids[row], values[row], rng=rng_for(i, row), **kwargs) == one
    # k beyond the row: every token, largest first.
    values, ids = TopK()(np.array([[1.0, 3.0, 2.0]], dtype=np.float32), 20)
    assert ids.tolist() == [[1, 2, 0]]


def test_each_tokens_bookkeeping_is_one_rule_for_every_runtime():
    from inference.engine.contract import SequenceText

    class Letters:  # token t decodes to the letter at t
        def decode(self, token: int) -> str:
            return "abcdefgh"[token]

    params = SamplingParams(max_tokens=4, stop=["cd"])
    seq = SequenceText(Letters())
    assert [seq.push(t, params, {7}) for t in (0, 1)] == ["a", "b"] and seq.finish is None
    assert seq.push(2, params, {7}) == "c" and seq.push(3, params, {7}) == ""  # "cd" completes: cut before it
    assert (seq.text, seq.finish, seq.count) == ("ab", "stop", 4)
    ended = SequenceText(Letters())
    assert ended.push(7, params, {7}) == "" and (ended.text, ended.finish) == ("", "stop")  # end of sequence
    long = SequenceText(Letters())
    assert [long.push(t, params, {7}) for t in (0, 0, 0, 0)] == ["a"] * 4 and long.finish == "length"
    done = SequenceText(Letters())
    assert done.push(4, params, {7}, done=True) == "e" and done.finish == "stop"  # a complete grammar
    assert done.completion(2, 9).as_dict() == {
        "index": 2,
        "text": "e",
        "finish_reason": "stop",
        "prompt_tokens": 9,
        "completion_tokens": 1,
    }


def test_every_runtime_takes_the_engine_contracts_arguments():
    import inspect

    from inference.engine import BatchingEngine, Engine
    from inference.engine.paged import PagedEngine
    from inference.engine.static import StaticEngine

    for method in ("encode", "generate", "stats", "close"):
        wanted = inspect.signature(getattr(Engine, method))
        for runtime in (BatchingEngine, StaticEngine, PagedEngine):
            got = inspect.signature(getattr(runtime, method))
            assert list(got.parameters) == list(wanted.parameters), (runtime.__name__, method)
            assert [p.default for p in got.parameters.values() if p.name != "is_cancelled"] == [
                p.default for p in wanted.parameters.values() if p.name != "is_cancelled"
            ], (runtime.__name__, method)
