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
from allotment.service.customers import SubscriptionRequest
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


def test_a_child_is_never_published_on_a_parent_version_another_process_replaced(
    migrated_postgres_url: str,
) -> None:
    """B still knows the parent's version 1 when A publishes version 2: B's child, published on
    what it knows, would fold a version that is no longer the latest, and nothing would ever
    republish it. B's publication is refused instead (and succeeds once B follows)."""

    async def scenario() -> tuple[Any, int, int]:
        async with two_processes(migrated_postgres_url) as (first, second):
            await first.catalog.put(CatalogKind.FEATURE, "calls", {"name": "C", "kind": "metered"})
            await first.catalog.put(CatalogKind.PRODUCT, "app", {"name": "App"})
            await first.catalog.put(CatalogKind.PLAN, "parent", definition(1))
            await asyncio.sleep(0.2)  # the second process follows the parent's version 1
            # The second stops following for a moment: its catalog stays at version 1.
            store = second.runtime.store
            follow = store._follow  # type: ignore[attr-defined]
            store._follow = lambda *args, **kwargs: None  # type: ignore[attr-defined]
            try:
                await first.catalog.put(CatalogKind.PLAN, "parent", definition(2))
                child = {"product": "app", "name": "Child", "parent": "parent"}
                try:
                    await second.catalog.put(CatalogKind.PLAN, "child", child)
                    refused: Any = None
                except Conflict as error:
                    refused = error
            finally:
                store._follow = follow  # type: ignore[attr-defined]
            await asyncio.sleep(0.2)
            view, _ = await second.catalog.put(CatalogKind.PLAN, "child", child)
            return refused, view.parent_version, view.version

    refused, parent_version, version = asyncio.run(scenario())
    assert isinstance(refused, Conflict)
    assert (parent_version, version) == (2, 1)


def test_a_subscription_on_a_version_not_yet_followed_is_read_without_failing(
    migrated_postgres_url: str,
) -> None:
    """A subscribes acme on a version B has not followed yet: B's reads of acme answer (with the
    newest version it knows for the plan's terms) instead of failing."""

    async def scenario() -> tuple[Any, Any]:
        async with two_processes(migrated_postgres_url) as (first, second):
            await first.catalog.put(CatalogKind.FEATURE, "calls", {"name": "C", "kind": "metered"})
            await first.catalog.put(CatalogKind.PRODUCT, "app", {"name": "App"})
            await first.catalog.put(CatalogKind.PLAN, "plan", definition(1))
            await asyncio.sleep(0.2)
            store = second.runtime.store
            follow = store._follow  # type: ignore[attr-defined]
            store._follow = lambda *args, **kwargs: None  # type: ignore[attr-defined]
            try:
                await first.catalog.put(CatalogKind.PLAN, "plan", definition(2))
                await first.customers.put_customer(
                    "acme", name=None, metadata=None, billing_id=None
                )
                await first.customers.subscribe("acme", SubscriptionRequest(plan="plan"))
                listed = await second.customers.list_subscriptions("acme", None, 10)
                checked = await second.entitlements.check("acme", "calls", None, None)
            finally:
                store._follow = follow  # type: ignore[attr-defined]
            return listed, checked

    listed, checked = asyncio.run(scenario())
    assert [s.plan_version for s in listed.items] == [2]
    assert checked.has_access
