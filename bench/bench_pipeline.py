"""Orchestration efficiency: a generate+judge run through the whole stack against the raw
backend at the same concurrency, measured in one run.

- baseline: the same generator tasks (a group of G per prompt, then each completion
  judged) driven straight over the Triton backend by the task manager: no database,
  no queue, no events;
- full stack: a PipelineRun started as the web/API does, executed by a real huey
  consumer process, every completion and judgment written through labelling's
  services, progress and tokens published to the run's channel group.

Both use the real tritonserver with the shipped model and the same seed and sampling.
Uses its own data directory (SQLite, huey on SQLite) unless DATABASE_URL/REDIS_URL are set.

    python bench/bench_pipeline.py [--prompts 200] [--group 4] [--workers 4] [--max-tokens 32]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=200)
    parser.add_argument("--group", type=int, default=4)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--skip-raw", action="store_true", help="only the full stack (bench_batching's e2e)")
    args = parser.parse_args()

    from bench.fill import triton_stack

    data_dir, server = triton_stack("pipeline", PIPELINE_WORKERS=str(args.workers))
    try:
        character, prompt_set, rubric = setup_rows(args.prompts)
        raw_s = None if args.skip_raw else run_raw(server.url, character, prompt_set, rubric, args)
        full_s, run = run_full(character, prompt_set, rubric, args, data_dir)
    finally:
        server.stop()
    items = args.prompts
    completions = items * args.group
    model = os.environ.get("GENERATOR_MODEL_DIR")
    print(
        f"\nGenerate + judge: {items} prompts x G={args.group}, max_tokens={args.max_tokens}, "
        f"{args.workers} workers, {Path(model).name if model else 'shipped model'} on the bundled CPU tritonserver"
    )
    print(f"| {'variant':<46} | {'seconds':>8} | {'completions/s':>13} | {'efficiency':>10} |")
    print(f"|{'-' * 48}|{'-' * 10}|{'-' * 15}|{'-' * 12}|")
    if raw_s is not None:
        print(
            f"| {'raw backend, task manager only (baseline)':<46} | {raw_s:>8.2f} | {completions / raw_s:>13.1f} | "
            f"{'100.0%':>10} |"
        )
    efficiency = f"{raw_s / full_s:>9.1%}" if raw_s is not None else f"{'-':>10}"
    print(
        f"| {'full stack: huey, database writes, events':<46} | {full_s:>8.2f} | {completions / full_s:>13.1f} | "
        f"{efficiency} |"
    )
    print(f"run #{run.pk}: {run.status}, {run.done_items}/{run.total_items} items, {run.failed_items} failed")


def setup_rows(n: int):
    from labelling.catalogue import services as catalogue_services
    from labelling.catalogue.schemas import CharacterIn, CriterionIn, PromptIn, PromptSetIn, RubricIn

    character = catalogue_services.character_create(
        data=CharacterIn(slug="bench", name="Bench", persona="A calm navigator.")
    )
    rubric = catalogue_services.rubric_create(
        data=RubricIn(
            slug="bench",
            name="Bench",
            criteria=[
                CriterionIn(key="in_character", description="In character"),
                CriterionIn(key="helpful", description="Helpful"),
            ],
        )
    )
    prompt_set = catalogue_services.prompt_set_create(data=PromptSetIn(slug="bench", name="Bench"))
    catalogue_services.prompts_add(
        prompt_set=prompt_set,
        prompts=[
            PromptIn(id=f"p{i}", messages=[{"role": "user", "content": f"Question {i}: where now?"}]) for i in range(n)
        ],
    )
    return character, prompt_set, rubric


def run_raw(url: str, character, prompt_set, rubric, args) -> float:
    from inference.backends.base import JudgeRequest
    from inference.backends.triton import TritonBackend
    from inference.dispatch import Call, TaskManager
    from inference.pipelines import generate_task, sampling_from
    from labelling.catalogue import selectors as catalogue_selectors

    sampling = sampling_from({"sampling": {"max_tokens": args.max_tokens}})
    spec = rubric.as_spec()
    conversations = [
        catalogue_selectors.prompt_messages_for(character, p) for p in prompt_set.prompts.order_by("order", "id")
    ]

    def item(messages):
        result = yield from generate_task(messages, sampling, args.group)
        judged = yield [
            Call("judge", JudgeRequest(rubric=spec, messages=messages, completion=c["text"]))
            for c in result["completions"]
        ]
        return {"judged": len(judged)}

    backend = TritonBackend(url, timeout_s=600)
    started = time.perf_counter()
    outcomes = list(
        TaskManager(backend, workers=args.workers).run((i, lambda m=m: item(m)) for i, m in enumerate(conversations))
    )
    elapsed = time.perf_counter() - started
    assert all(o.ok for o in outcomes), [o.failure for o in outcomes if not o.ok][:3]
    return elapsed


def run_full(character, prompt_set, rubric, args, data_dir: Path):
    from django.db import connection

    from labelling.models import PipelineRun
    from labelling.runs import services as run_services

    env = dict(os.environ)
    if connection.vendor == "sqlite":
        env["SQLITE_PATH"] = str(connection.settings_dict["NAME"])
    log = open(data_dir / "huey.log", "ab")  # noqa: SIM115
    consumer = subprocess.Popen(
        [sys.executable, "manage.py", "run_huey", "--workers", "2", "--worker-type", "thread"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        time.sleep(2)  # let the consumer start: its start-up is not the run's cost
        started = time.perf_counter()
        run, _ = run_services.run_start(
            kind="generate",
            character=character,
            prompt_set=prompt_set,
            rubric=rubric,
            group_size=args.group,
            params={"sampling": {"max_tokens": args.max_tokens}, "workers": args.workers},
        )
        final = {PipelineRun.Status.SUCCEEDED, PipelineRun.Status.PARTIAL, PipelineRun.Status.FAILED}
        while run.status not in final:
            time.sleep(0.05)
            run.refresh_from_db()
        return time.perf_counter() - started, run
    finally:
        consumer.terminate()
        consumer.wait(timeout=30)
        log.close()


if __name__ == "__main__":
    main()
