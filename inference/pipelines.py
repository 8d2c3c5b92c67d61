"""Pipeline tasks: generate, judge, revise-and-judge, as generator tasks.

The pure tasks (`generate_task`, `judge_task`, `revise_and_judge_task`) take plain
data and return plain dicts; the file-mode CLI runs them directly. The database
tasks (`run_items`) wrap them: they load rows, yield from the pure tasks, and
save each result through labelling's services as soon as it exists, so a run that
dies resumes with only the missing work.

One module (over 400 lines) because the three tasks are one flow (revise-and-judge runs the
generate and judge steps) and the database tasks wrap exactly those: split, each half would
import the other's internals.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import asdict
from typing import Any

from django.db import IntegrityError

from inference.backends.base import GenerateRequest, JudgeRequest
from inference.backends.openai import capabilities_of
from inference.dispatch import Call, Task, Throttle
from inference.engine import SamplingParams
from inference.errors import IncompleteBatch, InferenceError, JudgeOutputError
from inference.serving import endpoint_named
from labelling.catalogue import selectors as catalogue_selectors
from labelling.live import broadcasts
from labelling.models import Generation, GeneratorVersion, Judgment, PipelineRun, Producer, Prompt, Rubric
from labelling.records import services as record_services
from labelling.runs import services as run_services
from labelling.versions.generators import selectors as generator_selectors
from shaping_core import rules, scoring

DEFAULT_SAMPLING = {"max_tokens": 128, "temperature": 0.7, "top_p": 0.8, "top_k": 20}
REVISE_INSTRUCTION = (
    "A reviewer scored your last reply against this rubric:\n{feedback}\n\n"
    "Rewrite your reply so it scores higher on every criterion, staying in character. "
    "Answer with the rewritten reply only."
)


def sampling_from(params: dict) -> dict:
    """The sampling settings of a run: defaults, overridden by the run's params."""
    fields = set(SamplingParams.__dataclass_fields__)
    return {**DEFAULT_SAMPLING, **{k: v for k, v in params.get("sampling", {}).items() if k in fields}}


# --- pure tasks ---------------------------------------------------------------------


def generate_task(
    messages: list[dict],
    sampling: dict,
    n: int,
    on_delta: Callable | None = None,
    *,
    model_version: int | None = None,
) -> Task:
    """n completions of one prompt, as one batched request (a GRPO group), from the generator
    version `model_version` (None: the one the backend serves by default, the current one)."""
    params = SamplingParams(**{**sampling, "n": n})
    request = GenerateRequest(messages=messages, params=params, model_version=model_version)
    completions = yield Call("generate", request, {"on_delta": on_delta})
    return {"completions": [asdict(c) for c in completions]}


JUDGE_PARSE_RETRIES = 2


def judge_task(
    rubric: dict,
    messages: list[dict],
    completion: str,
    retries: int = JUDGE_PARSE_RETRIES,
    *,
    think_valid: bool | None = None,
) -> Task:
    """Scores for every criterion of one completion: the judge model's for the criteria
    without a rule (it is asked about those only), the rules' for the others (shaping_core.rules;
    `think_valid` is a stored generation's verdict on its think tags). A rubric of rules only
    asks no model at all. An answer that will not parse is asked again (`retries` times),
    then comes back as {"ok": False, ...} with the raw text, to be recorded as a failed
    judgment, never dropped."""
    asked = rules.model_rubric(rubric)
    if asked is None:
        return _judged_with_rules(rubric, None, completion, think_valid)
    for _ in range(retries + 1):
        try:
            result = yield Call("judge", JudgeRequest(rubric=asked, messages=messages, completion=completion))
        except JudgeOutputError as exc:
            failure = {"ok": False, "error": str(exc), "raw": exc.raw}
            continue
        return _judged_with_rules(rubric, result, completion, think_valid)
    return failure


def _judged_with_rules(rubric: dict, result, completion: str, think_valid: bool | None) -> dict:
    """A judge's result (None: no model was asked) with the rule criteria scored and merged in."""
    scores = rules.with_rule_scores(
        rubric["criteria"], result.scores if result else {}, completion, think_valid=think_valid
    )
    return {
        "ok": True,
        "scores": scores,
        "rationale": result.rationale if result else "",
        "raw": result.raw if result else "",
    }


