"""Every page of the app on a laptop (1366×900) and on a phone (390×844): axe finds no WCAG 2
A/AA violation, the console shows no error, and nothing makes the page scroll sideways.

axe-core runs inside the page (npm's copy, injected by the test: the app never serves it).
"""

from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

AXE = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"
AXE_SOURCE = AXE.read_text() + "\n;true"
SIZES = {"laptop": (1366, 900), "phone": (390, 844)}
EVALUATION = (
    "from tests.evaluation.fixtures import ab_evaluation; "
    "print(ab_evaluation(rubric='aria-voice', prompt_set='aria-demo', character='aria', human_pairs=1, k=1).pk)"
)
CAMPAIGN = (
    "from labelling.campaigns import services; from labelling.models import *; "
    "c = services.campaign_create(slug='aria-screens', name='Aria <b>on screen</b>', character=Character.objects.get(slug='aria'), "
    "rubric=Rubric.objects.filter(slug='aria-voice').latest('version'), prompt_set=PromptSet.objects.get(slug='aria-everyday'), "
    "held_out=0.25, policy={'prompts_per_round': 4}); "
    "lock = services.locked(c.pk); locked = lock.__enter__(); r = services.round_open(locked); "
    "r.routing = {'groups': {'1': 'audit'}, 'counts': {'no_spread': 0, 'rules_disagree': 0, 'uncertain': 0, 'audit': 1}, 'of': 4, 'reviewed': 1}; "
    "r.calibration = {'in-character': {'n': 8, 'weight': 2.0, 'calibrated': True, 'table': {}, 'alpha_raw': 0.1, 'alpha_calibrated': 0.4, 'rho_raw': 0.3, 'rho_calibrated': 0.3}}; "
    "r.stages = {'generate': 12.5}; r.step = 'calibrate'; r.save(); lock.__exit__(None, None, None)"
)
AXE_RUN = """async () => {
  const result = await axe.run(document, {runOnly: {type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]}});
  return result.violations.map(v => `${v.id} (${v.impact}): ${v.nodes.slice(0, 3).map(n => n.target.join(" ")).join(" | ")}`
    + ` — ${v.nodes[0].failureSummary.split("\\n").slice(0, 2).join(" ")}`);
}"""
SIDEWAYS = "() => document.documentElement.scrollWidth - window.innerWidth"


def screen_problems(page, path: str) -> list[str]:
    """What is wrong with one page as it stands: axe's violations, sideways scroll, console errors."""
    errors: list[str] = []

    def on_console(message):
        if message.type == "error":
            errors.append(message.text)

    def on_error(error):
        errors.append(str(error))

    page.on("console", on_console)
    page.on("pageerror", on_error)
    response = page.goto(path)
    page.wait_for_load_state("networkidle")
    problems = [] if response.status == 200 else [f"answered {response.status}"]
    page.evaluate(AXE_SOURCE)  # devtools evaluation: the page's policy forbids an injected script tag
    problems += page.evaluate(AXE_RUN)
    sideways = page.evaluate(SIDEWAYS)
    if sideways > 0:
        problems.append(f"scrolls sideways by {sideways}px")
    page.remove_listener("console", on_console)
    page.remove_listener("pageerror", on_error)
    problems += [f"console: {e}" for e in errors]
    return [f"{path}: {p}" for p in problems]


def admin_pages(page) -> list[str]:
    """The admin's index, and every changelist and add page it links to."""
    page.goto("/admin/")
    links = page.locator("#content-main a[href^='/admin/']").evaluate_all("els => els.map(e => e.getAttribute('href'))")
    return ["/admin/", *dict.fromkeys(links)]


def first_id(live_app, table: str, where: str = "1=1") -> int | None:
    rows = live_app.query(f"SELECT min(id) FROM labelling_{table} WHERE {where}")  # noqa: S608 - test constants
    return rows[0][0] if rows else None


@pytest.fixture(scope="module")
def evaluation(live_app) -> int:
    live_app.manage("shell", "-c", CAMPAIGN)  # a campaign with a round, for its pages
    return int(live_app.manage("shell", "-c", EVALUATION).strip().splitlines()[-1])


@pytest.mark.parametrize("size", SIZES)
def test_a_reviewers_pages_pass_axe_and_fit_the_screen(sign_in, live_app, evaluation, size):
    page = sign_in("reviewer", SIZES[size])
    problems = []
    for path in ("/", "/review/", "/review/ab/", "/stats/", "/characters/aria/"):
        problems += screen_problems(page, path)
    assert problems == [], "\n".join(problems)


@pytest.mark.parametrize("size", SIZES)
def test_an_admins_pages_and_the_admin_pass_axe_and_fit_the_screen(sign_in, live_app, evaluation, size):
    page = sign_in("admin", SIZES[size])
    run = first_id(live_app, "pipelinerun")
    paths = ["/", "/runs/new", "/models/", f"/runs/{run}/", f"/evaluations/{evaluation}/", "/campaigns/"]
    paths += ["/campaigns/aria-screens/", f"/runs/{run_in_parts(live_app)}/"]
    paths += admin_pages(page)
    problems = []
    for path in paths:
        problems += screen_problems(page, path)
    assert problems == [], "\n".join(problems)


# A run spread over two consumers, one part done and one whose consumer stopped beating, for
# the run page's Parts table.
RUN_IN_PARTS = (
    "from datetime import timedelta; from labelling import clock; from labelling.models import PipelineRun, RunShard; "
    "r = PipelineRun.objects.order_by('id').first(); r.pk = None; r.idempotency_key = None; "
    "r.params = {**r.params, 'shards': 2}; r.save(); now = clock.now(); "
    "RunShard.objects.create(run=r, index=0, status='done', execution=1, heartbeat_at=now, done_items=3); "
    "RunShard.objects.create(run=r, index=1, status='running', execution=2, heartbeat_at=now - timedelta(minutes=5), "
    "done_items=1, failed_items=1); print(r.pk)"
)


def run_in_parts(live_app) -> int:
    return int(live_app.manage("shell", "-c", RUN_IN_PARTS).strip().splitlines()[-1])


THROTTLED_USER = (
    "from django.contrib.auth import get_user_model; from labelling.access.roles import REVIEWER, ensure_roles; "
    "u = get_user_model().objects.create_user('locked-out', password='a-long-private-password-7'); "
    "u.groups.add(ensure_roles()[REVIEWER])"
)


def test_the_sign_in_page_says_when_sign_in_is_throttled_on_a_phone(browser, live_app):
    live_app.manage("shell", "-c", THROTTLED_USER)
    context = browser.new_context(base_url=live_app.url, viewport={"width": 390, "height": 844})
    page = context.new_page()
    assert screen_problems(page, "/accounts/login/") == []
    for _ in range(10):  # LOGIN_FAILURES_PER_ACCOUNT's default
        page.fill("input[name=username]", "locked-out")
        page.fill("input[name=password]", "not-the-password")
        page.click("button[type=submit]")
        page.wait_for_load_state("load")
    page.fill("input[name=username]", "locked-out")
    page.fill("input[name=password]", "a-long-private-password-7")  # the right one, refused while throttled
    page.click("button[type=submit]")
    alert = page.get_by_role("alert")
    alert.wait_for()
    assert "Too many failed sign-ins for this account" in alert.inner_text()
    box = alert.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= 390 and box["y"] + box["height"] <= 844, box
    assert page.url.endswith("/accounts/login/")
    problems = screen_problems(page, "/accounts/login/")  # the page itself, again: axe, console, width
    context.close()
    assert problems == [], "\n".join(problems)
