"""POST /v1/reservations: holds that count as usage and hold credits until they end, once."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest

from tests.conftest import Api, define_catalog, new_customer
from tests.integration.test_credits_api import POOL, ledger, priced_catalog


def reserve(api: Api, feature: str, amount: Any, key: str, **extra: Any) -> Any:
    body = {
        "customer": "acme",
        "feature": feature,
        "amount": amount,
        "idempotency_key": key,
        **extra,
    }
    return api.post("/v1/reservations", body, 200)


@pytest.fixture
def acme(api: Api) -> Api:
    define_catalog(api)
    new_customer(api, "acme", "starter")  # ai-requests: 100 a day, hard
    return api


def test_a_reservation_counts_as_usage_until_it_ends(acme: Api) -> None:
    held = reserve(acme, "ai-requests", 60, "r1", ttl_seconds=120)
    assert held["granted"] is True
    assert held["id"].startswith("res_")
    assert held["expires_at"] is not None
    check = acme.check("acme", "ai-requests", requested=41)
    assert (check["reserved"], check["remaining"], check["has_access"]) == (60, 40, False)
    refused = reserve(acme, "ai-requests", 41, "r2")
    assert (refused["granted"], refused["access_denied_reason"], refused["id"]) == (
        False,
        "usage_limit_exceeded",
        None,
    )
    over = acme.usage("acme", "ai-requests", 41, "u1", enforce=True)
    assert (over["recorded"], over["reserved"]) == (False, 60)
    released = acme.post(f"/v1/reservations/{held['id']}/release", {}, 200)
    assert released["status"] == "released"
    assert acme.check("acme", "ai-requests")["reserved"] == 0
    assert acme.status("POST", f"/v1/reservations/{held['id']}/release", {})[0] == 409
    assert acme.status("POST", f"/v1/reservations/{held['id']}/commit", {"amount": 1})[0] == 409


def test_commit_records_the_actual_and_frees_the_rest(acme: Api) -> None:
    held = reserve(acme, "ai-requests", 50, "r1")
    committed = acme.post(f"/v1/reservations/{held['id']}/commit", {"amount": 30}, 200)
    assert (committed["status"], committed["committed_amount"]) == ("committed", 30)
    check = acme.check("acme", "ai-requests")
    assert (check["current_usage"], check["reserved"], check["remaining"]) == (30, 0, 70)
    # A commit larger than the hold records the extra too, past the limit if need be.
    bigger = reserve(acme, "ai-requests", 10, "r2")
    acme.post(f"/v1/reservations/{bigger['id']}/commit", {"amount": 90}, 200)
    assert acme.check("acme", "ai-requests")["current_usage"] == 120


def test_a_reservation_releases_by_itself_at_expiry(acme: Api) -> None:
    held = reserve(acme, "ai-requests", 100, "r1", ttl_seconds=30)
    assert acme.check("acme", "ai-requests")["has_access"] is False
    acme.advance(30)
    assert acme.check("acme", "ai-requests")["reserved"] == 0
    assert acme.usage("acme", "ai-requests", 100, "u", enforce=True)["recorded"] is True
    status, body = acme.status("POST", f"/v1/reservations/{held['id']}/commit", {"amount": 5})
    assert (status, body["error"]["code"]) == (409, "conflict")
    assert "expired" in body["error"]["message"]


def test_reservations_are_idempotent(acme: Api) -> None:
    first = reserve(acme, "ai-requests", 10, "r1")
    assert reserve(acme, "ai-requests", 10, "r1") == {**first, "replayed": True}
    assert acme.check("acme", "ai-requests")["reserved"] == 10
    assert (
        acme.status(
            "POST",
            "/v1/reservations",
            {"customer": "acme", "feature": "ai-requests", "amount": 11, "idempotency_key": "r1"},
        )[0]
        == 409
    )


def test_reservation_decisions_and_errors(acme: Api) -> None:
    assert reserve(acme, "ai-requests", 1, "a", entity="agent")["access_denied_reason"] == (
        "entity_not_found"
    )
    body = {"customer": "ghost", "feature": "ai-requests", "amount": 1, "idempotency_key": "b"}
    assert acme.post("/v1/reservations", body, 200)["access_denied_reason"] == (
        "customer_not_found"
    )
    assert (
        acme.status(
            "POST",
            "/v1/reservations",
            {"customer": "acme", "feature": "seats", "amount": 1, "idempotency_key": "c"},
        )[0]
        == 400
    )
    assert (
        acme.status(
            "POST",
            "/v1/reservations",
            {
                "customer": "acme",
                "feature": "ai-requests",
                "amount": 1,
                "idempotency_key": "d",
                "ttl_seconds": 0,
            },
        )[0]
        == 400
    )
    assert acme.status("POST", "/v1/reservations/res_nope/commit", {"amount": 1})[0] == 404


def test_reserve_run_commit_with_credits(api: Api) -> None:
    """PRODUCT.md: every model call reserves its estimated credits, runs, and commits the
    actual cost."""
    priced_catalog(api)
    new_customer(api, "acme", "team")
    held = reserve(api, "model-tokens", 800_000, "call-1")  # 800 credits held
    assert held["granted"] is True
    pool = api.get(POOL)
    assert (pool["balance"], pool["reserved"], pool["available"]) == (1000, 800, 200)
    refused = reserve(api, "model-tokens", 300_000, "call-2")
    assert refused["access_denied_reason"] == "insufficient_credits"
    assert (
        api.post(f"{POOL}/debits", {"amount": 201, "idempotency_key": "d"}, 200)[
            "access_denied_reason"
        ]
        == "insufficient_credits"
    )
    check = api.check("acme", "model-tokens", requested=200_000)
    assert (check["has_access"], check["credits"]["available"]) == (True, 200)
    api.post(f"/v1/reservations/{held['id']}/commit", {"amount": 650_000}, 200)
    pool = api.get(POOL)
    assert (pool["balance"], pool["reserved"], pool["available"]) == (350, 0, 350)
    entry = ledger(api)[-1]
    assert (entry["type"], entry["amount"], entry["feature"]) == ("debit", -650, "model-tokens")
    assert api.check("acme", "model-tokens")["current_usage"] == 650_000


@pytest.mark.sqlite_file
def test_a_reservation_refused_by_its_limit_writes_nothing(api: Api) -> None:
    """The pool is settled (due blocks written) only once the limit and budgets let a
    reservation through: a refused one leaves the ledger as it was."""
    api.put("/v1/currencies/cr", {"name": "C"})
    api.put("/v1/features/tok", {"name": "T", "kind": "metered"})
    api.put("/v1/products/p", {"name": "P"})
    tokens = {"limit": 1, "credit_cost": {"currency": "cr", "per_unit": 1}}
    plan = {
        "product": "p",
        "name": "Pl",
        "entitlements": {"tok": tokens},
        "credits": {"cr": {"amount": 100, "every": "month"}},
    }
    api.put("/v1/plans/pl", plan)
    api.put("/v1/customers/acme", {"name": "A"})
    api.post("/v1/customers/acme/subscriptions", {"plan": "pl"}, expect=201)
    refused = reserve(api, "tok", 5, "too-much")
    assert (refused["granted"], refused["access_denied_reason"]) == (
        False,
        "usage_limit_exceeded",
    )
    with sqlite3.connect(api.database) as db:
        assert db.execute("SELECT COUNT(*) FROM ledger_entries").fetchone() == (0,)
