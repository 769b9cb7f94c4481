"""Inputs at the edges: odd digits, far instants, deep nesting, huge sums, exact replays."""

from __future__ import annotations

import pytest

from tests.conftest import Api, define_catalog, new_customer


@pytest.fixture
def acme(api: Api) -> Api:
    define_catalog(api)
    new_customer(api, "acme", "team")
    return api


@pytest.mark.parametrize("query", ["limit=%C2%B2", "after=%C2%B2", "limit=%EF%BC%95"])
def test_non_ascii_digits_in_paging_are_400(acme: Api, query: str) -> None:
    for path in ("/v1/customers", "/v1/features", "/v1/customers/acme/subscriptions"):
        assert acme.status("GET", f"{path}?{query}")[0] == 400


@pytest.mark.parametrize("days", [0, -5, 999_999_999])
def test_trial_days_out_of_range_are_400(acme: Api, days: int) -> None:
    body = {"plan": "enterprise", "trial": True, "trial_days": days}
    status, answer = acme.status("POST", "/v1/customers/acme/subscriptions", body)
    assert status == 400, answer
    assert "trial_days" in answer["error"]["message"]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        (
            "POST",
            "/v1/usage",
            {
                "customer": "acme",
                "feature": "ai-requests",
                "amount": 1,
                "idempotency_key": "y1",
                "timestamp": "0001-01-01T00:00:00Z",
            },
        ),
        (
            "POST",
            "/v1/usage",
            {
                "customer": "acme",
                "feature": "ai-requests",
                "amount": 1,
                "idempotency_key": "y2",
                "timestamp": "9999-12-31T23:00:00Z",
            },
        ),
        (
            "POST",
            "/v1/customers/acme/subscriptions",
            {"plan": "team", "starts_at": "9999-12-31T00:00:00Z"},
        ),
        (
            "POST",
            "/v1/customers/acme/promotions",
            {"feature": "sso", "ends_at": "9999-12-31T00:00:00Z"},
        ),
        ("POST", "/v1/test/clock", {"now": "9999-12-31T00:00:00Z"}),
    ],
)
def test_instants_outside_the_supported_range_are_400(
    acme: Api,
    method: str,
    path: str,
    body: dict,  # type: ignore[type-arg]
) -> None:
    status, answer = acme.status(method, path, body)
    assert status == 400, answer
    assert acme.check("acme", "ai-requests")["has_access"] is True


def test_the_test_clock_cannot_leave_the_supported_range(acme: Api) -> None:
    acme.post("/v1/test/clock", {"now": "2999-12-31T00:00:00Z"}, 200)
    assert acme.status("POST", "/v1/test/clock", {"advance_seconds": 2 * 86400})[0] == 400
    assert acme.now() == "2999-12-31T00:00:00Z"
    assert acme.check("acme", "ai-requests")["has_access"] is True


def test_instants_with_an_offset_are_taken_in_utc(acme: Api) -> None:
    new_customer(acme, "globex")
    created = acme.post(
        "/v1/customers/globex/subscriptions",
        {"plan": "team", "starts_at": "2027-01-30T22:00:00-05:00"},
        201,
    )
    assert created["starts_at"] == "2027-01-31T03:00:00Z"
    listed = acme.get("/v1/customers/globex/subscriptions")["data"][0]
    assert listed["current_period_end"] == created["current_period_end"]


def test_deeply_nested_metadata_is_400(acme: Api) -> None:
    nested = "[" * 5000 + "]" * 5000
    raw = ('{"metadata": {"a": ' + nested + "}}").encode()
    status, answer = acme.status("PUT", "/v1/customers/deep", content=raw)
    assert status == 400, answer


def test_usage_past_what_a_counter_holds_is_400_and_checks_keep_answering(acme: Api) -> None:
    acme.put("/v1/customers/acme/overrides/ai-requests", {"limit": None}, 201)
    statuses = []
    for n in range(12):
        statuses.append(
            acme.status(
                "POST",
                "/v1/usage",
                {
                    "customer": "acme",
                    "feature": "ai-requests",
                    "amount": "999999999999.999999",
                    "idempotency_key": f"big-{n}",
                },
            )[0]
        )
    assert statuses[:9] == [200] * 9
    assert 400 in statuses
    check = acme.check("acme", "ai-requests")
    assert check["current_usage"] == 8999999999999.999991


def test_a_replay_is_byte_for_byte_the_first_answer(acme: Api) -> None:
    acme.put("/v1/customers/acme/overrides/ai-requests", {"limit": None}, 201)
    body = {
        "customer": "acme",
        "feature": "ai-requests",
        "amount": "123456789012.345678",
        "idempotency_key": "exact",
    }
    first = acme.client.post(
        "/v1/usage", json=body, headers={"Authorization": "Bearer test-admin-key"}
    )
    again = acme.client.post(
        "/v1/usage", json=body, headers={"Authorization": "Bearer test-admin-key"}
    )
    assert b'"current_usage":123456789012.345678' in first.content
    assert again.content == first.content.replace(b'"replayed":false', b'"replayed":true')


def test_check_with_an_unknown_key_is_401_whatever_the_body(acme: Api) -> None:
    response = acme.client.post(
        "/v1/check", content=b"garbage", headers={"Authorization": "Bearer nope"}
    )
    assert response.status_code == 401


def test_a_backdated_replacement_keeps_the_anchor_and_the_usage(acme: Api) -> None:
    acme.usage("acme", "ai-requests", 40, "u1")
    before = acme.check("acme", "ai-requests")
    acme.post(
        "/v1/customers/acme/subscriptions",
        {"plan": "enterprise", "starts_at": "2020-01-01T00:00:00Z"},
        201,
    )
    after = acme.check("acme", "ai-requests")
    assert after["source"] == {"type": "plan", "id": "enterprise"}
    assert after["usage_period_start"] == before["usage_period_start"]
    assert after["current_usage"] == 40


def test_checks_are_counted_in_the_request_metrics(acme: Api) -> None:
    acme.check("acme", "sso")
    text = acme.client.get("/metrics").text
    assert 'allotment_http_requests_total{method="POST",route="check",status="200"}' in text
    acme.usage("acme", "ai-requests", 1, "m1")
    assert (
        'allotment_decisions_total{outcome="recorded",route="usage"}'
        in acme.client.get("/metrics").text
    )


@pytest.mark.parametrize("amount", ["1_0", " 1 ", "+1", ".5", "1.", "\u0663", "0x10", "1e", ""])
def test_quantities_in_strings_must_be_written_as_json_numbers(acme: Api, amount: str) -> None:
    status, body = acme.status(
        "POST",
        "/v1/usage",
        {"customer": "acme", "feature": "ai-requests", "amount": amount, "idempotency_key": "k"},
    )
    assert status == 400, body


@pytest.mark.parametrize(("amount", "used"), [("1e1", 10), ("0.5", 0.5), ("-0", 0), (2.50, 2.5)])
def test_quantities_as_numbers_or_number_strings_are_exact(
    acme: Api, amount: object, used: float
) -> None:
    answer = acme.usage("acme", "ai-requests", amount, "k")
    assert answer["current_usage"] == used
