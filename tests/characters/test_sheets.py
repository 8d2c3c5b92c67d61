"""Character sheets: the schema names bad fields, appearances become valid glTF (checked by the
Khronos validator), a valid sheet is promoted to a character, and the review shows sheets as cards."""

import json
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError

from labelling.catalogue import services as catalogue_services
from labelling.catalogue.schemas import CriterionIn, RubricIn
from labelling.characters import services as character_services
from labelling.characters.appearance import build_glb
from labelling.characters.sheets import FEATURES, Appearance, sheet_problems, sheet_schema
from labelling.models import Character
from labelling.records import services as record_services

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = (ROOT / "labelling" / "demo" / "sample-sheet.json").read_text()
PALETTE = {"skin": "#c58c64", "hair": "#2b1d14", "outfit": "#35627a", "accent": "#d9a441"}


def sample(**changes) -> dict:
    data = json.loads(SAMPLE)
    for path, value in changes.items():
        target = data
        *parents, leaf = path.split("__")
        for p in parents:
            target = target[int(p)] if p.isdigit() else target[p]
        target[leaf] = value
    return data


def test_the_sample_sheet_is_valid_and_the_schema_is_versioned():
    assert sheet_problems(SAMPLE) == []
    schema = sheet_schema()
    assert "version 1" in schema["$comment"] and "appearance" in schema["required"]


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"appearance__height": 2.5}, "appearance.height"),
        ({"appearance__features": ["wings"]}, "appearance.features.0"),
        ({"appearance__palette__skin": "red"}, "appearance.palette.skin"),
        ({"attributes__age": "old"}, "attributes.age"),
        ({"dialogue": []}, "dialogue"),
    ],
)
def test_a_sheet_that_breaks_the_schema_names_the_field(changes, field):
    problems = sheet_problems(json.dumps(sample(**changes)))
    assert problems and problems[0].startswith(f"{field}:"), problems


def test_a_cut_off_sheet_is_reported_not_half_read():
    (problem,) = sheet_problems(SAMPLE[:200])
    assert problem.startswith("sheet: Invalid JSON")