def revise_messages(messages: list[dict], completion: str, rubric: dict, judged: dict) -> list[dict]:
    lines = [
        f"- {c['key']}: {judged['scores'][c['key']]}/{c['scale_max']} ({c['description']})" for c in rubric["criteria"]
    ]
    if judged.get("rationale"):
        lines.append(f"Reviewer's note: {judged['rationale']}")
    feedback = "\n".join(lines)
    return [
        *messages,
        {"role": "assistant", "content": completion},
        {"role": "user", "content": REVISE_INSTRUCTION.format(feedback=feedback)},
    ]


def revise_and_judge_task(
    rubric: dict,
    messages: list[dict],
    completion: str,
    sampling: dict,
    *,
    threshold: float,
    max_rounds: int,
    judged: dict | None = None,
) -> Task:
    """Judge; while under the threshold, critique-and-rewrite and judge again (up to max_rounds)."""
    judged = judged or (yield from judge_task(rubric, messages, completion))
    rounds = []
    text = completion
    while judged["ok"] and scoring.rubric_overall(rubric, judged["scores"]) < threshold and len(rounds) < max_rounds:
        result = yield from generate_task(revise_messages(messages, text, rubric, judged), sampling, 1)
        text = result["completions"][0]["text"]
        judged = yield from judge_task(rubric, messages, text)
        rounds.append({"completion": result["completions"][0], "judgment": judged})
    return {"initial": completion, "rounds": rounds, "final": judged}


# --- database runs ------------------------------------------------------------------


class RunContext:
    """What every item of one run shares: the run row, its rubric spec, producers, events.

    A run that generates records the exact generator version it generates with: the one its
    params pin (run_start pins one), else the current one. A version that is gone or no longer
    ready raises GeneratorUnavailable, and the run fails saying so. Every generate request names
    that version, so Triton answers from its weights whichever versions it serves beside it.

    A run whose params name `generator_endpoint` / `judge_endpoint` (OpenAI-compatible servers
    in the settings) generates / judges there: its Producer rows record the endpoint's name,
    its served model and the sampling; an endpoint no longer configured fails the run saying so."""

    def __init__(self, run: PipelineRun, backend_name: str):
        self.run = run
        self.params = run.params or {}
        self.sampling = sampling_from(self.params)
        self.rubric: Rubric | None = run.rubric
        self.rubric_spec = run.rubric.as_spec() if run.rubric else None
        self.threshold = float(self.params.get("revise_threshold", 0.5))
        self.max_rounds = int(self.params.get("max_rounds", 1))
        self.generator_version: GeneratorVersion | None = None
        self.generator: Producer | None = None
        generator_endpoint = self.params.get("generator_endpoint")
        judge_endpoint = self.params.get("judge_endpoint")
        if run.kind in run_services.GENERATING and generator_endpoint:
            self.generator = _endpoint_producer(generator_endpoint, self.sampling)
        elif run.kind in run_services.GENERATING:
            self.generator_version = generator_selectors.generator_version_for(self.params.get("generator_version"))
            self.generator = record_services.producer_get_or_create(
                backend=backend_name, sampling=self.sampling, generator=self.generator_version
            )
        if judge_endpoint:
            self.judge = _endpoint_producer(judge_endpoint, JUDGE_SAMPLING, judge=True)
        else:
            self.judge = record_services.producer_get_or_create(backend=backend_name, model_name="judge")

    @property
    def model_version(self) -> int | None:
        return self.generator_version.number if self.generator_version else None

    @property
    def judges(self) -> bool:
        return self.rubric is not None


# What the judge is asked with (inference.judging): greedy, under the guidance its backend offers.
JUDGE_SAMPLING = {"temperature": 0.0, "top_p": 1.0}


def _endpoint_producer(name: str, sampling: dict, *, judge: bool = False) -> Producer:
    """The row of what an OpenAI-compatible endpoint makes: its name, its served model, the sampling
    (for a judge, also how its answer is constrained: the guidance it declares, or none)."""
    endpoint = endpoint_named(name)
    if judge:
        sampling = {**sampling, "guidance": capabilities_of(endpoint).judge_guidance or "none"}
    return record_services.producer_get_or_create(
        backend="openai", endpoint=name, model_name=endpoint.model, sampling=sampling
    )


