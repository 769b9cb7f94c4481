"""Checks of credit-priced features come from memory once the pool's figures are cached, and
always agree with the same check answered inside the store."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from allotment.api.services import Services
from allotment.config import Settings
from allotment.domain.catalog import CreditCategory
from allotment.domain.quantities import MICROS_PER_UNIT
from allotment.service.answers import CheckAnswer
from allotment.service.catalog import CatalogKind
from allotment.service.credits import DebitRequest, GrantRequest
from allotment.service.customers import SubscriptionRequest
from allotment.service.reservations import ReservationRequest

UNIT = MICROS_PER_UNIT


def test_cached_credit_checks_agree_with_the_store(tmp_path: Path) -> None:
    services = Services.open(Settings(database_path=tmp_path / "db.sqlite", test_clock=True))
    clock = services.test_clock
    assert clock is not None
    entitlements = services.entitlements

    async def both(requested: int | None) -> tuple[CheckAnswer, CheckAnswer]:
        """The cached answer (after at most one store load) and the store's answer."""
        await entitlements.check("acme", "tokens", None, requested)
        cached = entitlements.check_cached("acme", "tokens", None, requested)
        assert isinstance(cached, CheckAnswer), cached
        exact = await services.runtime.store.run(
            lambda session: entitlements.check_in_job(session, "acme", "tokens", None, requested)
        )
        return cached, exact

    async def scenario() -> None:
        catalog = services.catalog
        await catalog.put(CatalogKind.CURRENCY, "cr", {"name": "Credits"})
        await catalog.put(CatalogKind.FEATURE, "tokens", {"name": "Tokens", "kind": "metered"})
        await catalog.put(CatalogKind.PRODUCT, "p", {"name": "P"})
        await catalog.put(
            CatalogKind.PLAN,
            "team",
            {
                "product": "p",
                "name": "Team",
                "entitlements": {
                    "tokens": {"limit": None, "credit_cost": {"currency": "cr", "per_unit": 1}}
                },
                "credits": {"cr": {"amount": 100, "every": "day"}},
            },
        )
        await services.customers.put_customer("acme", name=None, metadata=None, billing_id=None)
        await services.customers.subscribe("acme", SubscriptionRequest(plan="team"))
        steps = [
            lambda: services.credits.debit("acme", "cr", DebitRequest(30 * UNIT, "d1")),
            lambda: services.credits.grant(
                "acme",
                "cr",
                GrantRequest(
                    5 * UNIT,
                    CreditCategory.PROMOTIONAL,
                    "g1",
                    expires_at=clock.now() + timedelta(hours=2),
                ),
            ),
            lambda: services.reservations.reserve(
                ReservationRequest("acme", "tokens", 20 * UNIT, "r1", ttl_seconds=600)
            ),
        ]
        for step in steps:
            await step()
            for requested in (None, UNIT, 75 * UNIT, 200 * UNIT):
                cached, exact = await both(requested)
                assert cached == exact
        for seconds in (600, 3 * 3600, 86400):  # the hold ends, the promo expires, a new day
            clock.advance(seconds)
            cached, exact = await both(UNIT)
            assert cached == exact
        assert exact.credits == {"currency": "cr", "cost": 1, "available": 100}

    try:
        asyncio.run(scenario())
    finally:
        services.close()