def _validate(paths: list[Path]) -> list[dict]:
    node = shutil.which("node")
    assert node, "node is needed for the glTF validator (make test installs it)"
    assert (ROOT / "node_modules" / "gltf-validator").is_dir(), "run `npm ci` (make test does)"
    result = subprocess.run(
        [node, str(ROOT / "tests" / "gltf_validate.mjs"), *map(str, paths)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_every_appearance_becomes_a_gltf_asset_with_zero_validator_errors(tmp_path):
    appearances = [
        Appearance.model_validate(json.loads(SAMPLE)["appearance"]),
        Appearance(height=0.8, build=0.7, head=0.8, legs=0.85, palette=PALETTE),
        Appearance(height=1.25, build=1.4, head=1.3, legs=1.2, palette=PALETTE, features=list(FEATURES[:4])),
        Appearance(palette=PALETTE, features=list(FEATURES[4:])),
    ]
    paths = []
    for i, a in enumerate(appearances):
        paths.append(tmp_path / f"figure-{i}.glb")
        paths[-1].write_bytes(build_glb(a, name=f"figure {i}"))
    reports = _validate(paths)
    assert [r["errors"] for r in reports] == [0] * len(appearances), reports


def _gltf(glb: bytes) -> dict:
    """The JSON chunk of a .glb: its length, then its type, after the 12-byte header."""
    length, kind = struct.unpack("<I4s", glb[12:20])
    assert kind == b"JSON"
    return json.loads(glb[20 : 20 + length])


def test_a_figure_is_the_same_bytes_every_time_and_follows_its_parameters():
    first = build_glb(Appearance.model_validate(json.loads(SAMPLE)["appearance"]))
    build_glb(Appearance(height=0.8, build=1.4, palette=PALETTE, features=list(FEATURES[:4])))  # another in between
    assert build_glb(Appearance.model_validate(json.loads(SAMPLE)["appearance"])) == first  # built afresh

    base, taller = (_gltf(build_glb(Appearance(height=h, palette=PALETTE, features=["hat"]))) for h in (1.0, 1.2))
    assert base != taller
    nodes = {n["name"]: n for n in base["nodes"][1:]}
    assert set(nodes) == {"leg_left", "leg_right", "torso", "arm_left", "arm_right", "head", "hair", "hat"}
    grown = {n["name"]: n for n in taller["nodes"][1:]}
    for part in ("torso", "leg_left"):  # 20% taller: torso and legs 20% longer, no wider
        assert grown[part]["scale"][1] == pytest.approx(1.2 * nodes[part]["scale"][1])
        assert grown[part]["scale"][0] == nodes[part]["scale"][0]
    assert grown["head"]["scale"] == nodes["head"]["scale"]
    assert grown["head"]["translation"][1] > nodes["head"]["translation"][1]
    colours = {m["name"]: m["pbrMetallicRoughness"]["baseColorFactor"] for m in base["materials"]}
    assert colours["skin"] == pytest.approx([0xC5 / 255, 0x8C / 255, 0x64 / 255, 1.0], abs=1e-4)  # #c58c64
    assert colours["accent"] == pytest.approx([0xD9 / 255, 0xA4 / 255, 0x41 / 255, 1.0], abs=1e-4)  # #d9a441


@pytest.fixture
def sheet_group(db, media):
    rubric = catalogue_services.rubric_create(
        data=RubricIn(
            slug="coherence",
            name="Coherence",
            criteria=[CriterionIn(key="coherent", description="Attributes, backstory and dialogue fit together")],
        )
    )
    run, _ = character_services.sheet_run_start(concept="a retired lighthouse keeper", count=2, rubric=rubric)
    group = record_services.group_for(run=run, prompt=run.prompt_set.prompts.get())
    good = record_services.generation_record(group=group, index=0, messages=[], raw_text=SAMPLE, producer=None, run=run)
    bad = record_services.generation_record(
        group=group,
        index=1,
        messages=[],
        run=run,
        producer=None,
        raw_text=json.dumps(sample(appearance__height=3)),
    )
    return {"run": run, "good": good, "bad": bad}


def test_a_valid_sheet_is_promoted_to_a_character_with_its_figure(sheet_group, media):
    character = character_services.sheet_promote(generation=sheet_group["good"], slug="maren")
    assert character.name == "Maren Tollis" and "retired lighthouse keeper" in character.persona
    assert character.traits == ["craft", "honesty", "the sea"]
    glb = (media / character.appearance_model.name).read_bytes()
    assert struct.unpack("<4sI", glb[:8]) == (b"glTF", 2)
    assert _validate([media / character.appearance_model.name])[0]["errors"] == 0
    with pytest.raises(ValidationError, match="already exists"):
        character_services.sheet_promote(generation=sheet_group["good"], slug="maren")
    with pytest.raises(ValidationError, match="appearance.height"):
        character_services.sheet_promote(generation=sheet_group["bad"], slug="other")
    assert Character.objects.filter(slug="other").count() == 0


def test_a_sheet_spelling_nul_is_promoted_with_the_replacement_character(sheet_group):
    """Its text holds no NUL, its JSON does (the \\u0000 escape): the character is stored with
    U+FFFD, as any model output is (tests/pipelines/test_nul_output.py)."""
    raw = json.dumps(sample(name="Maren\x00", backstory="Forty\x00 years of lamps."))
    group = sheet_group["good"].group
    spelled = record_services.generation_record(
        group=group, index=2, messages=[], raw_text=raw, producer=None, run=sheet_group["run"], structured=True
    )
    character_services.sheet_promote(generation=spelled, slug="maren")
    character = Character.objects.get(slug="maren")
    assert (character.name, character.backstory) == ("Maren\ufffd", "Forty\ufffd years of lamps.")
    assert character.sheet["name"] == "Maren\ufffd" and character.persona.startswith("You are Maren\ufffd:")


def test_a_think_tag_inside_a_sheet_string_is_text_not_a_think_block(sheet_group):
    raw = json.dumps(sample(backstory="She wrote </think> in her log and kept going."))
    group = sheet_group["good"].group
    kept = record_services.generation_record(
        group=group, index=2, messages=[], raw_text=raw, producer=None, run=sheet_group["run"], structured=True
    )
    assert kept.text == raw and kept.thinking == "" and kept.think_valid
    assert sheet_problems(kept.text) == []


def test_the_review_shows_sheets_as_cards_with_a_3d_figure_and_invalid_ones_with_their_problems(
    sheet_group, client, admin_user, media
):
    data = sample(name="<script>alert(1)</script>")
    sheet_group["good"].text = json.dumps(data)
    sheet_group["good"].save()
    client.force_login(admin_user)
    page = client.get("/review/").content.decode()
    assert 'class="sheet-card"' in page and "<model-viewer" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert(1)" not in page
    assert "Not a valid character sheet" in page and "appearance.height" in page
    figure = client.get(f"/sheets/{sheet_group['good'].pk}/appearance.glb")
    assert figure["Content-Type"] == "model/gltf-binary" and figure.content[:4] == b"glTF"
    assert client.get(f"/sheets/{sheet_group['bad'].pk}/appearance.glb").status_code == 404
    promoted = client.post(f"/sheets/{sheet_group['good'].pk}/promote", {"slug": "maren"})
    assert promoted.status_code == 302 and promoted["Location"] == "/characters/maren/"
    detail = client.get("/characters/maren/").content.decode()
    assert "<model-viewer" in detail and ".glb" in detail and "&lt;script&gt;" in detail


def test_a_reviewer_cannot_promote(sheet_group, reviewer_client):
    assert reviewer_client.post(f"/sheets/{sheet_group['good'].pk}/promote", {"slug": "x"}).status_code == 403
    assert not Character.objects.filter(slug="x").exists()


def test_media_serves_figures_to_reviewers_but_never_dataset_files(sheet_group, reviewer_client, media):
    from django.test import Client

    character = character_services.sheet_promote(generation=sheet_group["good"], slug="maren")
    (media / "datasets" / "d").mkdir(parents=True)
    (media / "datasets" / "d" / "1.jsonl").write_text("{}\n")
    figure = reviewer_client.get(f"/media/{character.appearance_model.name}")
    assert figure.status_code == 200 and figure["Content-Type"] == "model/gltf-binary"
    assert b"".join(figure.streaming_content)[:4] == b"glTF"
    for path in (
        "datasets/d/1.jsonl",
        "appearance/../datasets/d/1.jsonl",
        "appearance/missing.glb",
        "appearance/../../etc/passwd",
    ):
        assert reviewer_client.get(f"/media/{path}").status_code == 404, path
    assert Client().get(f"/media/{character.appearance_model.name}").status_code == 302  # signed out: to the login


def _maximal(node: dict, defs: dict):
    """The longest value the guidance schema allows: every string at its cap, every array full,
    every optional key present."""
    if "$ref" in node:
        return _maximal(defs[node["$ref"].rsplit("/", 1)[1]], defs)
    if "enum" in node:
        return max(node["enum"], key=lambda v: len(json.dumps(v)))
    kind = node["type"]
    if kind == "object":
        return {k: _maximal(v, defs) for k, v in node["properties"].items()}
    if kind == "array":
        return [_maximal(node["items"], defs) for _ in range(node["maxItems"])]
    if kind == "integer":
        return node["maximum"]
    if node["pattern"].startswith("^#"):
        return "#a0a0a0"
    return "x" * int(node["pattern"].rsplit(",", 1)[1].split("}")[0])


def test_the_longest_guided_sheet_fits_the_budget_and_still_validates():
    from labelling.characters.sheets import SHEET_MAX_TOKENS, guided_sheet_max_bytes, sheet_guidance

    guidance = sheet_guidance()
    longest = _maximal(guidance, guidance["$defs"])
    text = json.dumps(longest, separators=(",", ":"))
    assert sheet_problems(text) == []  # what guidance allows, the validator accepts
    assert len(text.encode()) <= guided_sheet_max_bytes() < SHEET_MAX_TOKENS
    # Every string and array is bounded, and no separator admits whitespace.
    dumped = json.dumps(guidance)
    assert '"maxLength"' not in dumped and guidance["x-guidance"]["whitespace_flexible"] is False
    for name in ("name", "concept", "backstory"):
        assert guidance["properties"][name]["pattern"].endswith("}$")
