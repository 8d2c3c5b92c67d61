"""One contract, three backends: the real bundled tritonserver, the in-process engine, and the
openai backend against a real OpenAI-compatible server (`transformers serve` on the same tiny
model's Hugging Face weights: tests/openai_fixture.py).

Triton and in-process run the same engine code, so with the same seed they give the same texts.
What a backend cannot do it declares (`backend.capabilities`): each test that needs a capability
checks it where declared and, where not, that the backend says so and refuses rather than
pretending (a declared absence is asserted, never skipped).
"""

import json
import re
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest

from inference.backends.base import GenerateRequest, JudgeRequest
from inference.backends.inprocess import InProcessBackend
from inference.backends.openai import OpenAIBackend
from inference.backends.triton import TritonBackend
from inference.engine import SamplingParams
from inference.errors import BackendRefused, InvalidRequest, JudgeOutputError
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
SCHEMA = {
    "type": "object",
    "properties": {"mood": {"enum": ["calm", "stormy"]}},
    "required": ["mood"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def inprocess():
    backend = InProcessBackend(TINY_MODEL)
    yield backend
    backend.close()


# The triton and openai cases ask for their servers only once they run (getfixturevalue), which
# tests/conftest.py cannot see at collection: they carry their markers here.
@pytest.fixture(
    params=[
        pytest.param("triton", marks=pytest.mark.triton),
        "inprocess",
        pytest.param("openai", marks=pytest.mark.slow),
    ]
)
def backend(request, inprocess):
    if request.param == "inprocess":
        yield inprocess
        return
    if request.param == "openai":
        backend = OpenAIBackend(request.getfixturevalue("transformers_serve").endpoint())
    else:
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


def test_the_same_seed_gives_the_same_texts_where_declared(backend):
    if not backend.capabilities.reproducible:
        assert isinstance(backend, OpenAIBackend) and "seed" not in backend.endpoint.capabilities
        return
    assert [c.text for c in generate(backend, n=2, max_tokens=10, seed=11)] == [
        c.text for c in generate(backend, n=2, max_tokens=10, seed=11)
    ]


def test_engine_backends_agree_for_the_same_seed(backend, inprocess):
    if not backend.capabilities.engine:  # another runtime: its texts are its own
        assert isinstance(backend, OpenAIBackend)
        return
    ours = generate(backend, n=2, max_tokens=10, seed=11)
    reference = generate(inprocess, n=2, max_tokens=10, seed=11)
    assert [c.text for c in ours] == [c.text for c in reference]


def test_the_declared_n_is_what_the_server_does(backend):
    """Measured, not assumed: a request for n=3 answered with 3 choices (or with one)."""
    if not isinstance(backend, OpenAIBackend):
        assert backend.capabilities.group_in_one_request  # the engine batches a group
        return
    endpoint = backend.endpoint
    client = openai.OpenAI(base_url=endpoint.url, api_key="none")
    answer = client.chat.completions.create(
        model=endpoint.model, messages=MESSAGES, n=3, max_tokens=4, extra_body={"generation_config": "{}"}
    )
    assert len(answer.choices) == (3 if backend.capabilities.group_in_one_request else 1)


def test_stop_strings_end_a_completion(backend):
    if backend.capabilities.reproducible:  # cut where the same text, unstopped, has the string
        free = generate(backend, n=1, max_tokens=24, seed=5)[0].text
        assert len(free) > 4
        stop = free[2:4]
        (stopped,) = generate(backend, n=1, max_tokens=24, seed=5, stop=[stop])
        assert stopped.text == free[: free.index(stop)]
        assert stopped.finish_reason == "stop"
        return
    for c in generate(backend, n=4, max_tokens=24, seed=5, stop=["e", "a"]):
        assert "e" not in c.text and "a" not in c.text
        assert c.finish_reason == "stop" or c.completion_tokens == 24


def test_regex_guidance_constrains_random_weights(backend):
    guidance = {"guidance_type": "regex", "guidance": r"<score>[1-5]</score>"}
    if "regex" not in backend.capabilities.guidance:
        with pytest.raises(InvalidRequest, match="offers no regex guidance"):
            generate(backend, max_tokens=16, seed=1, **guidance)
        return
    (c,) = generate(backend, max_tokens=16, seed=1, **guidance)
    assert re.fullmatch(r"<score>[1-5]</score>", c.text)


def test_json_schema_guidance_gives_valid_json(backend):
    guidance = {"guidance_type": "json_schema", "guidance": json.dumps(SCHEMA)}
    if "json_schema" not in backend.capabilities.guidance:
        with pytest.raises(InvalidRequest, match="offers no json_schema guidance"):
            generate(backend, max_tokens=40, seed=2, **guidance)
        return
    (c,) = generate(backend, max_tokens=40, seed=2, **guidance)
    assert json.loads(c.text)["mood"] in {"calm", "stormy"}


def test_judge_scores_every_criterion_in_scale(backend):
    request = JudgeRequest(rubric=RUBRIC, messages=MESSAGES, completion="Due north, captain.", seed=1)
    if backend.capabilities.judge_guidance is None:
        # Free text from random weights: it will not parse, and the raw answer comes back with
        # the error, to be recorded as a failed judgment.
        with pytest.raises(JudgeOutputError, match="gave no score") as caught:
            backend.judge(request)
        assert caught.value.raw
        return
    result = backend.judge(request)
    assert set(result.scores) == {"in_character", "helpful"}
    assert 1 <= result.scores["in_character"] <= 5
    assert 1 <= result.scores["helpful"] <= 3
    assert "<scores>" in result.raw


def test_bad_generate_requests_are_refused_and_the_server_goes_on(backend):
    with pytest.raises(InvalidRequest, match="messages"):
        backend.generate(GenerateRequest(messages=[], params=SamplingParams()))
    too_long = GenerateRequest(messages=MESSAGES, params=SamplingParams(max_tokens=10**6))
    if backend.capabilities.checks_context:
        with pytest.raises(InvalidRequest, match="does not fit"):
            backend.generate(too_long)
    else:  # the server's own business (a real one refuses or truncates): not sent here
        assert isinstance(backend, OpenAIBackend)
    assert generate(backend, max_tokens=4, seed=1)[0].completion_tokens >= 1


def test_a_rubric_without_criteria_is_refused(backend):
    with pytest.raises(InvalidRequest, match="no criteria"):
        backend.judge(JudgeRequest(rubric={"criteria": []}, messages=MESSAGES, completion="x"))


def test_health_reports_each_model(backend):
    health = backend.health()
    assert health.ready
    expected = [backend.endpoint.model] if isinstance(backend, OpenAIBackend) else ["qwen3", "judge"]
    assert health.models == dict.fromkeys(expected, True)


def test_an_unknown_model_name_is_refused_by_the_server(transformers_serve):
    backend = OpenAIBackend(transformers_serve.endpoint(model="no-such-model"))
    try:
        with pytest.raises(BackendRefused, match="'no-such-model'.*does not serve this model"):
            generate(backend, max_tokens=4)
        assert not backend.health().ready
    finally:
        backend.close()


def test_concurrent_requests_batch_and_health_shows_the_engine(backend):
    """Requests in flight together share the engine's batch (the openai server batches on its
    own terms and reports no engine); the health shows the engine's batch and queue."""
    if isinstance(backend, OpenAIBackend):
        assert backend.health().engines == {}
        return
    params = SamplingParams(max_tokens=120, seed=3, guidance_type="regex", guidance=r"[a-z]{120}")
    requests = [GenerateRequest(messages=MESSAGES, params=params, client=f"run-{i}") for i in range(6)]
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(backend.generate, requests))
    assert all(len(r[0].text) == 120 for r in results)
    assert len({r[0].text for r in results}) == 1  # same seed, same text, whatever the batch
    engine = backend.health().engines["qwen3"]
    assert engine["peak_batch"] > 1
    assert engine["batch"] == 0 and engine["queue"] == 0  # nothing left behind
    assert {"max_batch", "tokens_per_s", "steps"} <= set(engine)
