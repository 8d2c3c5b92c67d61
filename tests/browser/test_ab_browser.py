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
    assert not re.search(r"\bv\d+\b", panel.inner_text()), "no version before the choice"
    first = page.locator("#ab-form").get_attribute("data-choice")
    page.keyboard.press("a")  # A (the left answer) is better
    expect(page.locator("#ab-revealed")).to_contain_text(re.compile(r"A was v\d+, B was v\d+"))
    expect(page.locator("#ab-form")).not_to_have_attribute("data-choice", first)
    assert not re.search(r"\bv\d+\b", page.locator("#ab-form").inner_text())
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


# Long answers, with a word no line can hold: on a phone, B lies below the fold.
LONG = (
    " " + "She tilts her head toward the window and counts the stars out loud, one for each question. " * 9
) + "x" * 160
LONG_SETUP = (
    "from tests.evaluation.fixtures import ab_evaluation; "
    f"ab_evaluation(rubric='aria-voice', prompt_set='aria-demo', character='aria', human_pairs=2, k=1, pad={LONG!r})"
)


def box(page, selector: str) -> dict:
    return page.locator(selector).bounding_box()


def test_both_answers_are_read_in_full_before_a_choice_on_a_phone_and_a_laptop(sign_in, live_app):
    live_app.manage("shell", "-c", LONG_SETUP)
    phone = sign_in("reviewer2", (390, 844))
    phone.goto("/review/ab/")
    form = phone.locator("#ab-form")
    expect(form).to_be_visible()
    expect(phone.locator(".ab-context .msg-user")).to_be_visible()  # the prompt, and whose answers these are
    expect(phone.locator(".ab-context h1")).to_have_text("Aria")
    left, right = box(phone, "#ab-left"), box(phone, "#ab-right")
    assert right["y"] > left["y"] + left["height"] - 1, "stacked on a phone"
    for side in (left, right):
        assert side["x"] >= 0 and side["x"] + side["width"] <= 390, side  # wrapped, not cut off
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390
    first = form.get_attribute("data-choice")
    phone.keyboard.press("b")  # B has not been on screen yet: no choice, B comes into view
    expect(phone.locator("#ab-unread")).to_contain_text("Read answer B")
    expect(phone.locator("button[data-key=b]")).to_be_disabled()
    assert form.get_attribute("data-choice") == first
    phone.locator("#ab-right .ab-end").scroll_into_view_if_needed()
    expect(phone.locator("button[data-key=b]")).to_be_enabled()
    expect(phone.locator("#ab-unread")).to_be_hidden()
    bar = box(phone, ".ab-bar")
    assert bar["y"] + bar["height"] <= 844, "the choices are on screen"
    phone.keyboard.press("b")
    expect(phone.locator("#ab-revealed")).to_contain_text("you chose the right answer")

    laptop = sign_in("reviewer2", (1366, 900))
    laptop.goto("/review/ab/")
    expect(laptop.locator("#ab-form")).not_to_have_attribute("data-choice", first)
    left, right = box(laptop, "#ab-left"), box(laptop, "#ab-right")
    assert abs(left["y"] - right["y"]) < 1 and right["x"] > left["x"] + left["width"] - 1, "side by side"
    assert right["x"] + right["width"] <= 1366 and right["y"] + right["height"] <= 900, right
    expect(laptop.locator("button[data-key=t]")).to_be_enabled()  # both fully on screen: nothing held back
    laptop.keyboard.press("t")
    expect(laptop.locator("#ab-revealed")).to_contain_text("you chose a tie")
