"""Win-rate statistics for a paired comparison of two generator versions, free of Django.

The unit of analysis is the prompt: each prompt's candidate and baseline completions (k of each,
the same seeds) are averaged into one reward per side, and the prompt is a win (candidate
higher), a loss or a tie (within `tie_eps`). From those:

- wins, ties, losses; win rate (W + T/2) / N with a percentile bootstrap interval over prompts
  (`level`, 95% by default, seeded, so the same data gives the same interval);
- a two-sided exact sign test of W against L (ties left out) against 0.5;
- the win rate over decisive prompts only, W / (W + L);
- each side's mean reward and the paired mean difference, each with its bootstrap interval,
  and the same difference per criterion;
- each side's mean answer length and a length-controlled win rate: a logistic regression of the
  outcome (1, 1/2, 0) on the standardised length difference, read at zero difference (the
  AlpacaEval 2 idea), so a win bought with longer answers shows as such;
- the prompts with the worst regressions (largest drop in reward).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

BOOTSTRAP_SAMPLES = 2000
BOOTSTRAP_SEED = 20261130


@dataclass(frozen=True)
class PromptPair:
    """One prompt's completions from both versions (rewards on 0..1; lengths in words)."""

    key: str
    candidate: Sequence[float]
    baseline: Sequence[float]
    candidate_lengths: Sequence[float] = ()
    baseline_lengths: Sequence[float] = ()
    candidate_criteria: dict[str, float] = field(default_factory=dict)  # criterion -> mean score (0..1)
    baseline_criteria: dict[str, float] = field(default_factory=dict)

    @property
    def delta(self) -> float:
        return _mean(self.candidate) - _mean(self.baseline)


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float
    level: float

    def as_dict(self) -> dict:
        return {"estimate": self.estimate, "low": self.low, "high": self.high, "level": self.level}


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def outcome(pair: PromptPair, tie_eps: float = 1e-9) -> float:
    """1 for a win of the candidate, 0 for a loss, 1/2 for a tie."""
    d = pair.delta
    return 0.5 if abs(d) <= tie_eps else (1.0 if d > 0 else 0.0)


def bootstrap(
    values: Sequence[float], statistic=_mean, *, level: float = 0.95, samples: int = BOOTSTRAP_SAMPLES
) -> Interval:
    """A percentile bootstrap interval of `statistic` over `values` (resampled with replacement,
    seeded)."""
    values = list(values)
    if not values:
        return Interval(math.nan, math.nan, math.nan, level)
    rng = random.Random(BOOTSTRAP_SEED)  # noqa: S311 - a seeded resampler, not a secret
    n = len(values)
    draws = sorted(statistic([values[rng.randrange(n)] for _ in range(n)]) for _ in range(samples))
    tail = (1 - level) / 2
    low = draws[min(samples - 1, max(0, math.floor(tail * samples)))]
    high = draws[min(samples - 1, max(0, math.ceil((1 - tail) * samples) - 1))]
    return Interval(statistic(values), low, high, level)


def sign_test(wins: int, losses: int) -> float:
    """Two-sided exact binomial test of wins against losses at p = 0.5 (1.0 with none decisive)."""
    n = wins + losses
    if n == 0:
        return 1.0
    low = min(wins, losses)
    tail = sum(math.comb(n, i) for i in range(low + 1)) / 2**n
    return min(1.0, 2 * tail)


def length_controlled_win_rate(outcomes: Sequence[float], length_deltas: Sequence[float]) -> float | None:
    """sigmoid(a) of the logistic fit outcome ~ sigmoid(a + b * z), z the standardised length
    difference (candidate minus baseline): the win rate expected at equal lengths. Outcomes may be
    1/2 (ties: a fractional response). None when lengths are missing; the plain win rate when the
    lengths do not vary. Newton's method, with a small ridge on b so a perfect separation by
    length stays finite."""
    if not outcomes or len(length_deltas) != len(outcomes):
        return None
    mu = _mean(length_deltas)
    sd = math.sqrt(_mean([(x - mu) ** 2 for x in length_deltas]))
    if sd == 0:
        return _mean(outcomes)
    z = [(x - mu) / sd for x in length_deltas]
    a = b = 0.0
    ridge = 1e-3
    for _ in range(100):
        p = [1 / (1 + math.exp(-(a + b * zi))) for zi in z]
        ga = sum(y - pi for y, pi in zip(outcomes, p, strict=True))
        gb = sum((y - pi) * zi for y, pi, zi in zip(outcomes, p, z, strict=True)) - ridge * b
        w = [pi * (1 - pi) for pi in p]
        haa = sum(w) + 1e-9
        hab = sum(wi * zi for wi, zi in zip(w, z, strict=True))
        hbb = sum(wi * zi * zi for wi, zi in zip(w, z, strict=True)) + ridge
        det = haa * hbb - hab * hab
        if det <= 0:
            break
        da = (hbb * ga - hab * gb) / det
        db = (haa * gb - hab * ga) / det
        a, b = a + da, b + db
        if abs(da) < 1e-10 and abs(db) < 1e-10:
            break
    # At equal lengths z is -mu/sd, not 0: the standardised difference of a zero raw difference.
    return 1 / (1 + math.exp(-(a + b * (-mu / sd))))


