"""Migration 0009 on a database that already holds usage and debits along entity paths: the
index of consumption per entity is filled from the truth, as the writes would have kept it, and
the budgets read through it answer what they answered before."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from alembic import command

from allotment.storage.migrate import alembic_config, sqlite_url
from tests.conftest import Api, define_catalog, new_customer, open_api

TREE = "/v1/customers/acme/entities"
POOL = "/v1/customers/acme/credits/ai-credits"


def consumption(database: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(database) as db:
        return db.execute(
            "SELECT customer, kind, target, entity, second, amount FROM entity_consumption"
            " ORDER BY customer, kind, target, entity, second"
        ).fetchall()


def write_history(api: Api) -> dict[str, Any]:
    """Usage and debits along eng > team-a > agent-7, a move, and the budgets that read them."""
    define_catalog(api)
    api.put("/v1/currencies/ai-credits", {"name": "Credits"}, 201)
    new_customer(api, "acme", "starter")
    api.put(f"{TREE}/eng", {"kind": "department"}, 201)
    api.put(f"{TREE}/team-a", {"parent": "eng"}, 201)
    api.put(f"{TREE}/agent-7", {"parent": "team-a"}, 201)
    api.put(f"{TREE}/ops", {}, 201)
    api.post(f"{POOL}/grants", {"amount": 100, "category": "paid", "idempotency_key": "g"}, 201)
    for n, amount in enumerate(["1.5", "2", "0.25"]):
        api.usage("acme", "ai-requests", amount, f"u{n}", entity="agent-7")
    api.post(f"{POOL}/debits", {"amount": 3, "idempotency_key": "d1", "entity": "agent-7"}, 200)
    api.put(f"{TREE}/team-a", {"parent": "ops"}, 200)  # later usage counts for ops, not eng
    api.usage("acme", "ai-requests", 4, "u9", entity="agent-7")
    api.advance(3)
    api.usage("acme", "ai-requests", 5, "u10", entity="team-a")
    budget = {"limit": 1000, "reset": "month", "enforcement": "soft"}
    for entity in ("eng", "ops", "team-a", "agent-7"):
        api.put(f"{TREE}/{entity}/budgets/ai-requests", budget, 201)
        api.put(f"{TREE}/{entity}/budgets/ai-credits", budget, 201)
    return {entity: api.get(f"{TREE}/{entity}")["budgets"] for entity in ("eng", "ops", "team-a")}


@pytest.mark.sqlite_file
def test_the_consumption_index_is_filled_from_the_truth(tmp_path: Path) -> None:
    database = tmp_path / "allotment.db"
    for api in open_api(database, test_clock=True):
        answered = write_history(api)
        now = api.now()
    kept = consumption(database)
    usage = {(row[2], row[3]): 0 for row in kept}
    for _, _, target, entity, _, amount in kept:
        usage[(target, entity)] += amount
    million = 1_000_000
    assert usage[("ai-requests", "eng")] == 3_750_000
    assert usage[("ai-requests", "ops")] == 9 * million
    assert usage[("ai-requests", "team-a")] == usage[("ai-requests", "agent-7")] + 5 * million
    assert usage[("ai-credits", "eng")] == 3 * million

    config = alembic_config(sqlite_url(database))
    command.downgrade(config, "0008")
    with sqlite3.connect(database) as db:
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master")}
    assert "entity_consumption" not in tables
    assert "entities_by_parent" not in tables

    command.upgrade(config, "head")
    assert consumption(database) == kept
    with sqlite3.connect(database) as db:
        db.execute("DELETE FROM budget_counters")  # every window projected from the index
    for api in open_api(database, test_clock=True):
        api.post("/v1/test/clock", {"now": now}, 200)
        assert {entity: api.get(f"{TREE}/{entity}")["budgets"] for entity in answered} == answered
