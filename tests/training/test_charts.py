"""A train run's charts: the numbers behind them (`charts.training_series`, which the API reads
too), the runs they may lay over it, the JSON and the status part the run page polls, and the
page without scripts."""

import json
import math
import re
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.staticfiles import finders
from django.shortcuts import resolve_url

from labelling.datasets import services as dataset_services
from labelling.models import GeneratorVersion, PipelineRun
from labelling.versions.training import charts
from labelling.versions.training import services as training_services

ROOT = Path(settings.BASE_DIR)


@pytest.fixture
def sft(world, media):
    return dataset_services.dataset_build(
        dataset="mira", kind="sft", filter={"runs": [world["run"].pk], "rubric": "voice"}
    )


@pytest.fixture
def train(sft):
    def start(steps: int = 4) -> PipelineRun:
        run, _ = training_services.train_start(
            dataset_version=sft, method="sft", params={"steps": steps}, enqueue=False
        )
        return run

    return start


def log(run: PipelineRun, step: int, **values) -> None:
    """A step as the worker stores what the trainer logged."""
    training_services.training_step_record(run_id=run.pk, step=step, metrics=values)


def finish(run: PipelineRun) -> None:
    PipelineRun.objects.filter(pk=run.pk).update(status=PipelineRun.Status.SUCCEEDED)
    run.refresh_from_db()


def curve_url(run: PipelineRun) -> str:
    return f"/runs/{run.pk}/curve"


def test_the_series_is_the_logged_steps_as_columns_oldest_first(train):
    run = train()
    log(run, 3, loss=0.5, reward_mean=0.7, reward_std=0.1, kl=0.02, tokens_per_s=900.0)
    log(run, 1, loss=0.9, reward_mean=0.2, reward_std=0.3, kl=0.0, tokens_per_s=800.0)
    log(run, 2, loss=0.7, reward_mean=None, tokens_per_s=850.0)  # an SFT step logs no reward
    series = charts.training_series(run)
    assert series["steps"] == [1, 2, 3]
    assert series["metrics"] == {
        "reward_mean": [0.2, None, 0.7],
        "reward_std": [0.3, None, 0.1],
        "loss": [0.9, 0.7, 0.5],
        "kl": [0.0, None, 0.02],
        "tokens_per_s": [800.0, 850.0, 900.0],
    }
    assert series["last"] == {
        "step": 3,
        "loss": 0.5,
        "reward_mean": 0.7,
        "reward_std": 0.1,
        "kl": 0.02,
        "tokens_per_s": 900.0,
    }
    version = GeneratorVersion.objects.get(train_run=run)
    assert series["run"] == run.pk and series["label"] == f"run #{run.pk} · v{version.number} SFT"
    assert (series["status"], series["finished"], series["total_steps"]) == ("queued", False, 4)
    assert series["version"] == {"number": version.number, "method": "sft", "status": "training", "parent": 1}
    assert series["parent_run"] is None  # version 1 was shipped, not trained here
    assert json.loads(json.dumps(series)) == series  # plain JSON as it is


def test_a_run_without_steps_has_empty_columns(train):
    series = charts.training_series(train())
    assert series["steps"] == [] and series["last"] is None
    assert all(values == [] for values in series["metrics"].values())


def test_a_value_that_is_not_finite_is_a_gap_in_the_series_the_json_and_the_lines(train, admin_client):
    run = train()
    log(run, 1, loss=1.0, kl=0.1)
    log(run, 2, loss=math.nan, kl=math.inf)
    log(run, 3, loss=0.5, kl=0.2)
    series = charts.training_series(run)
    assert series["metrics"]["loss"] == [1.0, None, 0.5] and series["metrics"]["kl"] == [0.1, None, 0.2]
    response = admin_client.get(curve_url(run), {"format": "json"})
    body = json.loads(response.content, parse_constant=lambda name: pytest.fail(f"{name} in the JSON"))
    assert body["metrics"]["loss"] == [1.0, None, 0.5]
    lines = {line.key: line for line in charts.curve_lines(charts.selectors.training_curve(run.pk))}
    assert (lines["loss"].low, lines["loss"].high) == (0.5, 1.0) and "nan" not in lines["loss"].points
    assert len(lines["kl"].points.split()) == 2


def test_a_version_trained_from_a_trained_parent_names_the_parents_run_and_offers_it_first(train):
    parent_run, idle_run, later_run, child_run = train(), train(), train(), train()
    log(parent_run, 1, loss=0.8)
    log(later_run, 1, loss=0.6)
    log(child_run, 1, loss=0.4)
    # child's version trained from parent's (as a train run from a ready v2 would)
    parent_version = GeneratorVersion.objects.get(train_run=parent_run)
    GeneratorVersion.objects.filter(train_run=child_run).update(parent=parent_version)
    assert charts.training_series(child_run)["parent_run"] == parent_run.pk
    version = GeneratorVersion.objects.get(train_run=child_run)
    offered = charts.overlay_runs(child_run, version)
    # The parent's run first; then the latest others with steps: not the run itself, not one
    # that logged nothing.
    assert [o["run"] for o in offered] == [parent_run.pk, later_run.pk]
    assert [o["parent"] for o in offered] == [True, False]
    assert offered[0]["label"] == f"run #{parent_run.pk} · v{parent_version.number} SFT"
    assert idle_run.pk not in {o["run"] for o in offered}


