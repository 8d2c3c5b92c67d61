"""GRPO's reward functions, made from the run's rubric.

One function per rule criterion (`shaping_core.rules` on the completion's text, rescaled onto 0..1
as `shaping_core.scoring` does) and one `judge` function for every judge-scored criterion together
(one judge call per completion, the batch's calls sent concurrently, their scores combined by
`scoring.overall` over those criteria). TRL logs each function's mean reward, so a run shows
which criterion moves.

The derived weights are the criteria's rubric weights (the judge's: the sum of its criteria's)
divided by their total, so the weighted sum TRL optimises is the rubric's overall score
(`scoring.rubric_overall`) of each completion. A completion the judge could not score gets None
from `judge`, which TRL leaves out. Criteria of weight 0 get no function.

`plan` checks the rubric without importing anything heavy; `build` makes the callables.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from inference.errors import InferenceError, InvalidRequest
from inference.judging import check_rubric
from inference.versions.training.config import ConfigError, RubricError
from shaping_core import rules, scoring

JUDGE = "judge"


@dataclass(frozen=True)
class RewardPlan:
    rubric: dict
    names: list[str]  # one per reward function, in TRL's order
    weights: list[float]
    rule_criteria: list[dict]  # the criteria behind names[:len(rule_criteria)]
    judge_rubric: dict | None  # the rubric the judge sees (its criteria only); None: no judge function


def plan(rubric: object, *, triton_url: str | None, reward_weights: list | None) -> RewardPlan:
    """The reward functions the rubric gives, or RubricError/ConfigError saying why it gives none."""
    try:
        criteria = check_rubric(rubric)
    except InvalidRequest as exc:
        raise RubricError(f"rubric: {exc}") from None
    for c in criteria:
        weight = c.get("weight", 1.0)
        if not isinstance(weight, int | float) or isinstance(weight, bool) or not 0 <= weight < float("inf"):
            raise RubricError(f"rubric criterion {c['key']}: weight must be a number, 0 or more; got {weight!r}")
        if rules.is_rule(c):
            try:
                rules.check_rule(c["rule"])
            except rules.RuleInvalid as exc:
                raise RubricError(f"rubric criterion {c['key']}: rule {exc}") from None
    weighted = [c for c in criteria if c.get("weight", 1.0) > 0]
    ruled = [c for c in weighted if rules.is_rule(c)]
    judged = [c for c in weighted if not rules.is_rule(c)]
    if judged and not triton_url:
        raise RubricError(
            f"criteria {', '.join(c['key'] for c in judged)} are scored by the judge, but the run has no triton_url"
        )
    if not ruled and not judged:
        raise RubricError(
            "the rubric has no criterion a reward can use: every criterion has weight 0"
            if criteria
            else "the rubric has no criteria"
        )
    names = [_rule_name(c["key"]) for c in ruled] + ([JUDGE] if judged else [])
    total = sum(c.get("weight", 1.0) for c in weighted)
    derived = [c.get("weight", 1.0) / total for c in ruled]
    if judged:
        derived.append(sum(c.get("weight", 1.0) for c in judged) / total)
    if reward_weights is not None and len(reward_weights) != len(names):
        raise ConfigError(
            f"reward_weights has {len(reward_weights)} weights but the rubric gives {len(names)} reward functions "
            f"({', '.join(names)})"
        )
    judge_rubric = {**rubric, "criteria": judged} if judged else None
    weights = [float(w) for w in reward_weights] if reward_weights is not None else [round(w, 6) for w in derived]
    return RewardPlan(rubric, names, weights, ruled, judge_rubric)


def _rule_name(key: str) -> str:
    return f"rule_{key}"  # keys are slugs (a-z, 0-9, _ and -): one segment of TRL's rewards/<name>/mean


def completion_text(completion) -> str:
    """The completion's text, conversational (a list of messages) or standard (a string)."""
    return completion[-1]["content"] if isinstance(completion, list) else str(completion)


def prompt_messages(prompt) -> list[dict]:
    """The prompt as chat messages, conversational (already messages) or standard (a string)."""
    return prompt if isinstance(prompt, list) else [{"role": "user", "content": str(prompt)}]


def judged_scores(backend, judge_rubric: dict, prompt, completion) -> dict:
    """The judge's scores of one completion for `judge_rubric`'s criteria (InferenceError when
    the judge fails or its answer does not parse). The one judge call of every TRL reward."""
    from inference.backends.base import JudgeRequest

    request = JudgeRequest(
        rubric=judge_rubric, messages=prompt_messages(prompt), completion=completion_text(completion)
    )
    return backend.judge(request).scores


def rule_reward(criterion: dict) -> Callable:
    spec, low, high = criterion["rule"], criterion["scale_min"], criterion["scale_max"]

    def reward(prompts, completions, **kwargs) -> list[float]:
        return [(rules.score_rule(spec, completion_text(c), low, high) - low) / (high - low) for c in completions]

    reward.__name__ = _rule_name(criterion["key"])
    return reward


def _judge_scorer(judge_rubric: dict, backend) -> Callable:
    """One completion's judge reward on 0..1 (None when the judge fails or its answer does not
    fit the rubric), through a campaign's calibration tables where the rubric carries them."""
    criteria = scoring.criteria_of(judge_rubric)
    calibration = {c["key"]: c["calibration"] for c in judge_rubric["criteria"] if c.get("calibration")} or None

    def score(prompt, completion) -> float | None:
        try:
            return scoring.overall(criteria, judged_scores(backend, judge_rubric, prompt, completion), calibration)
        except (InferenceError, scoring.ScoresInvalid):
            return None

    return score


