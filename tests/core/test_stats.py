"""The win-rate arithmetic, on data whose answers are known."""

import math

import pytest

from shaping_core.stats import PromptPair, bootstrap, compare, length_controlled_win_rate, sign_test


def _pairs(deltas, lengths=None):
    return [
        PromptPair(
            key=f"p{i}",
            candidate=[0.5 + d],
            baseline=[0.5],
            candidate_lengths=[lengths[i]] if lengths else [],
            baseline_lengths=[0] if lengths else [],
            candidate_criteria={"voice": 0.5 + d},
            baseline_criteria={"voice": 0.5},
        )
        for i, d in enumerate(deltas)
    ]


def test_wins_ties_and_losses_are_counted_per_prompt_with_ties_as_half():
    result = compare(_pairs([0.2, 0.1, 0.0, -0.1]))
    assert (result["prompts"], result["wins"], result["ties"], result["losses"]) == (4, 2, 1, 1)
    assert result["win_rate"]["estimate"] == pytest.approx(2.5 / 4)
    assert result["decisive_win_rate"] == pytest.approx(2 / 3)
    assert result["reward"]["delta"]["estimate"] == pytest.approx(0.05)
    assert result["criteria"]["voice"]["estimate"] == pytest.approx(0.05)
    assert [r["key"] for r in result["worst_regressions"]] == ["p3"]


def test_the_sign_test_is_the_exact_two_sided_binomial():
    assert sign_test(9, 1) == pytest.approx(22 / 1024)
    assert sign_test(5, 5) == 1.0
    assert sign_test(0, 0) == 1.0
    assert sign_test(10, 0) == pytest.approx(2 / 1024)


def test_the_bootstrap_interval_is_reproducible_and_brackets_the_estimate():
    values = [1, 0, 1, 1, 0.5, 1, 0, 1, 1, 1]
    first, again = bootstrap(values), bootstrap(values)
    assert first == again
    assert first.low <= first.estimate <= first.high and first.level == 0.95
    assert 0.4 < first.low < first.estimate < first.high <= 1.0
    assert bootstrap([1.0] * 12).low == 1.0  # all wins: no spread to show
    wide, narrow = bootstrap(values * 1), bootstrap(values * 10)
    assert (narrow.high - narrow.low) < (wide.high - wide.low)  # more prompts, a tighter interval


def test_a_win_bought_with_length_shows_in_the_length_controlled_win_rate():
    # The candidate wins exactly the prompts where it answered longer.
    deltas = [0.2] * 7 + [-0.2] * 3
    lengths = [40] * 7 + [-40] * 3
    result = compare(_pairs(deltas, lengths))
    raw = result["win_rate"]["estimate"]
    controlled = result["length"]["length_controlled_win_rate"]
    assert raw == pytest.approx(0.7)
    assert abs(controlled - 0.5) < abs(raw - 0.5) - 0.05  # pulled toward a coin flip
    # Lengths unrelated to the outcome leave it where it was.
    unrelated = [10, -10, 10, -10, 10, -10, 10, 10, -10, -10]
    assert length_controlled_win_rate([1, 1, 1, 1, 1, 1, 1, 0, 0, 0], unrelated) == pytest.approx(0.7, abs=0.08)
    assert length_controlled_win_rate([1, 0], [5, 5]) == 0.5  # no spread in length: the plain rate
    assert length_controlled_win_rate([], []) is None


def test_no_prompts_gives_empty_figures_not_errors():
    result = compare([])
    assert result["prompts"] == 0 and math.isnan(result["win_rate"]["estimate"])
    assert result["decisive_win_rate"] is None and result["sign_test_p"] == 1.0
