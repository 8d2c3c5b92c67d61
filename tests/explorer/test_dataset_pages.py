"""A frozen dataset version on a page: its file's rows, paged by offset, checked against its
sha256; its live rows in the explorer; its admin page read-only, with a file link that works."""

import re

import pytest
from django.urls import reverse

from labelling.datasets import services as dataset_services
from labelling.datasets import storage
from labelling.explorer import selectors


@pytest.fixture
def version(world, media):
    return dataset_services.dataset_build(dataset="mira", kind="grpo", filter={"rubric": "voice"})


def test_a_frozen_version_previews_its_rows_one_line_per_completion(admin_client, version, world):
    response = admin_client.get(reverse("dataset_preview", args=[version.pk]))
    html = response.content.decode()
    assert response.status_code == 200 and "mira v1" in html
    assert html.count("What do you see?") == 3 and html.count("Any ships?") == 2
    group = world["made"][("a", 0)].group_id
    assert f'<a href="{reverse("explorer_group", args=[group])}">g{group}</a>' in html
    assert "<td>1.000</td>" in html and "<td>1.22</td>" in html  # a-2: reward, advantage
    assert "The end of the file." in html


def test_the_preview_pages_by_offset_through_the_whole_file(admin_client, version, monkeypatch):
    page = selectors.dataset_file_page(version, size=1)
    assert [r["prompt"] for r in page["rows"]] == ["What do you see?"] * 3 and page["after"]
    rest = selectors.dataset_file_page(version, offset=page["after"], size=1)
    assert [r["prompt"] for r in rest["rows"]] == ["Any ships?"] * 2 and rest["after"] is None
    inside = selectors.dataset_file_page(version, offset=page["after"] - 5, size=5)  # a cursor mid-line
    assert [r["prompt"] for r in inside["rows"]] == ["Any ships?"] * 2
    html = admin_client.get(reverse("dataset_preview", args=[version.pk]), {"after": page["after"]}).content.decode()
    assert "What do you see?" not in html and "Any ships?" in html and "First page" in html


def test_a_corrupt_file_is_not_shown(admin_client, version):
    path = storage.dataset_path(version)
    path.write_bytes(path.read_bytes().replace(b"a-0", b"A-0"))
    response = admin_client.get(reverse("dataset_preview", args=[version.pk]))
    assert response.status_code == 409 and "no longer matches its sha256" in response.content.decode()


def test_a_versions_rows_are_explorable_live(admin_client, version):
    html = admin_client.get(reverse("explorer_dataset", args=[version.pk]), {"sort": "reward"}).content.decode()
    assert re.findall(r'id="row-(\d+)"', html) and "rubric voice v1" in html
    assert f'href="{reverse("dataset_preview", args=[version.pk])}"' in html


def test_reviewers_cannot_preview(reviewer_client, version):
    assert reviewer_client.get(reverse("dataset_preview", args=[version.pk])).status_code == 403
    assert reviewer_client.get(reverse("explorer_dataset", args=[version.pk])).status_code == 403


def test_the_admin_page_of_a_frozen_version_is_read_only_and_its_file_link_works(admin_client, version):
    html = admin_client.get(reverse("admin:labelling_datasetversion_change", args=[version.pk])).content.decode()
    assert 'name="_save"' not in html and 'name="_continue"' not in html
    assert reverse("admin:labelling_datasetversion_delete", args=[version.pk]) not in html
    link = re.search(r'<a href="([^"]+)">v1-grpo.jsonl</a>', html)
    assert link and link.group(1) == reverse("admin:labelling_datasetversion_download", args=[version.pk])
    download = admin_client.get(link.group(1))
    assert download.status_code == 200 and b"".join(download.streaming_content).count(b"\n") == 2
    assert f'href="{reverse("dataset_preview", args=[version.pk])}"' in html
    refused = admin_client.post(reverse("admin:labelling_datasetversion_delete", args=[version.pk]), {"post": "yes"})
    assert refused.status_code == 403
    version.refresh_from_db()  # still there


def test_the_admin_build_form_names_every_filter_field(admin_client, db):
    html = admin_client.get(reverse("admin:labelling_datasetversion_build")).content.decode()
    for name in ("held_out", "generator_version", "min_margin", "exclude_flagged"):
        assert name in html
