"""Limits on what a user sends, each refusal naming its setting and writing nothing: portraits
(file size, pixels), import files (size; YAML anchors and aliases), critiques and rewrites
(length). By persona on the channels that take them: the admin, the API, the review pages."""

import io
import json

import pytest
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from PIL import Image

from labelling.access import tokens
from labelling.catalogue import services as catalogue_services
from labelling.catalogue.importers import ImportFailed, import_text
from labelling.catalogue.schemas import CharacterIn
from labelling.models import Character, Generation, Judgment, PromptSet
from tests.clients import client_as
from tests.review.conftest import held, review_form

HX = {"HTTP_HX_REQUEST": "true"}


def png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), "teal").save(buffer, format="PNG")
    return buffer.getvalue()


# --- portraits -----------------------------------------------------------------------------


@pytest.fixture
def mira(db, media):
    return catalogue_services.character_create(data=CharacterIn(slug="mira", name="Mira", persona="Keeps a light."))


def test_a_portrait_within_the_limits_is_stored_with_its_thumbnail(mira):
    catalogue_services.character_set_portrait(character=mira, filename="m.png", content=png(40, 30))
    mira.refresh_from_db()
    assert mira.portrait and mira.portrait_thumbnail


def test_a_portrait_file_over_the_size_limit_is_refused(mira, settings):
    picture = png(40, 30)
    settings.PORTRAIT_MAX_BYTES = len(picture) - 1
    with pytest.raises(ValidationError, match="PORTRAIT_MAX_BYTES") as refused:
        catalogue_services.character_set_portrait(character=mira, filename="m.png", content=picture)
    assert "portrait" in refused.value.message_dict
    mira.refresh_from_db()
    assert not mira.portrait


def test_a_portrait_of_too_many_pixels_is_refused_from_its_header(mira, settings):
    settings.PORTRAIT_MAX_PIXELS = 40 * 30 - 1
    with pytest.raises(
        ValidationError, match=r"40×30 pixels; a portrait has at most 1199 pixels \(PORTRAIT_MAX_PIXELS\)"
    ):
        catalogue_services.character_set_portrait(character=mira, filename="m.png", content=png(40, 30))


def test_a_file_that_is_not_a_picture_is_refused(mira):
    with pytest.raises(ValidationError, match="not an image"):
        catalogue_services.character_set_portrait(character=mira, filename="m.png", content=b"GIF89a not really")


def admin_character_form(portrait: bytes) -> dict:
    return {
        "slug": "nova",
        "name": "Nova",
        "persona": "A navigator.",
        "portrait": SimpleUploadedFile("nova.png", portrait, content_type="image/png"),
    }


def test_the_admin_shows_a_portrait_over_the_limit_as_a_field_error_and_saves_nothing(admin_client, media, settings):
    settings.PORTRAIT_MAX_PIXELS = 100
    page = admin_client.post("/admin/labelling/character/add/", admin_character_form(png(40, 30)))
    assert page.status_code == 200 and "PORTRAIT_MAX_PIXELS" in page.content.decode()
    assert not Character.objects.filter(slug="nova").exists()


def test_the_admin_stores_a_portrait_within_the_limits(admin_client, media):
    response = admin_client.post("/admin/labelling/character/add/", admin_character_form(png(40, 30)))
    assert response.status_code == 302 and Character.objects.get(slug="nova").portrait_thumbnail


@pytest.mark.parametrize("persona", [None, "outsider", "reviewer"])
def test_only_an_admin_reaches_the_portrait_upload(request, db, persona, media):
    user = request.getfixturevalue(persona) if persona else None
    response = client_as(user).post("/admin/labelling/character/add/", admin_character_form(png(40, 30)))
    assert response.status_code == 302 and "/login/" in response.url
    assert not Character.objects.filter(slug="nova").exists()


# --- import files ---------------------------------------------------------------------------

CHARACTERS = "characters:\n  - slug: bo\n    name: Bo\n    persona: A sailor.\n"


def test_an_import_over_the_size_limit_is_refused_naming_the_setting(db, settings):
    settings.IMPORT_MAX_BYTES = len(CHARACTERS) - 1
    with pytest.raises(ImportFailed, match="IMPORT_MAX_BYTES"):
        import_text("bo.yaml", CHARACTERS)
    settings.IMPORT_MAX_BYTES = len(CHARACTERS)
    assert import_text("bo.yaml", CHARACTERS).characters == 1


@pytest.mark.parametrize(
    "text",
    [
        "characters:\n  - &bo {slug: bo, name: Bo, persona: A sailor.}\n  - *bo\n",
        "characters:\n  - slug: bo\n    name: &n Bo\n    persona: A sailor.\n",
        # A few lines that a loader expanding aliases would turn into a billion strings.
        "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
        + "".join(f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(8))
        + "characters: []\n",
    ],
)
def test_yaml_anchors_and_aliases_are_refused_with_their_line(db, text):
    with pytest.raises(ImportFailed) as refused:
        import_text("aliases.yaml", text)
    (problem,) = refused.value.problems
    assert "are not accepted in imports" in problem.message and problem.line is not None
    assert not Character.objects.exists()


