"""Bodies built to break the decoder: bytes that are not UTF-8, numbers of thousands of digits,
ids with a trailing newline. Each is a 400 in the contract's error shape that names the field,
on every route that reads a body, and changes nothing."""

from __future__ import annotations

import json

import pytest

from tests.conftest import Api, define_catalog, new_customer

MARK = "@@"

# Every route that reads a body, with a body whose one string field holds MARK.
BODY_ROUTES = [
    ("POST", "/v1/check", {"customer": "acme", "feature": MARK}),
    (
        "POST",
        "/v1/usage",
        {"customer": "acme", "feature": MARK, "amount": 1, "idempotency_key": "k"},
    ),
    ("POST", "/v1/customers/acme/credits/cr/debits", {"amount": 1, "idempotency_key": MARK}),
    ("PUT", "/v1/features/f", {"name": MARK, "kind": "boolean"}),
    ("PUT", "/v1/currencies/c", {"name": MARK}),
    ("PUT", "/v1/products/p", {"name": MARK}),
    ("PUT", "/v1/plans/p", {"product": "coder", "name": MARK}),
    ("PUT", "/v1/addons/a", {"product": "coder", "name": MARK}),
    ("PUT", "/v1/customers/c", {"name": MARK}),
    ("POST", "/v1/customers/acme/subscriptions", {"plan": MARK}),
    ("PATCH", "/v1/customers/acme/subscriptions/sub_x", {"addons": [{"id": MARK}]}),
    ("POST", "/v1/customers/acme/promotions", {"feature": "sso", "reason": MARK}),
    ("PUT", "/v1/customers/acme/overrides/seats", {"reset": MARK}),
    ("POST", "/v1/api-keys", {"name": MARK, "scope": "admin"}),
    ("POST", "/v1/test/clock", {"now": MARK}),
    (
        "POST",
        "/v1/customers/acme/credits/cr/grants",
        {"amount": 1, "category": "paid", "idempotency_key": MARK},
    ),
    (
        "POST",
        "/v1/reservations",
        {"customer": "acme", "feature": "ai-requests", "amount": 1, "idempotency_key": MARK},
    ),
    ("POST", "/v1/reservations/res_x/commit", {"amount": MARK}),
    ("PUT", "/v1/customers/acme/entities/e", {"name": MARK}),
    ("PUT", "/v1/customers/acme/entities/e/budgets/ai-requests", {"limit": 1, "reset": MARK}),
]


@pytest.fixture
def acme(api: Api) -> Api:
    define_catalog(api)
    new_customer(api, "acme", "team")
    api.put("/v1/currencies/cr", {"name": "Credits"}, 201)
    api.put("/v1/customers/acme/entities/e", {}, 201)
    return api


def _raw(body: dict[str, object], replacement: bytes) -> bytes:
    return json.dumps(body).encode().replace(MARK.encode(), replacement)


def _assert_invalid_request(status: int, answer: object, body: bytes) -> dict[str, object]:
    assert status == 400, (body, status, answer)
    assert isinstance(answer, dict)
    error = answer["error"]
    assert set(error) == {"code", "message", "details"}, answer
    assert error["code"] == "invalid_request", answer
    details: dict[str, object] = error["details"]
    return details


# --- Invalid UTF-8 -------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path", "body"), BODY_ROUTES)
@pytest.mark.parametrize("bad", [b"\xff", b"ok\xc3", b"\xed\xa0\x80"])  # stray, cut, surrogate
def test_invalid_utf8_in_a_string_is_400(
    acme: Api, method: str, path: str, body: dict[str, object], bad: bytes
) -> None:
    raw = _raw(body, bad)
    _assert_invalid_request(*acme.status(method, path, content=raw), raw)


@pytest.mark.parametrize(("method", "path", "body"), BODY_ROUTES)
def test_invalid_utf8_in_a_field_name_is_400(
    acme: Api, method: str, path: str, body: dict[str, object]
) -> None:
    raw = b'{"\xff": 1}'
    _assert_invalid_request(*acme.status(method, path, content=raw), raw)


def test_invalid_utf8_with_a_client_key_is_400(acme: Api) -> None:
    key = acme.post("/v1/api-keys", {"name": "web", "scope": "client", "customer": "acme"}, 201)
    raw = b'{"customer":"acme","feature":"\xff"}'
    _assert_invalid_request(*acme.status("POST", "/v1/check", content=raw, key=key["key"]), raw)


# --- Numbers of thousands of digits --------------------------------------------------------------

