"""Two stores on one SQLite file (a second server, or `allotment demo` against a live one):
each notices the other's commits and drops what it cached, so no pool is overspent."""

from __future__ import annotations

import asyncio
from pathlib import Path

from allotment.api.services import Services
from allotment.config import Settings
from allotment.domain.catalog import CreditCategory
from allotment.domain.quantities import MICROS_PER_UNIT
from allotment.service.catalog import CatalogKind
from allotment.service.credits import DebitRequest, GrantRequest
from allotment.service.customers import SubscriptionRequest
from allotment.service.usage import UsageReport


def test_a_second_writer_is_noticed_and_nothing_is_overspent(tmp_path: Path) -> None:
    settings = Settings(database_path=tmp_path / "shared.db")
    first, second = Services.open(settings), Services.open(settings)
    credits = 100 * MICROS_PER_UNIT

    async def scenario() -> tuple[bool, bool, bool]:
        await first.catalog.put(CatalogKind.CURRENCY, "c", {"name": "C"})
        await first.catalog.put(CatalogKind.FEATURE, "f", {"name": "F", "kind": "boolean"})
        await first.catalog.put(CatalogKind.PRODUCT, "p", {"name": "P"})
        await first.catalog.put(
            CatalogKind.PLAN, "plan", {"product": "p", "name": "Plan", "entitlements": {"f": {}}}
        )
        await first.customers.put_customer("acme", name=None, metadata=None, billing_id=None)
        await first.credits.grant(
            "acme", "c", GrantRequest(credits, CreditCategory.PAID, idempotency_key="g")
        )
        await first.credits.balance("acme", "c")  # the first store caches the pool
        spent_elsewhere = await second.credits.debit(
            "acme", "c", DebitRequest(80 * MICROS_PER_UNIT, idempotency_key="b")
        )
        here = await first.credits.debit(
            "acme", "c", DebitRequest(80 * MICROS_PER_UNIT, idempotency_key="a")
        )
        await second.customers.subscribe("acme", SubscriptionRequest(plan="plan"))
        await first.catalog.put(CatalogKind.FEATURE, "g", {"name": "G", "kind": "boolean"})
        seen = await first.entitlements.check("acme", "f", None, None)
        return spent_elsewhere.applied, here.applied, seen.has_access

    try:
        elsewhere, here, subscribed = asyncio.run(scenario())
    finally:
        first.close()
        second.close()
    assert (elsewhere, here) == (True, False)
    assert subscribed  # the other store's subscription is seen after this store's next batch


def test_usage_counted_by_another_writer_holds_against_a_hard_limit(tmp_path: Path) -> None:
    settings = Settings(database_path=tmp_path / "shared.db")
    first, second = Services.open(settings), Services.open(settings)
    unit = MICROS_PER_UNIT

    def report(key: str, amount: int) -> UsageReport:
        return UsageReport("acme", "calls", amount * unit, key, enforce=True)

    async def scenario() -> tuple[bool, bool, bool, int]:
        await first.catalog.put(CatalogKind.FEATURE, "calls", {"name": "C", "kind": "metered"})
        await first.catalog.put(CatalogKind.PRODUCT, "p", {"name": "P"})
        limit = {"limit": 10, "reset": "month", "enforcement": "hard"}
        plan = {"product": "p", "name": "Plan", "entitlements": {"calls": limit}}
        await first.catalog.put(CatalogKind.PLAN, "plan", plan)
        await first.customers.put_customer("acme", name=None, metadata=None, billing_id=None)
        await first.customers.subscribe("acme", SubscriptionRequest(plan="plan"))
        mine = await first.usage.report(report("a", 6))  # the first store now counts the window
        theirs = await second.usage.report(report("b", 4))
        over = await first.usage.report(report("c", 1))
        after = await first.usage.report(report("d", 0))
        return mine.recorded, theirs.recorded, over.recorded, after.answer.current_usage

    try:
        mine, theirs, over, used = asyncio.run(scenario())
    finally:
        first.close()
        second.close()
    assert (mine, theirs, over) == (True, True, False)
    assert used == 10