def test_the_admin_import_form_refuses_a_file_over_the_limit(admin_client, settings):
    settings.IMPORT_MAX_BYTES = 10
    upload = SimpleUploadedFile("bo.yaml", CHARACTERS.encode(), content_type="application/x-yaml")
    page = admin_client.post("/admin/labelling/character/import/", {"file": upload})
    assert page.status_code == 200 and "IMPORT_MAX_BYTES" in page.content.decode()
    assert not Character.objects.exists()


@pytest.mark.parametrize(
    ("persona", "status"), [(None, 401), ("outsider", 403), ("reviewer", 403), ("admin_user", 400)]
)
def test_the_api_import_over_the_limit_is_refused_for_every_persona(request, settings, db, persona, status):
    settings.IMPORT_MAX_BYTES = 10
    user = request.getfixturevalue(persona) if persona else None
    headers = {"Authorization": f"Bearer {tokens.token_create(user=user, name='t')[1]}"} if user else {}
    body = json.dumps({"name": "bo.yaml", "content": CHARACTERS})
    response = Client().post("/api/import", body, content_type="application/json", headers=headers)
    assert response.status_code == status
    if status == 400:
        assert "IMPORT_MAX_BYTES" in response.json()["detail"]
    assert not Character.objects.exists()


def test_an_api_body_over_the_upload_limit_is_a_json_400(admin_user, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    token = tokens.token_create(user=admin_user, name="t")[1]
    body = json.dumps({"name": "bo.yaml", "content": CHARACTERS + "#" * 1000})
    response = Client().post(
        "/api/import", body, content_type="application/json", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 400 and "DATA_UPLOAD_MAX_MEMORY_SIZE" in response.json()["detail"]
    assert not Character.objects.exists()


def test_a_puzzle_file_over_the_limit_is_refused(admin_client, db, settings):
    settings.IMPORT_MAX_BYTES = 10
    upload = SimpleUploadedFile("p.jsonl", b'{"prompt": "a house", "layout": "kitchen: (0,0)(1,0)(1,1)"}\n')
    page = admin_client.post("/runs/puzzles", {"puzzles": upload, "puzzle_set": "houses"})
    assert page.status_code == 400 and "IMPORT_MAX_BYTES" in page.content.decode()
    assert not PromptSet.objects.filter(slug="houses").exists()


# --- critiques and rewrites -----------------------------------------------------------------


@pytest.fixture
def holding(reviewer, demo):
    client = client_as(reviewer)
    client.get("/review/")
    return client, held(reviewer)


def test_a_critique_over_the_limit_is_refused_naming_it_and_stores_nothing(holding, settings):
    client, assignment = holding
    settings.REVIEW_CRITIQUE_MAX_CHARS = 20
    data = review_form(assignment)
    data[f"critique-{assignment.shown_order[0]}"] = "x" * 21
    response = client.post(f"/review/{assignment.pk}/submit", data, **HX)
    assert response.status_code == 400 and "REVIEW_CRITIQUE_MAX_CHARS" in response.content.decode()
    assert not Judgment.objects.filter(source="human").exists()
    data[f"critique-{assignment.shown_order[0]}"] = "x" * 20
    assert client.post(f"/review/{assignment.pk}/submit", data, **HX).status_code == 200


def test_a_rewrite_over_the_limit_is_refused_naming_it_and_stores_nothing(holding, settings):
    client, assignment = holding
    settings.REVIEW_REWRITE_MAX_CHARS = 20
    gid = assignment.shown_order[0]
    url = f"/review/{assignment.pk}/rewrite/{gid}"
    response = client.post(url, {f"rewrite-{gid}": "y" * 21}, **HX)
    assert response.status_code == 400 and "REVIEW_REWRITE_MAX_CHARS" in response.content.decode()
    assert not Generation.objects.filter(source="human_rewrite").exists()
    assert client.post(url, {f"rewrite-{gid}": "y" * 20}, **HX).status_code == 200


@pytest.mark.parametrize(("persona", "status"), [(None, 302), ("outsider", 403)])
def test_review_writes_refuse_who_is_not_a_reviewer(request, holding, persona, status):
    _, assignment = holding
    user = request.getfixturevalue(persona) if persona else None
    gid = assignment.shown_order[0]
    client = client_as(user)
    assert client.post(f"/review/{assignment.pk}/submit", review_form(assignment), **HX).status_code == status
    assert client.post(f"/review/{assignment.pk}/rewrite/{gid}", {f"rewrite-{gid}": "y"}, **HX).status_code == status
