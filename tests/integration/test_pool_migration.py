"""Migration 0007 on a database that already holds pools: their revenue is computed once, from
their ledger, as the pools would have kept it; and the live grants' index appears."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from alembic import command

from allotment.storage.migrate import alembic_config, sqlite_url
from tests.conftest import Api, open_api

POOL = "/v1/customers/{customer}/credits/ai-credits"


def revenue_rows(database: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(database) as db:
        return db.execute(
            "SELECT customer, currency, overdraft, deferred, recognized, breakage"
            " FROM credit_pools ORDER BY customer, currency"
        ).fetchall()


def indexes(database: Path) -> set[str]:
    with sqlite3.connect(database) as db:
        return {
            name
            for (name,) in db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'credit_grants'"
            )
        }


def grant(api: Api, pool: str, amount: Any, key: str, **extra: Any) -> Any:
    body = {"amount": amount, "category": "paid", "idempotency_key": key, **extra}
    return api.post(f"{pool}/grants", body, 201)


def debit(api: Api, pool: str, amount: Any, key: str) -> None:
    body = {"amount": amount, "idempotency_key": key, "enforce": False}
    api.post(f"{pool}/debits", body, 200)


def write_pools(api: Api) -> dict[str, Any]:
    """Two pools through the API: an overdraft paid back, debits, a void, an expiry."""
    api.put("/v1/currencies/ai-credits", {"name": "Credits"}, 201)
    for customer in ("acme", "umbrella"):
        api.put(f"/v1/customers/{customer}", {"name": customer}, 201)
    acme, umbrella = POOL.format(customer="acme"), POOL.format(customer="umbrella")
    debit(api, acme, 3, "overdraft")  # paid back by the next grant
    grant(api, acme, 100, "g1", cost_basis="0.37", expires_at="2031-01-01T00:00:00Z")
    voided = grant(api, acme, "12.5", "g2", cost_basis=2, priority=99)
    debit(api, acme, "41.000001", "d1")
    api.post(f"{acme}/grants/{voided['id']}/void", None, 200)
    grant(api, umbrella, 7, "g3", cost_basis="123456.789012")
    debit(api, umbrella, 7, "d2")  # used up
    api.post("/v1/test/clock", {"now": "2032-01-01T00:00:00Z"}, 200)
    api.get(acme)  # g1 expires with what it held
    return {pool: api.get(f"{pool}/revenue") for pool in (acme, umbrella)}


@pytest.mark.sqlite_file
def test_revenue_of_existing_pools_is_computed_from_their_ledger(tmp_path: Path) -> None:
    database = tmp_path / "allotment.db"
    for api in open_api(database, test_clock=True):
        answered = write_pools(api)
    kept = revenue_rows(database)
    # Exact, in micro-credits times micro-units of cost basis: the payback and the debit at
    # 0.37 recognized, what g1 held when it expired broken; umbrella's 7 credits recognized.
    assert kept == [
        ("acme", "ai-credits", 0, "0", str(44_000_001 * 370_000), str(55_999_999 * 370_000)),
        ("umbrella", "ai-credits", 0, "0", str(7_000_000 * 123_456_789_012), "0"),
    ]
    assert "credit_grants_live" in indexes(database)

    config = alembic_config(sqlite_url(database))
    command.downgrade(config, "0006")
    assert "credit_grants_live" not in indexes(database)
    with sqlite3.connect(database) as db:
        columns = {row[1] for row in db.execute("PRAGMA table_info(credit_pools)")}
    assert columns == {"customer", "currency", "overdraft"}

    command.upgrade(config, "head")
    assert revenue_rows(database) == kept
    assert "credit_grants_live" in indexes(database)
    for api in open_api(database, test_clock=True):
        assert {pool: api.get(f"{pool}/revenue") for pool in answered} == answered
