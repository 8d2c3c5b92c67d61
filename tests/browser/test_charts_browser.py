"""A train run's page in a browser, on a laptop (1366×900) and a phone (390×844): its charts draw
with their axes and a legend that shows the values under the pointer, as wide as the page and
no wider, they follow the steps the run logs, and the console shows no error."""

import pytest

from tests.browser.test_screens_browser import screen_problems

pytestmark = [pytest.mark.browser, pytest.mark.triton]

SIZES = {"laptop": (1366, 900), "phone": (390, 844)}

# A train run as train_start queues it, with the steps its trainer would have logged (an SFT
# run: loss, KL and throughput, no reward); nothing trains it, so it stays live on its page.
TRAIN_RUN = """
from labelling.datasets import services as datasets
from labelling.versions.training import services as training
version = datasets.dataset_build(dataset="charts", kind="sft", filter={"rubric": "aria-voice"})
run, _ = training.train_start(dataset_version=version, method="sft", params={"steps": 12}, enqueue=False)
for step in range(1, 9):
    training.training_step_record(
        run_id=run.pk, step=step, metrics={"loss": 2.0 / step, "kl": 0.01 * step, "tokens_per_s": 900.0 + step}
    )
print(run.pk)
"""

ONE_MORE_STEP = """
from labelling.versions.training import services as training
training.training_step_record(run_id={run}, step=9, metrics={{"loss": 0.2, "kl": 0.09, "tokens_per_s": 910.0}})
"""

CHARTS = """() => Array.from(document.querySelectorAll('.training-chart')).map(figure => ({
  caption: figure.querySelector('figcaption').textContent,
  axes: figure.querySelectorAll('.u-axis').length,
  width: figure.querySelector('canvas').getBoundingClientRect().width,
  legend_label: figure.querySelector('.u-legend .u-series:nth-child(2) .u-label').textContent,
}))"""
LEGEND = """figure => Array.from(figure.querySelectorAll('.u-legend .u-series'))
  .map(row => [row.querySelector('.u-label').textContent, row.querySelector('.u-value').textContent])"""


@pytest.fixture
def train_run(live_app) -> int:
    return int(live_app.manage("shell", "-c", TRAIN_RUN).strip().splitlines()[-1])


def _errors(page) -> list[str]:
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    return errors


@pytest.mark.parametrize("size", SIZES)
def test_a_train_runs_charts_draw_with_axes_and_values_and_fit_the_screen(sign_in, live_app, train_run, size):
    page = sign_in("admin", SIZES[size])
    errors = _errors(page)
    page.goto(f"/runs/{train_run}/")
    page.wait_for_selector(".training-chart canvas")
    charts = page.evaluate(CHARTS)
    assert [c["caption"].split(" · ")[0] for c in charts] == [
        "Loss by step",
        "KL to the parent by step",
        "Tokens per second by step",
    ]
    assert all(c["axes"] == 2 and c["legend_label"].endswith("SFT (this run)") for c in charts)
    assert charts[0]["caption"].startswith("Loss by step · step 8: 0.25")
    assert all(0 < c["width"] <= SIZES[size][0] - 32 for c in charts)
    assert page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth") <= 0

    # The pointer over the first steps: the legend names this run with its value there.
    plot = page.locator(".training-chart .u-over").first
    plot.scroll_into_view_if_needed()
    box = plot.bounding_box()
    page.mouse.move(box["x"] + 2, box["y"] + box["height"] / 2)
    legend = page.locator(".training-chart").first.evaluate(LEGEND)
    assert legend[:2] == [["step", "1"], [charts[0]["legend_label"], "2"]], legend

    if size == "laptop":  # live: the run page follows a step logged after it opened
        live_app.manage("shell", "-c", ONE_MORE_STEP.format(run=train_run))
        page.wait_for_function(
            "() => document.querySelector('.training-chart figcaption').textContent.includes('step 9: 0.2')",
            timeout=15_000,
        )
        # htmx parses what it swaps in without scripting: the <noscript> stand-in it brings holds
        # elements, and they stay hidden.
        assert page.locator("#training-status .training-steps").count() == 1
        assert not page.locator("#training-status .training-steps").is_visible()
    assert errors == []
    problems = screen_problems(page, f"/runs/{train_run}/")  # axe, reloaded: WCAG 2 A/AA on the training page
    assert problems == [], "\n".join(problems)
