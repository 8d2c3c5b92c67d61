"""Rule criteria come in through imports (YAML, JSONL, the API): a good rule is stored and
served, a bad one refused with its file line and field; a changed rule makes a new version."""

import json

import pytest

from labelling.access import tokens
from labelling.catalogue import services as catalogue_services
from labelling.catalogue.importers import ImportFailed, import_text
from labelling.catalogue.schemas import RubricIn
from labelling.models import Judgment, Rubric
from tests.api.test_api import Api

RULES_YAML = """\
rubrics:
  - slug: format
    name: Format
    criteria:
      - key: voice
        description: Sounds right.
      - key: short
        description: At most 40 words.
        scale_min: 0
        scale_max: 1
        rule: {kind: length, unit: words, max: 40}
      - key: no-markup
        description: No tags.
        rule:
          kind: regex
          pattern: "<[a-z]+>"
          must: not_match
"""

_USER = {"role": "user", "content": "A storm?"}

BAD_YAML = """\
rubrics:
  - slug: format
    name: Format
    criteria:
      - key: voice
        description: Sounds right.
      - key: no-markup
        description: No tags.
        rule:
          kind: regex
          pattern: "(unclosed"
"""


def _rubric(rule: dict | None) -> dict:
    criterion = {"key": "short", "description": "Short", "scale_min": 0, "scale_max": 1}
    return {"kind": "rubric", "slug": "format", "name": "Format", "criteria": [{**criterion, "rule": rule}]}


def _spec(rule: dict | None) -> RubricIn:
    return RubricIn.model_validate({k: v for k, v in _rubric(rule).items() if k != "kind"})


def test_a_yaml_rubric_with_rules_is_imported_and_the_rules_kept(db):
    import_text("rubrics.yaml", RULES_YAML)
    rubric = Rubric.objects.get(slug="format")
    spec = {c["key"]: c.get("rule") for c in rubric.as_spec()["criteria"]}
    assert spec == {
        "voice": None,
        "short": {"kind": "length", "unit": "words", "max": 40},
        "no-markup": {"kind": "regex", "pattern": "<[a-z]+>", "must": "not_match"},
    }
    assert "rule" not in rubric.as_spec()["criteria"][0]  # a judged criterion's spec is as before


def test_a_bad_rule_in_yaml_is_refused_with_its_line_and_field(db):
    with pytest.raises(ImportFailed) as caught:
        import_text("rubrics.yaml", BAD_YAML)
    (problem,) = caught.value.problems
    assert problem.field == "rubrics[0].criteria[1].rule"
    assert problem.line == 10  # where the rule itself starts
    assert "pattern: does not compile" in problem.message
    assert not Rubric.objects.exists()


@pytest.mark.parametrize(
    ("rule", "says"),
    [
        ({"kind": "vibes"}, "kind: 'vibes' is not a rule kind"),
        ({"kind": "length", "unit": "words"}, "min: a length rule needs min, max or both"),
        ({"kind": "keywords", "include": []}, "include: a keywords rule needs at least one word"),
        ({"kind": "json_schema", "schema": {"format": "email"}}, "schema.format: unsupported keyword"),
        ({"kind": "regex", "pattern": "(a+)+$"}, "pattern: nests an unbounded repeat"),
        ("regex", "Input should be a valid dictionary"),
    ],
)
def test_bad_rules_in_jsonl_are_refused_naming_the_field(db, rule, says):
    with pytest.raises(ImportFailed) as caught:
        import_text("rubrics.jsonl", json.dumps(_rubric(rule)))
    (problem,) = caught.value.problems
    assert (problem.line, problem.field) == (1, "criteria[0].rule")
    assert says in problem.message


def test_a_rubric_of_rules_only_is_allowed_but_not_one_without_criteria(db):
    import_text("rubrics.jsonl", json.dumps(_rubric({"kind": "think_valid"})))
    assert Rubric.objects.get(slug="format").criteria.get().rule == {"kind": "think_valid"}
    with pytest.raises(ImportFailed) as caught:
        import_text("other.jsonl", json.dumps({"kind": "rubric", "slug": "empty", "name": "E", "criteria": []}))
    assert caught.value.problems[0].field == "criteria"