def judge_reward(judge_rubric: dict, backend, *, concurrency: int) -> Callable:
    """An async reward function: TRL runs it on its own event loop; the blocking judge calls run
    on a pool of `concurrency` threads (the Triton backend keeps one client per thread)."""
    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="judge")
    score = _judge_scorer(judge_rubric, backend)

    async def judge(prompts, completions, **kwargs) -> list[float | None]:
        loop = asyncio.get_running_loop()
        calls = [loop.run_in_executor(pool, score, p, c) for p, c in zip(prompts, completions, strict=True)]
        return list(await asyncio.gather(*calls))

    judge.__name__ = JUDGE
    return judge


@dataclass
class LiveReview:
    """Reviewers inside the RL step: each step, `share` of the step's groups go to reviewers
    (the `review_request` event, to the parent), who have `deadline_s` to score them; the
    parent writes what they scored to `folder/<request id>.json`. A group the reviewers scored
    whole is rewarded from their scores; every other group from the (calibrated) judge, so no
    group mixes the two. Each request ends with a `live_review` event: groups, sent, scored by
    people, seconds waited."""

    share: float
    deadline_s: float
    folder: Path
    emit: Callable[..., None]
    grace_s: float = 30.0  # past the deadline, for the parent to write its answer
    requests: int = 0
    # This child's own: a trainer resumed from a checkpoint (same run, maybe the same pid in a
    # container) never asks under an id an earlier trainer used.
    token: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    def ask(self, groups: list[dict]) -> str:
        self.requests += 1
        request = f"{self.token}-{self.requests}"
        self.emit("review_request", id=request, deadline_s=self.deadline_s, groups=groups)
        return request

    def answer(self, request: str) -> dict:
        """What the reviewers scored: group index (as sent) -> one {criterion: score} or None per
        completion. Empty when no answer came in time (the step goes on with the judge)."""
        path = self.folder / f"{request}.json"
        deadline = time.monotonic() + self.deadline_s + self.grace_s
        while time.monotonic() < deadline:
            if path.is_file():
                try:
                    return json.loads(path.read_text()).get("groups", {})
                except (OSError, ValueError):
                    pass  # written as we read: the parent renames a whole file in, so read again
            time.sleep(0.2)
        return {}


def live_judge_reward(judge_rubric: dict, backend, *, concurrency: int, live: LiveReview) -> Callable:
    """The judge's reward with reviewers inside the step (LiveReview). TRL repeats each prompt
    num_generations times in a batch: completions of the same prompt are one group."""
    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="judge")
    criteria = scoring.criteria_of(judge_rubric)
    keys = [c.key for c in criteria]
    judged = _judge_scorer(judge_rubric, backend)

    def human(scores: object) -> float | None:
        if not isinstance(scores, dict) or any(not isinstance(scores.get(k), int | float) for k in keys):
            return None
        return scoring.overall_of_values(criteria, {k: float(scores[k]) for k in keys})

    async def judge(prompts, completions, **kwargs) -> list[float | None]:
        began = time.monotonic()
        groups: dict[str, list[int]] = {}
        for i, prompt in enumerate(prompts):
            groups.setdefault(json.dumps(prompt_messages(prompt), sort_keys=True), []).append(i)
        members = list(groups.values())
        sent = members[: math.ceil(live.share * len(members))]
        request = live.ask(
            [
                {"prompt": prompt_messages(prompts[g[0]]), "completions": [completion_text(completions[i]) for i in g]}
                for g in sent
            ]
        )
        loop = asyncio.get_running_loop()
        calls = [loop.run_in_executor(pool, judged, p, c) for p, c in zip(prompts, completions, strict=True)]
        rewards = list(await asyncio.gather(*calls))
        answer = await loop.run_in_executor(None, live.answer, request)
        scored = 0
        for index, group in enumerate(sent):
            people = answer.get(str(index)) or []
            values = [human(s) for s in people] if len(people) == len(group) else []
            if values and all(v is not None for v in values):  # scored whole: the reviewers' scale
                scored += 1
                for i, value in zip(group, values, strict=True):
                    rewards[i] = value
        live.emit(
            "live_review",
            id=request,
            groups=len(members),
            sent=len(sent),
            human=scored,
            waited_s=round(time.monotonic() - began, 3),
        )
        return rewards

    judge.__name__ = JUDGE
    return judge


def build(
    reward_plan: RewardPlan, *, triton_url: str | None, concurrency: int, backend=None, live: LiveReview | None = None
) -> list[Callable]:
    """The reward functions, in the plan's order (its names and weights); with `live`, the
    judge's has reviewers inside the step."""
    funcs = [rule_reward(c) for c in reward_plan.rule_criteria]
    if reward_plan.judge_rubric is not None:
        if backend is None:
            from inference.backends.triton import TritonBackend

            backend = TritonBackend(triton_url)
        if live is not None:
            funcs.append(live_judge_reward(reward_plan.judge_rubric, backend, concurrency=concurrency, live=live))
        else:
            funcs.append(judge_reward(reward_plan.judge_rubric, backend, concurrency=concurrency))
    return funcs
