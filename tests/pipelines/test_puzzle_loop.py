"""Architext decision puzzles through the whole loop: imported through the API, generated and
judged by a real huey consumer and tritonserver, reviewed by a person, frozen into a
dataset version whose rows carry the decision prompts."""

import json
import time

from labelling.access import tokens
from labelling.models import Generation, Judgment
from labelling.review import selectors as review_selectors
from labelling.review import services as review_services
from tests.characters.test_puzzles import SAMPLE
from tests.review.conftest import review_form

# Mira, her rubric and a prompt set, as an import file.
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


def test_puzzles_go_through_generate_judge_review_into_a_dataset(client, admin_user, reviewer, consumer, media):
    auth = {"Authorization": f"Bearer {tokens.token_create(user=admin_user, name='puzzles')[1]}"}

    def post(path, body):
        return client.post(f"/api{path}", json.dumps(body), content_type="application/json", headers=auth)

    assert post("/import", {"name": "mira.jsonl", "content": CONTENT}).status_code == 201
    made = post("/puzzles", {"name": SAMPLE.name, "content": SAMPLE.read_text(), "prompt_set": "houses"})
    assert made.status_code == 201, made.content
    started = post(
        "/runs",
        {
            "kind": "generate",
            "character": "mira",
            "prompt_set": "houses",
            "rubric": "voice",
            "group_size": 2,
            "max_tokens": 24,
        },
    )
    assert started.status_code == 201, started.content
    run_id = started.json()["id"]
    deadline = time.monotonic() + 180
    while (status := client.get(f"/api/runs/{run_id}", headers=auth).json())["status"] not in (
        "succeeded",
        "partial",
        "failed",
        "cancelled",
    ):
        assert time.monotonic() < deadline, f"run still {status['status']}: {consumer.log.read_text()[-2000:]}"
        time.sleep(0.3)
    assert status["status"] == "succeeded", status
    assert Generation.objects.filter(group__run_id=run_id).count() == 10
    assert Judgment.objects.filter(run_id=run_id, status="ok").count() == 10

    assignment = review_services.assignment_claim_next(reviewer=reviewer, policy="fifo")
    assert assignment.group.run_id == run_id
    review_services.review_submit(
        assignment_id=assignment.pk, reviewer=reviewer, submission=_submission(review_form(assignment, score=3))
    )

    version = post("/datasets", {"dataset": "houses", "kind": "grpo", "filter": {"runs": [run_id], "rubric": "voice"}})
    assert version.status_code == 201, version.content
    body = b"".join(client.get("/api/datasets/houses/1/download", headers=auth).streaming_content)
    rows = [json.loads(line) for line in body.splitlines()]
    assert len(rows) == 5
    assert all("Where do you go first" in r["prompt"][-1]["content"] for r in rows)
    (reviewed,) = [r for r in rows if r["group_id"] == assignment.group_id]
    assert reviewed["rewards"] == [0.5, 0.5]  # human 3s on 1..5 outrank the judge
    assert review_selectors.assignment_current(reviewer=reviewer) is None


def _submission(form: dict):
    from django.http import QueryDict

    from labelling.review.views import _submission_from

    data = QueryDict(mutable=True)
    data.update(form)
    return _submission_from(data)
