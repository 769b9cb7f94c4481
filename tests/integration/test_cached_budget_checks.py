"""Checks with an entity come from memory once the budget windows are cached; after every kind
of write they agree with the same check answered inside the store, and every stored budget
counter equals its sum recomputed from the usage events and debit entries."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from datetime import timedelta
from decimal import Decimal
from functools import partial
from pathlib import Path

import pytest

from allotment.api.services import Services
from allotment.config import Settings
from allotment.domain.budgets import roll_up
from allotment.domain.catalog import CreditCategory, Enforcement
from allotment.domain.periods import ResetPeriod
from allotment.domain.quantities import MICROS_PER_UNIT
from allotment.service.answers import CheckAnswer
from allotment.service.catalog import CatalogKind
from allotment.service.credits import DebitRequest, GrantRequest
from allotment.service.customers import SubscriptionRequest
from allotment.service.reservations import ReservationRequest
from allotment.service.usage import UsageBehavior, UsageReport

UNIT = MICROS_PER_UNIT
TREE = [("dept", None), ("team-a", "dept"), ("team-b", "dept"), ("agent-1", "team-a")]
TREE += [("agent-2", "team-b")]
ENTITIES = [entity for entity, _ in TREE]


def counters_against_the_truth(database: Path) -> list[str]:
    """Every budget counter whose stored figure differs from the sum over the truth."""
    db = sqlite3.connect(database)
    wrong = []
    counters = db.execute(
        "SELECT customer, kind, target, entity, period_start, period_end, used FROM budget_counters"
    ).fetchall()
    for customer, kind, target, entity, start, end, used in counters:
        if kind == "feature":
            rows = db.execute(
                "SELECT amount, entity_path FROM usage_events WHERE customer = ? AND feature = ?"
                " AND timestamp >= ? AND timestamp < ?",
                (customer, target, start, end),
            ).fetchall()
            sign = 1
        else:
            rows = db.execute(
                "SELECT amount, entity_path FROM ledger_entries WHERE customer = ?"
                " AND currency = ? AND type = 'debit' AND at >= ? AND at < ?",
                (customer, target, start, end),
            ).fetchall()
            sign = -1
        attributed = [(tuple(path.strip("/").split("/")) if path else (), a) for a, path in rows]
        truth = sign * roll_up(attributed).get(entity, 0)
        if truth != used:
            wrong.append(f"{kind} {target} {entity} [{start}, {end}): {used} != {truth}")
    db.close()
    return wrong


@pytest.mark.sqlite_file
def test_cached_budget_checks_agree_with_the_store(tmp_path: Path) -> None:
    database = tmp_path / "db.sqlite"
    services = Services.open(Settings(database_path=database, test_clock=True))
    clock = services.test_clock
    assert clock is not None
    entitlements = services.entitlements
    mismatches: list[str] = []
    served_from_memory = 0

    async def compare(label: str) -> None:
        nonlocal served_from_memory
        for entity in ENTITIES:
            for feature in ("req", "tok"):
                for requested in (None, UNIT, 7 * UNIT):
                    await entitlements.check("acme", feature, entity, requested)
                    cached = entitlements.check_cached("acme", feature, entity, requested)
                    exact = await services.runtime.store.run(
                        partial(
                            entitlements.check_in_job,
                            customer_id="acme",
                            feature_id=feature,
                            entity=entity,
                            requested=requested,
                        )
                    )
                    if not isinstance(cached, CheckAnswer):
                        continue  # a credit pool past its horizon: answered in the store
                    served_from_memory += 1
                    if cached != exact:
                        mismatches.append(
                            f"{label}: {entity} {feature} {requested}: {cached.budgets}"
                            f" {cached.access_denied_reason} != {exact.budgets}"
                            f" {exact.access_denied_reason}"
                        )
        mismatches.extend(f"{label}: {wrong}" for wrong in counters_against_the_truth(database))

    keys = iter(range(1_000_000))

    def key() -> str:
        return f"k{next(keys)}"

    async def scenario() -> None:
        catalog = services.catalog
        await catalog.put(CatalogKind.CURRENCY, "cr", {"name": "Credits"})
        await catalog.put(CatalogKind.FEATURE, "req", {"name": "Requests", "kind": "metered"})
        await catalog.put(CatalogKind.FEATURE, "tok", {"name": "Tokens", "kind": "metered"})
        await catalog.put(CatalogKind.PRODUCT, "p", {"name": "P"})
        price = {"currency": "cr", "per_unit": Decimal("0.3")}
        await catalog.put(
            CatalogKind.PLAN,
            "team",
            {
                "product": "p",
                "name": "Team",
                "entitlements": {
                    "req": {"limit": 1000, "reset": "month"},
                    "tok": {"limit": None, "credit_cost": price},
                },
                "credits": {"cr": {"amount": 100, "every": "day", "overdraft_limit": None}},
            },
        )
        await services.customers.put_customer("acme", name=None, metadata=None, billing_id=None)
        await services.customers.subscribe("acme", SubscriptionRequest(plan="team"))
        for entity, parent in TREE:
            await services.entities.put("acme", entity, parent=parent, kind=None, name=None)
        for entity in ENTITIES:
            for target, limit in (("req", 50), ("tok", 40), ("cr", 30)):
                await services.budgets.put(
                    "acme",
                    entity,
                    target,
                    limit=limit * UNIT,
                    reset=ResetPeriod.DAY,
                    enforcement=Enforcement.HARD,
                )
        await compare("setup")

        def usage(feature: str, amount: int, entity: str | None, **extra: object) -> UsageReport:
            return UsageReport("acme", feature, amount, key(), entity=entity, **extra)  # type: ignore[arg-type]

        steps: list[tuple[str, Callable[[], Awaitable[object]]]] = [
            ("usage", lambda: services.usage.report(usage("req", 3 * UNIT, "agent-1"))),
            ("priced usage", lambda: services.usage.report(usage("tok", 7 * UNIT, "agent-2"))),
            ("fractional cost", lambda: services.usage.report(usage("tok", 1, "agent-1"))),
            (
                "set without entity",
                lambda: services.usage.report(
                    usage("req", 1 * UNIT, None, behavior=UsageBehavior.SET)
                ),
            ),
            (
                "backdated",
                lambda: services.usage.report(
                    usage("req", 2 * UNIT, "agent-1", timestamp=clock.now() - timedelta(hours=30))
                ),
            ),
            (
                "unenforced overdraft",
                lambda: services.credits.debit(
                    "acme", "cr", DebitRequest(500 * UNIT, key(), entity="agent-1", enforce=False)
                ),
            ),
            (
                "grant pays back",
                lambda: services.credits.grant(
                    "acme", "cr", GrantRequest(600 * UNIT, CreditCategory.PAID, key())
                ),
            ),
            (
                "reserve priced",
                lambda: services.reservations.reserve(
                    ReservationRequest("acme", "tok", 2 * UNIT, key(), "agent-1", 600)
                ),
            ),
            (
                "reserve",
                lambda: services.reservations.reserve(
                    ReservationRequest("acme", "req", 4 * UNIT, key(), "agent-2", 600)
                ),
            ),
        ]
        for label, step in steps:
            await step()
            await compare(label)
        db = sqlite3.connect(database)
        live = [row[0] for row in db.execute("SELECT id FROM reservations WHERE ended_at IS NULL")]
        db.close()
        # The priced hold was refused: agent-1's overdraft debit already passed its credit budget.
        assert len(live) == 1
        for reservation in live:
            await services.reservations.commit(reservation, 3 * UNIT)
            await compare(f"commit {reservation}")
        await services.entities.put("acme", "agent-1", parent="team-b", kind=None, name=None)
        await compare("move")
        await services.usage.report(usage("req", 1 * UNIT, "agent-1"))
        await compare("usage after the move")
        await services.budgets.put(
            "acme",
            "team-b",
            "req",
            limit=50 * UNIT,
            reset=ResetPeriod.HOUR,
            enforcement=Enforcement.HARD,
        )
        await compare("reset changed")
        await services.budgets.delete("acme", "dept", "cr")
        await compare("budget deleted")
        clock.advance(86_400)
        await compare("next day")
        await services.usage.report(usage("tok", 5 * UNIT, "agent-2"))
        await compare("usage on the next day")

    try:
        asyncio.run(scenario())
    finally:
        services.close()
    assert not mismatches, "\n".join(mismatches[:20])
    assert served_from_memory > 500
