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


CLOSE_CODE = """path => new Promise(done => {
    const socket = new WebSocket(`ws://${location.host}${path}`);
    socket.onclose = event => done(event.code);
})"""


def test_a_refused_socket_tells_the_browser_why_instead_of_failing_at_the_handshake(browser, live_app, sign_in):
    """The browser reads the refusal's code (4401, 4400, 4404), not 1006: htmx's ws extension
    would answer 1006 by connecting again, for ever."""
    context = browser.new_context(base_url=live_app.url)
    anonymous = context.new_page()
    anonymous.goto("/accounts/login/")
    assert anonymous.evaluate(CLOSE_CODE, "/ws/live/") == 4401
    context.close()
    page = sign_in("reviewer")
    assert page.evaluate(CLOSE_CODE, "/ws/live/?run=x") == 4400
    assert page.evaluate(CLOSE_CODE, "/ws/live/nowhere") == 4404
