"""docs/campaigns.md as written: its spec creates the campaign on the demo data with the
commands it shows, and its output sample has the form `campaign run` prints (the run itself is
tests/campaigns/test_campaign_processes.py's)."""

import json

from django.core.management import call_command

from bench.bench_campaign import campaign_spec
from labelling.campaigns import services
from labelling.models import Campaign
from tests.campaigns.conftest import ROUND_LINE
from tests.doc_blocks import DOCS, code_blocks, manage_commands

PAGE = DOCS / "campaigns.md"


def test_the_documented_spec_and_commands_create_and_show_the_campaign(demo, tmp_path, monkeypatch, capsys):
    (spec,) = code_blocks(PAGE, "json")
    commands = manage_commands(code_blocks(PAGE, "sh")[0])
    assert [c[:2] for c in commands] == [["campaign", "create"], ["campaign", "run"], ["campaign", "show"]]
    monkeypatch.chdir(tmp_path)
    (tmp_path / commands[0][2]).write_text(spec)
    call_command(*commands[0])
    campaign = Campaign.objects.get(slug=json.loads(spec)["slug"])
    assert (campaign.character.slug, campaign.rubric.slug, campaign.method, campaign.rounds_planned) == (
        "aria",
        "aria-voice",
        "grpo",
        3,
    )
    assert campaign.held_out.prompts.count() >= 6 and campaign.policy["training"] == {"steps": 20, "seed": 3}
    assert "created, 3 rounds, trigger continuous" in capsys.readouterr().out
    services.round_start(campaign=campaign)
    call_command(*commands[2])
    assert capsys.readouterr().out.splitlines() == ["campaign aria-bench: active", "round 1: at generate"]


def test_the_documented_spec_is_the_one_the_benchmark_runs():
    (spec,) = code_blocks(PAGE, "json")
    assert json.loads(spec) == campaign_spec()


def test_the_output_sample_has_the_form_the_command_prints():
    (sample,) = code_blocks(PAGE, "text")
    *rounds, last = sample.strip().splitlines()
    assert rounds and all(ROUND_LINE.fullmatch(line) for line in rounds), rounds
    assert last == "campaign aria-bench: finished: all 3 rounds ran"
