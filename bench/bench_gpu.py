"""Generation on a GPU: onnxruntime-genai's CUDA runtime against a plain transformers generate
loop, on the same weights and the same GPU, each figure against its baseline in the same run.

1. build: the Qwen3-0.6B-shaped model (random weights, a fixed seed) as a CUDA fp16 export
   for onnxruntime-genai's generator and as a paged-attention export for its engine, both
   from one Hugging Face folder, which the transformers stage loads too.
2. transformers: `model.generate` in fp16, greedy, every request to its full length
   (min_new_tokens): one request; R requests one after another (a plain generate loop);
   the same R as one padded batch (that loop's best case, which serving cannot count on:
   requests arrive apart).
3. static: onnxruntime-genai's generator (inference/engine/static.py): one request; R one
   after another.
4. paged: onnxruntime-genai's engine with dynamic batching (inference/engine/paged.py, the
   contract the app uses): one request; R one after another; R, 4R and 8R concurrent
   requests; 2R judge requests one after another and concurrent; and how often a seeded,
   sampled completion decoded alone is the same text decoded among others.
5. raw: the same engine driven directly from one thread (no contract, no thread per
   request): what inference/engine/paged.py adds to a step; and whether the engine's step lets other
   Python threads run (a counting thread's rate during steps against its rate alone).
6. triton: the paged export served by tritonserver (the bundled server, `--model-config-name=gpu`:
   triton_models/*/configs/gpu.pbtxt), through the app's Triton backend: one request, R, 4R and 8R
   concurrent, against the paged stage's same rows (what Triton costs).
7. run: a generate + judge run (--run-prompts x 4, --run-tokens) through a huey consumer and that
   tritonserver, against the raw backend driven by the task manager (bench/bench_pipeline.py).
8. train: GRPO train runs as the training worker executes them (LoRA, then the full model) from
   the paged export and its Hugging Face weights registered as the base version: steps/s, peak GPU
   memory, and the export to a served version (converted as its parent was built, loaded beside
   it in tritonserver) with the seconds from the last step to the version answering there.

Each stage runs in a process of its own (GPU memory is freed between them; a stage that
fails leaves the others' figures) and appends its figures to --json. Tokens/s counts the
tokens each request generated.

    python bench/bench_gpu.py --work /tmp/gpu-bench [--stages build,transformers,static,paged]
        [--requests 8] [--max-tokens 128] [--json FILE] [--deadline-s S]

bench/gpu_run.sh runs the build, paged, triton, run and train stages on a GPU machine that has
no network, from the packages bench/gpu_bundle.sh packs here.
    python bench/bench_gpu.py --work /tmp/gpu-dry --dry-run    # the tiny model on the CPU, to check the script
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

STAGES = ("build", "transformers", "static", "paged", "raw", "triton", "run", "train")
# A stage left with less than this many seconds before --deadline-s is skipped, not started.
STAGE_MIN_S = {"build": 60, "paged": 20, "triton": 45, "run": 60, "train": 90}


def messages(i: int) -> list[dict]:
    return [
        {"role": "system", "content": "You are Aria, a ship's navigator."},
        {"role": "user", "content": f"Question {i}: where are we headed tonight, and why?"},
    ]


def dirs(work: Path) -> tuple[Path, Path, Path]:
    """(static export, paged export, Hugging Face weights)."""
    return work / "static", work / "paged", work / "hf"


def record(args, stage: str, rows: list[dict], **extra) -> None:
    entry = {"stage": stage, "rows": rows, **extra}
    with open(args.json, "a") as out:
        out.write(json.dumps(entry) + "\n")
    for row in rows:
        print(f"{stage:13} {row['what']:44} {row['tokens']:7d} tok {row['seconds']:8.2f} s {row['tok_s']:9.1f} tok/s")
    sys.stdout.flush()


def row(what: str, tokens: int, seconds: float) -> dict:
    return {"what": what, "tokens": int(tokens), "seconds": round(seconds, 3), "tok_s": round(tokens / seconds, 1)}


def device_name(dry: bool) -> str:
    if dry:
        return "cpu (dry run)"
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError) as exc:
        return f"unknown ({exc})"


# --- stages ------------------------------------------------------------------------------


def stage_build(args) -> None:
    from inference.build_model import PRESETS, SEED, build, build_hf

    static, paged, hf = dirs(args.work)
    target = "cpu" if args.dry_run else "cuda"
    preset = "tiny" if args.dry_run else "qwen3-0.6b-shape"
    started = time.monotonic()
    # The weights first, on their own: the transformers stage needs only them.
    build_hf(PRESETS[preset], hf, SEED)
    if args.static_build:
        build(None, static, from_hf=hf, force=True, target=target)
    built_static = time.monotonic() - started
    build(None, paged, from_hf=hf, force=True, target=target, paged=not args.dry_run)
    config_path = paged / "genai_config.json"
    config = json.loads(config_path.read_text())
    batching = config.get("engine", {}).get("dynamic_batching")
    if batching is not None:
        # The builder sizes the cache at 60% of the GPU's memory; docs/benchmarks.md's figures
        # were taken at 30% (--cache-fraction).
        batching.pop("num_blocks", None)
        batching["gpu_utilization_factor"] = args.cache_fraction
        config_path.write_text(json.dumps(config, indent=4) + "\n")
    built_paged = time.monotonic() - started - built_static
    record(args, "build", [], preset=preset, static_s=round(built_static, 1), paged_s=round(built_paged, 1))
    print(f"build         {preset} for {target}: {built_static:.0f} s, paged {built_paged:.0f} s; {batching}")


def stage_transformers(args) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _, _, hf = dirs(args.work)
    device = "cpu" if args.dry_run else "cuda"
    dtype = torch.float32 if args.dry_run else torch.float16
    tokenizer = AutoTokenizer.from_pretrained(hf)
    tokenizer.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(hf, dtype=dtype).to(device).eval()
    texts = [tokenizer.apply_chat_template(messages(i), tokenize=False, add_generation_prompt=True) for i in range(64)]

    def generate(batch: list[str]) -> int:
        encoded = tokenizer(batch, return_tensors="pt", padding=True).to(device)
        with torch.inference_mode():
            out = model.generate(
                **encoded,
                max_new_tokens=args.max_tokens,
                min_new_tokens=args.max_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
            )
        if device == "cuda":
            torch.cuda.synchronize()
        return (out.shape[1] - encoded["input_ids"].shape[1]) * len(batch)

    generate(texts[:1])  # warm-up: kernels, allocator
    rows = []
    started = time.perf_counter()
    tokens = generate(texts[:1])
    rows.append(row("one request", tokens, time.perf_counter() - started))
    started = time.perf_counter()
    tokens = sum(generate([text]) for text in texts[: args.requests])
    rows.append(row(f"{args.requests} one after another", tokens, time.perf_counter() - started))
    for size in (args.requests, 4 * args.requests):
        generate(texts[:size])  # warm-up for this shape
        started = time.perf_counter()
        tokens = generate(texts[:size])
        rows.append(row(f"{size} as one padded batch", tokens, time.perf_counter() - started))
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    record(args, "transformers", rows, torch=torch.__version__, device=name)


def stage_static(args) -> None:
    from inference.engine import SamplingParams
    from inference.engine.static import StaticEngine

    static, _, _ = dirs(args.work)
    engine = StaticEngine(static)
    greedy = SamplingParams(temperature=0, max_tokens=args.max_tokens)

    def one(i: int) -> int:
        return sum(c.completion_tokens for c in engine.generate(messages=messages(i), params=greedy))

    one(0)  # warm-up
    rows = []
    started = time.perf_counter()
    tokens = one(0)
    rows.append(row("one request", tokens, time.perf_counter() - started))
    started = time.perf_counter()
    tokens = sum(one(i) for i in range(args.requests))
    rows.append(row(f"{args.requests} one after another", tokens, time.perf_counter() - started))
    record(args, "static", rows)


def concurrently(engine, requests: list[tuple[list[dict], object]]) -> tuple[list, float]:
    """Every request from a thread of its own, started together: (completions per request, s)."""
    results: list = [None] * len(requests)
    errors: list = []
    gate = threading.Barrier(len(requests) + 1)

    def run(index: int) -> None:
        gate.wait()
        try:
            results[index] = engine.generate(messages=requests[index][0], params=requests[index][1])
        except Exception as exc:  # reported after the run, with the figures
            errors.append(f"request {index}: {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(requests))]
    for thread in threads:
        thread.start()
    gate.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"{len(errors)} of {len(requests)} requests failed; first: {errors[0]}")
    return results, elapsed


def stage_paged(args) -> None:
    from inference.engine import SamplingParams
    from inference.engine.contract import Limits
    from inference.engine.paged import PagedEngine

    _, paged, _ = dirs(args.work)
    engine = PagedEngine(paged, limits=Limits(max_batch=256, max_queue=4096))
    greedy = SamplingParams(temperature=0, max_tokens=args.max_tokens)
    tokens_of = lambda results: sum(c.completion_tokens for r in results for c in r)  # noqa: E731

    concurrently(engine, [(messages(i), greedy) for i in range(args.requests)])  # warm-up
    rows = []
    started = time.perf_counter()
    tokens = tokens_of([engine.generate(messages=messages(0), params=greedy)])
    rows.append(row("one request", tokens, time.perf_counter() - started))
    started = time.perf_counter()
    tokens = tokens_of([engine.generate(messages=messages(i), params=greedy) for i in range(args.requests)])
    rows.append(row(f"{args.requests} one after another", tokens, time.perf_counter() - started))
    for size in (args.requests, 4 * args.requests, 8 * args.requests):
        results, elapsed = concurrently(engine, [(messages(i), greedy) for i in range(size)])
        rows.append(row(f"{size} concurrent", tokens_of(results), elapsed))
    if args.quick:  # the rows the triton stage is compared with, and no more
        engine.close()
        record(args, "paged", rows, stats=engine.stats())
        return
    # The judge: guided, greedy, one completion per request (inference/judging.py).
    from inference.judging import run_judge

    rubric = {"criteria": [{"key": "in_character", "scale_min": 1, "scale_max": 5}]}
    answer = "North, past the reef, if the wind holds. " * 4
    judges = 2 * args.requests
    run_judge(engine, rubric, messages(0), answer)  # warm-up
    before = engine.stats()["tokens"]
    started = time.perf_counter()
    for i in range(judges):
        run_judge(engine, rubric, messages(i), answer)
    rows.append(
        row(f"{judges} judges one after another", engine.stats()["tokens"] - before, time.perf_counter() - started)
    )
    before = engine.stats()["tokens"]
    started = time.perf_counter()
    threads = [threading.Thread(target=run_judge, args=(engine, rubric, messages(i), answer)) for i in range(judges)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    rows.append(row(f"{judges} judges concurrent", engine.stats()["tokens"] - before, time.perf_counter() - started))
    extra = {"stats": engine.stats(), "limits": {"max_batch": engine.limits.max_batch}}
    if engine.dynamic:
        # Seeded, sampled: each request alone, then all of them at once among as many greedy ones.
        seeded = [(messages(i), SamplingParams(max_tokens=args.max_tokens, seed=100 + i)) for i in range(args.requests)]
        alone = [engine.generate(messages=m, params=p)[0].text for m, p in seeded]
        again = [engine.generate(messages=m, params=p)[0].text for m, p in seeded]
        mixed, _ = concurrently(engine, seeded + [(messages(50 + i), greedy) for i in range(args.requests)])
        batched = [r[0].text for r in mixed[: args.requests]]
        extra["seeded_repeat_same"] = sum(a == b for a, b in zip(alone, again, strict=True))
        extra["seeded_alone_vs_batched_same"] = sum(a == b for a, b in zip(alone, batched, strict=True))
        extra["seeded_requests"] = args.requests
        print(
            f"paged         seeded completions: alone twice {extra['seeded_repeat_same']}/{args.requests} the same; "
            f"alone vs batched {extra['seeded_alone_vs_batched_same']}/{args.requests} the same"
        )
    engine.close()
    record(args, "paged", rows, **extra)


def stage_raw(args) -> None:
    import numpy as np
    import onnxruntime_genai as og

    from inference.engine import prompt_text
    from inference.engine.chat_template import ChatTemplate

    _, paged, _ = dirs(args.work)
    template = ChatTemplate.from_model_dir(paged)
    model = og.Model(og.Config(str(paged)))
    tokenizer = og.Tokenizer(model)
    engine = og.Engine(model)
    buffer = engine.create_event_buffer(1024)
    token_flag = int(og.EngineEventFlags.TOKEN)

    def run(count: int) -> tuple[int, float, int]:
        requests = []
        for i in range(count):
            request = engine.create_request()
            options = og.TurnOptions(request)
            options.set_max_generated_tokens(args.max_tokens)
            options.set_do_sample(False)
            text = prompt_text(template, messages=messages(i), prompt=None, enable_thinking=False)
            request.begin_turn(np.asarray(tokenizer.encode(text), dtype=np.int32), options)
            requests.append(request)
        tokens = steps = 0
        started = time.perf_counter()
        while engine.has_pending_requests():
            tokens += sum(1 for event in engine.run(buffer) if int(event.flags) & token_flag)
            steps += 1
        elapsed = time.perf_counter() - started
        for request in requests:
            request.close()
        return tokens, elapsed, steps

    run(args.requests)  # warm-up
    rows = []
    tokens, elapsed, steps = run(1)
    rows.append(row("one request", tokens, elapsed))
    step_ms = 1000 * elapsed / steps
    for size in (args.requests, 8 * args.requests):
        tokens, elapsed, _ = run(size)
        rows.append(row(f"{size} concurrent", tokens, elapsed))

    # Does a step hold the interpreter? Count in another thread during steps and alone.
    counted = [0]
    stop = threading.Event()

    def count() -> None:
        while not stop.is_set():
            counted[0] += 1

    def counting_rate(work) -> float:
        counted[0] = 0
        stop.clear()
        thread = threading.Thread(target=count)
        started = time.perf_counter()
        thread.start()
        work()
        stop.set()
        thread.join()
        return counted[0] / (time.perf_counter() - started)

    alone = counting_rate(lambda: time.sleep(0.5))
    during = counting_rate(lambda: run(1))
    extra = {
        "one_request_step_ms": round(step_ms, 2),
        "count_rate_alone": round(alone),
        "count_rate_during": round(during),
    }
    print(
        f"raw           one request: {step_ms:.2f} ms a step; a counting thread ran at "
        f"{during / alone:.2f} of its rate alone during steps"
    )
    record(args, "raw", rows, **extra)


def _server(args, work: Path, **fields):
    """The bundled tritonserver on free ports; on a GPU with the models' gpu configs."""
    from inference.triton_server import TritonProcess, free_port

    extra = [] if args.dry_run else ["--model-config-name=gpu"]
    return TritonProcess(
        work,
        grpc_port=free_port(),
        metrics_port=free_port(),
        extra_args=extra,
        log_path=args.logs / f"{work.name}.log",
        **fields,
    ).start(timeout_s=150)


