"""The openai backend on the paths a real server will not take on demand (a scripted server:
tests/inference/openai_stub.py), and its endpoints' settings. The contract it shares with the
other backends runs against a real `transformers serve` in test_backend_contract.py."""

import json
import re

import pytest

from inference.backends.base import GenerateRequest, JudgeRequest
from inference.backends.openai import OpenAIBackend
from inference.endpoints import Endpoint, EndpointConfigError, endpoints_from_env
from inference.engine import SamplingParams
from inference.errors import BackendRefused, BackendUnavailable, InferenceError, InvalidRequest, JudgeOutputError
from inference.judging import judge_guidance
from tests.inference.openai_stub import Reply, Stub, error, text

MESSAGES = [{"role": "user", "content": "Where are we headed?"}]
RUBRIC = {
    "slug": "voice",
    "criteria": [{"key": "in_character", "description": "Sounds like Aria", "scale_min": 1, "scale_max": 5}],
}


def backend_for(stub: Stub, **changes) -> OpenAIBackend:
    settings = {"name": "stub", "url": stub.url, "model": "stub-model", "timeout_s": 5.0, "max_retries": 2}
    return OpenAIBackend(Endpoint(**{**settings, **changes}))


def generate(backend, on_delta=None, **params):
    return backend.generate(GenerateRequest(messages=MESSAGES, params=SamplingParams(**params)), on_delta=on_delta)


# --- settings -------------------------------------------------------------------------------


def test_endpoints_are_read_by_name_from_the_environment():
    environ = {
        "OPENAI_ENDPOINTS": "vllm, judge",
        "OPENAI_ENDPOINT_VLLM_URL": "http://vllm.internal:8000/v1",
        "OPENAI_ENDPOINT_VLLM_MODEL": "Qwen/Qwen3-8B",
        "OPENAI_ENDPOINT_VLLM_CAPABILITIES": "n,seed,top_k,thinking,structured_outputs",
        "OPENAI_ENDPOINT_VLLM_CONCURRENCY": "32",
        "OPENAI_ENDPOINT_JUDGE_URL": "https://api.example.com/v1",
        "OPENAI_ENDPOINT_JUDGE_MODEL": "big-judge",
        "OPENAI_ENDPOINT_JUDGE_API_KEY_ENV": "JUDGE_API_KEY",
        "JUDGE_API_KEY": "sk-secret",
    }
    endpoints = endpoints_from_env(environ, default_timeout_s=30)
    assert list(endpoints) == ["vllm", "judge"]
    vllm, judge = endpoints["vllm"], endpoints["judge"]
    assert vllm.capabilities == {"n", "seed", "top_k", "thinking", "structured_outputs"}
    assert (vllm.concurrency, vllm.timeout_s, vllm.max_retries) == (32, 30, 2)
    assert (judge.model, judge.api_key_env, judge.capabilities) == ("big-judge", "JUDGE_API_KEY", set())
    assert "sk-secret" not in repr(endpoints)  # only the variable's name is kept


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"OPENAI_ENDPOINT_VLLM_URL": "vllm:8000"}, "OPENAI_ENDPOINT_VLLM_URL='vllm:8000': expected an http"),
        ({"OPENAI_ENDPOINT_VLLM_MODEL": ""}, "OPENAI_ENDPOINT_VLLM_MODEL: required"),
        ({"OPENAI_ENDPOINT_VLLM_CAPABILITIES": "n,telepathy"}, "CAPABILITIES: unknown telepathy"),
        ({"OPENAI_ENDPOINT_VLLM_API_KEY_ENV": "NOT_SET_ANYWHERE"}, "NOT_SET_ANYWHERE is not set"),
        ({"OPENAI_ENDPOINT_VLLM_CONCURRENCY": "0"}, "CONCURRENCY=0: must be at least 1"),
        ({"OPENAI_ENDPOINTS": "vllm,Big-One"}, "'Big-One' is not a name"),
        ({"OPENAI_ENDPOINTS": "triton"}, "'triton' is reserved"),
    ],
)
def test_a_bad_endpoint_setting_is_refused_naming_the_variable(changes, message):
    environ = {
        "OPENAI_ENDPOINTS": "vllm",
        "OPENAI_ENDPOINT_VLLM_URL": "http://vllm:8000/v1",
        "OPENAI_ENDPOINT_VLLM_MODEL": "Qwen/Qwen3-8B",
        **changes,
    }
    with pytest.raises(EndpointConfigError, match=re.escape(message)):
        endpoints_from_env(environ)


