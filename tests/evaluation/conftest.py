"""Set-up the evaluation tests share: a generate run over 40 prompts, every completion judged."""

import pytest

from labelling.catalogue import services as catalogue_services
from labelling.catalogue.schemas import CharacterIn, CriterionIn, PromptIn, PromptSetIn, RubricIn
from labelling.models import Judgment
from labelling.records import services as record_services
from labelling.runs import services as run_services


@pytest.fixture
def judged_run(db, media):
    character = catalogue_services.character_create(data=CharacterIn(slug="aria", name="Aria", persona="A pilot."))
    rubric = catalogue_services.rubric_create(
        data=RubricIn(slug="voice", name="Voice", criteria=[CriterionIn(key="voice", description="In voice")])
    )
    prompt_set = catalogue_services.prompt_set_create(data=PromptSetIn(slug="harbour", name="Harbour"))
    prompts = catalogue_services.prompts_add(
        prompt_set=prompt_set,
        prompts=[PromptIn(id=f"p{i}", messages=[{"role": "user", "content": f"Day {i}?"}]) for i in range(40)],
    )
    run, _ = run_services.run_start(
        kind="generate", character=character, prompt_set=prompt_set, rubric=rubric, group_size=2, enqueue=False
    )
    judge = record_services.producer_get_or_create(backend="fixture", model_name="judge")
    for prompt in prompts:
        group = record_services.group_for(run=run, prompt=prompt)
        for index, score in enumerate((2, 4)):
            g = record_services.generation_record(
                group=group, index=index, messages=prompt.messages, producer=None, run=run, raw_text=f"a{index}"
            )
            record_services.judgment_record(
                generation=g,
                rubric=rubric,
                source=Judgment.Source.JUDGE,
                scores={"voice": score},
                run=run,
                producer=judge,
            )
    return {"run": run, "rubric": rubric, "prompts": prompts}
