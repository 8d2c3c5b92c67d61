"""A whole loop through the JSON API, as a script would drive it: import, trigger a run (a
real huey consumer, the real tritonserver), poll it, freeze a dataset version, download it."""

import hashlib
import json
import time

from labelling.access import tokens
from labelling.models import Generation, Judgment

CONTENT = "\n".join(
    json.dumps(line)
    for line in [
        {"kind": "character", "slug": "mira", "name": "Mira", "persona": "Mira keeps a lighthouse: wry, precise."},
        {
            "kind": "rubric",
            "slug": "voice",
            "name": "Voice",
            "criteria": [
                {"key": "in_character", "description": "Sounds like Mira", "scale_min": 1, "scale_max": 5},
                {"key": "helpful", "description": "Answers the question", "scale_min": 1, "scale_max": 5},
            ],
        },
        {
            "kind": "prompt_set",
            "slug": "keeper",
            "name": "Keeper",
            "prompts": [
                {"id": f"q{i}", "messages": [{"role": "user", "content": f"Question {i}: what do you see tonight?"}]}
                for i in range(3)
            ],
        },
    ]
)


def test_a_script_drives_import_run_poll_build_and_download(client, admin_user, consumer, media):
    auth = {"Authorization": f"Bearer {tokens.token_create(user=admin_user, name='loop')[1]}"}

    def post(path, body, **headers):
        return client.post(
            f"/api{path}", json.dumps(body), content_type="application/json", headers={**auth, **headers}
        )

    assert post("/import", {"name": "mira.jsonl", "content": CONTENT}).status_code == 201
    run = {
        "kind": "generate",
        "character": "mira",
        "prompt_set": "keeper",
        "rubric": "voice",
        "group_size": 3,
        "max_tokens": 16,
    }
    started = post("/runs", run, **{"Idempotency-Key": "loop-1"})
    assert started.status_code == 201, started.content
    assert post("/runs", run, **{"Idempotency-Key": "loop-1"}).json()["id"] == started.json()["id"]

    deadline = time.monotonic() + 120
    while (status := client.get(f"/api/runs/{started.json()['id']}", headers=auth).json())["status"] not in (
        "succeeded",
        "partial",
        "failed",
        "cancelled",
    ):
        assert time.monotonic() < deadline, f"run still {status['status']}: {consumer.log.read_text()[-2000:]}"
        time.sleep(0.3)
    assert status["status"] == "succeeded" and status["progress_percent"] == 100, status
    assert Generation.objects.filter(group__run_id=status["id"]).count() == 9
    assert Judgment.objects.filter(run_id=status["id"], status="ok").count() == 9

    version = post(
        "/datasets", {"dataset": "mira", "kind": "grpo", "filter": {"runs": [status["id"]], "rubric": "voice"}}
    )
    assert version.status_code == 201, version.content
    download = client.get("/api/datasets/mira/1/download", headers=auth)
    body = b"".join(download.streaming_content)
    assert hashlib.sha256(body).hexdigest() == version.json()["sha256"]
    rows = [json.loads(line) for line in body.splitlines()]
    assert len(rows) == 3 and all(len(r["completions"]) == 3 and len(r["advantages"]) == 3 for r in rows)
