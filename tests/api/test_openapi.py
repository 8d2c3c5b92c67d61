"""The OpenAPI document as a contract: every operation has a stable, unique snake_case
operationId, and documents each error it can answer with the one Error schema. What the
document promises about roles is checked against a reviewer's token."""

import re

import pytest

from labelling.access import tokens

# Renaming an operationId breaks generated clients: change one here on purpose, never by accident.
OPERATIONS = {
    ("get", "/api/characters"): "character_list",
    ("get", "/api/rubrics"): "rubric_list",
    ("get", "/api/prompt-sets"): "prompt_set_list",
    ("post", "/api/import"): "catalogue_import",
    ("post", "/api/sheets"): "sheet_generate",
    ("post", "/api/sheets/{generation_id}/promote"): "sheet_promote",
    ("post", "/api/puzzles"): "puzzle_import",
    ("post", "/api/runs"): "run_create",
    ("get", "/api/runs"): "run_list",
    ("get", "/api/runs/{run_id}"): "run_detail",
    ("post", "/api/runs/{run_id}/cancel"): "run_cancel",
    ("post", "/api/runs/{run_id}/resume"): "run_resume",
    ("post", "/api/generations"): "generation_push",
    ("get", "/api/generations"): "generation_list",
    ("post", "/api/judgments"): "judgment_push",
    ("get", "/api/judgments"): "judgment_list",
    ("post", "/api/datasets"): "dataset_create",
    ("get", "/api/datasets"): "dataset_list",
    ("get", "/api/datasets/{dataset}/compare"): "dataset_compare",
    ("get", "/api/datasets/{dataset}/{number}"): "dataset_detail",
    ("get", "/api/datasets/{dataset}/{number}/download"): "dataset_download",
    ("get", "/api/model-versions"): "model_version_list",
    ("get", "/api/model-versions/{number}"): "model_version_detail",
    ("post", "/api/model-versions/{number}/current"): "model_version_make_current",
    ("post", "/api/evaluations"): "evaluation_create",
    ("get", "/api/evaluations/{evaluation_id}"): "evaluation_detail",
    ("post", "/api/review/next"): "review_next",
    ("post", "/api/review/{assignment_id}/submit"): "review_submit",
    ("post", "/api/review/{assignment_id}/skip"): "review_skip",
    ("post", "/api/review/pairs/next"): "pair_next",
    ("post", "/api/review/pairs/{choice_id}/choose"): "pair_choose",
    ("post", "/api/review/pairs/{choice_id}/skip"): "pair_skip",
    ("post", "/api/campaigns"): "campaign_create",
    ("get", "/api/campaigns"): "campaign_list",
    ("get", "/api/campaigns/{slug}"): "campaign_detail",
    ("post", "/api/campaigns/{slug}/rounds"): "campaign_round_start",
    ("post", "/api/campaigns/{slug}/pause"): "campaign_pause",
    ("post", "/api/campaigns/{slug}/resume"): "campaign_resume",
}

# Those a reviewer's token may call (every write, the judgments and the datasets need an admin's).
READABLE_BY_A_REVIEWER = {
    "character_list",
    "rubric_list",
    "prompt_set_list",
    "run_list",
    "run_detail",
}

# Reviewing: a reviewer's token or an admin's; a token of a user in no role is refused (403).
FOR_REVIEWERS = {"review_next", "review_submit", "review_skip", "pair_next", "pair_choose", "pair_skip"}

# Where a 404 or a 409 is possible beyond what the path's shape implies.
NOT_FOUND = {"judgment_push"}  # the generation named in the body
# A version whose file is missing or changed; a run in a state that cannot resume; a model
# version that is not ready, made current; an Idempotency-Key sent before with another body.
CONFLICT = {
    "dataset_compare",
    "dataset_download",
    "run_resume",
    "model_version_make_current",
    "sheet_generate",
    "run_create",
    "evaluation_create",
    "campaign_round_start",
    "campaign_resume",
}

# A review hold (of a group or a blind pair) that lapsed, or was already submitted or skipped.
CONFLICT |= {"review_submit", "review_skip", "pair_choose", "pair_skip"}


@pytest.fixture
def schema(client, db):
    return client.get("/api/openapi.json").json()


def operations(schema):
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            yield method, path, operation


def test_every_operation_has_its_stable_operation_id(schema):
    found = {(method, path): operation.get("operationId") for method, path, operation in operations(schema)}
    assert found == OPERATIONS


def test_operation_ids_are_unique_snake_case(schema):
    ids = [operation["operationId"] for _, _, operation in operations(schema)]
    assert len(ids) == len(set(ids))
    assert [i for i in ids if not re.fullmatch(r"[a-z]+(_[a-z]+)*", i)] == []