# --- requests as the endpoint declares ------------------------------------------------------------


def test_a_group_is_n_requests_with_seeds_where_the_server_has_no_n():
    with Stub(lambda body, number: text("a", "b")) as stub:
        completions = generate(backend_for(stub), n=3, max_tokens=8, seed=40)
    assert [c.index for c in completions] == [0, 1, 2]
    assert sorted(body["seed"] for body in stub.requests) == [40, 41, 42]
    assert all("n" not in body for body in stub.requests)


def test_a_group_is_one_request_where_the_server_declares_n():
    def respond(body, number):
        reply = Reply(chunks=[])
        for i in range(body["n"]):
            reply.chunks += text(f"text {i}", choice=i).chunks[:-1]
        return reply

    with Stub(respond) as stub:
        completions = generate(backend_for(stub, capabilities=frozenset({"n"})), n=3, max_tokens=8, seed=40)
    assert len(stub.requests) == 1 and stub.requests[0]["n"] == 3
    assert [c.text for c in completions] == ["text 0", "text 1", "text 2"]


def test_sampling_seed_stop_and_max_tokens_go_with_the_request():
    with Stub(lambda body, number: text("hi")) as stub:
        generate(backend_for(stub, capabilities=frozenset({"top_k", "thinking"})), max_tokens=9, seed=5, stop=["!"])
    body = stub.requests[0]
    assert (body["model"], body["max_tokens"], body["seed"], body["stop"]) == ("stub-model", 9, 5, ["!"])
    assert (body["temperature"], body["top_p"], body["top_k"]) == (0.7, 0.8, 20)
    assert body["chat_template_kwargs"] == {"enable_thinking": False}
    assert body["stream"] is True


def test_an_undeclared_extension_is_not_sent():
    with Stub(lambda body, number: text("hi")) as stub:
        generate(backend_for(stub), max_tokens=4)
    assert not {"top_k", "chat_template_kwargs", "generation_config", "n"} & set(stub.requests[0])


def test_at_most_the_endpoints_concurrency_is_in_flight():
    with Stub(lambda body, number: Reply(chunks=text("x").chunks, delay_s=0.2)) as stub:
        completions = generate(backend_for(stub, concurrency=2), n=6, max_tokens=4, seed=1)
    assert len(completions) == 6 and len(stub.requests) == 6
    assert stub.most_in_flight <= 2


@pytest.mark.parametrize(
    ("capability", "kind", "sent"),
    [
        ("structured_outputs", "regex", lambda body: body["structured_outputs"] == {"regex": "<a>[1-5]</a>"}),
        ("guided", "regex", lambda body: body["guided_regex"] == "<a>[1-5]</a>"),
        ("json_schema", "json_schema", lambda body: body["response_format"]["json_schema"]["schema"]["type"]),
        ("guided", "json_schema", lambda body: body["guided_json"]["type"] == "object"),
    ],
)
def test_guidance_goes_the_way_the_endpoint_declares(capability, kind, sent):
    guidance = "<a>[1-5]</a>" if kind == "regex" else json.dumps({"type": "object"})
    with Stub(lambda body, number: text("<a>3</a>")) as stub:
        backend = backend_for(stub, capabilities=frozenset({capability}))
        generate(backend, max_tokens=8, guidance_type=kind, guidance=guidance)
    assert sent(stub.requests[0])