def test_the_api_import_refuses_a_bad_rule_naming_the_field(client, admin_user):
    api = Api(client, tokens.token_create(user=admin_user, name="tests")[1])
    bad = _rubric({"kind": "length", "unit": "words", "min": 9, "max": 2})
    response = api.post("/import", {"name": "rubric.jsonl", "content": json.dumps(bad)})
    assert response.status_code == 400
    body = response.json()
    assert any("criteria[0].rule" in key for key in body["errors"]), body
    assert "max (2) is below min (9)" in json.dumps(body)
    assert not Rubric.objects.exists()


def test_the_api_serves_a_rubrics_rules(client, admin_user):
    api = Api(client, tokens.token_create(user=admin_user, name="tests")[1])
    good = _rubric({"kind": "keywords", "include": ["lamp"]})
    assert api.post("/import", {"name": "rubric.jsonl", "content": json.dumps(good)}).status_code == 201
    (rubric,) = api.get("/rubrics").json()["items"]
    assert rubric["criteria"][0]["rule"] == {"kind": "keywords", "include": ["lamp"]}


def test_a_changed_rule_is_a_change_and_a_frozen_rubric_gets_a_new_version(db, demo):
    rubric = catalogue_services.rubric_create(data=_spec({"kind": "think_valid"}))
    same = _spec({"kind": "think_valid"})
    changed = _spec({"kind": "length", "unit": "chars", "max": 280})
    assert catalogue_services.rubric_spec_matches(rubric, same)
    assert not catalogue_services.rubric_spec_matches(rubric, changed)
    assert not catalogue_services.rubric_spec_matches(rubric, _spec(None))
    Judgment.objects.filter(pk=Judgment.objects.first().pk).update(rubric=rubric)  # now frozen
    updated = catalogue_services.rubric_update(rubric=rubric, data=changed)
    assert updated.version == 2 and updated.parent == rubric
    assert rubric.criteria.get().rule == {"kind": "think_valid"}


def test_imported_judge_scores_may_leave_the_rule_criteria_to_their_rules(db):
    lines = [
        {"kind": "character", "slug": "bo", "name": "Bo", "persona": "Bo keeps a lighthouse."},
        {
            "kind": "rubric",
            "slug": "format",
            "name": "Format",
            "criteria": [
                {"key": "voice", "description": "Gruff"},
                {"key": "lamp", "description": "Lamp", "rule": {"kind": "keywords", "include": ["lamp"]}},
            ],
        },
        {"kind": "prompt_set", "slug": "bo-prompts", "name": "P", "prompts": [{"id": "a", "messages": [_USER]}]},
        {
            "kind": "group",
            "character": "bo",
            "prompt_set": "bo-prompts",
            "prompt": "a",
            "completions": ["The lamp is lit.", "Fog."],
            "rubric": "format",
            "judge_scores": [{"scores": {"voice": 4}}, {"scores": {"voice": 2, "lamp": 5}}],
        },
    ]
    import_text("bo.jsonl", "\n".join(json.dumps(line) for line in lines))
    stored = {
        j.generation.text: {s.criterion.key: s.score for s in j.scores.all()}
        for j in Judgment.objects.filter(source=Judgment.Source.JUDGE)
    }
    assert stored == {"The lamp is lit.": {"voice": 4, "lamp": 5}, "Fog.": {"voice": 2, "lamp": 1}}


def test_imported_judge_scores_must_still_cover_the_judges_criteria(db):
    with pytest.raises(ImportFailed) as caught:
        import_text(
            "bo.yaml",
            RULES_YAML
            + """\
characters: [{slug: bo, name: Bo, persona: Bo.}]
prompt_sets: [{slug: p, name: P, prompts: [{id: a, messages: [{role: user, content: Hi}]}]}]
groups:
  - {character: bo, prompt_set: p, prompt: a, completions: [x], rubric: format, judge_scores: [{scores: {short: 1}}]}
""",
        )
    assert [p.field for p in caught.value.problems] == ["judge_scores[0].scores"]


def test_the_admin_checks_a_rule_as_imports_do(db):
    from labelling.admin import CriterionForm

    rubric = catalogue_services.rubric_create(data=_spec(None))
    base = {"order": 0, "key": "short", "description": "Short", "scale_min": 0, "scale_max": 1, "weight": 1.0}
    bad = CriterionForm(data={**base, "levels": "{}", "rule": '{"kind": "regex", "pattern": "(a*)*"}'})
    bad.instance.rubric = rubric
    assert not bad.is_valid() and "pattern" in bad.errors["rule"][0]
    good = CriterionForm(data={**base, "levels": "{}", "rule": '{"kind": "think_valid"}'})
    good.instance.rubric = rubric
    assert good.is_valid(), good.errors
