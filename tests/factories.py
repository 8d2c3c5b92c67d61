"""Set-up that many tests share, written once."""

from __future__ import annotations

from labelling.models import PipelineRun
from labelling.runs import services as run_services


def generate_run(
    *,
    character,
    prompt_set,
    rubric=None,
    group_size: int = 2,
    max_tokens: int = 8,
    enqueue: bool = False,
    workers: int | None = None,
) -> PipelineRun:
    """A generate run started as a user would start it, left for the test to execute (not
    queued) unless `enqueue` (then the consumers take it): short completions, a small group."""
    params: dict = {"sampling": {"max_tokens": max_tokens}}
    if workers is not None:
        params["workers"] = workers
    run, _ = run_services.run_start(
        kind="generate",
        character=character,
        prompt_set=prompt_set,
        rubric=rubric,
        group_size=group_size,
        params=params,
        enqueue=enqueue,
    )
    return run
