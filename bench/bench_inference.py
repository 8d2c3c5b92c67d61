"""Inference benchmarks, each against its baseline in the same run (ratios, not seconds).

1. Group batching: one request for n=G completions against G sequential requests of
   n=1, same prompt, same max_tokens; compared as generated tokens per second.
   Run on the Qwen3-0.6B-shaped model (build it first:
   `python -m inference.build_model --preset qwen3-0.6b-shape`), in process, as the
   Triton model runs it.
2. Streaming overhead: the same generation (same seed, so the same tokens) through the
   real tritonserver, streamed (one event per decoding step, and coalesced every 20 ms)
   against a single final response; on the shipped tiny model (the worst case: a step
   costs almost nothing, so per-event costs show) and on the benchmark model.

3. Triton vs in-process at concurrency 1, 4 and 16 (requests/s, tokens/s, p50/p95).

    python bench/bench_inference.py [--only batching|concurrency|streaming] [--model DIR] [--group 8]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from inference.backends.base import GenerateRequest  # noqa: E402
from inference.backends.triton import TritonBackend  # noqa: E402
from inference.engine import BatchingEngine, SamplingParams  # noqa: E402
from inference.triton_server import TritonProcess, free_port  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
import fill  # noqa: E402

TINY = ROOT / "inference" / "weights" / "tiny-qwen3"
SHAPED = ROOT / "data" / "models" / "qwen3-0.6b-shape"
MESSAGES = [
    {"role": "system", "content": "You are Aria, a ship's navigator."},
    {"role": "user", "content": "Where are we headed tonight, and why?"},
]


def timed(fn, repeats: int) -> tuple[float, int]:
    """Median seconds over `repeats` and the tokens the last repeat generated."""
    times, tokens = [], 0
    for _ in range(repeats):
        started = time.perf_counter()
        tokens = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), tokens


def bench_batching(model_dir: Path, group: int, max_tokens: int, repeats: int) -> list[tuple]:
    engine = BatchingEngine(model_dir)

    def batched() -> int:
        params = SamplingParams(n=group, max_tokens=max_tokens, seed=1)
        return sum(c.completion_tokens for c in engine.generate(messages=MESSAGES, params=params))

    def sequential() -> int:
        total = 0
        for i in range(group):
            params = SamplingParams(n=1, max_tokens=max_tokens, seed=1 + i)
            total += engine.generate(messages=MESSAGES, params=params)[0].completion_tokens
        return total

    engine.generate(messages=MESSAGES, params=SamplingParams(max_tokens=2))  # warm up
    seq_s, seq_tokens = timed(sequential, repeats)
    batch_s, batch_tokens = timed(batched, repeats)
    seq_rate, batch_rate = seq_tokens / seq_s, batch_tokens / batch_s
    return [
        (f"{group} sequential requests of n=1 (baseline)", seq_tokens, seq_s, seq_rate, 1.0),
        (f"one request of n={group}", batch_tokens, batch_s, batch_rate, batch_rate / seq_rate),
    ]


def bench_streaming(model_dir: Path, group: int, max_tokens: int, repeats: int) -> list[tuple]:
    with tempfile.TemporaryDirectory(prefix="bench-triton-") as work:
        server = TritonProcess(
            Path(work), grpc_port=free_port(), metrics_port=free_port(), generator_dir=model_dir, judge_dir=TINY
        ).start()
        try:
            backend = TritonBackend(server.url, timeout_s=600)
            params = SamplingParams(n=group, max_tokens=max_tokens, seed=3)

            def run(interval_ms: int | None, stream: bool) -> int:
                request = GenerateRequest(messages=MESSAGES, params=params, stream_interval_ms=interval_ms)
                on_delta = (lambda i, p: None) if stream else None
                return sum(c.completion_tokens for c in backend.generate(request, on_delta=on_delta))

            run(None, False)  # warm up
            plain_s, tokens = timed(lambda: run(None, False), repeats)
            rows = [("single final response (baseline)", tokens, plain_s, tokens / plain_s, 1.0)]
            for interval, name in (
                (0, "streamed, one event per decoding step"),
                (20, "streamed, coalesced every 20 ms (default)"),
            ):
                seconds, streamed = timed(lambda interval=interval: run(interval, True), repeats)
                assert streamed == tokens, "same seed, same tokens"
                rows.append((name, streamed, seconds, streamed / seconds, plain_s / seconds))
        finally:
            server.stop()
    return rows


def bench_concurrency(model_dir: Path, requests: int, max_tokens: int) -> list[str]:
    """Triton vs in-process at concurrency 1, 4 and 16: the same requests (n=1), in threads."""
    from concurrent.futures import ThreadPoolExecutor

    from inference.backends.inprocess import InProcessBackend

    lines = []
    with tempfile.TemporaryDirectory(prefix="bench-triton-") as work:
        server = TritonProcess(
            Path(work), grpc_port=free_port(), metrics_port=free_port(), generator_dir=model_dir, judge_dir=TINY
        ).start()
        try:
            backends = {"in-process": InProcessBackend(model_dir), "triton": TritonBackend(server.url, timeout_s=600)}
            for backend in backends.values():
                backend.generate(GenerateRequest(messages=MESSAGES, params=SamplingParams(max_tokens=2)))
            baseline = None
            for concurrency in (1, 4, 16):
                for name, backend in backends.items():

                    def one(i: int, backend=backend) -> tuple[float, int]:
                        started = time.perf_counter()
                        (c,) = backend.generate(
                            GenerateRequest(messages=MESSAGES, params=SamplingParams(max_tokens=max_tokens, seed=i))
                        )
                        return time.perf_counter() - started, c.completion_tokens

                    started = time.perf_counter()
                    with ThreadPoolExecutor(concurrency) as pool:
                        results = list(pool.map(one, range(requests)))
                    wall = time.perf_counter() - started
                    latencies = sorted(r[0] for r in results)
                    tokens = sum(r[1] for r in results)
                    baseline = baseline or requests / wall
                    lines.append(
                        f"| {concurrency:>11} | {name:<10} | {requests / wall:>10.1f} | {tokens / wall:>9.0f} | "
                        f"{statistics.median(latencies) * 1000:>8.0f} | {fill.pct(latencies, 95) * 1000:>8.0f} | "
                        f"{requests / wall / baseline:>10.2f}x |"
                    )
        finally:
            server.stop()
    return lines


def table(title: str, rows: list[tuple]) -> None:
    print(f"\n{title}")
    print(f"| {'variant':<44} | {'tokens':>6} | {'seconds':>8} | {'tokens/s':>9} | {'vs baseline':>11} |")
    print(f"|{'-' * 46}|{'-' * 8}|{'-' * 10}|{'-' * 11}|{'-' * 13}|")
    for name, tokens, seconds, rate, ratio in rows:
        print(f"| {name:<44} | {tokens:>6} | {seconds:>8.2f} | {rate:>9.1f} | {ratio:>10.2f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=SHAPED if SHAPED.exists() else TINY)
    parser.add_argument("--stream-model", type=Path, default=TINY)
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--stream-tokens", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--concurrency-model", type=Path, default=TINY)
    parser.add_argument("--requests", type=int, default=48)
    parser.add_argument("--concurrency-tokens", type=int, default=64)
    parser.add_argument("--only", choices=["batching", "concurrency", "streaming"], help="run one benchmark")
    args = parser.parse_args()
    print(f"batching model: {args.model}; streaming model: {args.stream_model}")
    if args.only in (None, "batching"):
        table(
            f"Group batching: n={args.group}, max_tokens={args.max_tokens}, in process",
            bench_batching(args.model, args.group, args.max_tokens, args.repeats),
        )
    if args.only in (None, "concurrency"):
        print(
            f"\nTriton vs in-process, {args.requests} requests of n=1, max_tokens={args.concurrency_tokens} "
            f"({args.concurrency_model.name}); ratio vs in-process at concurrency 1"
        )
        print("| concurrency | backend    | requests/s |  tokens/s | p50 (ms) | p95 (ms) | vs baseline |")
        print("|-------------|------------|------------|-----------|----------|----------|-------------|")
        for line in bench_concurrency(args.concurrency_model, args.requests, args.concurrency_tokens):
            print(line)
    if args.only in (None, "streaming"):
        for model in dict.fromkeys([args.stream_model, args.model]):
            tokens = args.stream_tokens if model == TINY else args.max_tokens
            table(
                f"Streaming overhead through tritonserver ({model.name}): n=4, max_tokens={tokens}",
                bench_streaming(model, 4, tokens, args.repeats),
            )


if __name__ == "__main__":
    main()
