"""The admin side of datasets and tokens: freeze, download, compare; create and revoke tokens."""

import hashlib

from django.contrib.auth import get_user_model
from django.urls import reverse

from labelling.access import roles, tokens
from labelling.models import ApiToken, DatasetVersion


def freeze(admin_client, **fields):
    data = {"dataset": "mira", "kind": "grpo", "filter": '{"rubric": "voice"}', **fields}
    return admin_client.post(reverse("admin:labelling_datasetversion_build"), data)


def test_an_admin_freezes_downloads_and_compares_versions(admin_client, world, media):
    response = freeze(admin_client)
    assert response.status_code == 302
    version = DatasetVersion.objects.get()
    listing = admin_client.get(reverse("admin:labelling_datasetversion_changelist")).content.decode()
    assert "Freeze a version" in listing and "download" in listing
    download = admin_client.get(reverse("admin:labelling_datasetversion_download", args=[version.pk]))
    assert hashlib.sha256(b"".join(download.streaming_content)).hexdigest() == version.sha256
    freeze(admin_client)
    compare = admin_client.post(
        reverse("admin:labelling_datasetversion_changelist"),
        {
            "action": "compare_versions",
            "_selected_action": list(DatasetVersion.objects.values_list("pk", flat=True)),
        },
    )
    assert compare.status_code == 200
    assert 'id="dataset-compare"' in compare.content.decode() and "unchanged" in compare.content.decode()


def test_a_bad_freeze_shows_the_field_and_writes_nothing(admin_client, world, media):
    response = freeze(admin_client, filter='{"rubric": "voice", "character": "nobody"}')
    assert response.status_code == 200
    assert "selects no rows" in response.content.decode()
    response = freeze(admin_client, filter="{not json")
    assert response.status_code == 200 and "Enter a valid JSON" in response.content.decode()
    assert not DatasetVersion.objects.exists()


def test_a_corrupt_version_is_not_served_from_the_admin(admin_client, world, media):
    freeze(admin_client)
    version = DatasetVersion.objects.get()
    (media / version.file.name).write_bytes(b"tampered\n")
    response = admin_client.get(reverse("admin:labelling_datasetversion_download", args=[version.pk]), follow=True)
    assert "Not served" in response.content.decode() and "sha256" in response.content.decode()


def test_a_reviewer_cannot_reach_dataset_downloads(reviewer_client, world, media):
    version_url = reverse("admin:labelling_datasetversion_download", args=[1])
    assert reviewer_client.get(version_url).status_code == 302  # to the admin login


def test_the_admin_shows_a_new_token_once_and_stores_its_hash(admin_client, admin_user):
    response = admin_client.post(
        reverse("admin:labelling_apitoken_add"), {"user": admin_user.pk, "name": "nightly"}, follow=True
    )
    page = response.content.decode()
    row = ApiToken.objects.get(name="nightly")
    token = page[page.index("shp_") :].split(" ")[0]
    assert hashlib.sha256(token.encode()).hexdigest() == row.digest
    assert tokens.token_authenticate(token).pk == row.pk
    assert token not in admin_client.get(reverse("admin:labelling_apitoken_change", args=[row.pk])).content.decode()
    admin_client.post(
        reverse("admin:labelling_apitoken_changelist"), {"action": "revoke", "_selected_action": [row.pk]}
    )
    assert tokens.token_authenticate(token) is None


def test_only_the_admin_role_opens_the_admin_downloads_included(client, admin_user, world, media):
    """A staff user without the role (made by hand, no permissions) and an admin moved to the
    reviewer role get neither the changelist nor a version's file."""
    client.force_login(admin_user)
    freeze(client)
    version = DatasetVersion.objects.get()
    download = reverse("admin:labelling_datasetversion_download", args=[version.pk])
    changelist = reverse("admin:labelling_datasetversion_changelist")
    staff = get_user_model().objects.create_user(username="staffer", password="x", is_staff=True)
    client.force_login(staff)
    assert [client.get(url).status_code for url in (download, changelist)] == [302, 302]  # to the admin login

    groups = roles.ensure_roles()
    admin_user.groups.remove(groups[roles.ADMIN])
    admin_user.groups.add(groups[roles.REVIEWER])
    admin_user.refresh_from_db()
    assert not admin_user.is_staff  # losing the role took staff status with it
    client.force_login(admin_user)
    assert [client.get(url).status_code for url in (download, changelist)] == [302, 302]

    groups[roles.ADMIN].user_set.add(admin_user)  # back, from the group's side
    admin_user.refresh_from_db()
    assert admin_user.is_staff
    client.force_login(admin_user)
    assert client.get(download).status_code == 200
