"""Reviewers inside the RL step, measured: GRPO steps/s with the judge alone against the same
round with a share of each step's groups sent to a reviewer live, on the demo model, CPU.

    python bench/bench_live_review.py [--steps 10] [--share 0.5] [--deadline 30] [--think 2]

What `make run` starts (migrate, prepare_model, seed_demo, serve), then: one generate + judge
run of `--prompts` prompts of aria-everyday, a grpo_prompts dataset version of it, and two
train runs from v1 on that version with the same settings and seed:

1. the judge alone (the baseline, in the same run);
2. `live_review` with `--share` of each step's groups sent to the review queue and `--deadline`
   seconds to score them; a scripted reviewer (this script, through the reviewer API) takes
   `--think` seconds per group, scoring by the rule of bench_campaign.py.

Printed: steps/s of each and their ratio, and per step of the live run the groups sent, scored
by the reviewer, and seconds waited. Written to WORK/live_review.json.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_campaign import score  # noqa: E402
from bench_round import Api, demo_up  # noqa: E402


def reviewer_loop(api: Api, stop: threading.Event, think_s: float, counts: dict) -> None:
    while not stop.is_set():
        group = api("POST", "/review/next")
        if group is None:
            time.sleep(0.2)
            continue
        time.sleep(think_s)  # reading and scoring takes a person time
        scores = {
            str(c["generation"]): {k["key"]: score(c["text"], k["key"]) for k in group["criteria"] if not k["rule"]}
            for c in group["completions"]
        }
        api("POST", f"/review/{group['assignment']}/submit", {"submission_id": str(uuid.uuid4()), "scores": scores})
        counts["reviewed"] = counts.get("reviewed", 0) + 1


def wait_finished(run_id: int, timeout_s: float = 7200) -> dict:
    from labelling.models import PipelineRun

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        run = PipelineRun.objects.get(pk=run_id)
        if run.status in ("succeeded", "partial", "failed", "cancelled"):
            return {"status": run.status, "params": run.params, "errors": run.errors}
        time.sleep(5)
    raise SystemExit(f"train run {run_id} did not finish")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=ROOT / "data" / "bench-live-review")
    parser.add_argument("--models-dir", type=Path, default=ROOT / "data" / "models")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--prompts", type=int, default=12)
    parser.add_argument("--share", type=float, default=0.5)
    parser.add_argument("--deadline", type=float, default=30)
    parser.add_argument("--think", type=float, default=2.0, help="seconds the scripted reviewer takes per group")
    args = parser.parse_args()
    if args.work.exists() and any(args.work.iterdir()):
        raise SystemExit(f"{args.work} is not empty: remove it or pass another --work")
    args.work.mkdir(parents=True, exist_ok=True)
    seconds: dict = {}
    server, api = demo_up(args.work, args.models_dir, "bench-live-review", seconds)
    from labelling.catalogue import services as catalogue_services
    from labelling.catalogue.schemas import PromptIn, PromptSetIn
    from labelling.datasets import services as dataset_services
    from labelling.models import PromptSet, Rubric, TrainingStep
    from labelling.versions.training import services as training_services

    results: dict = {"args": {k: str(v) for k, v in vars(args).items()}}
    stop = threading.Event()
    counts: dict = {}
    reviewer = threading.Thread(target=reviewer_loop, args=(api, stop, args.think, counts), daemon=True)
    try:
        source = PromptSet.objects.get(slug="aria-everyday")
        few = catalogue_services.prompt_set_create(data=PromptSetIn(slug="aria-live", name="Aria, live review"))
        catalogue_services.prompts_add(
            prompt_set=few,
            prompts=[
                PromptIn(id=p.external_id, messages=p.messages)
                for p in source.prompts.order_by("order")[: args.prompts]
            ],
        )
        run = api(
            "POST",
            "/runs",
            {
                "kind": "generate",
                "character": "aria",
                "prompt_set": "aria-live",
                "rubric": "aria-voice",
                "group_size": 2,
            },
        )
        api.finished(run)
        version = dataset_services.dataset_build(
            dataset="aria-live", kind="grpo_prompts", filter={"runs": [run["id"]], "rubric": "aria-voice"}
        )
        rubric = Rubric.objects.filter(slug="aria-voice").latest("version")
        training = {"steps": args.steps, "seed": 3, "save_steps": max(10, args.steps)}
        reviewer.start()
        for name, live in (("judge alone", None), ("live review", {"share": args.share, "deadline_s": args.deadline})):
            began = time.monotonic()
            train, _ = training_services.train_start(
                dataset_version=version, method="grpo", params=training, rubric=rubric, live_review=live
            )
            finished = wait_finished(train.pk)
            if finished["status"] != "succeeded":
                raise SystemExit(f"{name}: train run {train.pk} {finished['status']}: {finished['errors'][:2]}")
            steps = list(TrainingStep.objects.filter(run=train).order_by("step"))
            elapsed = [s.metrics.get("elapsed_s") for s in steps if s.metrics.get("elapsed_s") is not None]
            train_s = (elapsed[-1] - elapsed[0]) if len(elapsed) > 1 else None
            results[name] = {
                "train_run": train.pk,
                "wall_s": round(time.monotonic() - began, 1),
                "steps_per_s": round((len(elapsed) - 1) / train_s, 4) if train_s else None,
                "live_review_log": finished["params"].get("live_review_log", []),
            }
    finally:
        stop.set()
        if reviewer.is_alive():
            reviewer.join(timeout=60)  # its last request answered before the server goes
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
    (args.work / "live_review.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    base, live = results["judge alone"], results["live review"]
    print(f"\n{'mode':<12} {'steps/s':>8} {'wall (s)':>9}")
    for name in ("judge alone", "live review"):
        print(f"{name:<12} {results[name]['steps_per_s']:>8.4f} {results[name]['wall_s']:>9.0f}")
    print(f"ratio live / judge alone: {live['steps_per_s'] / base['steps_per_s']:.2f}")
    log = live["live_review_log"]
    print(
        f"\nlive review, per step (share {args.share}, deadline {args.deadline:g} s, reviewer {args.think:g} s a group):"
    )
    print(f"  {'step':>4} {'groups':>6} {'sent':>5} {'scored':>6} {'waited (s)':>10}")
    for e in log:
        print(f"  {e['step']:>4} {e['groups']:>6} {e['sent']:>5} {e['human']:>6} {e['waited_s']:>10.1f}")
    sent = sum(e["sent"] for e in log)
    print(
        f"  groups people scored: {sum(e['human'] for e in log)} of {sent} sent; reviewer scored {counts.get('reviewed', 0)} groups"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
