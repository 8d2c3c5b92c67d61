"""A reward function for TRL's GRPOTrainer that scores with the project's judge.

Training then rewards exactly the rubric version the reviewers used:

    from inference.reward import make_reward_function
    rubric = version.reward_policy["rubric_spec"]   # a grpo_prompts DatasetVersion's (docs/datasets.md)
    trainer = GRPOTrainer(..., reward_funcs=[make_reward_function(rubric, triton_url="gpu-host:8001")])

TRL calls it with the batch's prompts and completions (conversational: lists of
messages; standard: strings) and expects one float per completion; a completion the
judge could not score gets None, which TRL leaves out of the reward. Rule criteria
(`shaping_core.rules`: regex, length, think tags, JSON schema, keywords) are scored here, without
the judge, from the completion as the model wrote it; a rubric of rules only never calls
Triton. Needs only tritonclient, this package's inference module and the Django-free
`shaping_core.scoring` and `shaping_core.rules` (the same weighted reward and rules the exports
use), not Django.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from inference.errors import InferenceError
from inference.judging import check_rubric
from inference.versions.training.rewards import completion_text, judged_scores
from shaping_core import rules, scoring


def make_reward_function(
    rubric: dict, *, triton_url: str = "127.0.0.1:8001", backend=None, workers: int = 8, timeout_s: float = 120.0
):
    check_rubric(rubric)
    for c in rubric["criteria"]:
        if c.get("rule") is not None:
            rules.check_rule(c["rule"])
    asked = rules.model_rubric(rubric)  # None: rules only, no judge to call
    if backend is None and asked is not None:
        from inference.backends.triton import TritonBackend

        backend = TritonBackend(triton_url, timeout_s=timeout_s)

    def score(prompt, completion) -> float | None:
        try:
            judged = {} if asked is None else judged_scores(backend, asked, prompt, completion)
            text = completion_text(completion)
            return scoring.rubric_overall(rubric, rules.with_rule_scores(rubric["criteria"], judged, text))
        except (InferenceError, scoring.ScoresInvalid):
            return None

    def reward(prompts, completions, **kwargs) -> list[float | None]:
        with ThreadPoolExecutor(max_workers=max(1, min(workers, len(completions)))) as pool:
            return list(pool.map(score, prompts, completions))

    reward.__name__ = f"judge_{rubric.get('slug', 'rubric')}_v{rubric.get('version', '')}".rstrip("_v")
    return reward