def test_the_parents_run_is_offered_even_when_older_than_the_latest_runs(train, monkeypatch):
    parent_run, newer, child_run = train(), train(), train()
    for run in (parent_run, newer, child_run):
        log(run, 1, loss=0.5)
    GeneratorVersion.objects.filter(train_run=child_run).update(
        parent=GeneratorVersion.objects.get(train_run=parent_run)
    )
    monkeypatch.setattr(charts, "OVERLAY_LIMIT", 1)
    version = GeneratorVersion.objects.get(train_run=child_run)
    assert [o["run"] for o in charts.overlay_runs(child_run, version)] == [parent_run.pk]


def test_an_admin_gets_the_series_as_json(train, admin_client):
    run = train()
    log(run, 1, loss=0.9, reward_mean=0.1)
    response = admin_client.get(curve_url(run), {"format": "json"})
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    assert response.json() == charts.training_series(run)


def test_a_reviewer_may_not_read_the_series(train, reviewer_client):
    assert reviewer_client.get(curve_url(train()), {"format": "json"}).status_code == 403


def test_a_visitor_is_sent_to_sign_in(train, client):
    response = client.get(curve_url(train()), {"format": "json"})
    assert response.status_code == 302 and response["Location"].startswith(resolve_url(settings.LOGIN_URL))


def test_the_series_is_read_only(train, admin_client):
    assert admin_client.post(curve_url(train()), {"format": "json"}).status_code == 405


def test_a_run_of_another_kind_has_no_series(world, admin_client):
    assert admin_client.get(curve_url(world["run"]), {"format": "json"}).status_code == 404


def test_htmx_polls_the_status_part_with_the_series_while_the_run_trains(train, admin_client):
    run = train()
    log(run, 1, loss=0.9, reward_mean=0.1, reward_std=0.05, kl=0.0, tokens_per_s=700.0)
    response = admin_client.get(curve_url(run), headers={"HX-Request": "true"})
    part = response.content.decode()
    assert "HX-Request" in response["Vary"]
    assert part.lstrip().startswith('<div id="training-status"') and 'id="training-curve"' not in part
    assert 'hx-trigger="every 2s"' in part and "Step <strong>1</strong> of 4" in part
    data = re.search(r'<script id="training-series" type="application/json">(.*?)</script>', part, re.S)
    assert json.loads(data.group(1)) == charts.training_series(run)
    finish(run)
    part = admin_client.get(curve_url(run), headers={"HX-Request": "true"}).content.decode()
    assert "hx-trigger" not in part and 'id="training-series"' in part  # the last poll: it stops


def test_the_run_page_carries_the_charts_and_stands_in_for_them_without_scripts(train, admin_client):
    parent_run, run = train(), train(steps=8)
    log(parent_run, 1, loss=1.0)
    GeneratorVersion.objects.filter(train_run=run).update(parent=GeneratorVersion.objects.get(train_run=parent_run))
    for step in range(1, 8):
        log(run, step, loss=1.0 / step, reward_mean=step / 10, reward_std=0.1, kl=step / 100, tokens_per_s=500.0)
    page = admin_client.get(f"/runs/{run.pk}/").content.decode()
    start = page.index('<section id="training-curve"')
    section = page[start : page.index("</section>", start)]
    assert 'id="training-status"' in section and 'hx-trigger="every 2s"' in section
    assert 'class="training-controls" hidden' in section and "data-smoothing" in section
    assert f'value="{parent_run.pk}" data-overlay data-url="/runs/{parent_run.pk}/curve?format=json"' in section
    assert "which trained the parent" in section
    # Without scripts: the last five steps as a table, and the lines drawn on the server.
    fallback = section[section.index("<noscript>") : section.index("</noscript>")]
    assert re.findall(r'<th scope="row">(\d+)</th>', fallback) == ["3", "4", "5", "6", "7"]
    assert fallback.count("<polyline") == 3
    # Every file it loads is this site's own (the policy allows no other), none inline.
    sources = re.findall(r'<(?:script|link)[^>]*(?:src|href)="([^"]+)"', section)
    assert sources == [
        "/static/vendor/uPlot-1.6.32.min.css",
        "/static/vendor/uPlot-1.6.32.min.js",
        "/static/js/training-charts.js",
    ]
    for source in sources:
        assert finders.find(source.removeprefix("/static/")), source
    assert not re.search(r"<script(?![^>]*(?:src=|application/json))", section)


def test_a_run_page_before_the_first_step_says_the_trainer_is_loading(train, admin_client):
    page = admin_client.get(f"/runs/{train().pk}/").content.decode()
    assert "No step logged yet: the first appears when the trainer has loaded" in page and "<noscript>" not in page
    assert "Lay over this run" not in page  # no other run has logged a step


def test_the_vendored_chart_library_is_the_version_the_package_file_pins():
    pinned = json.loads((ROOT / "package.json").read_text())["devDependencies"]["uplot"]
    vendor = ROOT / "static" / "vendor"
    assert (
        (vendor / f"uPlot-{pinned}.min.js").read_text().startswith(f"/*! https://github.com/leeoniya/uPlot (v{pinned})")
    )
    assert (vendor / f"uPlot-{pinned}.min.css").is_file()
    assert "MIT License" in (vendor / "uPlot-LICENSE.txt").read_text()
