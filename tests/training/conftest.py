"""A character who should say her name, a rubric that rewards it by rule, prompt sets to train
and to hold out, dataset versions built the way a user builds them, and a tritonserver that
serves every ready version of the generator."""

import pytest

from inference.serving import reset_backend
from inference.versions import served as served_versions
from labelling.catalogue import services as catalogue_services
from labelling.catalogue.schemas import CharacterIn, CriterionIn, PromptIn, PromptSetIn, RubricIn
from labelling.datasets import services as dataset_services
from labelling.models import DatasetVersion, GeneratorVersion, PipelineRun
from tests.triton_fixture import start_triton

TRAIN_WORKER = ("run_train_worker",)  # the training consumer's command (tests.pipelines.conftest.Consumer)

# A substring, not a whole word: the tiny model's random weights tend to run "Aria" into the
# next token, so a whole-word rule would hardly ever fire for it (and barely move in training).
NAME_RULE = {"kind": "regex", "pattern": "Aria"}


def prompts(prompt_set, texts):
    catalogue_services.prompts_add(
        prompt_set=prompt_set,
        prompts=[
            PromptIn(id=f"{prompt_set.slug}-{i}", messages=[{"role": "user", "content": t}])
            for i, t in enumerate(texts)
        ],
    )


TRAIN_TEXTS = [f"Tell me about day {i} at the harbour." for i in range(16)]
HELD_OUT_TEXTS = [f"What would you say to visitor number {i}?" for i in range(8)]


@pytest.fixture
def aria(db):
    character = catalogue_services.character_create(
        data=CharacterIn(
            slug="aria", name="Aria", persona="Aria is a harbour pilot who signs every answer with her name."
        )
    )
    rubric = catalogue_services.rubric_create(
        data=RubricIn(
            slug="says-her-name",
            name="Says her name",
            criteria=[
                CriterionIn(key="name", description="Aria names herself", scale_min=0, scale_max=1, rule=NAME_RULE)
            ],
        )
    )
    train = catalogue_services.prompt_set_create(data=PromptSetIn(slug="harbour", name="Harbour"))
    prompts(train, TRAIN_TEXTS)
    held_out = catalogue_services.prompt_set_create(data=PromptSetIn(slug="visitors", name="Visitors"))
    prompts(held_out, HELD_OUT_TEXTS)
    return {"character": character, "rubric": rubric, "train": train, "held_out": held_out}


def generated(aria, prompt_set, *, version: int | None = None, group_size: int = 2, seed: int = 7) -> PipelineRun:
    """A judged generate run, executed here (the backend the settings name)."""
    from inference.tasks import execute
    from labelling.runs import services as run_services

    params = {"sampling": {"max_tokens": 16, "seed": seed, "temperature": 1.0}}
    if version is not None:
        params["generator_version"] = version
    run, _ = run_services.run_start(
        kind=PipelineRun.Kind.GENERATE,
        character=aria["character"],
        prompt_set=prompt_set,
        rubric=aria["rubric"],
        group_size=group_size,
        params=params,
        enqueue=False,
    )
    execute(run.pk)
    run.refresh_from_db()
    assert run.status == PipelineRun.Status.SUCCEEDED, run.errors
    return run


def dataset(kind: str, run: PipelineRun, name: str = "aria-loop") -> DatasetVersion:
    return dataset_services.dataset_build(dataset=name, kind=kind, filter={"runs": [run.pk], "rubric": "says-her-name"})


def shipped() -> GeneratorVersion:
    return GeneratorVersion.objects.get(number=1)


@pytest.fixture
def versioned_triton(tmp_path, settings, media):
    """A tritonserver on the generated repository (what `serve` runs), version 1 in it."""
    settings.TRITON_REPOSITORY = tmp_path / "repository"
    settings.DATA_DIR = tmp_path / "data"
    settings.INFERENCE_BACKEND = "triton"
    served_versions.repository_sync()
    server = start_triton(tmp_path / "triton", model_repository=settings.TRITON_REPOSITORY, explicit=True)
    settings.TRITON_URL = server.url
    reset_backend()
    yield server
    reset_backend()  # its open streams first: the server waits for them before it stops
    server.stop()