def run_items(ctx: RunContext) -> tuple[int, Iterator[tuple[Any, Callable[[], Task]]]]:
    """(total, items) for a run: one item per prompt (generate) or per generation (judge, revise).
    Items already complete are counted but not yielded."""
    run = ctx.run
    if run.kind == PipelineRun.Kind.GENERATE:
        prompts = list(Prompt.objects.filter(prompt_set=run.prompt_set).order_by("order", "id"))
        todo = [p for p in prompts if not _prompt_done(ctx, p)]
        return len(prompts), ((f"prompt:{p.external_id}", lambda p=p: generate_item(ctx, p)) for p in todo)
    generations = list(Generation.objects.filter(group__run=run.source_run, revision=0).order_by("group_id", "index"))
    todo = (
        [g for g in generations if not _judged(ctx, g)]
        if run.kind == PipelineRun.Kind.JUDGE
        else [g for g in generations if not _revise_done(ctx, g)]
    )
    maker = judge_item if run.kind == PipelineRun.Kind.JUDGE else revise_item
    return len(generations), ((f"generation:{g.pk}", lambda g=g: maker(ctx, g)) for g in todo)


def _prompt_done(ctx: RunContext, prompt: Prompt) -> bool:
    group = ctx.run.groups.filter(prompt=prompt).first()
    if group is None:
        return False
    originals = list(group.generations.filter(revision=0))
    if len(originals) < group.size:
        return False
    return not ctx.judges or all(_judged(ctx, g) for g in originals)


def _judged(ctx: RunContext, generation: Generation) -> bool:
    return Judgment.objects.filter(
        generation=generation, rubric=ctx.rubric, source=Judgment.Source.JUDGE, run=ctx.run
    ).exists()


def _revise_done(ctx: RunContext, generation: Generation) -> bool:
    return Generation.objects.filter(parent=generation, run=ctx.run).exists() or _judged(ctx, generation)


def generate_item(ctx: RunContext, prompt: Prompt) -> Task:
    """Fill the prompt's group (only the missing slots), then judge what is unjudged."""
    run = ctx.run
    group = record_services.group_for(run=run, prompt=prompt)
    messages = catalogue_selectors.prompt_messages_for(run.character, prompt)
    taken = set(group.generations.filter(revision=0).values_list("index", flat=True))
    missing = [i for i in range(group.size) if i not in taken]
    saved = 0
    if missing:
        broadcasts.group_started(run.pk, group, missing)
        throttle = Throttle(lambda pieces: broadcasts.tokens(run.pk, group.pk, _slots(pieces, missing)))
        try:
            result = yield from generate_task(
                messages, ctx.sampling, len(missing), on_delta=throttle.add, model_version=ctx.model_version
            )
        finally:
            throttle.close()
        for slot, completion in zip(missing, result["completions"], strict=False):
            saved += _save_generation(ctx, group, slot, messages, completion)
        short = missing[len(result["completions"]) :]
        if short:  # a failure of this item (resume fills the slots), never a quiet success
            raise IncompleteBatch(
                f"the backend returned {len(missing) - len(short)} of {len(missing)} completions; slots {short} are missing"
            )
    if ctx.judges:
        pending = [g for g in group.generations.filter(revision=0) if not _judged(ctx, g)]
        if rules.model_rubric(ctx.rubric_spec) is None:  # rule criteria only: no model to ask
            results = [None] * len(pending)
        else:
            results = yield [Call("judge", _judge_request(ctx, g)) for g in pending]
        for generation, result in zip(pending, results, strict=True):
            judged = _as_judged(ctx, generation, result)
            if not judged["ok"]:  # ask again (the retries left), one at a time, before recording a failure
                judged = yield from judge_task(
                    ctx.rubric_spec,
                    generation.messages,
                    generation.text,
                    retries=JUDGE_PARSE_RETRIES - 1,
                    think_valid=generation.think_valid,
                )
            _save_judgment(ctx, generation, judged)
        if ctx.params.get("revise"):
            for generation in pending:
                yield from revise_item(ctx, generation)
    return {"group": group.pk, "generated": saved}


def judge_item(ctx: RunContext, generation: Generation) -> Task:
    judged = yield from judge_task(
        ctx.rubric_spec, generation.messages, generation.text, think_valid=generation.think_valid
    )
    _save_judgment(ctx, generation, judged)
    return {"generation": generation.pk, "ok": judged["ok"]}


