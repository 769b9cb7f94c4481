"""No input produces a 5xx, and a rejected request changes nothing."""

from __future__ import annotations

import sqlite3

import pytest

from tests.conftest import Api, define_catalog, new_customer

ROUTES = [
    ("POST", "/v1/check"),
    ("POST", "/v1/usage"),
    ("PUT", "/v1/features/f"),
    ("PUT", "/v1/plans/p"),
    ("PUT", "/v1/addons/a"),
    ("PUT", "/v1/currencies/c"),
    ("PUT", "/v1/customers/c"),
    ("POST", "/v1/customers/acme/subscriptions"),
    ("POST", "/v1/customers/acme/promotions"),
    ("PUT", "/v1/customers/acme/overrides/seats"),
    ("POST", "/v1/api-keys"),
    ("POST", "/v1/test/clock"),
]

BAD_BODIES = [
    b"",
    b"{",
    b"null",
    b"[]",
    b'"text"',
    b"{}",
    b'{"unknown_field": 1}',
    b'{"customer": 5, "feature": []}',
    b'{"customer": "acme", "feature": "seats", "requested": 1e400}',
    b'{"customer": "acme", "feature": "seats", "requested": "1e999999999"}',
    b'{"customer": "acme", "feature": "seats", "requested": -5}',
    b'{"customer": "acme", "feature": "ai-requests", "amount": 99999999999999999999,'
    b' "idempotency_key": "k"}',
    b'{"name": "x", "kind": "boolean", "extra": true}',
    b'{"plan": "team", "addons": [{"id": "extra-requests", "quantity": 99999999999999999999}]}',
    b'{"plan": "team", "starts_at": "yesterday"}',
    b'{"plan": "team", "starts_at": "2026-01-01T00:00:00"}',
    b'{"customer": "' + b"a" * 200 + b'", "feature": "seats"}',
    b'{"customer": "../etc", "feature": "seats"}',
    b'{"advance_seconds": -1}',
    b'{"now": "1999-01-01T00:00:00Z"}',
    b"\xff\xfe\x00",
]


def snapshot(api: Api) -> list[object]:
    with sqlite3.connect(api.database) as db:
        return [
            db.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()
            for table in (
                "catalog_objects",
                "customers",
                "subscriptions",
                "promotions",
                "overrides",
                "usage_events",
                "usage_counters",
                "idempotency_records",
                "api_keys",
            )
        ]


@pytest.mark.sqlite_file
@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_bad_bodies_are_4xx_and_change_nothing(api: Api, method: str, path: str) -> None:
    define_catalog(api)
    new_customer(api, "acme", "team")
    before = snapshot(api)
    for body in BAD_BODIES:
        if body == b"{}" and path == "/v1/customers/c":
            continue  # every customer field is optional: {} is a valid body there
        status, answer = api.status(method, path, content=body)
        assert 400 <= status < 500 or (path == "/v1/check" and status == 200), (body, status)
        if status >= 400:
            assert set(answer["error"]) == {"code", "message", "details"}
    assert snapshot(api) == before


def test_a_huge_body_is_refused(api: Api) -> None:
    body = b'{"name": "' + b"x" * (2 * 1024 * 1024) + b'", "kind": "boolean"}'
    for method, path in (("PUT", "/v1/features/f"), ("POST", "/v1/check")):
        status, answer = api.status(method, path, content=body)
        assert status == 413
        assert answer["error"]["code"] == "payload_too_large"


@pytest.mark.parametrize(
    "path", ["/v1/customers/%20bad", "/v1/features/a%3Bb", "/v1/customers/" + "x" * 200]
)
def test_invalid_ids_in_paths_are_400(api: Api, path: str) -> None:
    assert api.status("GET", path)[0] == 400


def test_unknown_routes_and_methods_answer_in_the_error_format(api: Api) -> None:
    status, body = api.status("GET", "/v1/nothing-here")
    assert (status, body["error"]["code"]) == (404, "not_found")
    status, body = api.status("DELETE", "/v1/features")
    assert (status, body["error"]["code"]) == (405, "method_not_allowed")
    status, body = api.status("GET", "/v1/check")
    assert (status, body["error"]["code"]) == (405, "method_not_allowed")
