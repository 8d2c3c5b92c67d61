"""The one weighted reward: the judge, the review services, the exports and the TRL reward use it."""

import pytest

from shaping_core import scoring

VOICE = scoring.Scale(key="voice", scale_min=1, scale_max=5, weight=2.0)
HELP = scoring.Scale(key="helpful", scale_min=0, scale_max=10, weight=1.0)


def test_it_rescales_each_criterion_before_weighing():
    # voice 5 of 1..5 -> 1.0 (weight 2), helpful 0 of 0..10 -> 0.0 (weight 1)
    assert scoring.overall([VOICE, HELP], {"voice": 5, "helpful": 0}) == pytest.approx(2 / 3)
    assert scoring.overall([VOICE, HELP], {"voice": 3, "helpful": 10}) == pytest.approx((2 * 0.5 + 1.0) / 3)


def test_a_missing_criterion_is_an_error_not_a_skip():
    with pytest.raises(scoring.ScoresInvalid) as exc:
        scoring.overall([VOICE, HELP], {"voice": 5})
    assert exc.value.field == "scores"
    assert "missing ['helpful']" in exc.value.message


def test_an_extra_criterion_is_an_error():
    with pytest.raises(scoring.ScoresInvalid) as exc:
        scoring.overall([VOICE], {"voice": 5, "tone": 3})
    assert "unknown ['tone']" in exc.value.message


@pytest.mark.parametrize("value", [0, 6, 2.5, True, "4", None])
def test_a_score_outside_the_scale_or_not_an_integer_is_refused(value):
    with pytest.raises(scoring.ScoresInvalid) as exc:
        scoring.check([VOICE], {"voice": value})
    assert exc.value.field == "scores.voice"


def test_a_rubric_dict_scores_the_same_as_its_rows():
    rubric = {
        "criteria": [
            {"key": "voice", "scale_min": 1, "scale_max": 5, "weight": 2.0},
            {"key": "helpful", "scale_min": 0, "scale_max": 10},
        ]
    }
    scores = {"voice": 4, "helpful": 7}
    assert scoring.rubric_overall(rubric, scores) == scoring.overall([VOICE, HELP], scores)


def test_no_weight_at_all_scores_zero():
    weightless = scoring.Scale(key="voice", scale_min=1, scale_max=5, weight=0.0)
    assert scoring.overall([weightless], {"voice": 5}) == 0.0


def test_equal_values_share_a_competition_rank():
    assert scoring.competition_ranks({10: 0.9, 11: 0.5, 12: 0.9, 13: 0.1}) == {10: 1, 11: 3, 12: 1, 13: 4}
