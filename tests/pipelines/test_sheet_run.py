"""A character-sheet run through the real consumer and tritonserver: the generator decodes
under the sheet's guidance schema, and even the shipped random-weight model closes every sheet
inside the run's token budget, so a first run makes valid sheets."""

import json

import pytest
from django.core.exceptions import ValidationError
from django.db import transaction

from labelling.characters import services as character_services
from labelling.characters.sheets import SHEET_MAX_TOKENS, parse_sheet, sheet_problems
from labelling.models import Generation, PipelineRun
from tests.pipelines.conftest import wait_for


def test_a_first_sheet_run_makes_valid_sheets_even_with_the_random_weight_model(consumer):
    with transaction.atomic():
        run, created = character_services.sheet_run_start(concept="a cartographer who is afraid of heights", count=3)
    assert created and run.params["sampling"]["max_tokens"] == SHEET_MAX_TOKENS
    run = wait_for(run, {"succeeded", "partial", "failed"}, timeout_s=300, log=consumer.log)
    assert run.status == PipelineRun.Status.SUCCEEDED, run.errors
    sheets = list(Generation.objects.filter(group__run=run).order_by("index"))
    assert len(sheets) == 3
    for sheet in sheets:
        assert sheet_problems(sheet.text) == [], (sheet.finish_reason, sheet.text[-200:])
        assert sheet.finish_reason == "stop" and sheet.completion_tokens < SHEET_MAX_TOKENS
        assert parse_sheet(sheet.text).appearance.palette.skin.startswith("#")
    assert len({json.loads(s.text)["name"] for s in sheets}) == 3  # three sheets, not one thrice


def test_a_budget_too_small_for_a_sheet_to_close_is_refused(db):
    with pytest.raises(ValidationError, match=f"may need {SHEET_MAX_TOKENS} tokens"):
        character_services.sheet_run_start(concept="a cartographer", max_tokens=SHEET_MAX_TOKENS - 1, enqueue=False)
    assert not PipelineRun.objects.exists()
