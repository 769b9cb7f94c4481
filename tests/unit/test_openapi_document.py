"""The API description as a document: valid OpenAPI 3.1, generated from the structs the service
decodes and encodes with, in the wire's terms, and the repository's reference made from it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from openapi_spec_validator import validate

from allotment.api.errors import STATUS_BY_ERROR
from allotment.api.openapi.document import document
from allotment.api.openapi.markdown import render
from allotment.domain.resolution import DenialReason
from tests.openapi_kit import schema_validator

API_REFERENCE = Path(__file__).parents[2] / "docs" / "api.md"


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return document()


def _operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, item in doc["paths"].items()
        for method, operation in item.items()
    ]


def _walk(node: Any, path: str = "") -> list[tuple[str, Any]]:
    found = [(path, node)]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _walk(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _walk(value, f"{path}/{i}")
    return found


def test_the_document_is_valid_openapi_3_1(doc: dict[str, Any]) -> None:
    assert doc["openapi"] == "3.1.0"
    validate(doc)


def test_docs_api_md_is_generated_from_the_document(doc: dict[str, Any]) -> None:
    assert API_REFERENCE.read_text() == render(doc), (
        "docs/api.md is out of date: run `uv run allotment openapi --format markdown > docs/api.md`"
    )


def test_operation_ids_are_unique_and_every_operation_has_a_scope(doc: dict[str, Any]) -> None:
    operations = _operations(doc)
    ids = [operation["operationId"] for _, _, operation in operations]
    assert len(ids) == len(set(ids))
    for method, path, operation in operations:
        assert operation["x-scope"] in {None, "client", "server", "admin"}, (method, path)
        assert operation["summary"], (method, path)
        assert operation["description"], (method, path)
        if operation["x-scope"] is not None:
            assert operation["security"], (method, path)
            assert {"401", "403"} <= set(operation["responses"]), (method, path)


def test_quantities_are_json_numbers_not_decimal_strings(doc: dict[str, Any]) -> None:
    formats = {node.get("format") for _, node in _walk(doc) if isinstance(node, dict)}
    assert "decimal" not in formats
    answer = doc["components"]["schemas"]["CheckAnswer"]["properties"]
    assert answer["current_usage"] == {"anyOf": [{"type": "number"}, {"type": "null"}]}
    assert doc["components"]["schemas"]["Revenue"]["properties"]["deferred"] == {"type": "number"}


def test_instants_in_answers_are_date_times(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    instants = 0
    for name, schema in schemas.items():
        for field, spec in schema.get("properties", {}).items():
            if "enum" in spec:  # a migration's `at`: "now" or "period_end"
                continue
            if field.endswith(("_at", "_start", "_end")) or field in {"at", "now"}:
                options = spec.get("anyOf", [spec])
                assert {"type": "string", "format": "date-time"} in options, (name, field)
                instants += 1
    assert instants > 30


def test_answers_list_every_field_they_write_as_required(doc: dict[str, Any]) -> None:
    check = doc["components"]["schemas"]["CheckAnswer"]
    assert check["required"] == list(check["properties"])
    assert "default" not in str(check)
    # Fields a kind does not have are left out of the answer, so they are not required.
    assert doc["components"]["schemas"]["EntitlementSpec"]["required"] == []


def test_lists_answer_data_and_next(doc: dict[str, Any]) -> None:
    listed = doc["paths"]["/v1/customers"]["get"]["responses"]["200"]
    reference = listed["content"]["application/json"]["schema"]["$ref"]
    page = doc["components"]["schemas"][reference.rsplit("/", 1)[1]]
    assert page["required"] == ["data", "next"]
    assert page["properties"]["data"]["items"] == {"$ref": "#/components/schemas/CustomerView"}
    assert page["properties"]["next"] == {"anyOf": [{"type": "string"}, {"type": "null"}]}


def test_the_credits_block_of_a_check_is_typed(doc: dict[str, Any]) -> None:
    block = doc["components"]["schemas"]["CreditBlock"]
    assert set(block["required"]) == {"currency", "cost", "available"}
    assert block["properties"]["cost"] == {"type": "number"}


def test_error_codes_come_from_the_error_table(doc: dict[str, Any]) -> None:
    codes = doc["components"]["schemas"]["ErrorDetail"]["properties"]["code"]["enum"]
    assert {error.code for error in STATUS_BY_ERROR} <= set(codes)
    conflict = doc["components"]["responses"]["Error409"]["content"]["application/json"]
    assert conflict["schema"]["properties"]["error"]["properties"]["code"] == {
        "type": "string",
        "enum": ["conflict", "idempotency_conflict"],
    }


def test_denial_reasons_are_the_domain_s(doc: dict[str, Any]) -> None:
    reasons = doc["components"]["schemas"]["DenialReason"]
    assert set(reasons["enum"]) == {reason.value for reason in DenialReason}
    assert reasons["description"]


def test_request_bodies_refuse_unknown_fields_and_say_what_they_are(doc: dict[str, Any]) -> None:
    for method, path, operation in _operations(doc):
        body = operation.get("requestBody")
        if body is None:
            continue
        reference = body["content"]["application/json"]["schema"]["$ref"]
        schema = doc["components"]["schemas"][reference.rsplit("/", 1)[1]]
        assert schema.get("additionalProperties") is False, (method, path)
        assert schema.get("description"), (method, path)


def test_scopes_follow_the_key_levels(doc: dict[str, Any]) -> None:
    paths = doc["paths"]
    assert paths["/v1/check"]["post"]["x-scope"] == "client"
    assert paths["/v1/usage"]["post"]["x-scope"] == "server"
    assert paths["/v1/features/{id}"]["put"]["x-scope"] == "admin"
    assert paths["/openapi.json"]["get"]["security"] == []
    assert {"serverKey": []} in paths["/v1/customers"]["get"]["security"]
    assert {"clientKey": []} not in paths["/v1/customers"]["get"]["security"]
    assert paths["/v1/test/clock"]["post"]["x-test-clock"] is True


def test_examples_fit_their_own_schemas(doc: dict[str, Any]) -> None:
    examples = 0
    for method, path, operation in _operations(doc):
        media = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
        for example in media.get("examples", {}).values():
            validator = schema_validator(doc, media["schema"])
            errors = [error.message for error in validator.iter_errors(example["value"])]
            assert not errors, (method, path, errors)
            examples += 1
        for parameter in operation.get("parameters", ()):
            if "example" in parameter:
                validator = schema_validator(doc, parameter["schema"])
                assert validator.is_valid(parameter["example"]), (method, path, parameter)
    assert examples >= 5
