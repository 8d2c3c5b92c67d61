"""A blind A/B pair, chosen from the keyboard only, against the running app: the versions stay
hidden until the choice, and the human win rate appears on the evaluation and the lineage."""

import re

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

SETUP = (
    "from tests.evaluation.fixtures import ab_evaluation; "
    "print(ab_evaluation(rubric='aria-voice', prompt_set='aria-demo', character='aria', human_pairs=2, k=1).pk)"
)


def test_a_blind_pair_chosen_from_the_keyboard_shows_in_the_human_win_rate(sign_in, live_app):
    evaluation = int(live_app.manage("shell", "-c", SETUP).strip().splitlines()[-1])
    page = sign_in("reviewer")
    page.goto("/review/ab/")
    panel = page.locator("#ab-panel")
    expect(page.locator("#ab-form")).to_be_visible()
    assert not re.search(r"\bv[12]\b", panel.inner_text()), "no version before the choice"
    first = page.locator("#ab-form").get_attribute("data-choice")
    page.keyboard.press("a")  # A (the left answer) is better
    expect(page.locator("#ab-revealed")).to_contain_text(re.compile(r"A was v[12], B was v[12]"))
    expect(page.locator("#ab-form")).not_to_have_attribute("data-choice", first)
    assert not re.search(r"\bv[12]\b", page.locator("#ab-form").inner_text())
    page.keyboard.press("t")  # the second pair: a tie
    expect(page.locator("#ab-empty")).to_be_visible()
    ((chosen,),) = live_app.query(
        "SELECT count(*) FROM labelling_pairchoice c JOIN auth_user u ON u.id = c.reviewer_id "
        "WHERE u.username = 'reviewer' AND c.status = 'submitted'"
    )
    assert chosen == 2

    admin = sign_in("admin")
    admin.goto(f"/evaluations/{evaluation}/")
    expect(admin.locator("#human-result")).to_contain_text("2 on 2 prompts")
    expect(admin.locator("#human-result .human-win-rate")).to_contain_text(
        re.compile(r"\d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\]")
    )
    admin.goto("/models/")
    expect(admin.locator(".human-win-rate")).to_contain_text("2 choices on 2 pairs (blind A/B)")