def test_every_operation_documents_its_error_responses(schema):
    for _, path, operation in operations(schema):
        op_id = operation["operationId"]
        # A missing or wrong token; a token of a user in no role (or a reviewer's, where an admin's
        # is needed); a value of the wrong type or range.
        expected = {"401", "403", "422"}
        if "requestBody" in operation:
            expected.add("400")  # a body that is not JSON, or one a service refuses
        if "{" in path or op_id in NOT_FOUND:
            expected.add("404")  # an unknown id, dataset or version
        if op_id in CONFLICT:
            expected.add("409")
        errors = {code for code in operation["responses"] if code.startswith("4")}
        assert errors == expected, op_id
        for code in errors:
            body = operation["responses"][code]["content"]["application/json"]["schema"]
            assert body == {"$ref": "#/components/schemas/Error"}, (op_id, code)
        successes = {code for code in operation["responses"] if code.startswith("2")}
        assert successes and successes <= {"200", "201", "204"}, op_id  # 204: an empty review queue


def _fill(path: str) -> str:
    return re.sub(r"\{dataset\}", "mira", re.sub(r"\{\w+\}", "1", path)).removeprefix("/api")


def test_a_reviewer_token_is_refused_exactly_where_the_document_says(client, schema, reviewer):
    """Every GET, and every POST without a body, answers a reviewer 403 unless a reviewer reads it
    or reviews with it."""
    headers = {"Authorization": f"Bearer {tokens.token_create(user=reviewer, name='tests')[1]}"}
    checked = 0
    for method, path, operation in operations(schema):
        if "requestBody" in operation:
            continue  # the body is checked before the role: see test_api's reviewer test for writes
        query = {p["name"]: 1 for p in operation.get("parameters", []) if p["in"] == "query" and p.get("required")}
        url = "/api" + _fill(path)
        response = client.get(url, query, headers=headers) if method == "get" else client.post(url, headers=headers)
        refused = operation["operationId"] not in READABLE_BY_A_REVIEWER | FOR_REVIEWERS
        assert (response.status_code == 403) == refused, (method, path, response.status_code)
        checked += 1
    assert checked == 26


def test_a_token_of_a_user_in_no_role_is_refused_everywhere(client, schema, outsider):
    headers = {"Authorization": f"Bearer {tokens.token_create(user=outsider, name='tests')[1]}"}
    for method, path, _operation in operations(schema):
        url = "/api" + _fill(path)
        response = client.get(url, headers=headers) if method == "get" else client.post(url, headers=headers)
        assert response.status_code == 403, (method, path, response.status_code)
        assert "no role" in response.json()["detail"]


# A run's body is one of five, told apart by `kind`: each lists only the fields its kind reads.
RUN_BODIES = {
    "generate": ("GenerateRunIn", {"kind", "character", "prompt_set"}),
    "judge": ("JudgeRunIn", {"kind", "source_run", "rubric"}),
    "revise": ("ReviseRunIn", {"kind", "source_run", "rubric"}),
    "train": ("TrainRunIn", {"kind", "dataset", "method"}),
    "evaluate": ("EvaluateRunIn", {"kind", "candidate", "rubric"}),
}


def test_a_run_body_is_one_per_kind_discriminated_by_kind(schema):
    body = schema["paths"]["/api/runs"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["discriminator"] == {
        "propertyName": "kind",
        "mapping": {kind: f"#/components/schemas/{name}" for kind, (name, _) in RUN_BODIES.items()},
    }
    assert sorted(o["$ref"] for o in body["oneOf"]) == sorted(body["discriminator"]["mapping"].values())
    components = schema["components"]["schemas"]
    for kind, (name, required) in RUN_BODIES.items():
        assert components[name]["properties"]["kind"]["const"] == kind
        assert set(components[name]["required"]) == required, name
    assert "character" not in components["JudgeRunIn"]["properties"]  # a judge run reads another run's texts
    assert (
        "training" in components["TrainRunIn"]["properties"]
        and "training" not in components["GenerateRunIn"]["properties"]
    )


def test_the_api_docs_list_every_operation_with_its_method_and_path(schema):
    """docs/api.md's endpoint table names each operation of the document, on a row that gives its
    method and path (path parameters may be named differently: `{id}` for `{run_id}`)."""
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "api.md").read_text()
    rows = [line for line in doc.splitlines() if line.startswith("| `")]

    def shape(text: str) -> str:
        return re.sub(r"\{\w+\}", "{}", text)

    missing = []
    for method, path, operation in operations(schema):
        row = next((r for r in rows if f"`{operation['operationId']}`" in r), "")
        if f"{method.upper()} {shape(path)}" not in shape(row):
            missing.append(f"{method.upper()} {path} ({operation['operationId']})")
    assert missing == []
