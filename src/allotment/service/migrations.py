"""Migrations: moving live subscriptions from some versions of a plan (or add-on) to another.

A migration writes, on each subscription it moves, the version it moves to and the instant it
does (``Move``): now, or the end of the subscription's current billing period. Nothing runs at
that instant: from it on, the subscription resolves with the new version, its answers say so,
and its caches expire there (``Holdings.next_change_after``). The period anchor and the usage
so far are kept (only the version changes), and recurring credits follow the version the
subscription was on when each period began (``service/credits.py``).

A subscription is chosen by the version it is on when the migration is made; a move already
waiting for it is replaced. Its history keeps the moves of the last year
(``holdings.MOVES_KEPT_FOR``), for the recurring credits of periods that began before them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal

from msgspec import UNSET

from allotment.domain.catalog import Catalog
from allotment.domain.errors import InvalidRequest, NotFound
from allotment.domain.events import EventType
from allotment.domain.holdings import Subscription
from allotment.domain.identifiers import new_id
from allotment.domain.periods import period_containing
from allotment.domain.timefmt import format_instant
from allotment.service.catalog import CatalogKind, label
from allotment.service.catalog_views import MigrationView
from allotment.service.customer_views import subscription_view
from allotment.service.events import emit, migration_timers
from allotment.service.ports import UnitOfWork
from allotment.service.runtime import Runtime

MigrateAt = Literal["now", "period_end"]


@dataclass(frozen=True, slots=True)
class MigrationRequest:
    at: MigrateAt
    from_versions: Sequence[int] | None = None  # None: every version older than the target
    to_version: int | None = None  # None: the latest


class MigrationService:
    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    async def migrate(
        self, kind: CatalogKind, object_id: str, request: MigrationRequest
    ) -> MigrationView:
        runtime = self._runtime

        def job(uow: UnitOfWork) -> MigrationView:
            catalog = runtime.catalog_in(uow)
            now = runtime.clock.now()
            target, sources = _versions(catalog, kind, object_id, request)
            if kind is CatalogKind.PLAN:
                live = uow.holdings.live_on_plan(object_id, now)
            else:
                live = uow.holdings.live_in_product(catalog.addons[object_id].product, now)
            moved: set[str] = set()
            waiting: list[tuple[str, str, datetime]] = []
            for subscription in live:
                changed = _moved(
                    catalog, kind, object_id, subscription, sources, target, request.at, now
                )
                if changed is not None:
                    uow.holdings.save_subscription(changed)
                    moved.add(subscription.id)
                    runtime.customer_changed(uow, subscription.customer)
                    at = _move_at(kind, object_id, changed, now)
                    if at is None:
                        view = subscription_view(changed, catalog, now)
                        emit(uow, EventType.SUBSCRIPTION_MIGRATED, changed.customer, view, now)
                    else:
                        waiting.append((changed.customer, changed.id, at))
            migration = MigrationView(
                id=new_id("mig"),
                plan=object_id if kind is CatalogKind.PLAN else UNSET,
                addon=object_id if kind is CatalogKind.ADDON else UNSET,
                from_versions=sorted(sources),
                to_version=target,
                at=request.at,
                subscriptions=len(moved),
                created_at=format_instant(now),
            )
            if waiting:  # completed once the last of them has moved
                last = max(at for _, _, at in waiting)
                migration_timers(uow, migration.id, waiting, last, migration)
            else:
                emit(uow, EventType.MIGRATION_COMPLETED, None, migration, now)
            return migration

        return await runtime.run(job)


def _versions(
    catalog: Catalog, kind: CatalogKind, object_id: str, request: MigrationRequest
) -> tuple[int, set[int]]:
    """The version to move to and the versions to move from, checked against the history."""
    history = (
        catalog.plan_versions.get(object_id)
        if kind is CatalogKind.PLAN
        else catalog.addon_versions.get(object_id)
    )
    if history is None:
        raise NotFound(f"no {label(kind)} {object_id!r}.", {"id": object_id})
    latest = len(history)
    target = latest if request.to_version is None else request.to_version
    if not 0 < target <= latest:
        raise InvalidRequest(
            f"to_version: {label(kind)} {object_id!r} has no version {target} (its latest is"
            f" {latest}).",
            {"field": "to_version"},
        )
    if request.from_versions is None:
        return target, set(range(1, target))
    sources = set(request.from_versions)
    if len(sources) != len(request.from_versions):
        raise InvalidRequest("from_versions names a version twice.", {"field": "from_versions"})
    unknown = sorted(v for v in sources if not 0 < v <= latest)
    if unknown:
        raise InvalidRequest(
            f"from_versions: {label(kind)} {object_id!r} has no version"
            f" {', '.join(map(str, unknown))} (its latest is {latest}).",
            {"field": "from_versions"},
        )
    if target in sources:
        raise InvalidRequest(
            f"from_versions names version {target}, the version to move to.",
            {"field": "from_versions"},
        )
    return target, sources


def _moved(
    catalog: Catalog,
    kind: CatalogKind,
    object_id: str,
    subscription: Subscription,
    sources: set[int],
    target: int,
    at: MigrateAt,
    now: datetime,
) -> Subscription | None:
    """The subscription with its move written, or None when it is on none of ``sources``."""
    when = now if at == "now" else _period_end(catalog, subscription, now)
    if kind is CatalogKind.PLAN:
        if subscription.plan_version_at(now) not in sources:
            return None
        versions = subscription.plan_versions.moved(target, when, now, mid_period=at == "now")
        return replace(subscription, plan_versions=versions)
    entries = list(subscription.addons)
    chosen = [i for i, entry in enumerate(entries) if entry.id == object_id]
    if not chosen or entries[chosen[0]].version_at(now) not in sources:
        return None
    entry = entries[chosen[0]]
    moved = entry.versions.moved(target, when, now, mid_period=at == "now")
    entries[chosen[0]] = replace(entry, versions=moved)
    return replace(subscription, addons=tuple(entries))


def _move_at(
    kind: CatalogKind, object_id: str, subscription: Subscription, now: datetime
) -> datetime | None:
    """When the move just written takes effect; None when it already has."""
    if kind is CatalogKind.PLAN:
        move = subscription.plan_versions.waiting(now)
        return None if move is None else move.at
    instants = [
        move.at
        for entry in subscription.addons
        if entry.id == object_id and (move := entry.versions.waiting(now)) is not None
    ]
    return max(instants) if instants else None


def _period_end(catalog: Catalog, subscription: Subscription, now: datetime) -> datetime:
    """The end of the subscription's billing period running at ``now`` (its first period, if
    it has not started yet)."""
    plan = catalog.plan_for(subscription.plan, subscription.plan_version_at(now))
    period = period_containing(
        subscription.anchor_at, plan.billing_period, max(now, subscription.starts_at)
    )
    # A billing period (a month or a year) always has an end.
    return period.end or subscription.starts_at + timedelta(days=366)