def compare(pairs: Sequence[PromptPair], *, level: float = 0.95, tie_eps: float = 1e-9, worst: int = 5) -> dict:
    """Everything the evaluation page and the API show, as plain data."""
    pairs = [p for p in pairs if p.candidate and p.baseline]
    outcomes = [outcome(p, tie_eps) for p in pairs]
    wins = sum(1 for o in outcomes if o == 1.0)
    losses = sum(1 for o in outcomes if o == 0.0)
    ties = len(outcomes) - wins - losses
    criteria = sorted(
        {k for p in pairs for k in p.candidate_criteria} & {k for p in pairs for k in p.baseline_criteria}
    )
    lengths = [p for p in pairs if p.candidate_lengths and p.baseline_lengths]
    length_deltas = [_mean(p.candidate_lengths) - _mean(p.baseline_lengths) for p in lengths]
    return {
        "prompts": len(pairs),
        "wins": wins,
        "ties": ties,
        "losses": losses,
        "win_rate": bootstrap(outcomes, level=level).as_dict(),
        "sign_test_p": sign_test(wins, losses),
        "decisive_win_rate": wins / (wins + losses) if wins + losses else None,
        "reward": {
            "candidate": bootstrap([_mean(p.candidate) for p in pairs], level=level).as_dict(),
            "baseline": bootstrap([_mean(p.baseline) for p in pairs], level=level).as_dict(),
            "delta": bootstrap([p.delta for p in pairs], level=level).as_dict(),
        },
        "criteria": {
            key: bootstrap(
                [
                    p.candidate_criteria[key] - p.baseline_criteria[key]
                    for p in pairs
                    if key in p.candidate_criteria and key in p.baseline_criteria
                ],
                level=level,
            ).as_dict()
            for key in criteria
        },
        "length": {
            "candidate": _mean([_mean(p.candidate_lengths) for p in lengths]) if lengths else None,
            "baseline": _mean([_mean(p.baseline_lengths) for p in lengths]) if lengths else None,
            "length_controlled_win_rate": length_controlled_win_rate(
                [outcome(p, tie_eps) for p in lengths], length_deltas
            ),
        },
        "worst_regressions": [
            {"key": p.key, "delta": p.delta, "candidate": _mean(p.candidate), "baseline": _mean(p.baseline)}
            for p in sorted(pairs, key=lambda p: p.delta)[:worst]
            if p.delta < 0
        ],
        "level": level,
    }


# --- blind human A/B ---------------------------------------------------------------------


@dataclass(frozen=True)
class HumanChoice:
    """One reviewer's choice on one A/B pair: `outcome` for the candidate (1 won, 0 lost, 1/2 a
    tie or both bad), which side the candidate was shown on, and the judge's outcome on the same
    two completions (None when the judge did not score both)."""

    prompt: str
    reviewer: str
    outcome: float
    candidate_left: bool
    both_bad: bool = False
    judge: float | None = None


def _side_of(outcome_value: float) -> str:
    return "candidate" if outcome_value > 0.5 else "baseline" if outcome_value < 0.5 else "tie"


def cohen_kappa(labels: Sequence[tuple[str, str]]) -> float | None:
    """Cohen's kappa of two raters over the same items: (p_o - p_e) / (1 - p_e). None with no
    items, or when chance agreement is certain (both raters always gave one and the same label)."""
    n = len(labels)
    if not n:
        return None
    observed = sum(a == b for a, b in labels) / n
    kinds = {a for a, _ in labels} | {b for _, b in labels}
    expected = sum((sum(a == k for a, _ in labels) / n) * (sum(b == k for _, b in labels) / n) for k in kinds)
    if expected >= 1:
        return None
    return (observed - expected) / (1 - expected)


def _side_bias(choices: Sequence[HumanChoice]) -> dict:
    """How often the left answer won among decisive choices, with a sign test against 1/2."""
    decisive = [c for c in choices if c.outcome != 0.5]
    left = sum(1 for c in decisive if (c.outcome == 1.0) == c.candidate_left)
    return {
        "decisive": len(decisive),
        "left_wins": left,
        "left_share": left / len(decisive) if decisive else None,
        "p": sign_test(left, len(decisive) - left),
    }


def human_compare(choices: Sequence[HumanChoice], *, level: float = 0.95) -> dict:
    """The human side of an evaluation, the prompt as the unit of analysis (a prompt's choices,
    over its pairs and reviewers, averaged into one outcome): the win rate with its bootstrap
    interval, the choices' counts, agreement with the judge (the same side, and Cohen's kappa over
    candidate / tie / baseline), and side bias overall and per reviewer."""
    by_prompt: dict[str, list[float]] = {}
    for c in choices:
        by_prompt.setdefault(c.prompt, []).append(c.outcome)
    outcomes = [_mean(v) for v in by_prompt.values()]
    wins = sum(1 for c in choices if c.outcome == 1.0)
    losses = sum(1 for c in choices if c.outcome == 0.0)
    both_bad = sum(1 for c in choices if c.both_bad)
    judged = [(_side_of(c.outcome), _side_of(c.judge)) for c in choices if c.judge is not None]
    reviewers = sorted({c.reviewer for c in choices})
    return {
        "choices": len(choices),
        "prompts": len(by_prompt),
        "wins": wins,
        "ties": len(choices) - wins - losses - both_bad,
        "both_bad": both_bad,
        "losses": losses,
        "win_rate": bootstrap(outcomes, level=level).as_dict(),
        "decisive_win_rate": wins / (wins + losses) if wins + losses else None,
        "sign_test_p": sign_test(wins, losses),
        "judge_agreement": {
            "choices": len(judged),
            "same_side": sum(h == j for h, j in judged) / len(judged) if judged else None,
            "kappa": cohen_kappa(judged),
        },
        "side_bias": _side_bias(choices),
        "side_bias_by_reviewer": {r: _side_bias([c for c in choices if c.reviewer == r]) for r in reviewers},
        "level": level,
    }
