"""Fault injection in CI: a few seeded generate + judge runs, each hit at a random moment by
one fault (the huey consumer or the tritonserver SIGKILLed and brought back, or the run
resumed while it runs), a reviewer rating groups meanwhile; after each, the invariants (bench/faults.py): every slot filled once, one judge
judgment per completion and rubric version, counters equal to what is stored, the run
finished, no accepted review lost. bench/bench_faults.py runs many more iterations."""

import random

import pytest

from bench.faults import FAULTS, one_iteration

SEED = 20261130


@pytest.mark.django_db(transaction=True)
def test_killed_consumers_and_servers_lose_and_duplicate_nothing(consumer, triton_server, reviewer):
    rng = random.Random(SEED)
    faults = rng.sample(FAULTS, len(FAULTS))  # each kind once, in a seeded order
    outcomes = [
        one_iteration(
            rng,
            fault=fault,
            tag=str(i),
            consumer=consumer,
            start_consumer=consumer.start,
            kill_triton=triton_server.kill,
            start_triton=lambda: triton_server.start(timeout_s=120),
            reviewer=reviewer,
            timeout_s=240,
        )
        for i, fault in enumerate(faults)
    ]
    assert [o.violations for o in outcomes] == [[]] * len(FAULTS), outcomes
