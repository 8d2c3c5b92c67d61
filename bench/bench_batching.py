"""Batching across requests, each figure against its baseline in the same run (ratios).

1. requests: 8 concurrent requests of n=1 against the same 8 one after another, through
   the batching engine (inference/engine/cpu.py), on the Qwen3-0.6B-shaped model (build it:
   `python -m inference.build_model --preset qwen3-0.6b-shape`); also the 8 one after
   another through onnxruntime-genai's own generator (inference/engine/static.py, how
   every request ran before the batching engine). Tokens/s, same seeds.
2. judge: concurrent judge requests (guided, greedy) against the same one after another,
   without and with the prefix cache (every judge prompt begins with the same instructions
   and rubric); with --before, also one after another on onnxruntime-genai's generator.
3. match: how often a seeded completion decoded alone is the same text as the same request
   decoded in a batch with others (floating-point order can change with the batch's shape).
4. items: a generate + judge run's items through the task manager over the in-process
   backend (no database), on onnxruntime-genai's generator as before against the batching
   engine, `--workers` items in flight (default 16), on --model.
5. e2e (with --baseline-rev REV): bench/bench_pipeline.py's full-stack generate + judge
   run (200 prompts x G=4 through tritonserver and a huey consumer; the shipped model, or
   --e2e-model DIR) on a worktree of REV and on this tree, in turn, with each number of
   items in flight in --e2e-workers (default 4,16); the baseline is REV at the first.

    python bench/bench_batching.py [--only requests|judge|match|items|e2e] [--model DIR]
        [--requests 8] [--max-tokens 32] [--judges 16] [--prompts 200] [--workers 16] [--baseline-rev REV]
        [--e2e-workers 4,16] [--e2e-model DIR]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from inference.engine import BatchingEngine, SamplingParams  # noqa: E402
from inference.engine.cache import PrefixCache  # noqa: E402
from inference.engine.contract import Limits  # noqa: E402
from inference.judging import run_judge  # noqa: E402

SHAPED = ROOT / "data" / "models" / "qwen3-0.6b-shape"
TINY = ROOT / "inference" / "weights" / "tiny-qwen3"
RUBRIC = {
    "criteria": [
        {"key": "in_character", "scale_min": 1, "scale_max": 5},
        {"key": "helpfulness", "scale_min": 1, "scale_max": 5},
    ]
}


def prompt(i: int) -> list[dict]:
    return [
        {"role": "system", "content": "You are Aria, a ship's navigator."},
        {"role": "user", "content": f"Question {i}: where are we headed tonight, and why?"},
    ]


def concurrently(fn, count: int) -> list:
    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(fn, range(count)))


def timed(fn) -> tuple[float, object]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def bench_requests(model_dir: Path, count: int, max_tokens: int) -> list[tuple]:
    from inference.engine.static import StaticEngine

    engine = BatchingEngine(model_dir)
    params = [SamplingParams(max_tokens=max_tokens, seed=i) for i in range(count)]

    def one(i: int):
        return engine.generate(messages=prompt(i), params=params[i])[0]

    one(0)  # warm up
    rows = []
    seconds, done = timed(lambda: [one(i) for i in range(count)])
    base = sum(c.completion_tokens for c in done) / seconds
    rows.append((f"{count} one after another (baseline)", seconds, base, 1.0))
    seconds, done = timed(lambda: concurrently(one, count))
    rate = sum(c.completion_tokens for c in done) / seconds
    rows.append((f"{count} concurrent, batched", seconds, rate, rate / base))
    peak = engine.stats()["peak_batch"]
    engine.close()
    static = StaticEngine(model_dir)
    static.generate(messages=prompt(0), params=params[0])
    seconds, done = timed(lambda: [static.generate(messages=prompt(i), params=params[i])[0] for i in range(count)])
    rate = sum(c.completion_tokens for c in done) / seconds
    rows.append((f"{count} one after another, onnxruntime-genai generator (before)", seconds, rate, rate / base))
    print(f"peak batch: {peak}")
    return rows


def bench_judge(model_dir: Path, count: int, before: bool) -> list[tuple]:
    answers = [f"Tonight we sail north by the {i}th star; the current is with us." for i in range(count + 1)]

    def judged(engine, i: int):
        return run_judge(engine, RUBRIC, prompt(i), answers[i])

    rows = []
    for cache_mb in (0, Limits().prefix_cache_mb):
        engine = BatchingEngine(model_dir, limits=Limits(prefix_cache_mb=cache_mb))
        judged(engine, count)  # warm up (another answer: nothing of it is cached for the others)
        engine.batcher.prefix = PrefixCache(cache_mb * 2**20) if cache_mb else None
        start = engine.stats()
        seconds_seq, _ = timed(lambda e=engine: [judged(e, i) for i in range(count)])
        mid = engine.stats()
        tokens = mid["tokens"] - start["tokens"]
        engine.batcher.prefix = PrefixCache(cache_mb * 2**20) if cache_mb else None
        seconds_con, _ = timed(lambda e=engine: concurrently(lambda i: judged(e, i), count))
        end = engine.stats()
        engine.close()
        cache = f"prefix cache {cache_mb} MB" if cache_mb else "no prefix cache"
        if not rows:
            base = seconds_seq
        rows.append(
            (
                f"{count} judge requests one after another, {cache}",
                seconds_seq,
                tokens / seconds_seq,
                base / seconds_seq,
            )
        )
        rows.append(
            (
                f"{count} judge requests concurrent, batched, {cache}",
                seconds_con,
                tokens / seconds_con,
                base / seconds_con,
            )
        )
        for phase, a, b in (("one after another", start, mid), ("concurrent", mid, end)):
            print(
                f"{cache}, {phase}: prefill {b['prefill_s'] - a['prefill_s']:.1f} s "
                f"({b['prefill_tokens'] - a['prefill_tokens']} tokens computed, "
                f"{b['prefix_tokens'] - a['prefix_tokens']} from the cache), decode {b['decode_s'] - a['decode_s']:.1f} s"
            )
    if before:
        from inference.engine.static import StaticEngine

        static = StaticEngine(model_dir)
        judged(static, count)
        seconds, _ = timed(lambda: [judged(static, i) for i in range(count)])
        rows.append(
            (
                f"{count} judge requests one after another, onnxruntime-genai generator (before)",
                seconds,
                tokens / seconds,
                base / seconds,
            )
        )
    rows[0] = (rows[0][0] + " (baseline)", *rows[0][1:])
    return rows


def bench_match(model_dir: Path, count: int, max_tokens: int) -> tuple[int, int, int]:
    """(same text, decoded tokens equal up to the end, count) for seeded requests alone vs batched."""
    engine = BatchingEngine(model_dir)
    params = [SamplingParams(max_tokens=max_tokens, seed=1000 + i) for i in range(count)]
    alone = [engine.generate(messages=prompt(i), params=params[i])[0] for i in range(count)]
    batched = concurrently(lambda i: engine.generate(messages=prompt(i), params=params[i])[0], count)
    engine.close()
    same = sum(a.text == b.text for a, b in zip(alone, batched, strict=True))
    return same, engine.stats()["peak_batch"], count


def bench_items(model_dir: Path, prompts: int, group: int, workers: int, max_tokens: int) -> list[tuple]:
    """A generate + judge run's items (a group of G, then each completion judged) through the
    task manager over the in-process backend, on onnxruntime-genai's generator as before and
    on the batching engine: the run's work without its database, on any model."""
    import os

    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shaping_web.settings")
    django.setup()
    import inference.backends.inprocess as inprocess
    from inference.backends.base import JudgeRequest
    from inference.dispatch import Call, TaskManager
    from inference.engine.static import StaticEngine
    from inference.pipelines import generate_task, sampling_from

    rubric = {
        "criteria": [
            {"key": "in_character", "description": "In character", "scale_min": 1, "scale_max": 5, "levels": {}},
            {"key": "helpful", "description": "Helpful", "scale_min": 1, "scale_max": 5, "levels": {}},
        ]
    }
    sampling = sampling_from({"sampling": {"max_tokens": max_tokens}})

    def item(messages):
        result = yield from generate_task(messages, sampling, group)
        yield [
            Call("judge", JudgeRequest(rubric=rubric, messages=messages, completion=c["text"]))
            for c in result["completions"]
        ]
        return {}

    def run(open_engine) -> float:
        inprocess.open_engine = open_engine
        backend = inprocess.InProcessBackend(model_dir)
        manager = TaskManager(backend, workers=workers)
        seconds, outcomes = timed(lambda: list(manager.run((i, lambda i=i: item(prompt(i))) for i in range(prompts))))
        assert all(o.ok for o in outcomes), [o.failure for o in outcomes if not o.ok][:3]
        backend.close()
        return seconds

    batching = inprocess.open_engine
    before = run(lambda d, **_: StaticEngine(d))
    after = run(batching)
    label = f"{prompts} prompts x G={group}, generate + judge, {workers} in flight"
    return [
        (f"{label}, onnxruntime-genai generator (before, baseline)", before, prompts * group / before, 1.0),
        (f"{label}, batching engine", after, prompts * group / after, before / after),
    ]


