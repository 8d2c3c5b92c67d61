"""The real tritonserver's own behaviour: what the server refuses, what it survives."""

import os
import signal
import time

import pytest

from inference.backends.base import GenerateRequest
from inference.backends.triton import TritonBackend
from inference.engine import SamplingParams
from inference.errors import BackendUnavailable, InvalidRequest, ModelNotReady
from inference.triton_server import free_port
from tests.triton_fixture import start_triton

MESSAGES = [{"role": "user", "content": "Hello there"}]


@pytest.fixture
def client(triton_url):
    backend = TritonBackend(triton_url, timeout_s=30)
    yield backend
    backend.close()


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"messages": MESSAGES, "params": {"guidance_type": "regex", "guidance": "(unclosed"}}, "invalid regex"),
        ({"messages": MESSAGES, "params": {"max_tokens": -3}}, "max_tokens"),
        ({"messages": MESSAGES, "params": {"n": 1000}}, "n must be"),
        ({"params": {}}, "exactly one of messages or prompt"),
        ({"messages": "hi", "params": {}}, "non-empty list"),
    ],
)
def test_the_server_refuses_bad_payloads_itself(client, payload, message):
    """Sent raw, past the client's own checks: the model answers with a clear error."""
    with pytest.raises(InvalidRequest, match=message):
        client._call("qwen3", payload, None)


def test_judge_refuses_a_rubric_without_criteria_server_side(client):
    with pytest.raises(InvalidRequest, match="no criteria"):
        client._call("judge", {"rubric": {"criteria": []}, "messages": MESSAGES, "completion": "x"}, None)


def test_a_raw_prompt_bypasses_the_chat_template(client):
    params = {"max_tokens": 5, "seed": 1}
    (raw,) = client._call("qwen3", {"prompt": "Once upon a time", "params": params}, None)["completions"]
    (chat,) = client._call(
        "qwen3", {"messages": [{"role": "user", "content": "Once upon a time"}], "params": params}, None
    )["completions"]
    # The same words, without the template's role markers and empty think block around them.
    assert 0 < raw["prompt_tokens"] < chat["prompt_tokens"] - 10, (raw, chat)
    if raw["finish_reason"] == "length":
        assert raw["completion_tokens"] == 5
    else:
        assert raw["finish_reason"] == "stop" and raw["completion_tokens"] <= 5, raw


def test_an_unknown_model_is_a_clear_error(triton_url):
    backend = TritonBackend(triton_url, generator_model="no-such-model")
    with pytest.raises(ModelNotReady, match="no-such-model"):
        backend.generate(GenerateRequest(messages=MESSAGES))
    assert not backend.health().ready


def test_a_server_that_is_not_there_fails_fast():
    backend = TritonBackend(f"127.0.0.1:{free_port()}", timeout_s=5)
    started = time.monotonic()
    with pytest.raises(BackendUnavailable):
        backend.generate(GenerateRequest(messages=MESSAGES))
    assert time.monotonic() - started < 10
    health = backend.health()
    assert not health.server_ready
    assert "cannot reach" in health.detail


def test_a_client_that_gives_up_frees_the_server(client, triton_url):
    impatient = TritonBackend(triton_url, timeout_s=0.05)
    for _ in range(5):  # more than the model's worker threads
        with pytest.raises(BackendUnavailable, match="Deadline|no answer within"):
            impatient.generate(GenerateRequest(messages=MESSAGES, params=SamplingParams(max_tokens=4000, n=16)))
    # The cancelled generations must not hold the model: a small request still answers.
    (c,) = client.generate(GenerateRequest(messages=MESSAGES, params=SamplingParams(max_tokens=4)))
    assert c.completion_tokens >= 1


@pytest.mark.triton  # its own server, not the fixture's: tests/conftest.py cannot see it
def test_a_crashed_model_instance_is_reported_not_waited_on(tmp_path):
    server = start_triton(tmp_path)
    try:
        backend = TritonBackend(server.url, timeout_s=20)
        assert backend.health().ready
        stubs = _stub_pids(server.process.pid)
        assert stubs, "expected Python-backend stub processes"
        for pid in stubs:
            os.kill(pid, signal.SIGKILL)
        started = time.monotonic()
        with pytest.raises((ModelNotReady, BackendUnavailable)):
            backend.generate(GenerateRequest(messages=MESSAGES, params=SamplingParams(max_tokens=4)))
        assert time.monotonic() - started < 20
    finally:
        server.stop()


@pytest.mark.triton  # its own server: a stopped model would stall the shared one's other tests
def test_a_model_triton_calls_ready_but_that_does_not_answer_is_not_ready(tmp_path):
    """Triton's own readiness says only that a model loaded: with its worker stopped (SIGSTOP)
    it stays "ready" there, while the health check's request gets no answer (Triton's stub
    health check answers for it: "not healthy")."""
    server = start_triton(tmp_path)
    backend = TritonBackend(server.url, timeout_s=20)
    judge = [pid for pid in _stub_pids(server.process.pid) if b"/judge/" in _cmdline(pid)]
    assert len(judge) == 1, "expected one Python-backend stub for the judge"
    try:
        assert backend.health().ready
        os.kill(judge[0], signal.SIGSTOP)
        health = backend.health()
        assert health.models == {"qwen3": True, "judge": False} and not health.ready
        assert "judge does not answer" in health.detail
    finally:  # (this tritonserver then exits: `serve` restarts one, tests/inference/test_serve_supervision.py)
        os.kill(judge[0], signal.SIGCONT)
        backend.close()
        server.stop()


def _cmdline(pid: int) -> bytes:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read()


def _stub_pids(parent: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if ppid == parent and b"triton_python_backend_stub" in cmdline:
            pids.append(int(entry))
    return pids


def test_the_servers_libraries_are_found_beside_the_wheel_wherever_it_is_installed():
    """LD_LIBRARY_PATH names the wheel's bundled libraries from where pytriton is, not from this
    environment's site-packages: an environment that reaches its packages through a .pth file
    (a GPU host's, over the machine's torch) would otherwise start a stub that cannot load."""
    from inference import triton_server

    libs = triton_server.wheel_dir().parent.parent / "nvidia_pytriton.libs"
    assert libs.is_dir()
    assert str(libs) in triton_server.server_env()["LD_LIBRARY_PATH"].split(os.pathsep)
