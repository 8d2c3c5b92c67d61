"""A campaign's world: Aria, a rubric with a rule criterion and a judge criterion, a pool of
prompts, and a scripted reviewer that scores through the reviewer API by a rule."""

import re
import uuid

import pytest

from labelling.access import tokens
from labelling.catalogue import services as catalogue_services
from labelling.catalogue.schemas import CharacterIn, CriterionIn, PromptIn, PromptSetIn, RubricIn
from tests.training.conftest import versioned_triton  # noqa: F401 - a tritonserver serving every version

# A line of `manage.py campaign run` / `show` per finished round (the command's round_line).
ROUND_LINE = re.compile(
    r"round \d+: (promoted|not promoted|failed)(, win rate \d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\] over \d+ prompts)?"
    r"; \d+ of \d+ routed groups reviewed(; judge-human .+)?"
)
POOL = [f"Tell me about harbour day {i}." for i in range(30)]


@pytest.fixture
def pool(db, admin_user):
    character = catalogue_services.character_create(
        data=CharacterIn(
            slug="aria", name="Aria", persona="Aria is a harbour pilot who signs every answer with her name."
        )
    )
    rubric = catalogue_services.rubric_create(
        data=RubricIn(
            slug="aria-voice",
            name="Aria's voice",
            criteria=[
                CriterionIn(
                    key="name", description="Aria names herself", scale_min=0, scale_max=1, weight=1,
                    rule={"kind": "regex", "pattern": "Aria"},
                ),
                CriterionIn(key="voice", description="Sounds like a harbour pilot", scale_min=1, scale_max=5, weight=0),
            ],
        )
    )  # fmt: skip
    prompt_set = catalogue_services.prompt_set_create(data=PromptSetIn(slug="harbour", name="Harbour"))
    catalogue_services.prompts_add(
        prompt_set=prompt_set,
        prompts=[PromptIn(id=f"h{i}", messages=[{"role": "user", "content": t}]) for i, t in enumerate(POOL)],
    )
    return {"character": character, "rubric": rubric, "prompt_set": prompt_set, "admin": admin_user}


def scripted_review(api, score_of) -> int:
    """Review every group the queue hands this token's user, each judge criterion scored by
    `score_of(completion, criterion)` (the completion as the API gives it: generation id, text);
    how many groups it reviewed."""
    reviewed = 0
    while (held := api.post("/review/next", {})).status_code == 200:
        group = held.json()
        scores = {
            c["generation"]: {k["key"]: score_of(c, k) for k in group["criteria"] if not k["rule"]}
            for c in group["completions"]
        }
        answer = api.post(
            f"/review/{group['assignment']}/submit", {"submission_id": str(uuid.uuid4()), "scores": scores}
        )
        assert answer.status_code == 200, answer.content
        reviewed += 1
    return reviewed


@pytest.fixture
def token_of():
    def make(user):
        return tokens.token_create(user=user, name="campaign")[1]

    return make