class _ThroughTriton:
    """The engine's `generate` over the app's Triton backend (one gRPC stream per thread)."""

    def __init__(self, url: str):
        from inference.backends.triton import TritonBackend

        self.backend = TritonBackend(url, timeout_s=600)

    def generate(self, *, messages, params):
        from inference.backends.base import GenerateRequest

        return self.backend.generate(GenerateRequest(messages=messages, params=params))


def stage_triton(args) -> None:
    from inference.engine import SamplingParams

    _, paged, _ = dirs(args.work)
    server = _server(args, args.work / "triton", generator_dir=paged, judge_dir=paged)
    try:
        client = _ThroughTriton(server.url)
        greedy = SamplingParams(temperature=0, max_tokens=args.max_tokens)
        tokens_of = lambda results: sum(c.completion_tokens for r in results for c in r)  # noqa: E731
        # Warm-up: the engine's kernels, and a gRPC stream for each thread of the largest size.
        concurrently(client, [(messages(i), greedy) for i in range(8 * args.requests)])
        rows = []
        started = time.perf_counter()
        tokens = tokens_of([client.generate(messages=messages(0), params=greedy)])
        rows.append(row("one request", tokens, time.perf_counter() - started))
        for size in (args.requests, 4 * args.requests, 8 * args.requests):
            results, elapsed = concurrently(client, [(messages(i), greedy) for i in range(size)])
            rows.append(row(f"{size} concurrent", tokens_of(results), elapsed))
        client.backend.close()
    finally:
        server.stop()
    record(args, "triton", rows, server_args=server.extra_args)


