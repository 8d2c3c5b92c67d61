"""Every kind of page works under the Content-Security-Policy: the sign_in fixture fails a test
whose pages report a violation; here each persona walks the pages the other tests do not."""

import re

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser


def test_a_reviewers_pages_run_under_the_policy(sign_in, live_app):
    page = sign_in("reviewer")
    for path in ("/", "/review/", "/stats/", "/characters/aria/"):
        response = page.goto(path)
        assert response.status == 200, path
        assert "default-src 'self'" in response.headers["content-security-policy"], path
    page.goto("/stats/")
    page.select_option("select[name=rubric]", index=0)  # its change handler lives in a static file
    page.wait_for_url(re.compile(r"/stats/\?rubric="))


def test_an_admins_pages_and_the_admin_run_under_the_policy(sign_in, live_app):
    page = sign_in("admin")
    page.goto("/")
    expect(page.locator("#inference-health")).not_to_have_text("Checking inference…")  # the htmx fragment loaded
    for path in (
        "/runs/new",
        "/models/",
        "/admin/",
        "/admin/labelling/character/",
        "/admin/labelling/character/add/",
        "/admin/labelling/rubric/import/",
        "/api/docs",
    ):
        assert page.goto(path).status == 200, path
    expect(page.locator("#swagger-ui .info")).to_be_visible()  # the API docs drew themselves