def revise_item(ctx: RunContext, generation: Generation) -> Task:
    """Judge (unless this run judged it already), rewrite while weak, save each revision."""
    latest = (
        Judgment.objects.filter(generation=generation, rubric=ctx.rubric, source=Judgment.Source.JUDGE, status="ok")
        .prefetch_related("scores__criterion")
        .order_by("-created_at")
        .first()
    )
    if latest is not None:
        judged = {
            "ok": True,
            "scores": {s.criterion.key: s.score for s in latest.scores.all()},
            "rationale": latest.rationale,
        }
    else:
        judged = yield from judge_task(
            ctx.rubric_spec, generation.messages, generation.text, think_valid=generation.think_valid
        )
        _save_judgment(ctx, generation, judged)
    current, rounds = generation, 0
    while (
        judged["ok"]
        and scoring.rubric_overall(ctx.rubric_spec, judged["scores"]) < ctx.threshold
        and rounds < ctx.max_rounds
    ):
        request_messages = revise_messages(generation.messages, current.text, ctx.rubric_spec, judged)
        result = yield from generate_task(request_messages, ctx.sampling, 1, model_version=ctx.model_version)
        completion = result["completions"][0]
        current = record_services.generation_record(
            group=generation.group,
            index=generation.index,
            messages=generation.messages,
            raw_text=completion["text"],
            producer=ctx.generator,
            source=Generation.Source.REVISION,
            run=ctx.run,
            parent=current,
            **_measures(completion),
        )
        judged = yield from judge_task(
            ctx.rubric_spec, generation.messages, current.text, think_valid=current.think_valid
        )
        _save_judgment(ctx, current, judged)
        rounds += 1
    return {"generation": generation.pk, "rounds": rounds}


def _judge_request(ctx: RunContext, generation: Generation) -> JudgeRequest:
    # The judge model is asked about the criteria without a rule only.
    asked = rules.model_rubric(ctx.rubric_spec)
    return JudgeRequest(rubric=asked, messages=generation.messages, completion=generation.text)


def _as_judged(ctx: RunContext, generation: Generation, result: Any) -> dict:
    """A batched judge result (None: no model was asked) as judge_task returns it, rules merged in."""
    if isinstance(result, JudgeOutputError):
        return {"ok": False, "error": str(result), "raw": result.raw}
    if isinstance(result, InferenceError | Exception):
        raise result  # a backend failure fails the item; it is retried on resume
    return _judged_with_rules(ctx.rubric_spec, result, generation.text, generation.think_valid)


def _slots(pieces: dict[int, str], missing: list[int]) -> dict[int, str]:
    return {missing[i]: text for i, text in pieces.items() if i < len(missing)}


def _measures(completion: dict) -> dict:
    return {
        "finish_reason": completion.get("finish_reason", ""),
        "prompt_tokens": completion.get("prompt_tokens"),
        "completion_tokens": completion.get("completion_tokens"),
    }


def _save_generation(ctx: RunContext, group, slot: int, messages: list[dict], completion: dict) -> int:
    try:
        record_services.generation_record(
            group=group,
            index=slot,
            messages=messages,
            raw_text=completion["text"],
            producer=ctx.generator,
            run=ctx.run,
            opened_in_prompt=bool(ctx.sampling.get("enable_thinking")),
            structured=bool(ctx.sampling.get("guidance_type")),
            **_measures(completion),
        )
    except IntegrityError:
        return 0  # another worker filled this slot first: the slot holds one text, as it must
    return 1


def _save_judgment(ctx: RunContext, generation: Generation, judged: dict) -> None:
    # Another execution of this run may have judged it first: one judge judgment per run, as it must.
    with contextlib.suppress(IntegrityError):
        _record_judgment(ctx, generation, judged)


def _record_judgment(ctx: RunContext, generation: Generation, judged: dict) -> None:
    if judged["ok"]:
        record_services.judgment_record(
            generation=generation,
            rubric=ctx.rubric,
            source=Judgment.Source.JUDGE,
            scores=judged["scores"],
            rationale=judged.get("rationale", ""),
            raw_output=judged.get("raw", ""),
            producer=ctx.judge,
            run=ctx.run,
        )
    else:
        record_services.judgment_record_failure(
            generation=generation,
            rubric=ctx.rubric,
            producer=ctx.judge,
            raw_output=judged.get("raw", ""),
            error=judged.get("error", ""),
            run=ctx.run,
        )