def _django(args, name: str, **env: str) -> Path:
    """A fresh data directory (SQLite, huey on SQLite), Django set up and migrated."""
    data_dir = args.work / name
    shutil.rmtree(data_dir, ignore_errors=True)
    data_dir.mkdir(parents=True)
    os.environ.update(
        DATA_DIR=str(data_dir),
        HUEY_NAME=f"bench-gpu-{name}",
        DJANGO_SETTINGS_MODULE="shaping_web.settings",
        INFERENCE_BACKEND="triton",
        **env,
    )
    for variable in ("DATABASE_URL", "REDIS_URL"):
        os.environ.pop(variable, None)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return data_dir


def stage_run(args) -> None:
    """bench/bench_pipeline.py's two variants, on the paged export served by tritonserver."""
    _, paged, _ = dirs(args.work)
    # Version 1 and the judge serve the paged export (settings.GENERATOR_MODEL_DIR).
    env = {"GENERATOR_MODEL_DIR": str(paged), "JUDGE_MODEL_DIR": str(paged), "PIPELINE_WORKERS": str(args.run_workers)}
    data_dir = _django(args, "run", **env)
    server = _server(args, args.work / "triton-run", generator_dir=paged, judge_dir=paged)
    os.environ["TRITON_URL"] = server.url
    from django.conf import settings

    settings.TRITON_URL = server.url
    sys.path.insert(0, str(ROOT / "bench"))
    from bench_pipeline import run_full, run_raw, setup_rows

    run_args = argparse.Namespace(group=4, max_tokens=args.run_tokens, workers=args.run_workers)
    try:
        character, prompt_set, rubric = setup_rows(args.run_prompts)
        raw_s = run_raw(server.url, character, prompt_set, rubric, run_args)
        full_s, run = run_full(character, prompt_set, rubric, run_args, data_dir)
    finally:
        server.stop()
        shutil.copy2(data_dir / "huey.log", args.logs / "run-huey.log")
    completions = args.run_prompts * 4
    rows = [
        {"what": "raw backend, task manager only", "completions": completions, "seconds": round(raw_s, 2)},
        {"what": "full stack: huey, database, events", "completions": completions, "seconds": round(full_s, 2)},
    ]
    for r in rows:
        r["completions_s"] = round(completions / r["seconds"], 1)
        print(
            f"run           {r['what']:44} {completions:5d} completions {r['seconds']:8.2f} s {r['completions_s']:8.1f}/s"
        )
    outcome = {"status": run.status, "done": run.done_items, "failed": run.failed_items, "total": run.total_items}
    print(f"run           run #{run.pk}: {outcome}; efficiency {raw_s / full_s:.1%}")
    entry = {"stage": "run", "rows": rows, "outcome": outcome, "prompts": args.run_prompts, "group": 4}
    entry |= {"max_tokens": args.run_tokens, "workers": args.run_workers}
    with open(args.json, "a") as out:
        out.write(json.dumps(entry) + "\n")


