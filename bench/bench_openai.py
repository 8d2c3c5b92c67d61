"""Orchestration efficiency through the openai backend: a generate + judge run against the raw
`openai` client driving the same OpenAI-compatible server, same run, same concurrency, measured
in one run.

- baseline: the raw `openai` client, no Shaping code on the request path: for each prompt, G
  streamed chat completions, then each completion judged (the judge's prompt, asked again up to
  twice while its answer does not parse, as a run does), `--workers` prompts at once and at most
  `--concurrency` requests in flight;
- full stack: a PipelineRun generating and judging through the endpoint (`generator_endpoint`,
  `judge_endpoint`), executed by a real huey consumer process: the openai backend, the task
  manager, every completion and judgment written through labelling's services, progress and
  streamed tokens published to the run's channel group.

The server is `transformers serve` on the shipped tiny model's Hugging Face weights, on CPU
(it answers one request at a time, so both sides are bound by the same server). Decoding is
greedy (temperature 0), so both sides generate the very same texts and ask the judge the very same
questions: the server's work is equal, and what differs is the orchestration. Uses its own data
directory (SQLite, huey on SQLite) unless DATABASE_URL/REDIS_URL are set.

    python bench/bench_openai.py [--prompts 8] [--group 2] [--workers 4] [--concurrency 4] [--max-tokens 32] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ENDPOINT = "bench"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--group", type=int, default=2)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2, help="each variant this many times, in ABBA order")
    args = parser.parse_args()

    from tests.openai_fixture import TransformersServe

    data_dir = Path(tempfile.mkdtemp(prefix="bench-openai-"))
    server = TransformersServe(data_dir).start()
    try:
        setup_django(data_dir, server, args)
        from bench.bench_pipeline import setup_rows

        character, prompt_set, rubric = setup_rows(args.prompts)
        warm_up(server)
        raws, fulls = [], []
        for round_ in range(args.rounds):  # raw, full, full, raw, ...: a drift on the machine hits both
            variants = ["raw", "full"] if round_ % 2 == 0 else ["full", "raw"]
            for variant in variants:
                if variant == "raw":
                    raws.append(run_raw(server, character, prompt_set, rubric, args))
                else:
                    fulls.append(run_full(character, prompt_set, rubric, args, data_dir))
    finally:
        server.stop()
    raw_s = statistics.median(r[0] for r in raws)
    full_s = statistics.median(f[0] for f in fulls)
    _, raw_failed, raw_texts = raws[-1]
    run = fulls[-1][1]
    completions = args.prompts * args.group
    print(
        f"\nGenerate + judge through an OpenAI-compatible endpoint: {args.prompts} prompts x G={args.group}, "
        f"max_tokens={args.max_tokens}, {args.workers} prompts at once, at most {args.concurrency} requests in "
        f"flight; transformers serve, shipped tiny model, CPU"
    )
    print(f"| {'variant':<52} | {'seconds':>8} | {'completions/s':>13} | {'efficiency':>10} |")
    print(f"|{'-' * 54}|{'-' * 10}|{'-' * 15}|{'-' * 12}|")
    print(f"| {'raw openai client (baseline)':<52} | {raw_s:>8.2f} | {completions / raw_s:>13.2f} | {'100.0%':>10} |")
    print(
        f"| {'full stack: openai backend, huey, database, events':<52} | {full_s:>8.2f} | "
        f"{completions / full_s:>13.2f} | {raw_s / full_s:>9.1%} |"
    )
    print(
        f"medians of {args.rounds}: raw {', '.join(f'{r[0]:.2f}' for r in raws)} s; "
        f"full stack {', '.join(f'{f[0]:.2f}' for f in fulls)} s"
    )
    judged = run.judgments.count()
    same = sorted(raw_texts) == sorted(run.generations.filter(revision=0).values_list("raw_text", flat=True))
    print(
        f"run #{run.pk}: {run.status}, {run.done_items}/{run.total_items} items, {judged} judgments; "
        f"unparseable judge answers: raw {raw_failed}, run {run.judgments.filter(status='failed').count()}; "
        f"the same completions on both sides: {'yes' if same else 'no'}"
    )


def sampling_of(args) -> dict:
    return {"max_tokens": args.max_tokens, "temperature": 0.0}


def setup_django(data_dir: Path, server, args) -> None:
    os.environ.setdefault("DATA_DIR", str(data_dir))
    os.environ.setdefault("HUEY_NAME", "bench-openai")
    prefix = f"OPENAI_ENDPOINT_{ENDPOINT.upper()}_"
    os.environ.update(
        DJANGO_SETTINGS_MODULE="shaping_web.settings",
        PIPELINE_WORKERS=str(args.workers),
        **server.env(ENDPOINT),
        **{prefix + "CONCURRENCY": str(args.concurrency), prefix + "TIMEOUT_S": "600"},
    )
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def warm_up(server) -> None:
    """One request first: the server's first one pays for warming its model up."""
    import openai

    client = openai.OpenAI(base_url=server.url, api_key="none")
    endpoint = server.endpoint()
    client.chat.completions.create(model=endpoint.model, messages=[{"role": "user", "content": "hi"}], max_tokens=4)


