"""docs/api.md's loop script, run as written on the demo data: over HTTP (a real web server) it
triggers a generate run that a real huey consumer executes against the real tritonserver, polls
it, freezes a DPO dataset version and downloads its JSONL (bytes, not parsed as JSON)."""

import hashlib
import json
import re
from pathlib import Path

from labelling.access import tokens
from labelling.models import DatasetVersion, Generation, Judgment, PipelineRun
from tests.doc_blocks import python_block
from tests.pipelines.conftest import run_script

DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def test_the_api_docs_loop_runs_as_written(live_server, consumer, demo, admin_user, media, tmp_path):
    out = run_script(
        python_block(DOC),
        url=live_server.url,
        token=tokens.token_create(user=admin_user, name="loop")[1],
        cwd=tmp_path,
        logs=[consumer.log],
    )
    assert all(re.fullmatch(r"\d+%", line) for line in out.splitlines()), out  # progress while it runs

    run = PipelineRun.objects.get(created_by=admin_user)
    assert (run.kind, run.status, run.group_size, run.character.slug) == ("generate", "succeeded", 4, "aria")
    prompts = run.prompt_set.prompts.count()
    assert Generation.objects.filter(group__run=run).count() == 4 * prompts
    assert Judgment.objects.filter(run=run, status="ok").count() == 4 * prompts

    version = DatasetVersion.objects.get(dataset="aria")
    assert (version.kind, version.filter["runs"]) == ("dpo", [run.pk])
    body = (tmp_path / "aria-dpo.jsonl").read_bytes()
    assert hashlib.sha256(body).hexdigest() == version.sha256
    rows = [json.loads(line) for line in body.splitlines()]
    assert len(rows) == version.row_count > 0
    assert all({"prompt", "chosen", "rejected"} <= set(row) for row in rows)
