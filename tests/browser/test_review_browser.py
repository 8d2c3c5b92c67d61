"""What a reviewer does in the browser, end to end against the running app."""

import json
import re

from playwright.sync_api import expect

pytestmark = __import__("pytest").mark.browser


def held_group(page) -> int:
    text = page.locator(".lease").inner_text()
    return int(re.search(r"group #(\d+)", text).group(1))


def criteria(page) -> int:
    return page.locator("#review-form fieldset.criterion").count()


def test_sign_in_and_rate_a_whole_group_with_the_keyboard_only(sign_in, live_app):
    page = sign_in("reviewer")
    page.goto("/review/")  # from here on, only keys
    first = held_group(page)
    for _ in range(criteria(page)):
        page.keyboard.press("3")  # in every criterion's scale; each press moves to the next
    expect(page.locator("#review-form input[type=radio]:checked")).to_have_count(criteria(page))
    page.keyboard.press("Enter")
    expect(page.locator(".lease")).not_to_contain_text(re.compile(rf"group #{first}\b"))
    ((stored,),) = live_app.query(
        "SELECT count(*) FROM labelling_judgment j JOIN labelling_generation g ON g.id = j.generation_id "
        "JOIN auth_user u ON u.id = j.reviewer_id WHERE g.group_id = ? AND u.username = 'reviewer' "
        "AND j.source = 'human'",
        first,
    )
    ((completions,),) = live_app.query(
        "SELECT count(*) FROM labelling_generation WHERE group_id = ? AND revision = 0", first
    )
    # Committed before the next group appeared: one human judgment per completion of the group.
    assert completions > 1 and stored == completions, (stored, completions)


def test_a_reload_mid_group_loses_nothing(sign_in):
    page = sign_in("reviewer")
    page.goto("/review/")
    group = held_group(page)
    for _ in range(3):
        page.keyboard.press("2")
    expect(page.locator("#review-form input[type=radio]:checked")).to_have_count(3)
    page.reload()
    assert held_group(page) == group
    expect(page.locator("#review-form input[type=radio]:checked")).to_have_count(3)


def rate_and_submit(page) -> int:
    """Score every unscored criterion with the keyboard, submit, wait for the next group."""
    group = held_group(page)
    unscored = criteria(page) - page.locator("#review-form input[type=radio]:checked").count()
    for _ in range(unscored):
        page.keyboard.press("3")
    page.keyboard.press("Enter")
    expect(page.locator("#review-form")).not_to_have_attribute("data-assignment", "", timeout=10_000)
    # A locator assertion, not wait_for_function: the page's CSP forbids evaluating strings.
    # (A pattern: playwright trims a text needle, so "group #3 " would match "group #30".)
    expect(page.locator(".lease", has_text=re.compile(rf"group #{group}\b"))).to_have_count(0)
    return group


def import_groups(live_app, tmp_path, groups: dict[str, list[str]]) -> None:
    """Import Aria's groups of its own for a test: one group for each demo prompt named, with
    these completions."""
    source = tmp_path / "groups.jsonl"
    rows = [
        {"kind": "group", "character": "aria", "prompt_set": "aria-demo", "prompt": prompt, "completions": completions}
        for prompt, completions in groups.items()
    ]
    source.write_text("".join(json.dumps(row) + "\n" for row in rows))
    live_app.manage("import", str(source))


def test_two_reviewers_with_overlap_one_never_get_the_same_group(sign_in, live_app, tmp_path):
    # Groups of its own: each reviewer takes two and is shown a third, whatever the session's
    # earlier tests have left open (the demo's five run out when earlier tests reviewed or
    # hold some, depending on which group the queue happened to offer whom).
    prompts = ("stars", "lonely", "human", "packing", "nebula", "mistake")
    import_groups(live_app, tmp_path, {p: [f"Answer {p} a.", f"Answer {p} b."] for p in prompts})
    first, second = sign_in("reviewer"), sign_in("reviewer2")
    reviewed = {"reviewer": set(), "reviewer2": set()}
    for _ in range(2):
        held = {}
        for name, page in (("reviewer", first), ("reviewer2", second)):
            page.goto("/review/")
            held[name] = held_group(page)
        assert held["reviewer"] != held["reviewer2"], "one group held by both"
        for name, page in (("reviewer", first), ("reviewer2", second)):
            reviewed[name].add(rate_and_submit(page))
    assert len(reviewed["reviewer"]) == len(reviewed["reviewer2"]) == 2
    assert not reviewed["reviewer"] & reviewed["reviewer2"]


SCRIPT = "<script>document.title = 'owned'; alert('owned')</script><img src=x onerror=alert(1)>"


