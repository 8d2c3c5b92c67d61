"""Every code block of README.md and docs/*.md, and what runs it: a block a user would paste is
run as written by the test named for it (here, or beside the feature it shows); the others are
pictures, output samples or excerpts, each checked or said why not. A new block fails the
inventory until it says which it is."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command, get_commands

from labelling.access.roles import ADMIN
from labelling.catalogue import architext
from labelling.characters.sheets import sheet_schema
from labelling.datasets import services as dataset_services
from labelling.datasets.storage import dataset_path
from labelling.models import ApiToken, Character, Prompt, PromptSet, Rubric
from tests.conftest import _make_user
from tests.doc_blocks import DOCS, ROOT, code_blocks, command_lines, languages, manage_commands

HERE = "tests/test_docs.py"
FORMATS = f"{HERE}::test_the_format_samples_have_the_fields_a_build_writes"
TRAINING = "tests/training/test_docs_examples.py"

# Per page, each block in page order: its language and what runs or checks it ("tests/...")
# or why nothing runs it as written.
BLOCKS: dict[str, list[tuple[str, str]]] = {
    "README.md": [
        ("sh", "not runnable in a test: `make test` is the suite itself, `make run` serves until Ctrl-C"),
        (
            "sh",
            "needs NVIDIA's Triton container on a GPU host; its first line is run by "
            "tests/training/test_served_rows.py::test_the_repository_holds_the_ready_versions_and_a_request_without_one_gets_the_current",
        ),
        ("", "a picture of the folders: tests/test_layout.py checks the rules"),
    ],
    "campaigns.md": [
        (
            "json",
            "tests/campaigns/test_campaign_docs.py::test_the_documented_spec_and_commands_create_and_show_the_campaign",
        ),
        (
            "sh",
            "create and show: tests/campaigns/test_campaign_docs.py; `campaign run` as a user runs it: "
            "tests/campaigns/test_campaign_processes.py",
        ),
        ("text", "tests/campaigns/test_campaign_docs.py::test_the_output_sample_has_the_form_the_command_prints"),
    ],
    "architecture.md": [("", "a picture of the folders: tests/test_layout.py checks the rules")],
    "benchmarks.md": [],
    "deploy.md": [
        ("text", "a refusal's wording: tests/labelling/test_volume.py checks each refusal's message"),
        (
            "sh",
            "needs a container engine, which this machine does not run: tests/test_deploy.py checks the files it "
            "runs, tests/hosts/test_split_apart.py runs their roles as separate hosts",
        ),
    ],
    "reliability.md": [],
    "api.md": [
        ("sh", f"{HERE}::test_the_token_commands_run_as_written"),
        ("python", "tests/pipelines/test_api_loop.py::test_the_api_docs_loop_runs_as_written"),
    ],
    "characters.md": [("sh", f"{HERE}::test_the_schema_command_prints_the_sheet_schema")],
    "datasets.md": [
        ("json", FORMATS),
        ("json", FORMATS),
        ("sh", f"{TRAINING}::test_the_trl_script_of_the_dataset_docs_trains_with_the_judges_reward"),
        ("python", f"{TRAINING}::test_the_trl_script_of_the_dataset_docs_trains_with_the_judges_reward"),
        ("json", FORMATS),
        ("json", FORMATS),
        ("json", FORMATS),
    ],
    "import-format.md": [
        ("yaml", f"{HERE}::test_the_import_document_example_imports_as_written"),
        ("yaml", "tests/core/test_rules.py::test_the_rule_examples_in_the_import_docs_are_valid_as_written"),
        (
            "json",
            "an excerpt with `...` for what it leaves out (not JSON); labelling/demo/aria-completions.jsonl is "
            "the whole file, imported by tests/labelling/test_seed_demo.py::test_the_demo_has_aria_a_rubric_prompts_and_the_demo_models_answers_to_review",
        ),
    ],
    "loop.md": [
        # create_token here; `SHAPING_TOKEN=... python loop.py` is how test_loop_script runs the script
        ("sh", f"{HERE}::test_the_token_commands_run_as_written"),
        (
            "",
            "tests/training/test_loop_script.py::test_the_loop_script_trains_a_version_that_wins_and_makes_it_current",
        ),
        (
            "python",
            "tests/training/test_loop_script.py::test_the_loop_script_trains_a_version_that_wins_and_makes_it_current",
        ),
    ],
    "openai-endpoints.md": [
        ("env", "tests/pipelines/test_openai_endpoints.py::test_the_docs_configuration_and_command_work_as_written"),
        ("env", "tests/pipelines/test_openai_endpoints.py::test_the_docs_configuration_and_command_work_as_written"),
        ("sh", "tests/pipelines/test_openai_endpoints.py::test_the_docs_configuration_and_command_work_as_written"),
    ],
    "puzzles.md": [
        ("json", f"{HERE}::test_the_puzzle_docs_rows_and_command_import_as_written"),
        ("json", f"{HERE}::test_the_puzzle_docs_rows_and_command_import_as_written"),
        ("sh", f"{HERE}::test_the_puzzle_docs_rows_and_command_import_as_written"),
        ("", f"{HERE}::test_the_decision_prompt_sample_is_what_synthesis_writes"),
    ],
    "security.md": [("text", f"{HERE}::test_the_policy_in_the_security_docs_is_the_one_sent")],
    "training.md": [
        ("", "a picture of the loop"),
        ("sh", f"{TRAINING}::test_the_training_examples_run_as_written"),
        ("json", f"{TRAINING}::test_the_train_run_body_of_the_api_docs_starts_a_train_run"),
        ("sh", f"{TRAINING}::test_the_training_examples_run_as_written"),
        ("sh", f"{TRAINING}::test_the_training_examples_run_as_written"),
        (
            "sh",
            "needs several GPUs; the launcher in front of the trainer is run by "
            "tests/training/test_shaping_loop.py::test_the_trainer_runs_under_an_accelerate_launcher (one CPU process)",
        ),
    ],
}


def _pages() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


def test_every_block_of_the_docs_is_run_or_says_why_not():
    assert sorted(p.name for p in _pages()) == sorted(BLOCKS), "a page was added or removed: list its blocks here"
    for page in _pages():
        listed = BLOCKS[page.name]
        assert languages(page) == [kind for kind, _ in listed], f"{page.name}: its blocks changed; update BLOCKS"
        for _, what in listed:
            for path, _, name in re.findall(r"(tests/[\w/]+\.py)(::(\w+))?", what):
                test_file = ROOT / path
                assert test_file.is_file(), f"{page.name}: {path} does not exist"
                assert not name or f"def {name}(" in test_file.read_text(), f"{page.name}: no test {path}::{name}"


# --- docs/api.md and docs/loop.md: tokens ---------------------------------------------------


def test_the_token_commands_run_as_written(db, admin_user, capsys):
    _make_user("admin", ADMIN)  # loop.md's user; api.md's is admin_user, "ada"
    (api_block,) = code_blocks(DOCS / "api.md", "sh")
    (loop_block,) = code_blocks(DOCS / "loop.md", "sh")
    create, revoke = manage_commands(api_block)
    (create_for_loop,) = manage_commands(loop_block)
    assert command_lines(loop_block)[1].startswith("SHAPING_TOKEN=shp_... python loop.py")  # test_loop_script's way

    call_command(*create)
    token = capsys.readouterr().out.strip()
    assert token.startswith("shp_") and ApiToken.objects.get(name="nightly").user == admin_user
    call_command(*[token[:12] if word == "shp_AbCdEfGh" else word for word in revoke])  # its placeholder, filled in
    assert ApiToken.objects.get(name="nightly").revoked_at is not None
    capsys.readouterr()
    call_command(*create_for_loop)
    assert capsys.readouterr().out.startswith("shp_") and ApiToken.objects.get(name="loop").user.username == "admin"


# --- docs/characters.md -------------------------------------------------------------------------


def test_the_schema_command_prints_the_sheet_schema():
    (block,) = code_blocks(DOCS / "characters.md", "sh")
    python = Path(sys.executable).parent  # `python` is this interpreter, as in an activated venv
    env = {**os.environ, "PATH": f"{python}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run(["bash", "-c", block], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == sheet_schema()


# --- docs/puzzles.md ----------------------------------------------------------------------------


def test_the_puzzle_docs_rows_and_command_import_as_written(db, tmp_path, monkeypatch, capsys):
    doc = DOCS / "puzzles.md"
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(f"{block.strip()}\n" for block in code_blocks(doc, "json")))
    call_command("import_puzzles", str(rows), "--prompt-set", "flats")
    assert list(Prompt.objects.filter(prompt_set__slug="flats").values_list("external_id", flat=True)) == ["a1", "a3"]

    monkeypatch.chdir(ROOT)  # the command names the sample by its path in the project
    (command,) = manage_commands(code_blocks(doc, "sh")[0])
    call_command(*command)
    assert "5 decision prompts" in capsys.readouterr().out
    assert PromptSet.objects.get(slug="houses").prompts.count() == 5


def test_the_decision_prompt_sample_is_what_synthesis_writes():
    (sample,) = code_blocks(DOCS / "puzzles.md", "")
    first = (ROOT / "labelling" / "demo" / "architext-sample.jsonl").read_text().splitlines()[0]
    (puzzle,) = architext.parse_puzzles("architext-sample.jsonl", first)
    # Each line as the page shows it, "..." standing for what it leaves out (a line of its own: any lines).
    pattern = "".join(
        r"(?:.*\n)*?" if line == "..." else re.escape(line).replace(re.escape("..."), ".*?") + r"\n"
        for line in sample.splitlines()
    )
    prompt = architext.decision_prompt(puzzle)
    assert re.fullmatch(pattern, prompt + "\n"), prompt


# --- docs/import-format.md ----------------------------------------------------------------------


def test_the_import_document_example_imports_as_written(db, tmp_path, capsys):
    example = tmp_path / "example.yaml"
    example.write_text(code_blocks(DOCS / "import-format.md", "yaml")[0])
    call_command("import", str(example))
    assert Character.objects.get(slug="aria").traits == ["curious"]
    rubric = Rubric.objects.get(slug="aria-voice")
    assert [c.key for c in rubric.criteria.order_by("id")] == ["in-character", "short"]
    assert rubric.criteria.get(key="short").rule == {"kind": "length", "unit": "words", "max": 60}
    assert list(Prompt.objects.filter(prompt_set__slug="aria-demo").values_list("external_id", flat=True)) == [
        "stars",
        "2",
    ]


# --- docs/datasets.md ---------------------------------------------------------------------------


def test_the_format_samples_have_the_fields_a_build_writes(demo, media):
    """The samples elide text ("..."), so their values are not checked; their fields are a row's."""
    samples = [json.loads(block) for block in code_blocks(DOCS / "datasets.md", "json")]
    kinds = ["grpo", "grpo_prompts", "dpo", "kto", "sft"]
    assert len(samples) == len(kinds)
    for kind, sample in zip(kinds, samples, strict=True):
        version = dataset_services.dataset_build(dataset=f"aria-{kind}", kind=kind, filter={"rubric": "aria-voice"})
        row = json.loads(dataset_path(version).read_text().splitlines()[0])
        assert set(sample) == set(row), kind


# --- docs/security.md ---------------------------------------------------------------------------


def test_the_policy_in_the_security_docs_is_the_one_sent():
    (block,) = code_blocks(DOCS / "security.md", "text")
    assert " ".join(block.split()) == settings.CONTENT_SECURITY_POLICY


@pytest.mark.parametrize("page", ["README.md", *sorted(p.name for p in DOCS.glob("*.md"))])
def test_no_manage_command_of_a_page_names_a_command_that_does_not_exist(page):
    """A cheap guard for the blocks no test runs whole: each `python manage.py X` they hold exists."""
    doc = ROOT / page if page == "README.md" else DOCS / page
    for block in code_blocks(doc, "sh"):
        for words in manage_commands(block):
            assert words[0] in get_commands(), f"{page}: manage.py {words[0]}"