@pytest.mark.parametrize(
    ("capabilities", "kind"), [(set(), "regex"), ({"json_schema"}, "regex"), (set(), "json_schema")]
)
def test_guidance_an_endpoint_does_not_offer_is_refused_before_any_request(capabilities, kind):
    guidance = "<a>[1-5]</a>" if kind == "regex" else json.dumps({"type": "object"})
    with Stub(lambda body, number: text("free text")) as stub:
        backend = backend_for(stub, capabilities=frozenset(capabilities))
        with pytest.raises(InvalidRequest, match=f"endpoint 'stub' .* offers no {kind} guidance"):
            generate(backend, max_tokens=8, guidance_type=kind, guidance=guidance)
    assert stub.requests == []


# --- answers put together as the engine makes them ------------------------------------------------


def test_stop_strings_end_the_text_even_where_the_server_keeps_them():
    pieces = {}
    with Stub(lambda body, number: text("Due ", "north", "! Then", " east")) as stub:
        (completion,) = generate(
            backend_for(stub),
            max_tokens=8,
            stop=["! T"],
            on_delta=lambda i, p: pieces.__setitem__(i, pieces.get(i, "") + p),
        )
    assert completion.text == "Due north" == pieces[0]
    assert completion.finish_reason == "stop"


@pytest.mark.parametrize(
    ("thinking_on", "reasoning", "expected"),
    [
        (False, ("Plot ", "a course."), "<think>\nPlot a course.\n</think>\n\nNorth."),
        (True, ("Plot ", "a course."), "Plot a course.\n</think>\n\nNorth."),  # the prompt opened the block
        (False, ("\n\n",), "North."),  # an empty think block adds nothing
    ],
)
def test_thinking_split_out_by_the_server_is_put_back_as_think_tags(thinking_on, reasoning, expected):
    pieces = {}
    with Stub(lambda body, number: text("North.", reasoning=reasoning)) as stub:
        (completion,) = generate(
            backend_for(stub, capabilities=frozenset({"thinking"})),
            max_tokens=16,
            enable_thinking=thinking_on,
            on_delta=lambda i, p: pieces.__setitem__(i, pieces.get(i, "") + p),
        )
    assert completion.text == expected == pieces[0]
    assert stub.requests[0]["chat_template_kwargs"] == {"enable_thinking": thinking_on}


def test_token_counts_and_finish_reasons_come_from_the_server():
    with Stub(lambda body, number: text("a", "b", "c", finish="length")) as stub:
        (completion,) = generate(backend_for(stub), max_tokens=3)
    assert (completion.prompt_tokens, completion.completion_tokens, completion.finish_reason) == (21, 3, "length")


# --- the judge ------------------------------------------------------------------------------------


def test_a_judge_without_guidance_answering_prose_is_a_judge_output_error_with_the_raw_text():
    with Stub(lambda body, number: text("I'd say it is ", "pretty good.")) as stub:
        backend = backend_for(stub)
        assert backend.capabilities.judge_guidance is None
        with pytest.raises(JudgeOutputError) as caught:
            backend.judge(JudgeRequest(rubric=RUBRIC, messages=MESSAGES, completion="Due north."))
    assert caught.value.raw == "I'd say it is pretty good."
    body = stub.requests[0]
    assert body["temperature"] == 0.0 and "structured_outputs" not in body


def test_a_judge_with_regex_guidance_is_asked_under_the_engines_regex():
    answer = "<rationale>In voice.</rationale>\n<scores>\n<in_character>4</in_character>\n</scores>"
    with Stub(lambda body, number: text(answer)) as stub:
        result = backend_for(stub, capabilities=frozenset({"structured_outputs"})).judge(
            JudgeRequest(rubric=RUBRIC, messages=MESSAGES, completion="Due north.")
        )
    assert result.scores == {"in_character": 4} and result.rationale == "In voice."
    assert stub.requests[0]["structured_outputs"] == {"regex": judge_guidance(RUBRIC)}