def stage_train(args) -> None:
    """GRPO train runs as the training worker runs them, from the paged export as the base version."""
    _, paged, hf = dirs(args.work)
    _django(args, "train")
    from django.conf import settings

    from inference.build_model import build_record
    from inference.versions import served as served_versions
    from labelling.models import GeneratorVersion
    from labelling.versions.generators import services as generator_services
    from shaping_core.weights import weights_sha256

    base, done = generator_services.generator_version_register_base(
        onnx_dir=str(paged), hf_dir=str(hf), weights_sha256=weights_sha256(paged), provenance={"bench": "bench_gpu"}
    )
    print(f"train         base version {base.number} ({done}): {paged}")
    server = _server(
        args, args.work / "triton-train", model_repository=served_versions.repository_sync(), explicit=True
    )
    settings.TRITON_URL = server.url
    sys.path.insert(0, str(ROOT / "bench"))
    import bench_train

    rows = []
    try:
        version = bench_train.dataset()
        for label, params in (
            ("LoRA", {"lora": True}),
            ("full model", {"lora": False, "learning_rate": 1e-5}),
        ):
            trial = bench_train.product_trial(version, args.train_steps, params=params)
            made = GeneratorVersion.objects.get(number=trial["version"])
            trainer = made.config.get("trainer", {})
            built = build_record(GeneratorVersion.path(made.onnx_dir))
            entry = {
                "what": f"GRPO {label}, {args.train_steps} steps",
                "steps_s": trainer.get("steps_per_s"),
                "device": trainer.get("device"),
                "peak_gpu_memory_mb": trainer.get("peak_gpu_memory_mb"),
                "train_wall_s": round(trial["train_wall_s"], 1),
                "last_step_to_ready_s": round(trial["last_step_to_ready_s"], 1),
                "export": trial["export"],
                "built": {k: built.get(k) for k in ("target", "precision", "paged_attention")},
                "params": {
                    k: trial["params"].get(k)
                    for k in (
                        "lora",
                        "num_generations",
                        "per_device_batch_size",
                        "max_completion_length",
                        "learning_rate",
                    )
                },
                "reward": [trial["first_reward"], trial["last_reward"]],
            }
            rows.append(entry)
            print(f"train         {json.dumps(entry)}")
    finally:
        server.stop()
    with open(args.json, "a") as out:
        out.write(json.dumps({"stage": "train", "rows": rows}) + "\n")


