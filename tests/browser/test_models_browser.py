"""The Models page's version buttons against the running app: "Make current" on a version not
marked better on held-out prompts asks first (and changes nothing until answered), with the
mouse on a laptop and the keyboard on a phone; "Evaluate against parent" shows a refusal under
its field and starts nothing."""

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

# v2, a child of v1 with no training data recorded, evaluated on the demo prompts: better by the
# judge, on prompts of unknown use. Its sides' groups stay out of the review queue.
SETUP = (
    "from tests.evaluation.fixtures import ab_evaluation; "
    "print(ab_evaluation(rubric='aria-voice', prompt_set='aria-demo', character='aria', human_pairs=0, k=1).pk)"
)
CURRENT = "SELECT number FROM labelling_generatorversion WHERE is_current"


@pytest.fixture
def evaluated(live_app):
    evaluation = int(live_app.manage("shell", "-c", SETUP).strip().splitlines()[-1])
    yield evaluation
    live_app.manage("shell", "-c", "from labelling.models import GeneratorVersion as G; "
                    "from labelling.versions.generators import services as s; "
                    "s.generator_version_make_current(version=G.objects.get(number=1))")  # fmt: skip


@pytest.mark.parametrize(("size", "keyboard"), [((1366, 900), False), ((390, 844), True)])
def test_make_current_asks_to_confirm_and_then_makes_it_current(sign_in, live_app, evaluated, size, keyboard):
    page = sign_in("admin", size)
    page.goto("/models/")
    row = page.locator("#model-version-2")
    expect(row.locator(".prompt-kind")).to_have_text("prompts of unknown use")
    expect(row.locator(".confirm-note")).to_contain_text("never on held-out prompts")
    button = row.get_by_role("button", name="Make v2 current")
    if keyboard:
        button.focus()
        page.keyboard.press("Enter")
    else:
        button.click()
    panel = page.locator("#confirm-current")
    expect(panel).to_be_visible()
    expect(panel).to_contain_text("only on prompts of unknown use")
    assert live_app.query(CURRENT) == [(1,)], "nothing changes before the answer"
    assert page.evaluate("document.documentElement.scrollWidth") <= size[0]
    anyway = panel.get_by_role("button", name="Make v2 current anyway")
    if keyboard:
        anyway.focus()
        page.keyboard.press("Enter")
    else:
        anyway.click()
    expect(page.locator(".messages")).to_contain_text("Version 2 is current")
    assert live_app.query(CURRENT) == [(2,)]
    # A rollback to the first version asks nothing: it has no parent.
    page.locator("#model-version-1").get_by_role("button", name="Make v1 current").click()
    expect(page.locator(".messages")).to_contain_text("Version 1 is current")
    assert live_app.query(CURRENT) == [(1,)]


def test_evaluate_against_parent_shows_its_refusal_under_the_field(sign_in, live_app, evaluated):
    evaluations = live_app.query("SELECT count(*) FROM labelling_evaluation")
    page = sign_in("admin", (1366, 900))
    page.goto("/models/")
    details = page.locator("#evaluate-v2")
    summary = details.locator("summary")
    expect(summary).to_have_text("Evaluate against v1")
    summary.focus()
    page.keyboard.press("Enter")  # opens the form
    form = details.locator("form")
    ((rubric,),) = live_app.query("SELECT id FROM labelling_rubric WHERE slug = 'aria-voice' ORDER BY version DESC")[:1]
    form.get_by_label("Rubric").select_option(str(rubric))
    form.get_by_role("button", name="Evaluate v2 against v1").click()
    expect(page.locator("#action-error")).to_contain_text("name the prompt set")
    expect(page.locator("#evaluate-v2 .error")).to_contain_text("version 2 was not trained here")
    assert live_app.query("SELECT count(*) FROM labelling_evaluation") == evaluations