def test_a_judge_with_json_schema_guidance_answers_an_object():
    answer = json.dumps({"rationale": "Calm.", "scores": {"in_character": 5}})
    with Stub(lambda body, number: text(answer)) as stub:
        result = backend_for(stub, capabilities=frozenset({"json_schema"})).judge(
            JudgeRequest(rubric=RUBRIC, messages=MESSAGES, completion="Due north.")
        )
    assert result.scores == {"in_character": 5}
    schema = stub.requests[0]["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["scores"]["properties"]["in_character"]["enum"] == [1, 2, 3, 4, 5]
    assert "One JSON object" in stub.requests[0]["messages"][-1]["content"]


# --- bad answers: a clear error, retried where retrying can help ---------------------------------------


def test_the_key_comes_from_its_variable_and_a_refused_key_is_not_retried(monkeypatch):
    monkeypatch.setenv("STUB_KEY", "sk-wrong")
    with Stub(lambda body, number: error(401, "Incorrect API key provided")) as stub:
        backend = backend_for(stub, api_key_env="STUB_KEY")
        with pytest.raises(BackendRefused, match=r"refused the key in STUB_KEY \(401\): Incorrect API key"):
            generate(backend, max_tokens=4)
    assert len(stub.requests) == 1
    assert stub.headers[0]["authorization"] == "Bearer sk-wrong"


def test_429_for_a_while_then_an_answer_is_retried_to_success():
    def respond(body, number):
        return error(429, "slow down", **{"retry-after-ms": "10"}) if number <= 2 else text("finally")

    with Stub(respond) as stub:
        (completion,) = generate(backend_for(stub, max_retries=2), max_tokens=4)
    assert completion.text == "finally"
    assert len(stub.requests) == 3


def test_a_server_error_that_lasts_is_backend_unavailable_after_the_retries():
    failing = Stub(lambda body, number: error(500, "boom", **{"retry-after-ms": "10"}))
    with failing as stub, pytest.raises(BackendUnavailable, match=r"500 after 2 retries: boom"):
        generate(backend_for(stub, max_retries=2), max_tokens=4)
    assert len(stub.requests) == 3


def test_a_server_that_does_not_answer_in_time_is_backend_unavailable():
    late = Stub(lambda body, number: Reply(chunks=text("late").chunks, delay_s=3))
    with late as stub, pytest.raises(BackendUnavailable, match=r"no answer within 0.3s \(after 1 retries\)"):
        generate(backend_for(stub, timeout_s=0.3, max_retries=1), max_tokens=4)
    assert len(stub.requests) == 2


def test_malformed_json_is_a_clear_error_and_not_retried():
    broken = Stub(lambda body, number: Reply(raw=b'data: {"choices": [{"index": 0, "delta": {"content": "a"\n\n'))
    with broken as stub, pytest.raises(InferenceError, match="endpoint 'stub' .*: malformed answer") as caught:
        generate(backend_for(stub), max_tokens=4)
    assert not isinstance(caught.value, BackendUnavailable)
    assert len(stub.requests) == 1


def test_a_server_that_is_not_there_is_backend_unavailable():
    with Stub(lambda body, number: text("x")) as stub:
        url = stub.url
    with pytest.raises(BackendUnavailable, match="cannot reach http://127.0.0.1"):
        generate(OpenAIBackend(Endpoint(name="gone", url=url, model="m", max_retries=0)), max_tokens=4)


def test_health_says_whether_the_server_lists_the_model():
    with Stub(lambda body, number: text("x")) as stub:
        assert backend_for(stub).health().ready
        missing = backend_for(stub, model="other-model").health()
    assert not missing.ready and "does not list 'other-model'" in missing.detail
    assert missing.target.startswith("stub http://127.0.0.1:")
