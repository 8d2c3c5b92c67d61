"""Fault injection: many seeded generate + judge runs, each hit at a random moment by one fault
(the huey consumer SIGKILLed, the tritonserver SIGKILLed, or the run resumed while it runs),
then every invariant checked (bench/faults.py). Prints the faults of each kind, the
invariant violations (the aim is 0), and the time a run takes with its fault against runs
without one ("none"), drawn in among the others and timed the same way.

Runs on its own data directory (SQLite, huey on SQLite) unless DATABASE_URL / REDIS_URL are set.

    python bench/bench_faults.py [--iterations 32] [--seed 20261130] [--prompts 8]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=32)
    parser.add_argument("--seed", type=int, default=20261130)
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--group", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=24)
    args = parser.parse_args()

    from bench.fill import triton_stack

    # RUN_STALE_AFTER_S as the consumers it starts (bench/faults.py)
    data_dir, server = triton_stack("faults", RUN_STALE_AFTER_S="3")
    from huey.contrib.djhuey import HUEY

    from bench.faults import FAULTS, Consumer, drive_to_end, one_iteration, start_run, story, worker_env

    HUEY.flush()
    reviewer = _reviewer()
    consumer = Consumer(worker_env(server.url), data_dir / "huey.log").start()
    rng = random.Random(args.seed)
    kinds = ("none", *FAULTS)
    outcomes = []
    try:
        warm = start_run(*story(args.prompts, "warm-up"), group_size=args.group, max_tokens=args.max_tokens)
        drive_to_end(warm, timeout_s=300)  # first-run costs (model load, caches) stay out of the figures
        for i in range(args.iterations):
            if i % len(kinds) == 0:  # each kind once a round, in a seeded order
                order = rng.sample(kinds, len(kinds))
            outcome = one_iteration(
                rng,
                fault=order[i % len(kinds)],
                tag=f"it{i}",
                consumer=consumer,
                start_consumer=consumer.start,
                kill_triton=server.kill,
                start_triton=lambda: server.start(timeout_s=180),
                prompts=args.prompts,
                group_size=args.group,
                max_tokens=args.max_tokens,
                reviewer=reviewer,
            )
            outcomes.append(outcome)
            print(
                f"iteration {i + 1:>3}: {outcome.fault:<8} at {outcome.killed_at_s:4.1f}s, "
                f"{outcome.resumes} resume(s), {outcome.seconds:5.1f}s, {outcome.status}, "
                f"violations: {outcome.violations or 0}",
                flush=True,
            )
    finally:
        consumer.stop()
        server.stop()

    faults = Counter(o.fault for o in outcomes)
    broken = [o for o in outcomes if o.violations]
    base = statistics.median(o.seconds for o in outcomes if o.fault == "none")
    print(
        f"\nFault injection: {args.iterations} iterations (seed {args.seed}), {args.prompts} prompts x "
        f"G={args.group}, max_tokens={args.max_tokens}, {os.environ.get('DATABASE_URL') and 'PostgreSQL' or 'SQLite'}"
    )
    print(f"| {'fault':<34} | {'iterations':>10} | {'violations':>10} | {'median run s':>12} | {'vs no fault':>11} |")
    print(f"|{'-' * 36}|{'-' * 12}|{'-' * 12}|{'-' * 14}|{'-' * 13}|")
    labels = {
        "none": "none (baseline)",
        "consumer": "huey consumer SIGKILLed",
        "triton": "tritonserver SIGKILLed",
        "resume": "resumed while running",
    }
    for kind in kinds:
        mine = [o for o in outcomes if o.fault == kind]
        if not mine:
            continue
        median = statistics.median(o.seconds for o in mine)
        bad = sum(1 for o in mine if o.violations)
        print(f"| {labels[kind]:<34} | {faults[kind]:>10} | {bad:>10} | {median:>12.1f} | {median / base:>10.2f}x |")
    print(f"\ninvariant violations: {sum(len(o.violations) for o in broken)} in {len(broken)} iterations")
    for o in broken:
        print(f"  run #{o.run_id} ({o.fault}): {o.violations}")


def _reviewer():
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from labelling.access.roles import REVIEWER, ensure_roles

    ensure_roles()
    user, _ = get_user_model().objects.get_or_create(username="bench-reviewer")
    user.groups.add(Group.objects.get(name=REVIEWER))
    return user


if __name__ == "__main__":
    main()
