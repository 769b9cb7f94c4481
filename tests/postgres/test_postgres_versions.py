"""Two services on one PostgreSQL database publishing versions of one plan at once: every version
number is made once, each stored version is one of the definitions sent, and a publication that
lost the race is a clean 409 that changed nothing."""

from __future__ import annotations

import asyncio
from typing import Any

from allotment.api.services import Services
from allotment.domain.errors import Conflict
from allotment.domain.quantities import MICROS_PER_UNIT
from allotment.service.catalog import CatalogKind
from tests.postgres.test_postgres_limits import two_processes

RACING = 24


def definition(limit: int) -> dict[str, Any]:
    return {
        "product": "app",
        "name": "Racing",
        "entitlements": {"calls": {"limit": limit, "reset": "month", "enforcement": "hard"}},
    }


def test_two_processes_publishing_one_plan_make_each_version_once(
    migrated_postgres_url: str,
) -> None:
    async def scenario() -> tuple[list[Any], list[int]]:
        async with two_processes(migrated_postgres_url) as both:
            catalog = both[0].catalog
            await catalog.put(CatalogKind.FEATURE, "calls", {"name": "Calls", "kind": "metered"})
            await catalog.put(CatalogKind.PRODUCT, "app", {"name": "App"})
            await catalog.put(CatalogKind.PLAN, "racing", definition(1))
            await asyncio.sleep(0.2)  # the second process follows the first's catalog

            async def publish(n: int) -> Any:
                try:
                    view, _ = await both[n % 2].catalog.put(
                        CatalogKind.PLAN, "racing", definition(100 + n)
                    )
                except Conflict as refused:
                    return refused
                return view

            outcomes = await asyncio.gather(*(publish(n) for n in range(RACING)))
            # A fresh process reads what the database holds.
            fresh = Services.open(both[0].settings)
            try:
                limits = [
                    plan.entitlements["calls"].limit  # type: ignore[union-attr]
                    for plan in fresh.runtime.catalog.current.plan_versions["racing"]
                ]
            finally:
                fresh.close()
            return list(outcomes), limits

    outcomes, limits = asyncio.run(scenario())
    published = [o for o in outcomes if not isinstance(o, Conflict)]
    refused = [o for o in outcomes if isinstance(o, Conflict)]
    assert published, "no publication got through"
    assert len(published) + len(refused) == RACING
    # Version 1 and one version per publication that got through, numbered without a gap.
    assert len(limits) == 1 + len(published)
    assert sorted(view.version for view in published) == list(range(2, len(limits) + 1))
    by_version = {view.version: view.entitlements["calls"].limit for view in published}
    assert [by_version[v] for v in range(2, len(limits) + 1)] == [
        limit // MICROS_PER_UNIT for limit in limits[1:]
    ]
    assert all("another process" in error.message for error in refused)