DIGITS = "9" * 5000

# (method, path, body with MARK where the quantity goes, the field the error must name)
QUANTITY_ROUTES = [
    ("POST", "/v1/check", {"customer": "acme", "feature": "ai-requests", "requested": MARK}),
    (
        "POST",
        "/v1/usage",
        {"customer": "acme", "feature": "ai-requests", "amount": MARK, "idempotency_key": "k"},
    ),
    ("POST", "/v1/customers/acme/credits/cr/debits", {"amount": MARK, "idempotency_key": "d"}),
    (
        "POST",
        "/v1/customers/acme/credits/cr/grants",
        {"amount": MARK, "category": "paid", "idempotency_key": "g"},
    ),
    (
        "POST",
        "/v1/reservations",
        {"customer": "acme", "feature": "ai-requests", "amount": MARK, "idempotency_key": "r"},
    ),
    ("POST", "/v1/reservations/res_x/commit", {"amount": MARK}),
    (
        "PUT",
        "/v1/plans/p",
        {"product": "coder", "name": "P", "entitlements": {"ai-requests": {"limit": MARK}}},
    ),
    (
        "PUT",
        "/v1/addons/a",
        {
            "product": "coder",
            "name": "A",
            "entitlements": {"ai-requests": {"limit": MARK, "mode": "increment"}},
        },
    ),
    ("PUT", "/v1/customers/acme/overrides/ai-requests", {"limit": MARK}),
    ("POST", "/v1/customers/acme/promotions", {"feature": "ai-requests", "limit": MARK}),
    ("PUT", "/v1/customers/acme/entities/e/budgets/ai-requests", {"limit": MARK}),
]

OVERSIZE_NUMBERS = [
    pytest.param(f'"0.{DIGITS}"', id="string-fraction"),
    pytest.param(f'"{DIGITS}e-5000"', id="string-negative-exponent"),
    pytest.param(f'"1.{"0" * 5000}"', id="string-trailing-zeros"),
    pytest.param(f'"{DIGITS}"', id="string-whole"),
    pytest.param(f'"1e{DIGITS}"', id="string-exponent-digits"),
    pytest.param('"1e99999999999999999999"', id="string-exponent-past-decimal"),
    pytest.param(f"0.{DIGITS}", id="number-fraction"),
    pytest.param(f"{DIGITS}.5", id="number-whole-and-fraction"),
    pytest.param(f"1e{DIGITS}", id="number-exponent-digits"),
    pytest.param("1e99999999999999999999", id="number-exponent-past-decimal"),
    pytest.param(DIGITS, id="number-integer"),
]


@pytest.mark.parametrize(("method", "path", "body"), QUANTITY_ROUTES)
@pytest.mark.parametrize("number", OVERSIZE_NUMBERS)
def test_oversize_numbers_are_400_naming_the_field(
    acme: Api, method: str, path: str, body: dict[str, object], number: str
) -> None:
    # MARK sits inside a JSON string: replace the string whole, so the value is `number`.
    raw = json.dumps(body).encode().replace(f'"{MARK}"'.encode(), number.encode())
    details = _assert_invalid_request(*acme.status(method, path, content=raw), raw[:80])
    field = details.get("field")
    assert isinstance(field, str), details
    assert field.rsplit(".", 1)[-1] in {"requested", "amount", "limit"}, details


def test_oversize_numbers_in_metadata_are_400(acme: Api) -> None:
    for number in (f"0.{DIGITS}", "1e99999999999999999999", f"1e{DIGITS}"):
        raw = b'{"metadata": {"x": [' + number.encode() + b"]}}"
        details = _assert_invalid_request(
            *acme.status("PUT", "/v1/customers/c", content=raw), raw[:80]
        )
        assert str(details.get("field", "")).startswith("metadata"), details
    assert acme.status("GET", "/v1/customers/c")[0] == 404


def test_a_hundred_character_number_is_still_read_exactly(acme: Api) -> None:
    # Trailing zeros cost digits, not value: the bound is generous for any real quantity.
    amount = "1." + "0" * 98
    assert len(amount) == 100
    answer = acme.usage("acme", "ai-requests", amount, "exact-100")
    assert answer["current_usage"] == 1


# --- Ids with a trailing newline -----------------------------------------------------------------