def test_a_completion_holding_a_script_shows_as_text(sign_in, live_app, tmp_path):
    group = {
        "kind": "group",
        "character": "aria",
        "prompt_set": "aria-demo",
        "prompt": "stars",
        "completions": [SCRIPT, "A plain answer."],
    }
    source = tmp_path / "hostile.jsonl"
    source.write_text(json.dumps(group) + "\n")
    live_app.manage("import", str(source))
    page = sign_in("admin")
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto("/review/?policy=fifo")
    for _ in range(30):  # skip to the imported group (the newest)
        if page.locator(".answer").get_by_text(SCRIPT).count():
            break
        lease = page.locator(".lease").inner_text()
        page.keyboard.press("s")
        expect(page.locator(".lease")).not_to_have_text(lease)  # the next group is in place
    expect(page.locator(".answer").get_by_text(SCRIPT)).to_be_visible()
    assert page.title() != "owned" and not dialogs, "no script from a completion may run"
    assert page.locator("#review-form img[src=x]").count() == 0


def test_a_streamed_completion_arrives_while_a_run_is_going(sign_in, live_app):
    page = sign_in("admin")
    page.goto("/runs/new")
    page.select_option("select[name=character]", label="Aria")
    page.select_option("select[name=prompt_set]", index=1)
    page.select_option("select[name=rubric]", index=1)
    page.fill("input[name=max_tokens]", "1500")
    page.click("#run-form button[type=submit]")
    page.wait_for_url(re.compile(r"/runs/\d+/$"))
    streamed = page.locator("#live-groups span[id^=stream-]").filter(has_text=re.compile(r"\S"))
    expect(streamed.first).to_be_visible(timeout=60_000)
    expect(page.locator(".status")).to_have_text("Succeeded", timeout=120_000)


PHONE_REVIEWER = (
    "from django.contrib.auth import get_user_model; from labelling.access.roles import REVIEWER, ensure_roles; "
    "u = get_user_model().objects.create_user('phone-reviewer', password='{password}'); "
    "u.groups.add(ensure_roles()[REVIEWER])"
)


def waiting(page) -> int:
    return int(page.locator("[data-count=total]").inner_text())


def test_a_phone_keeps_submit_and_the_current_criterion_on_screen_and_says_what_was_saved(sign_in, live_app, tmp_path):
    from tests.browser.conftest import PASSWORD

    live_app.manage("shell", "-c", PHONE_REVIEWER.format(password=PASSWORD))
    answer = "Aria looks up from the telescope and smiles. " * 12
    import_groups(live_app, tmp_path, {p: [answer + "(one)", answer + "(two)"] for p in ("stars", "lonely", "nebula")})
    page = sign_in("phone-reviewer", (390, 844))
    page.goto("/review/")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390, "nothing scrolls sideways"
    for _ in range(30):  # skip to one of the groups imported here (a skip is a write: the counts are fresh)
        lease = page.locator(".lease").inner_text()
        page.keyboard.press("s")
        expect(page.locator("#review-saved")).to_contain_text("Skipped group #")
        expect(page.locator(".lease")).not_to_have_text(lease)
        if page.locator(".answer", has_text="Aria looks up from the telescope").count():
            break
    before, group = waiting(page), held_group(page)

    page.keyboard.press("?")  # the help takes focus, and digits do not score behind it
    expect(page.locator("#key-help")).to_be_visible()
    expect(page.locator("#key-help button")).to_be_focused()
    page.keyboard.press("3")
    expect(page.locator("#review-form input[type=radio]:checked")).to_have_count(0)
    page.keyboard.press("Escape")
    expect(page.locator("#key-help")).to_be_hidden()

    page.keyboard.press("f")  # flag the highlighted completion
    expect(page.locator("#review-form input[name^=flag-]").first).to_be_checked()
    page.keyboard.press("c")  # write its critique
    expect(page.locator("#review-form textarea[name^=critique-]").first).to_be_focused()
    page.keyboard.type("Too long for a question this small.")
    page.keyboard.press("Escape")

    first = int(page.locator("#review-form article.completion").first.get_attribute("data-generation"))
    bar = page.locator(".submit-bar").bounding_box()
    assert bar["y"] >= 0 and bar["y"] + bar["height"] <= 844, bar
    for _ in range(criteria(page) - 1):
        page.keyboard.press("4")
        focus = page.locator(".criterion.kb-focus").bounding_box()
        assert focus["y"] >= 0 and focus["y"] + focus["height"] <= bar["y"] + 1, (focus, bar)  # not under the bar
    page.keyboard.press("4")
    page.keyboard.press("Enter")
    expect(page.locator("#review-saved")).to_contain_text(f"Saved your scores for group #{group}.")
    assert waiting(page) == before - 1, "the count dropped by the group just taken"
    expect(page.locator(".group-head .chat")).to_be_in_viewport()  # the next group opens at its prompt
    ((flagged, critique),) = live_app.query(
        "SELECT j.flagged, j.rationale FROM labelling_judgment j JOIN auth_user u ON u.id = j.reviewer_id "
        "WHERE j.generation_id = ? AND u.username = 'phone-reviewer'",
        first,
    )
    assert flagged and critique == "Too long for a question this small."