def run_raw(server, character, prompt_set, rubric, args) -> tuple[float, int, list[str]]:
    """The same requests as the run makes, with the openai client alone."""
    import openai

    from inference.errors import JudgeOutputError
    from inference.judging import judge_max_tokens, judge_messages, parse_judgment
    from inference.pipelines import sampling_from
    from labelling.catalogue import selectors as catalogue_selectors

    endpoint = server.endpoint()
    client = openai.OpenAI(base_url=endpoint.url, api_key="none", timeout=600)
    sampling = sampling_from({"sampling": sampling_of(args)})
    spec = rubric.as_spec()
    conversations = [
        catalogue_selectors.prompt_messages_for(character, p) for p in prompt_set.prompts.order_by("order", "id")
    ]
    slots = threading.BoundedSemaphore(args.concurrency)
    requests = ThreadPoolExecutor(max_workers=args.concurrency)
    failed, texts = [], []

    def streamed(messages: list[dict], max_tokens: int, generation_config: dict, temperature: float) -> str:
        with slots:
            stream = client.chat.completions.create(
                model=endpoint.model,
                messages=messages,
                max_tokens=max_tokens,
                temperature=temperature,
                top_p=sampling["top_p"] if temperature else 1.0,
                stream=True,
                extra_body={
                    "generation_config": json.dumps(generation_config),
                    "chat_template_kwargs": {"enable_thinking": False},
                },
            )
            chunks = list(stream)
        return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)

    def completion(messages: list[dict]) -> str:
        text = streamed(messages, sampling["max_tokens"], {"do_sample": False}, sampling["temperature"])
        texts.append(text)
        return text

    def judged(messages: list[dict], text: str) -> None:
        for _ in range(3):  # the first answer and two more tries, as a run asks
            answer = streamed(judge_messages(spec, messages, text), judge_max_tokens(spec), {"do_sample": False}, 0.0)
            try:
                parse_judgment(spec, answer)
                return
            except JudgeOutputError:
                continue
        failed.append(text)

    def item(messages: list[dict]) -> None:
        texts = [f.result() for f in [requests.submit(completion, messages) for _ in range(args.group)]]
        for f in [requests.submit(judged, messages, t) for t in texts]:
            f.result()

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=args.workers) as items:
        for f in [items.submit(item, m) for m in conversations]:
            f.result()
    elapsed = time.perf_counter() - started
    requests.shutdown()
    return elapsed, len(failed), texts


def run_full(character, prompt_set, rubric, args, data_dir: Path):
    from bench.faults import Consumer
    from labelling.models import PipelineRun
    from labelling.runs import services as run_services

    env = dict(os.environ)
    from django.db import connection

    if connection.vendor == "sqlite":
        env["SQLITE_PATH"] = str(connection.settings_dict["NAME"])
    consumer = Consumer(env, data_dir / "huey.log").start()
    try:
        time.sleep(3)  # let the consumer start: its start-up is not the run's cost
        started = time.perf_counter()
        run, _ = run_services.run_start(
            kind="generate",
            character=character,
            prompt_set=prompt_set,
            rubric=rubric,
            group_size=args.group,
            params={
                "sampling": sampling_of(args),
                "workers": args.workers,
                "generator_endpoint": ENDPOINT,
                "judge_endpoint": ENDPOINT,
            },
        )
        final = {PipelineRun.Status.SUCCEEDED, PipelineRun.Status.PARTIAL, PipelineRun.Status.FAILED}
        while run.status not in final:
            time.sleep(0.05)
            run.refresh_from_db()
        return time.perf_counter() - started, run
    finally:
        consumer.stop()


if __name__ == "__main__":
    main()
