"""Everything the HTTP shell calls, built once from the settings."""

from __future__ import annotations

from dataclasses import dataclass

from allotment.api.memory import CacheFreezer
from allotment.bootstrap import open_store
from allotment.config import Settings
from allotment.service.budgets import BudgetService
from allotment.service.catalog import CatalogService
from allotment.service.catalog_document import CatalogDocumentService
from allotment.service.clock import SystemClock, TestClock
from allotment.service.credits import CreditService
from allotment.service.customers import CustomerService
from allotment.service.entities import EntityService
from allotment.service.entitlements import EntitlementService
from allotment.service.feed import ChangeFeed
from allotment.service.keys import KeyService
from allotment.service.migrations import MigrationService
from allotment.service.projector import CacheState
from allotment.service.reservations import ReservationService
from allotment.service.runtime import Runtime
from allotment.service.snapshots import SnapshotCache
from allotment.service.time_events import TimeEvents
from allotment.service.usage import UsageService
from allotment.service.webhook_delivery import WebhookDelivery
from allotment.service.webhooks import WebhookService


@dataclass(slots=True)
class Services:
    settings: Settings
    runtime: Runtime
    catalog: CatalogService
    catalog_document: CatalogDocumentService
    migrations: MigrationService
    customers: CustomerService
    entitlements: EntitlementService
    usage: UsageService
    keys: KeyService
    credits: CreditService
    reservations: ReservationService
    entities: EntityService
    budgets: BudgetService
    test_clock: TestClock | None
    feed: ChangeFeed
    webhooks: WebhookService
    time_events: TimeEvents
    delivery: WebhookDelivery
    freezer: CacheFreezer | None = None  # None when ``gc_freeze`` is off

    @classmethod
    def open(cls, settings: Settings) -> Services:
        store = open_store(settings)
        test_clock = TestClock() if settings.test_clock else None
        cache = CacheState(snapshots=SnapshotCache(settings.cache_customers))
        runtime = Runtime(store=store, clock=test_clock or SystemClock(), cache=cache)
        credits = CreditService(runtime)
        services = cls(
            settings=settings,
            runtime=runtime,
            catalog=CatalogService(runtime),
            catalog_document=CatalogDocumentService(runtime),
            migrations=MigrationService(runtime),
            customers=CustomerService(runtime),
            entitlements=EntitlementService(runtime, credits),
            usage=UsageService(runtime, credits),
            keys=KeyService(runtime),
            credits=credits,
            reservations=ReservationService(runtime, credits),
            entities=EntityService(runtime),
            budgets=BudgetService(runtime),
            test_clock=test_clock,
            feed=ChangeFeed(store),
            webhooks=WebhookService(runtime, allow_private=settings.webhook_private_addresses),
            time_events=TimeEvents(runtime, credits),
            delivery=WebhookDelivery(runtime, allow_private=settings.webhook_private_addresses),
        )

        # Snapshots are exact at the revision the store has handed over, whose changes the
        # empty cache needs none of (``GET .../state`` names it).
        cache.revision = store.last_seq
        store.subscribe(runtime.project)
        store.subscribe(services.feed.publish)
        if settings.gc_freeze:  # collections that do not grow with the cache (``memory.py``)
            services.freezer = CacheFreezer(runtime.snapshots)
            store.subscribe(services.freezer.after_batch)
        services.catalog.load()
        services.keys.load(settings.admin_key)
        return services

    def close(self) -> None:
        self.runtime.store.close()