# --- driver ------------------------------------------------------------------------------


def summary(path: Path) -> None:
    """The headline ratios, from the stages' figures in this run."""
    figures = {}
    for line in path.read_text().splitlines():
        entry = json.loads(line)
        for r in entry["rows"]:
            if "tok_s" in r:
                figures[(entry["stage"], r["what"])] = r["tok_s"]
    print("\nratios (tokens/s over tokens/s, same run)")
    pairs = [
        (("static", "one request"), ("transformers", "one request")),
        (("paged", "one request"), ("transformers", "one request")),
    ]
    requests = [what for stage, what in figures if stage == "paged" and what.endswith("concurrent")]
    loop = next((what for stage, what in figures if stage == "transformers" and "after another" in what), None)
    padded = sorted(what for stage, what in figures if stage == "transformers" and "padded" in what)
    for what in requests:
        pairs.append((("paged", what), ("transformers", loop)))
        size = what.split()[0]
        match = next((p for p in padded if p.split()[0] == size), None)
        if match:
            pairs.append((("paged", what), ("transformers", match)))
    for what in ("one request", *requests):
        pairs.append((("paged", what), ("raw", what)))
        pairs.append((("triton", what), ("paged", what)))
    judges = [what for stage, what in figures if stage == "paged" and "judges" in what]
    if len(judges) == 2:
        pairs.append((("paged", judges[1]), ("paged", judges[0])))
    for (a_stage, a), (b_stage, b) in pairs:
        if (a_stage, a) in figures and (b_stage, b) in figures:
            print(f"  {a_stage} {a:22} / {b_stage} {b:26} = {figures[(a_stage, a)] / figures[(b_stage, b)]:.2f}x")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="where the models are built")
    parser.add_argument("--stages", default=",".join(STAGES))
    parser.add_argument("--stage", help=argparse.SUPPRESS)  # one stage, in this process
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument(
        "--switch-interval", type=float, help="the interpreter's thread switch interval, s (default 0.005)"
    )
    parser.add_argument(
        "--cache-fraction", type=float, default=0.3, help="the paged export's cache, a fraction of the GPU's memory"
    )
    parser.add_argument("--json", type=Path, help="figures, one line per stage (default WORK/figures.jsonl)")
    parser.add_argument("--logs", type=Path, help="servers' and consumers' logs (default WORK/logs)")
    parser.add_argument(
        "--no-static-build", dest="static_build", action="store_false", help="build the paged export only"
    )
    parser.add_argument("--quick", action="store_true", help="paged: the concurrency rows only")
    parser.add_argument("--run-prompts", type=int, default=200)
    parser.add_argument("--run-tokens", type=int, default=32)
    parser.add_argument("--run-workers", type=int, default=32, help="items of the run in flight")
    parser.add_argument("--train-steps", type=int, default=10)
    parser.add_argument("--deadline-s", type=float, help="skip a stage that could not finish in the seconds left")
    parser.add_argument("--dry-run", action="store_true", help="the tiny model on the CPU: checks the script")
    args = parser.parse_args(argv)
    args.json = args.json or args.work / "figures.jsonl"
    args.logs = args.logs or args.work / "logs"
    args.logs.mkdir(parents=True, exist_ok=True)
    if args.switch_interval:
        sys.setswitchinterval(args.switch_interval)
    if args.stage:
        stages = {"build": stage_build, "transformers": stage_transformers, "static": stage_static}
        stages |= {"paged": stage_paged, "raw": stage_raw, "triton": stage_triton, "run": stage_run}
        stages |= {"train": stage_train}
        stages[args.stage](args)
        return 0
    args.work.mkdir(parents=True, exist_ok=True)
    print(f"device: {device_name(args.dry_run)}; {args.requests} requests, {args.max_tokens} tokens each")
    failed, skipped = [], []
    began = time.monotonic()
    for stage in args.stages.split(","):
        command = [sys.executable, __file__, "--stage", stage, "--work", str(args.work), "--json", str(args.json)]
        command += ["--requests", str(args.requests), "--max-tokens", str(args.max_tokens)]
        command += ["--cache-fraction", str(args.cache_fraction), "--logs", str(args.logs)]
        command += ["--run-prompts", str(args.run_prompts), "--run-tokens", str(args.run_tokens)]
        command += ["--run-workers", str(args.run_workers), "--train-steps", str(args.train_steps)]
        command += ["--switch-interval", str(args.switch_interval)] if args.switch_interval else []
        command += ["--dry-run"] if args.dry_run else []
        command += ["--quick"] if args.quick else []
        command += [] if args.static_build else ["--no-static-build"]
        left = None if args.deadline_s is None else args.deadline_s - (time.monotonic() - began)
        if left is not None and left < STAGE_MIN_S.get(stage, 30):
            skipped.append(stage)
            print(f"{stage}: SKIPPED ({left:.0f} s left of --deadline-s)")
            continue
        started = time.monotonic()
        try:
            result = subprocess.run(command, env={**os.environ, "PYTHONUNBUFFERED": "1"}, check=False, timeout=left)
            code = result.returncode
        except subprocess.TimeoutExpired:
            code = "timeout"
        print(f"{stage}: {'done' if code == 0 else f'FAILED ({code})'} in {time.monotonic() - started:.0f} s")
        sys.stdout.flush()
        if code != 0:
            failed.append(stage)
    if args.json.is_file():
        summary(args.json)
    if failed or skipped:
        print(f"failed stages: {', '.join(failed) or 'none'}; skipped: {', '.join(skipped) or 'none'}")
    return 1 if failed or skipped else 0


if __name__ == "__main__":
    sys.exit(main())
