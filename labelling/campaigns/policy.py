"""A campaign's policy: every knob with its default, checked and recorded whole at creation
(what a round did is read against what it was told)."""

from __future__ import annotations

from django.core.exceptions import ValidationError

DEFAULTS: dict = {
    "prompts_per_round": 8,  # training prompts each round generates on (the pool's, in turn)
    "group_size": 4,  # completions per prompt: a GRPO group
    "max_tokens": 64,
    "temperature": 0.9,
    "review_share": 0.25,  # of a round's groups, chosen by where reviewers count most
    "audit_share": 0.1,  # on top, chosen at random: the judge's error, estimated without bias
    "review_overlap": 1,  # reviewers per routed group
    "review_deadline_s": 900,  # a round goes on without the reviews still missing after this
    "calibration_min_pairs": 8,  # completions scored by both, per criterion, before a fit counts
    "min_agreement": 0.2,  # Krippendorff's alpha, calibrated judge against reviewers: below it, pause
    "training": {},  # the train run's settings (the trainer's defaults otherwise)
    "live_review_share": 0.0,  # GRPO: share of each step's groups sent live to reviewers (0: off)
    "live_review_deadline_s": 30,  # how long a step waits for them; the calibrated judge fills in
    "completions_per_prompt": 4,  # the evaluation's, each side
    "seed": 1234,  # the evaluation's sampling seed; round N generates with seed + N
    "human_pairs": 0,  # blind A/B pairs per evaluation
    "ab_deadline_s": 900,  # how long the verdict waits for reviewers' choices
    "trigger_reviews": 20,  # trigger "reviews": groups reviewers scored since the last round began
    "trigger_every_s": 3600,  # trigger "schedule"
}

RANGES = {
    "prompts_per_round": (1, 10_000),
    "group_size": (2, 16),
    "max_tokens": (1, 4096),
    "temperature": (0.0, 2.0),
    "review_share": (0.0, 1.0),
    "audit_share": (0.0, 1.0),
    "review_overlap": (1, 10),
    "review_deadline_s": (0, 7 * 86400),
    "calibration_min_pairs": (2, 100_000),
    "min_agreement": (-1.0, 1.0),
    "live_review_share": (0.0, 1.0),
    "live_review_deadline_s": (1, 3600),
    "completions_per_prompt": (1, 16),
    "seed": (0, 2**31 - 1),
    "human_pairs": (0, 200),
    "ab_deadline_s": (0, 7 * 86400),
    "trigger_reviews": (1, 100_000),
    "trigger_every_s": (60, 365 * 86400),
}
FLOATS = {"temperature", "review_share", "audit_share", "min_agreement", "live_review_share"}


def policy_checked(given: object) -> dict:
    """The policy with its defaults filled in, or a ValidationError naming the field."""
    if given is None:
        given = {}
    if not isinstance(given, dict):
        raise ValidationError({"policy": "must be an object"})
    unknown = sorted(set(given) - set(DEFAULTS))
    if unknown:
        raise ValidationError({"policy": f"unknown field(s): {', '.join(unknown)} (known: {', '.join(DEFAULTS)})"})
    policy = {**DEFAULTS, **given}
    for name, (low, high) in RANGES.items():
        value = policy[name]
        wanted = (int, float) if name in FLOATS else (int,)
        if isinstance(value, bool) or not isinstance(value, wanted) or not low <= value <= high:
            kind = "a number" if name in FLOATS else "a whole number"
            raise ValidationError({name: f"{kind} from {low} to {high}"})
    if policy["review_share"] + policy["audit_share"] > 1:
        raise ValidationError({"audit_share": "review_share and audit_share add up to more than every group"})
    if not isinstance(policy["training"], dict):
        raise ValidationError({"training": "must be an object of the train run's settings"})
    return policy