def bench_e2e(rev: str, prompts: int, group: int, workers: list[int], model: Path | None) -> list[tuple]:
    """bench/bench_pipeline.py's full-stack run on a worktree of `rev` and on this tree, in
    turn, with each number of items in flight; the baseline is `rev` at the first of them."""
    env = dict(os.environ)
    if model:  # the app's settings, and the Triton models' (which read their own variables)
        names = ("GENERATOR_MODEL_DIR", "SHAPING_GENERATOR_MODEL_DIR", "SHAPING_JUDGE_MODEL_DIR")
        env.update(dict.fromkeys(names, str(model.resolve())))

    def run(tree: Path, count: int) -> float:
        script = tree / "bench" / "bench_pipeline.py"
        args = ["--prompts", str(prompts), "--group", str(group), "--workers", str(count)]
        if "--skip-raw" in script.read_text():  # only the full stack is compared here
            args.append("--skip-raw")
        out = subprocess.run(
            [sys.executable, str(script), *args], cwd=tree, env=env, capture_output=True, text=True, check=True
        ).stdout
        print(out)
        return float(re.search(r"full stack[^|]*\|\s*([\d.]+)", out).group(1))

    seconds = {}
    with tempfile.TemporaryDirectory(prefix="baseline-") as tmp:
        tree = Path(tmp) / "tree"
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(tree), rev], cwd=ROOT, check=True, capture_output=True
        )
        try:
            for count in workers:
                seconds[rev, count] = run(tree, count)
                seconds["this tree", count] = run(ROOT, count)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=False)
    before = seconds[rev, workers[0]]
    return [
        (f"{prompts} prompts x G={group}, {count} in flight, {tree}", took, prompts * group / took, before / took)
        for (tree, count), took in seconds.items()
    ]


