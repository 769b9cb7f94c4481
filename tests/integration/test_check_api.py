"""POST /v1/check: the shape of the answer and every denial reason it can give today."""

from __future__ import annotations

import pytest

from tests.conftest import Api, define_catalog, new_customer

CHECK_FIELDS = {
    "customer",
    "feature",
    "entity",
    "has_access",
    "access_denied_reason",
    "kind",
    "is_unlimited",
    "value",
    "usage_limit",
    "current_usage",
    "reserved",
    "remaining",
    "requested",
    "enforcement",
    "reset_period",
    "usage_period_start",
    "usage_period_end",
    "source",
    "budgets",
    "credits",
    "is_fallback",
}


@pytest.fixture
def acme(api: Api) -> Api:
    define_catalog(api)
    new_customer(api, "acme", "team", starts_at="2026-11-01T00:00:00Z")
    return api


def test_metered_answer_has_every_field_of_the_contract(acme: Api) -> None:
    acme.usage("acme", "ai-requests", 250, "u1")
    answer = acme.check("acme", "ai-requests", requested=1)
    assert set(answer) == CHECK_FIELDS
    assert answer == {
        "customer": "acme",
        "feature": "ai-requests",
        "entity": None,
        "has_access": True,
        "access_denied_reason": None,
        "kind": "metered",
        "is_unlimited": False,
        "value": None,
        "usage_limit": 1000,
        "current_usage": 250,
        "reserved": 0,
        "remaining": 750,
        "requested": 1,
        "enforcement": "hard",
        "reset_period": "month",
        "usage_period_start": answer["usage_period_start"],
        "usage_period_end": answer["usage_period_end"],
        "source": {"type": "plan", "id": "team"},
        "budgets": [],
        "credits": None,
        "is_fallback": False,
    }
    assert answer["usage_period_start"].endswith("-01T00:00:00Z")
    assert answer["usage_period_end"].endswith("-01T00:00:00Z")


def test_customer_not_found(api: Api) -> None:
    define_catalog(api)
    answer = api.check("ghost", "sso")
    assert (answer["has_access"], answer["access_denied_reason"]) == (False, "customer_not_found")


def test_customer_created_after_a_miss_is_found(api: Api) -> None:
    define_catalog(api)
    assert api.check("late", "seats")["access_denied_reason"] == "customer_not_found"
    new_customer(api, "late", "team")
    assert api.check("late", "seats")["has_access"] is True


def test_customer_archived(acme: Api) -> None:
    assert acme.check("acme", "seats")["has_access"] is True
    acme.delete("/v1/customers/acme", 200)
    assert acme.check("acme", "seats")["access_denied_reason"] == "customer_archived"


def test_feature_not_found(acme: Api) -> None:
    answer = acme.check("acme", "teleport")
    assert answer["access_denied_reason"] == "feature_not_found"
    assert answer["kind"] is None


def test_entity_not_found(acme: Api) -> None:
    assert acme.check("acme", "seats", entity="agent-7")["access_denied_reason"] == (
        "entity_not_found"
    )


def test_no_active_subscription(api: Api) -> None:
    define_catalog(api)
    new_customer(api, "acme")
    assert api.check("acme", "seats")["access_denied_reason"] == "no_active_subscription"


def test_not_entitled(acme: Api) -> None:
    answer = acme.check("acme", "sso")
    assert (answer["access_denied_reason"], answer["kind"]) == ("not_entitled", "boolean")


def test_usage_limit_exceeded_with_and_without_requested(acme: Api) -> None:
    acme.usage("acme", "ai-requests", 999, "u1")
    assert acme.check("acme", "ai-requests")["has_access"] is True
    assert acme.check("acme", "ai-requests", requested=1)["has_access"] is True
    answer = acme.check("acme", "ai-requests", requested=2)
    assert (answer["has_access"], answer["access_denied_reason"]) == (False, "usage_limit_exceeded")
    assert answer["remaining"] == 1
    acme.usage("acme", "ai-requests", 1, "u2")
    answer = acme.check("acme", "ai-requests")
    assert answer["access_denied_reason"] == "usage_limit_exceeded"
    assert answer["remaining"] == 0


def test_remaining_is_never_negative(acme: Api) -> None:
    acme.usage("acme", "ai-requests", 1500, "past-the-limit")
    answer = acme.check("acme", "ai-requests")
    assert (answer["current_usage"], answer["remaining"]) == (1500, 0)


def test_soft_limit_always_grants(api: Api) -> None:
    define_catalog(api)
    new_customer(api, "acme", "enterprise")
    api.usage("acme", "ai-requests", 25000, "u1")
    answer = api.check("acme", "ai-requests", requested=100)
    assert (answer["has_access"], answer["enforcement"], answer["remaining"]) == (True, "soft", 0)


def test_numeric_value_and_requested(acme: Api) -> None:
    answer = acme.check("acme", "seats")
    assert (answer["value"], answer["is_unlimited"], answer["has_access"]) == (10, False, True)
    assert acme.check("acme", "seats", requested=10)["has_access"] is True
    denied = acme.check("acme", "seats", requested=11)
    assert (denied["has_access"], denied["access_denied_reason"]) == (False, "usage_limit_exceeded")


def test_unlimited_numeric_and_metered(api: Api) -> None:
    define_catalog(api)
    new_customer(api, "acme", "enterprise")
    seats = api.check("acme", "seats", requested=1_000_000)
    assert (seats["has_access"], seats["is_unlimited"], seats["value"]) == (True, True, None)
    api.put("/v1/customers/acme/overrides/ai-requests", {"limit": None}, 201)
    requests = api.check("acme", "ai-requests", requested=10**9)
    assert (requests["is_unlimited"], requests["usage_limit"], requests["remaining"]) == (
        True,
        None,
        None,
    )


def test_fractional_quantities_are_exact(acme: Api) -> None:
    acme.usage("acme", "ai-requests", "0.1", "a")
    acme.usage("acme", "ai-requests", "0.2", "b")
    answer = acme.check("acme", "ai-requests", requested="999.7")
    assert answer["current_usage"] == 0.3
    assert answer["remaining"] == 999.7
    assert answer["has_access"] is True
    assert acme.check("acme", "ai-requests", requested="999.700001")["has_access"] is False


def test_periods_roll_by_the_clock_without_any_job(api: Api) -> None:
    define_catalog(api)
    new_customer(api, "acme", "starter")
    api.usage("acme", "ai-requests", 100, "day-one")
    assert api.check("acme", "ai-requests")["has_access"] is False
    api.advance(86400)
    fresh = api.check("acme", "ai-requests")
    assert (fresh["has_access"], fresh["current_usage"]) == (True, 0)
