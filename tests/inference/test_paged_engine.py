"""onnxruntime-genai's engine behind the generate contract (inference/engine/paged.py), on the
shipped tiny model. On the CPU the engine runs its static scheduler (up to 4 sequences, no
per-request seeds): these tests check the plumbing a GPU paged-attention build shares
(admission, streaming, stop strings, cancellation, errors); bench/bench_gpu.py measures it
on a GPU, seeds included."""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import pytest

from inference.engine import SamplingParams, open_engine
from inference.engine.contract import EngineBusy, Limits
from inference.engine.paged import PagedEngine
from inference.errors import InvalidRequest

TINY = Path(__file__).resolve().parent.parent.parent / "inference" / "weights" / "tiny-qwen3"
GREEDY = SamplingParams(temperature=0, max_tokens=16)


def messages(i: int) -> list[dict]:
    return [{"role": "user", "content": f"Question {i}: " + "tell me more " * (i % 5)}]


@pytest.fixture(scope="module")
def engine():
    engine = PagedEngine(TINY)
    yield engine
    engine.close()


def test_concurrent_requests_each_get_the_text_they_get_alone(engine):
    alone = {
        i: engine.generate(messages=messages(i), params=SamplingParams(temperature=0, max_tokens=16, n=2))
        for i in range(6)
    }
    together: dict[int, list] = {}
    streamed: dict[int, dict[int, str]] = {i: {0: "", 1: ""} for i in range(6)}

    def run(i: int) -> None:
        def on_step(pieces: dict[int, str]) -> None:
            for index, piece in pieces.items():
                streamed[i][index] += piece

        together[i] = engine.generate(
            messages=messages(i),
            params=SamplingParams(temperature=0, max_tokens=16, n=2),
            on_step=on_step,
            client=f"run-{i % 2}",
        )

    # A long request holds two of the CPU scheduler's four rows while the six arrive, so they
    # join a running batch and wait their turn, whatever the threads' timing.
    done = threading.Event()
    long = threading.Thread(
        target=engine.generate,
        kwargs={
            "messages": messages(9),
            "params": SamplingParams(temperature=0, max_tokens=4000, n=2),
            "is_cancelled": done.is_set,
        },
    )
    long.start()
    deadline = time.monotonic() + 10
    while engine.stats()["batch"] < 2 and time.monotonic() < deadline:
        time.sleep(0.002)
    threads = [threading.Thread(target=run, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done.set()
    long.join()
    for i in range(6):
        assert [c.text for c in together[i]] == [c.text for c in alone[i]]
        assert [streamed[i][c.index] for c in together[i]] == [c.text for c in together[i]]  # the stream is the text
        assert all(c.completion_tokens == 16 and c.finish_reason == "length" for c in together[i])
    assert engine.stats()["peak_batch"] == 4  # the CPU scheduler's batch: the long request and one more
    assert engine.stats()["batch"] == 0


def test_a_stop_string_cuts_the_text_and_ends_the_sequence(engine):
    (full,) = engine.generate(messages=messages(1), params=GREEDY)
    stop = full.text[4:6]
    (cut,) = engine.generate(messages=messages(1), params=SamplingParams(temperature=0, max_tokens=16, stop=[stop]))
    assert cut.text == full.text[: full.text.index(stop)]
    assert cut.finish_reason == "stop" and cut.completion_tokens < 16


def test_a_cancelled_request_leaves_the_batch_and_the_engine_goes_on(engine):
    started = time.monotonic()
    (gone,) = engine.generate(
        messages=messages(2),
        params=SamplingParams(temperature=0, max_tokens=4000),
        is_cancelled=lambda: time.monotonic() - started > 0.05,
    )
    assert gone.finish_reason == "cancelled" and gone.completion_tokens < 4000
    assert engine.stats()["batch"] == 0
    (after,) = engine.generate(messages=messages(3), params=GREEDY)
    assert after.completion_tokens == 16


def test_a_caller_whose_stream_fails_leaves_the_batch(engine):
    def broken(pieces):
        raise ConnectionError("the client went away")

    before = engine.stats()["tokens"]
    with pytest.raises(ConnectionError):
        engine.generate(messages=messages(0), params=SamplingParams(temperature=0, max_tokens=4000), on_step=broken)
    deadline = time.monotonic() + 10
    while engine.stats()["batch"] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert engine.stats()["batch"] == 0
    assert engine.stats()["tokens"] - before < 4000  # cancelled on the way, not decoded to its end


def test_guidance_is_followed_and_bad_guidance_fails_alone(engine):
    (guided,) = engine.generate(
        messages=messages(0),
        params=SamplingParams(temperature=0, max_tokens=20, guidance_type="regex", guidance="[a-c]{5}"),
    )
    assert len(guided.text) == 5 and set(guided.text) <= set("abc")
    with pytest.raises(InvalidRequest, match="guidance"):
        engine.generate(messages=messages(0), params=SamplingParams(guidance_type="regex", guidance="[a-c"))
    assert engine.generate(messages=messages(0), params=GREEDY)[0].completion_tokens == 16


def test_bad_requests_are_refused_with_what_is_wrong(engine):
    with pytest.raises(InvalidRequest, match="dynamic batching"):  # the CPU scheduler cannot seed a request
        engine.generate(messages=messages(0), params=SamplingParams(seed=3))
    with pytest.raises(InvalidRequest, match="batch of 4"):
        engine.generate(messages=messages(0), params=SamplingParams(n=5))
    with pytest.raises(InvalidRequest, match="does not fit"):
        engine.generate(messages=messages(0), params=SamplingParams(max_tokens=10_000))


def test_a_full_queue_refuses_with_engine_busy():
    engine = PagedEngine(TINY, limits=Limits(max_batch=1, max_queue=1))
    done = threading.Event()
    results = []

    def run(i: int, params: SamplingParams, is_cancelled=lambda: False) -> None:
        results.append(engine.generate(messages=messages(i), params=params, is_cancelled=is_cancelled))

    def until(condition) -> None:
        deadline = time.monotonic() + 10
        while not condition() and time.monotonic() < deadline:
            time.sleep(0.002)

    try:
        running = threading.Thread(target=run, args=(0, SamplingParams(temperature=0, max_tokens=4000), done.is_set))
        running.start()
        until(lambda: engine.stats()["batch"] == 1)
        waiting = threading.Thread(target=run, args=(1, GREEDY))
        waiting.start()
        until(lambda: engine.stats()["queue"] == 1)
        with pytest.raises(EngineBusy, match="queue is full"):
            engine.generate(messages=messages(2), params=GREEDY)
        done.set()
        running.join()
        waiting.join()
        assert sorted(c.finish_reason for (c,) in results) == ["cancelled", "length"]
    finally:
        engine.close()


def test_a_paged_attention_export_gets_this_engine(tmp_path, monkeypatch):
    import inference.engine.paged

    export = tmp_path / "paged-export"
    shutil.copytree(TINY, export)
    config = json.loads((export / "genai_config.json").read_text())
    config["engine"] = {"dynamic_batching": {"block_size": 256, "max_batch_size": 100}}
    (export / "genai_config.json").write_text(json.dumps(config))
    monkeypatch.setattr(inference.engine.paged, "PagedEngine", lambda model_dir, limits=None: ("paged", model_dir))
    assert open_engine(export) == ("paged", export)
