"""The run page in a real browser while a run streams, its live socket played by the test
(Playwright's WebSocket routing): the frames the server pushes (the run's row, a group
starting, tokens) all land on the page. No `htmx:oobErrorNoTarget`: every out-of-band target
is there, for a group the page rendered mid-generation as for one that starts later, and a
group that starts again (a resume) keeps one card."""

import json

import pytest

from tests.browser.conftest import PASSWORD, LiveApp

pytestmark = pytest.mark.browser

SETUP = """
import json
from datetime import timedelta
from django.utils import timezone
from labelling.catalogue import selectors as catalogue_selectors
from labelling.models import Character, PipelineRun, PromptSet
from labelling.records import services as record_services
character, prompt_set = Character.objects.get(slug="aria"), PromptSet.objects.get(slug="aria-demo")
run = PipelineRun.objects.create(
    kind="generate", status="running", character=character, prompt_set=prompt_set, group_size=3,
    total_items=prompt_set.prompts.count(), started_at=timezone.now(),
    heartbeat_at=timezone.now() + timedelta(days=1),  # never taken for stale by the consumer
)
prompt = prompt_set.prompts.order_by("order", "pk")[0]
group = record_services.group_for(run=run, prompt=prompt)
record_services.generation_record(
    group=group, index=0, messages=catalogue_selectors.prompt_messages_for(character, prompt),
    producer=None, run=run, raw_text="The first answer is in.",
)
print(json.dumps({"run": run.pk, "group": group.pk}))
"""

# What the worker pushes next, captured from the broadcasts themselves (rendered by the app).
PUSHES = """
import json
from labelling.live import broadcasts
from labelling.models import PipelineRun
from labelling.records import services as record_services
run = PipelineRun.objects.get(pk=RUN)
first = run.groups.get()
prompt = run.prompt_set.prompts.order_by("order", "pk")[1]
second = record_services.group_for(run=run, prompt=prompt)
frames = []
broadcasts.push_html = lambda group, html: frames.append(html)
broadcasts.run_changed(run.pk)
broadcasts.tokens(run.pk, first.pk, {1: "Hel", 2: "Wor"})
broadcasts.group_started(run.pk, second, [0, 1, 2])
broadcasts.tokens(run.pk, second.pk, {0: "new ", 2: "group"})
broadcasts.group_started(run.pk, first, [1, 2])  # started again: a resume
broadcasts.tokens(run.pk, first.pk, {1: "lo", 2: "ld"})
print(json.dumps({"frames": frames, "second": second.pk}))
"""


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    # TRITON_URL names a port nothing listens on: `serve` starts no tritonserver, and nothing
    # here generates (the test plays the worker's pushes).
    app = LiveApp(tmp_path_factory.mktemp("run-page-live"), "127.0.0.1:9").start()
    yield app
    app.stop()


def _last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def test_a_streaming_run_page_has_every_target_its_pushes_name(app, browser):
    made = _last_json(app.manage("shell", "-c", SETUP))
    context = browser.new_context(base_url=app.url)
    page = context.new_page()
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    sockets = []
    page.route_web_socket("**/ws/live/**", lambda ws: sockets.append(ws))  # never reaches the server
    page.goto("/accounts/login/")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(f"{app.url}/")
    with page.expect_response(
        lambda r: r.url.endswith(f"/runs/{made['run']}/") and r.request.headers.get("hx-request")
    ):
        page.goto(f"/runs/{made['run']}/")  # the socket opens: the groups are fetched again
    group = made["group"]
    assert page.locator(f"#stream-{group}-1").count() == 1 and page.locator(f"#stream-{group}-0").count() == 0

    pushed = _last_json(app.manage("shell", "-c", PUSHES.replace("RUN", str(made["run"]))))
    for frame in pushed["frames"]:
        sockets[-1].send(frame)
    second = pushed["second"]
    page.wait_for_function(f"document.getElementById('stream-{group}-1')?.textContent === 'Hello'")
    assert page.locator(f"#stream-{group}-2").text_content() == "World"
    assert page.locator(f"#live-group-{group}").count() == 1  # started again: still one card
    assert page.locator(f"#stream-{second}-0").text_content() == "new "
    assert page.locator(f"#stream-{second}-2").text_content() == "group"
    assert page.locator(f"#live-group-{second} .prompt-heading").count() == 1  # headed by its prompt
    assert page.locator(f"#run-{made['run']}").count() == 1
    assert [e for e in errors if "oobErrorNoTarget" in e or "htmx" in e] == []
    context.close()


PAGES = """
import json
from labelling.datasets import services as dataset_services
from labelling.models import Group
group = Group.objects.filter(generations__isnull=False).order_by("id").first()
version = dataset_services.dataset_build(dataset="aria-pages", kind="grpo", filter={"rubric": "aria-voice"})
print(json.dumps({"run": group.run_id, "group": group.pk, "version": version.pk}))
"""


def _signed_in(app, browser, viewport):
    context = browser.new_context(base_url=app.url, viewport={"width": viewport[0], "height": viewport[1]})
    page = context.new_page()
    page.goto("/accounts/login/")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(f"{app.url}/")
    return context, page


@pytest.mark.parametrize("size", ["laptop", "phone"])
def test_the_run_pages_and_the_explorer_pass_axe_and_fit_the_screen(app, browser, size):
    from tests.browser.test_screens_browser import SIZES, screen_problems

    made = _last_json(app.manage("shell", "-c", PAGES.replace('"aria-pages"', f'"aria-pages-{size}"')))
    context, page = _signed_in(app, browser, SIZES[size])
    paths = [
        f"/runs/{made['run']}/",
        f"/runs/{made['run']}/rows",
        f"/runs/{made['run']}/rows?sort=reward",
        f"/groups/{made['group']}/",
        f"/datasets/{made['version']}/",
        f"/datasets/{made['version']}/rows",
        "/runs/new",
        f"/admin/labelling/datasetversion/{made['version']}/change/",
    ]
    problems = [p for path in paths for p in screen_problems(page, path)]
    assert problems == [], "\n".join(problems)
    if size == "phone":  # a touch screen's targets: at least 44px tall
        page.goto(f"/runs/{made['run']}/rows")
        heights = page.locator(".pager a.button, .explorer-filters select, .explorer-filters button").evaluate_all(
            "els => els.map(e => e.getBoundingClientRect().height)"
        )
        assert heights and min(heights) >= 44, heights
    context.close()


def test_the_new_run_form_shows_only_the_chosen_kinds_fields(app, browser):
    context, page = _signed_in(app, browser, (1366, 900))
    page.goto("/runs/new")
    form = page.locator("#run-form")
    assert form.locator("select[name=character]").is_visible()
    assert not form.locator("select[name=source_run]").is_visible()
    form.locator("select[name=kind]").select_option("judge")
    assert form.locator("select[name=source_run]").is_visible()
    assert not form.locator("select[name=character]").is_visible()
    assert form.locator("select[name=character]").is_disabled()  # not sent with a judge run
    assert not form.locator("input[name=group_size]").is_visible()
    context.close()