def table(title: str, unit: str, rows: list[tuple]) -> None:
    print(f"\n{title}\n| variant | seconds | {unit} | speed-up |\n| --- | ---: | ---: | ---: |")
    for name, seconds, rate, ratio in rows:
        print(f"| {name} | {seconds:.2f} | {rate:.3g} | **{ratio:.2f}x** |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=["requests", "judge", "match", "items", "e2e"])
    parser.add_argument("--workers", type=int, default=16, help="items: in flight at once")
    parser.add_argument(
        "--e2e-workers", default="4,16", help="e2e: items in flight, comma-separated; the first is the baseline's"
    )
    parser.add_argument("--e2e-model", type=Path, default=None, help="e2e: a model folder (default: the shipped one)")
    parser.add_argument("--model", type=Path, default=SHAPED)
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--judges", type=int, default=16)
    parser.add_argument("--judge-model", type=Path, default=None, help="default: --model")
    parser.add_argument("--baseline-rev", default=None)
    parser.add_argument(
        "--before", action="store_true", help="judge: also one after another on onnxruntime-genai's generator"
    )
    parser.add_argument("--prompts", type=int, default=200)
    parser.add_argument("--group", type=int, default=4)
    args = parser.parse_args()
    if not (args.model / "genai_config.json").is_file():
        sys.exit(f"no model at {args.model}: python -m inference.build_model --preset qwen3-0.6b-shape")
    print(f"model: {args.model.name}")
    if args.only in (None, "requests"):
        table("Cross-request batching", "tokens/s", bench_requests(args.model, args.requests, args.max_tokens))
    if args.only in (None, "judge"):
        judge_model = args.judge_model or args.model
        table(f"Judge batching ({judge_model.name})", "tokens/s", bench_judge(judge_model, args.judges, args.before))
    if args.only in (None, "match"):
        same, peak, count = bench_match(args.model, args.requests, args.max_tokens)
        print(f"\nSeeded alone vs batched (peak batch {peak}): {same}/{count} texts identical")
    if args.only in (None, "items"):
        table(
            "Generate + judge items, in process",
            "completions/s",
            bench_items(args.model, args.prompts, args.group, args.workers, args.max_tokens),
        )
    if args.baseline_rev and args.only in (None, "e2e"):
        workers = [int(w) for w in args.e2e_workers.split(",")]
        rows = bench_e2e(args.baseline_rev, args.prompts, args.group, workers, args.e2e_model)
        table("End to end", "completions/s", rows)


if __name__ == "__main__":
    main()