ID_BODIES = [
    ("POST", "/v1/check", {"customer": MARK, "feature": "seats"}),
    ("POST", "/v1/check", {"customer": "acme", "feature": MARK}),
    ("POST", "/v1/check", {"customer": "acme", "feature": "ai-requests", "entity": MARK}),
    (
        "POST",
        "/v1/usage",
        {"customer": MARK, "feature": "ai-requests", "amount": 1, "idempotency_key": "n1"},
    ),
    (
        "POST",
        "/v1/customers/acme/credits/cr/debits",
        {"amount": 1, "idempotency_key": "n2", "entity": MARK},
    ),
    ("PUT", "/v1/plans/p", {"product": MARK, "name": "P"}),
    ("PUT", "/v1/plans/p", {"product": "coder", "name": "P", "entitlements": {MARK: {}}}),
    ("POST", "/v1/customers/acme/subscriptions", {"plan": MARK}),
    ("POST", "/v1/customers/acme/promotions", {"feature": MARK, "limit": 5}),
    ("POST", "/v1/api-keys", {"name": "k", "scope": "client", "customer": MARK}),
    ("PUT", "/v1/customers/acme/entities/e2", {"parent": MARK}),
    (
        "POST",
        "/v1/reservations",
        {"customer": MARK, "feature": "ai-requests", "amount": 1, "idempotency_key": "n3"},
    ),
]


@pytest.mark.parametrize(("method", "path", "body"), ID_BODIES)
@pytest.mark.parametrize("suffix", ["\n", "\r\n", "\n\n"])
def test_ids_with_a_trailing_newline_are_400(
    acme: Api, method: str, path: str, body: dict[str, object], suffix: str
) -> None:
    good = "acme" if body.get("customer") == MARK else "ai-requests"
    raw = _raw(body, json.dumps(good + suffix)[1:-1].encode())
    details = _assert_invalid_request(*acme.status(method, path, content=raw), raw)
    assert "field" in details, details


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/customers/acme%0A"),
        ("GET", "/v1/customers/acme%0A/entitlements"),
        ("GET", "/v1/customers/acme/entitlements?entity=e%0A"),
        ("GET", "/v1/stream?customer=acme%0A"),
        ("POST", "/v1/customers/acme%0A/credits/cr/debits"),
        ("POST", "/v1/customers/acme/credits/cr%0A/debits"),
    ],
)
def test_ids_with_a_trailing_newline_in_paths_and_queries_are_400(
    acme: Api, method: str, path: str
) -> None:
    body = {"amount": 1, "idempotency_key": "p1"} if method == "POST" else None
    status, answer = acme.status(method, path, body)
    assert status == 400, answer
    assert answer["error"]["details"]["field"] in {"customer", "currency", "entity"}


# --- Which field a decoding error is about -------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'{"customer": "acme"}', "feature"),
        (b'{"customer": "acme", "feature": 5}', "feature"),
        (b'{"customer": "acme", "feature": "seats", "extra": 1}', "extra"),
        (b'{"customer": "acme", "feature": "seats", "requested": "x"}', "requested"),
        (b'{"customer": "bad id", "feature": "seats"}', "customer"),
    ],
)
def test_decoding_errors_name_the_field_on_the_hot_path(acme: Api, body: bytes, field: str) -> None:
    details = _assert_invalid_request(*acme.status("POST", "/v1/check", content=body), body)
    assert details == {"field": field}


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("PUT", "/v1/features/f", b'{"kind": "boolean"}', "name"),
        ("PUT", "/v1/features/f", b'{"name": "F", "kind": "sometimes"}', "kind"),
        (
            "PUT",
            "/v1/plans/p",
            b'{"product": "coder", "name": "P", "entitlements": {"seats": {"value": "x"}}}',
            "entitlements[...].value",
        ),
        (
            "PUT",
            "/v1/plans/p",
            b'{"product": "coder", "name": "P", "entitlements": {"bad id": {}}}',
            "entitlements",
        ),
        (
            "POST",
            "/v1/customers/acme/subscriptions",
            b'{"plan": "team", "addons": [{"id": "extra-requests", "qty": 1}]}',
            "addons[0].qty",
        ),
        (
            "POST",
            "/v1/customers/acme/subscriptions",
            b'{"plan": "team", "starts_at": "9999-01-01T00:00:00Z"}',
            "starts_at",
        ),
        ("POST", "/v1/test/clock", b'{"advance_seconds": -1}', "advance_seconds"),
    ],
)
def test_decoding_errors_name_the_field(
    acme: Api, method: str, path: str, body: bytes, field: str
) -> None:
    details = _assert_invalid_request(*acme.status(method, path, content=body), body)
    assert details == {"field": field}
