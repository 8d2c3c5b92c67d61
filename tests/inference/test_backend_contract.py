"""One contract, two backends: the real bundled tritonserver and the in-process engine.

Both run the same engine code, so with the same seed they must give the same texts.
"""

import json
import re

import pytest

from inference.backends.base import GenerateRequest, JudgeRequest
from inference.backends.inprocess import InProcessBackend
from inference.backends.triton import TritonBackend
from inference.engine import SamplingParams
from inference.errors import InvalidRequest
from tests.triton_fixture import TINY_MODEL

MESSAGES = [
    {"role": "system", "content": "You are Aria, a ship's navigator."},
    {"role": "user", "content": "Where are we headed?"},
]
RUBRIC = {
    "slug": "voice",
    "criteria": [
        {"key": "in_character", "description": "Sounds like Aria", "scale_min": 1, "scale_max": 5, "levels": {}},
        {"key": "helpful", "description": "Answers", "scale_min": 1, "scale_max": 3, "levels": {"1": "no", "3": "yes"}},
    ],
}


@pytest.fixture(scope="module")
def inprocess():
    backend = InProcessBackend(TINY_MODEL)
    yield backend
    backend.close()


# The triton case asks for the server only once it runs (getfixturevalue), which
# tests/conftest.py cannot see at collection: it carries its marker here.
@pytest.fixture(params=[pytest.param("triton", marks=pytest.mark.triton), "inprocess"])
def backend(request, inprocess):
    if request.param == "inprocess":
        yield inprocess
        return
    backend = TritonBackend(request.getfixturevalue("triton_url"), timeout_s=60)
    yield backend
    backend.close()


def generate(backend, on_delta=None, **params):
    return backend.generate(GenerateRequest(messages=MESSAGES, params=SamplingParams(**params)), on_delta=on_delta)


def test_a_group_is_n_completions_with_counts_and_finish_reasons(backend):
    completions = generate(backend, n=4, max_tokens=12, seed=7)
    assert [c.index for c in completions] == [0, 1, 2, 3]
    for c in completions:
        assert c.finish_reason in {"stop", "length"}
        assert 1 <= c.completion_tokens <= 12
        if c.finish_reason == "length":
            assert c.completion_tokens == 12
        assert c.prompt_tokens > 10
    assert len({c.text for c in completions}) > 1, "sampled completions of a group should differ"


def test_streamed_pieces_add_up_to_the_final_texts(backend):
    pieces = {}
    completions = generate(
        backend, n=3, max_tokens=10, seed=3, on_delta=lambda i, p: pieces.__setitem__(i, pieces.get(i, "") + p)
    )
    assert {i: pieces.get(i, "") for i in range(3)} == {c.index: c.text for c in completions}


def test_both_backends_agree_for_the_same_seed(backend, inprocess):
    ours = generate(backend, n=2, max_tokens=10, seed=11)
    reference = generate(inprocess, n=2, max_tokens=10, seed=11)
    assert [c.text for c in ours] == [c.text for c in reference]


def test_stop_strings_end_a_completion(backend):
    free = generate(backend, n=1, max_tokens=24, seed=5)[0].text
    assert len(free) > 4
    stop = free[2:4]
    (stopped,) = generate(backend, n=1, max_tokens=24, seed=5, stop=[stop])
    assert stopped.text == free[: free.index(stop)]
    assert stopped.finish_reason == "stop"


def test_regex_guidance_constrains_random_weights(backend):
    (c,) = generate(backend, max_tokens=16, seed=1, guidance_type="regex", guidance=r"<score>[1-5]</score>")
    assert re.fullmatch(r"<score>[1-5]</score>", c.text)


def test_json_schema_guidance_gives_valid_json(backend):
    schema = {
        "type": "object",
        "properties": {"mood": {"enum": ["calm", "stormy"]}},
        "required": ["mood"],
        "additionalProperties": False,
    }
    (c,) = generate(backend, max_tokens=40, seed=2, guidance_type="json_schema", guidance=json.dumps(schema))
    assert json.loads(c.text)["mood"] in {"calm", "stormy"}


def test_judge_scores_every_criterion_in_scale(backend):
    result = backend.judge(JudgeRequest(rubric=RUBRIC, messages=MESSAGES, completion="Due north, captain.", seed=1))
    assert set(result.scores) == {"in_character", "helpful"}
    assert 1 <= result.scores["in_character"] <= 5
    assert 1 <= result.scores["helpful"] <= 3
    assert "<scores>" in result.raw


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (GenerateRequest(messages=[], params=SamplingParams()), "messages"),
        (GenerateRequest(messages=MESSAGES, params=SamplingParams(max_tokens=10**6)), "does not fit"),
    ],
)
def test_bad_generate_requests_are_refused_and_the_server_goes_on(backend, request_, message):
    with pytest.raises(InvalidRequest, match=message):
        backend.generate(request_)
    assert generate(backend, max_tokens=4, seed=1)[0].completion_tokens >= 1


def test_a_rubric_without_criteria_is_refused(backend):
    with pytest.raises(InvalidRequest, match="no criteria"):
        backend.judge(JudgeRequest(rubric={"criteria": []}, messages=MESSAGES, completion="x"))


def test_health_reports_each_model(backend):
    health = backend.health()
    assert health.ready
    assert health.models == {"qwen3": True, "judge": True}
