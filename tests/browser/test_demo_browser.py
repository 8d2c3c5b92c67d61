"""A new reviewer's first page: the demo model's own answers, in Aria's persona, with the rule
criteria scored beside what the reviewer scores, on a laptop and on a phone."""

import json
import textwrap
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import PASSWORD

pytestmark = pytest.mark.browser

DEMO = Path(__file__).resolve().parents[2] / "labelling" / "demo" / "aria-completions.jsonl"
NEW_REVIEWER = textwrap.dedent("""
    from django.contrib.auth import get_user_model
    from labelling.access.roles import REVIEWER, ensure_roles
    user = get_user_model().objects.create_user("{name}", password="{password}")
    user.groups.add(ensure_roles()[REVIEWER])
""")


@pytest.mark.parametrize(("name", "viewport"), [("newcomer", (1366, 900)), ("newcomer-phone", (390, 844))])
def test_a_new_reviewers_first_page_shows_the_demo_models_answers(sign_in, live_app, name, viewport):
    live_app.manage("shell", "-c", NEW_REVIEWER.format(name=name, password=PASSWORD))
    groups = [json.loads(line)["completions"] for line in DEMO.read_text().splitlines() if line.strip()]
    page = sign_in(name, viewport)
    page.goto("/review/?policy=fifo")
    expect(page.locator("#review-form")).to_be_visible()
    shown = [" ".join(s.split()) for s in page.locator("article.completion").all_inner_texts()]

    def on_page(text: str) -> bool:
        return any(" ".join(text.split()[:8]) in s for s in shown)

    # One of the demo model's groups (fifo serves the oldest one nobody else holds), every
    # answer of it as the model wrote it.
    assert any(len(group) == len(shown) and all(map(on_page, group)) for group in groups), shown
    # Rule criteria are scored on the page; the reviewer scores in-character and helpfulness.
    expect(page.locator('.criterion.rule[data-key="concision"]').first).to_be_visible()
    expect(page.locator('fieldset.criterion[data-key="in-character"]').first).to_be_visible()
