"""The batching engine on the shipped tiny model: requests that arrive together decode in one
batch, each gets the text it gets alone, and one request's trouble stays its own.

To put requests in the queue "at the same time", a test holds the batcher's lock while it
submits them (the scheduler admits under that lock), then lets go."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inference.engine import BatchingEngine, SamplingParams
from inference.engine.batching import Job
from inference.engine.contract import EngineBusy, Limits
from inference.errors import InferenceError, InvalidRequest

TINY = Path(__file__).resolve().parent.parent.parent / "inference" / "weights" / "tiny-qwen3"


def messages(i: int) -> list[dict]:
    return [{"role": "user", "content": f"Question {i}: " + "tell me more " * (i % 5)}]


def job_for(engine: BatchingEngine, i: int, params: SamplingParams, **order) -> Job:
    from inference.engine import prompt_text

    tokens = engine.encode(prompt_text(engine.chat_template, messages=messages(i), prompt=None, enable_thinking=False))
    return Job(tokens, params, engine._matchers(params), **order)


def wait(job: Job, timeout: float = 60) -> list:
    while True:
        kind, value = job.events.get(timeout=timeout)
        if kind == "done":
            return value
        if kind == "error":
            raise value


def submit_together(engine: BatchingEngine, jobs: list[Job]) -> None:
    with engine.batcher._cond:  # the scheduler cannot admit until all are queued
        for job in jobs:
            engine.batcher.submit(job)


@pytest.fixture
def engine():
    engine = BatchingEngine(TINY, limits=Limits(max_batch=16))
    yield engine
    engine.close()


def test_requests_that_arrive_together_decode_in_one_batch_and_match_alone(engine):
    params = [SamplingParams(max_tokens=48, seed=100 + i) for i in range(8)]
    alone = [engine.generate(messages=messages(i), params=params[i])[0] for i in range(8)]
    steps_alone = engine.stats()["steps"]

    jobs = [job_for(engine, i, params[i]) for i in range(8)]
    submit_together(engine, jobs)
    together = [wait(job)[0] for job in jobs]

    assert engine.stats()["peak_batch"] == 8
    # One step decodes all 8: far fewer steps than the same tokens one request at a time.
    assert engine.stats()["steps"] - steps_alone <= max(c.completion_tokens for c in together)
    assert [c.text for c in together] == [c.text for c in alone]
    assert [c.finish_reason for c in together] == [c.finish_reason for c in alone]


def test_a_group_and_single_requests_share_the_batch(engine):
    group = SamplingParams(n=4, max_tokens=32, seed=7)
    single = SamplingParams(max_tokens=32, seed=7)
    jobs = [job_for(engine, 0, group), job_for(engine, 0, single), job_for(engine, 1, single)]
    submit_together(engine, jobs)
    results = [wait(job) for job in jobs]
    assert [len(r) for r in results] == [4, 1, 1]
    assert engine.stats()["peak_batch"] == 6
    # Sequence 0 of a seeded group draws what the single request with that seed draws.
    assert results[0][0].text == results[1][0].text
    assert len({c.text for c in results[0]}) > 1


def test_a_seeded_request_repeated_under_the_same_load_gives_the_same_text(engine):
    def under_load():
        jobs = [job_for(engine, i, SamplingParams(max_tokens=40, seed=i)) for i in range(6)]
        submit_together(engine, jobs)
        return [wait(job)[0].text for job in jobs]

    assert under_load() == under_load()


def test_guided_sequences_finish_at_different_steps_without_disturbing_others(engine):
    short = SamplingParams(max_tokens=30, seed=1, guidance_type="regex", guidance=r"<score>[1-5]</score>")
    long = SamplingParams(n=3, max_tokens=60, seed=2, guidance_type="regex", guidance=r"[a-z]{20,40}\.")
    plain = SamplingParams(max_tokens=50, seed=3)
    jobs = [job_for(engine, 0, short), job_for(engine, 1, long), job_for(engine, 2, plain)]
    submit_together(engine, jobs)
    (score,), longs, (plain_done,) = (wait(job) for job in jobs)
    assert score.finish_reason == "stop" and score.text.startswith("<score>") and score.text.endswith("</score>")
    for c in longs:
        assert c.finish_reason == "stop", c
        assert c.text.endswith(".") and c.text[:-1].isalpha() and 20 <= len(c.text) - 1 <= 40
    assert plain_done.text == engine.generate(messages=messages(2), params=plain)[0].text


def test_guidance_that_does_not_compile_is_refused_and_the_batch_goes_on(engine):
    running = job_for(engine, 0, SamplingParams(max_tokens=40, seed=5))
    engine.batcher.submit(running)
    with pytest.raises(InvalidRequest, match="guidance"):
        engine.generate(messages=messages(1), params=SamplingParams(guidance_type="lark_grammar", guidance="start: ("))
    (done,) = wait(running)
    assert done.completion_tokens >= 1
    assert done.text == engine.generate(messages=messages(0), params=SamplingParams(max_tokens=40, seed=5))[0].text


def test_a_cancelled_request_leaves_and_the_others_finish_as_alone(engine):
    params = SamplingParams(max_tokens=3000, seed=11, guidance_type="regex", guidance=r"[a-z]{3000}")
    stays = SamplingParams(max_tokens=60, seed=12)
    expected = engine.generate(messages=messages(1), params=stays)[0]
    leaving, staying = job_for(engine, 0, params), job_for(engine, 1, stays)
    submit_together(engine, [leaving, staying])
    leaving.events.get(timeout=30)  # it has started decoding
    leaving.cancelled.set()
    cancelled = wait(leaving)
    assert cancelled[0].finish_reason == "cancelled"
    assert cancelled[0].completion_tokens < 3000
    assert wait(staying)[0].text == expected.text


def test_a_request_over_the_limits_is_refused_before_it_queues(engine):
    small = BatchingEngine(TINY, limits=Limits(max_batch=2, max_queue=1))
    try:
        with pytest.raises(InvalidRequest, match="batch of 2"):
            small.generate(messages=messages(0), params=SamplingParams(n=3))
        with pytest.raises(InvalidRequest, match="does not fit"):
            small.generate(messages=messages(0), params=SamplingParams(max_tokens=small.context_length))
        # A full queue refuses with EngineBusy, a transient error the pipelines retry.
        held = [job_for(small, i, SamplingParams(max_tokens=8, seed=i)) for i in range(2)]
        with small.batcher._cond:
            small.batcher.submit(held[0])
            with pytest.raises(EngineBusy, match="queue is full"):
                small.batcher.submit(held[1])
        assert wait(held[0])[0].completion_tokens >= 1
    finally:
        small.close()


def test_interactive_requests_go_first_then_clients_take_turns(engine):
    one = BatchingEngine(TINY, limits=Limits(max_batch=1))
    try:
        params = SamplingParams(max_tokens=4, seed=0)
        jobs = {
            "a1": job_for(one, 0, params, client="run-a"),
            "a2": job_for(one, 1, params, client="run-a"),
            "a3": job_for(one, 2, params, client="run-a"),
            "b1": job_for(one, 3, params, client="run-b"),
            "you": job_for(one, 4, params, client="run-c", priority="interactive"),
        }
        with one.batcher._cond:
            for job in jobs.values():
                one.batcher.submit(job)
        for job in jobs.values():
            wait(job)
        order = sorted(jobs, key=lambda name: jobs[name].admitted_at)
    finally:
        one.close()
    assert order == ["you", "a1", "b1", "a2", "a3"]


def test_the_cache_grows_and_shrinks_under_running_sequences_without_changing_their_text(engine, monkeypatch):
    from inference.engine.cache import KVBuffer

    # Requests of different lengths join one after another while the others decode: the
    # buffer grows in rows and, from a small start, in positions; rows that finish are
    # replaced by the last ones. Every text stays the one decoded alone.
    params = [SamplingParams(max_tokens=8 + 9 * i, seed=300 + i, stop=["\n\n\n"]) for i in range(6)]
    alone = [engine.generate(messages=messages(i), params=params[i])[0].text for i in range(6)]
    monkeypatch.setattr(KVBuffer, "MIN_CAPACITY", 8)
    grown = BatchingEngine(TINY, limits=Limits(max_batch=16))
    try:
        shapes = []
        real_ensure = KVBuffer.ensure

        def ensure(self, rows, positions, live):
            real_ensure(self, rows, positions, live)
            shapes.append(self.shape)

        monkeypatch.setattr(KVBuffer, "ensure", ensure)
        jobs = [job_for(grown, i, params[i]) for i in range(6)]
        for job in jobs:  # one at a time: each joins a batch already decoding
            grown.batcher.submit(job)
        texts = [wait(job)[0].text for job in jobs]
        assert grown.stats()["peak_batch"] > 1
    finally:
        grown.close()
    assert texts == alone
    rows, positions = zip(*shapes, strict=True)
    assert len(set(rows)) > 1  # grew in rows as requests joined
    assert max(positions) > 32 and len(set(positions)) > 2  # grew in positions while decoding
    assert grown.batcher._kv.arrays is None  # given back once the batch emptied


def test_a_model_failure_fails_that_batch_and_the_engine_goes_on(engine):
    real = engine.batcher.session

    class FailsOnce:
        failed = False

        def run(self, names, feeds):  # a prefill
            return real.run(names, feeds)

        def io_binding(self):
            return real.io_binding()

        def run_with_iobinding(self, binding):  # a decoding step
            if not self.failed:
                self.failed = True
                raise RuntimeError("out of memory")
            return real.run_with_iobinding(binding)

    engine.batcher.session = FailsOnce()
    with pytest.raises(InferenceError, match="out of memory"):
        engine.generate(messages=messages(0), params=SamplingParams(max_tokens=20, seed=1))
    (after,) = engine.generate(messages=messages(0), params=SamplingParams(max_tokens=20, seed=1))
    assert after.completion_tokens >= 1
    assert engine.stats()["batch"] == 0


def test_prompts_that_begin_alike_reuse_the_cached_beginning_and_decode_the_same(engine):
    from inference.judging import run_judge

    rubric = {"criteria": [{"key": "voice", "scale_min": 1, "scale_max": 5}]}
    cold = BatchingEngine(TINY, limits=Limits(prefix_cache_mb=0))
    try:
        expected = [run_judge(cold, rubric, messages(i), f"answer {i}").raw for i in range(4)]
        assert cold.stats()["prefix_tokens"] == 0
    finally:
        cold.close()
    got = [run_judge(engine, rubric, messages(i), f"answer {i}").raw for i in range(4)]
    stats = engine.stats()
    # The judge's instructions and rubric come first in every prompt: computed once.
    assert stats["prefix_tokens"] > stats["prefill_tokens"] / 2
    assert got == expected


def test_the_prefix_cache_keeps_to_its_size():
    from inference.engine.cache import PrefixCache

    cache = PrefixCache(max_bytes=3 * 400)
    arrays = lambda n: [np.zeros((1, 1, n, 10), dtype=np.float32)]  # noqa: E731  40 bytes a token
    for i in range(5):
        cache.add(np.arange(10) + 100 * i, arrays(10))
    assert len(cache) == 3 and cache.bytes == 1200  # the two least recently used dropped
    assert cache.longest(np.arange(10))[0] == 0
    assert cache.longest(np.concatenate([np.arange(10) + 400, [7, 7]]))[0] == 10
    assert cache.longest(np.concatenate([np.arange(5) + 400, [0] * 7]))[0] == 0  # under MIN_TOKENS in common
    assert cache.longest(np.arange(10) + 400)[0] == 9  # one token is left to compute


def test_an_accelerator_export_runs_on_onnxruntime_genais_own_runtime(tmp_path, monkeypatch):
    import json
    import shutil

    import inference.engine.static
    from inference.engine import open_engine
    from inference.engine.static import StaticEngine

    # The runtime itself, on the tiny CPU model: a group of n, seeded, as before batching.
    static = StaticEngine(TINY)
    group = static.generate(messages=messages(0), params=SamplingParams(n=3, max_tokens=12, seed=4))
    assert [c.index for c in group] == [0, 1, 2] and all(1 <= c.completion_tokens <= 12 for c in group)
    assert static.generate(messages=messages(0), params=SamplingParams(n=3, max_tokens=12, seed=4)) == group
    # A folder whose genai_config names an execution provider (a CUDA export) gets it.
    export = tmp_path / "cuda-export"
    shutil.copytree(TINY, export)
    config = json.loads((export / "genai_config.json").read_text())
    config["model"]["decoder"]["session_options"]["provider_options"] = [{"cuda": {}}]
    (export / "genai_config.json").write_text(json.dumps(config))
    monkeypatch.setattr(inference.engine.static, "StaticEngine", lambda model_dir, threads=None: ("static", model_dir))
    assert open_engine(export) == ("static", export)
    assert isinstance(open_engine(TINY), BatchingEngine)


def test_a_caller_whose_stream_fails_leaves_the_batch(engine):
    params = SamplingParams(max_tokens=3000, seed=11, guidance_type="regex", guidance=r"[a-z]{3000}")

    def broken(pieces):
        raise ConnectionError("the client went away")

    with pytest.raises(ConnectionError):
        engine.generate(messages=messages(0), params=params, on_step=broken)
    (after,) = engine.generate(messages=messages(1), params=SamplingParams(max_tokens=8, seed=1))
    assert after.completion_tokens >= 1
    assert engine.stats()["batch"] == 0  # the abandoned request left at the next step, not at its end
