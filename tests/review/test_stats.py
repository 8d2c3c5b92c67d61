"""Agreement statistics and the stats page."""

import itertools
import math

import pytest
from django.utils import timezone
from hypothesis import given
from hypothesis import strategies as st

from labelling.models import Assignment, Judgment
from labelling.records import services as record_services
from labelling.review import agreement
from tests.conftest import _make_user


def naive_alpha(units):
    """Krippendorff's alpha (interval) straight from its definition, O(n^2)."""
    pairable = [u for u in units if len(u) >= 2]
    values = [v for u in pairable for v in u]
    n = len(values)
    observed = sum(sum((a - b) ** 2 for a, b in itertools.permutations(u, 2)) / (len(u) - 1) for u in pairable) / n
    expected = sum((a - b) ** 2 for a, b in itertools.permutations(values, 2)) / (n * (n - 1))
    return 1 - observed / expected


@given(st.lists(st.lists(st.integers(1, 5), min_size=1, max_size=4), min_size=1, max_size=12))
def test_alpha_matches_its_definition(units):
    fast = agreement.krippendorff_alpha_interval(units)
    pairable = [u for u in units if len(u) >= 2]
    values = [v for u in pairable for v in u]
    if len(values) < 2:  # nobody overlapped
        assert fast is None
    elif len(set(values)) == 1:  # every score the same: full agreement, nothing to divide by
        assert fast == 1.0
    else:
        assert math.isclose(fast, naive_alpha(units), abs_tol=1e-9)


def test_alpha_reference_points():
    assert agreement.krippendorff_alpha_interval([[1, 1], [3, 3], [5, 5]]) == 1.0
    assert agreement.krippendorff_alpha_interval([[1, 2], [2, 1]]) == pytest.approx(-0.5)
    assert agreement.krippendorff_alpha_interval([[4]]) is None  # nobody overlapped


def test_spearman_with_ties():
    assert agreement.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert agreement.spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    # ranks of y with a tie: [1, 2, 3, 4.5, 4.5] against [1..5]
    assert agreement.spearman([1, 2, 3, 4, 5], [5, 6, 7, 8, 8]) == pytest.approx(0.9746794, abs=1e-6)
    assert agreement.spearman([1, 1, 1], [1, 2, 3]) is None
    assert agreement.spearman([1, 2], [1, 2]) is None


@pytest.fixture
def reviewed(world):
    """Two reviewers score group a's three completions; one agrees with the judge (1/3/5)."""
    second = _make_user("rhea", "reviewer")
    made = world["made"]
    for reviewer, scores in ((world["reviewer"], [1, 3, 5]), (second, [2, 3, 4])):
        for index, score in enumerate(scores):
            record_services.judgment_record(
                generation=made[("a", index)],
                rubric=world["rubric"],
                source=Judgment.Source.HUMAN,
                scores={"voice": score},
                reviewer=reviewer,
            )
        group = made[("a", 0)].group
        Assignment.objects.create(
            group=group,
            reviewer=reviewer,
            status=Assignment.Status.SUBMITTED,
            leased_until=timezone.now(),
            completed_at=timezone.now(),
        )
    return {**world, "second": second}


def test_criterion_agreement_from_the_database(reviewed):
    (voice,) = agreement.criterion_agreement(reviewed["rubric"])
    assert voice.alpha_units == 3
    assert voice.alpha == pytest.approx(agreement.krippendorff_alpha_interval([[1, 2], [3, 3], [5, 4]]))
    assert voice.rho_pairs == 3 and voice.rho == pytest.approx(1.0)  # means 1.5/3/4.5 vs the judge's 1/3/5
    assert voice.human_counts == [1, 1, 2, 1, 1] and voice.judge_counts == [1, 0, 1, 2, 1]


def test_the_stats_page_shows_agreement_and_each_reviewers_progress(client, admin_user, reviewed):
    client.force_login(admin_user)
    page = client.get("/stats/").content.decode()
    assert 'data-criterion="voice"' in page and "n/a" not in page.split('id="progress"')[0]
    assert "rita" in page and "rhea" in page
    client.force_login(reviewed["reviewer"])
    mine = client.get("/stats/").content.decode().split('id="progress"')[1]
    assert "rita" in mine and "rhea" not in mine  # a reviewer sees only their own progress


def test_the_stats_page_with_no_reviews_says_so(reviewer_client, world):
    page = reviewer_client.get("/stats/").content.decode()
    assert "No human reviews yet" in page
