"""The memory adapter where it goes past the contract suite: ``memory:`` URLs, the service on it
end to end, the log's retention, and a store that falls behind what the log keeps."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from allotment.api.services import Services
from allotment.bootstrap import UnsupportedDatabase, open_store
from allotment.config import Settings
from allotment.domain.changes import CustomerChanged, LoggedChange
from allotment.domain.customers import Customer
from allotment.domain.quantities import MICROS_PER_UNIT
from allotment.service.catalog import CatalogKind
from allotment.service.customers import SubscriptionRequest
from allotment.service.ports import Published, Store, UnitOfWork
from allotment.service.projector import CatalogLoaded, Forget
from allotment.service.usage import UsageReport
from allotment.storage.memory import MemoryDatabase, MemoryStore, forget_shared_databases

T0 = datetime(2026, 3, 2, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _forget_named_databases() -> None:
    forget_shared_databases()


def test_the_service_runs_on_a_memory_database() -> None:
    services = Services.open(Settings(database_url="memory:"))
    unit = MICROS_PER_UNIT

    async def scenario() -> tuple[int, bytes, int]:
        await services.catalog.put(CatalogKind.FEATURE, "calls", {"name": "C", "kind": "metered"})
        await services.catalog.put(CatalogKind.PRODUCT, "p", {"name": "P"})
        plan = {"product": "p", "name": "Plan", "entitlements": {"calls": {"limit": 10}}}
        await services.catalog.put(CatalogKind.PLAN, "plan", plan)
        await services.customers.put_customer("acme", name=None, metadata=None, billing_id=None)
        await services.customers.subscribe("acme", SubscriptionRequest(plan="plan"))
        before = await services.entitlements.check("acme", "calls", None, None)
        reported = await services.usage.report(UsageReport("acme", "calls", 4 * unit, "k1"))
        after = await services.entitlements.check("acme", "calls", None, None)
        assert before.remaining is not None
        assert after.remaining is not None
        return before.remaining, reported, after.remaining

    try:
        before, reported, after = asyncio.run(scenario())
    finally:
        services.close()
    assert (before, after) == (10, 6)
    assert (reported.recorded, reported.answer.current_usage) == (True, 4)


def opened(url: str) -> MemoryStore:
    store = open_store(Settings(database_url=url))
    assert isinstance(store, MemoryStore)
    return store


def save_acme(uow: UnitOfWork) -> None:
    uow.customers.save(Customer("acme", None, created_at=T0, updated_at=T0))


def test_memory_urls_open_a_database_of_their_own_or_a_named_one() -> None:
    own, other = opened("memory:"), opened("memory://")
    own.run_blocking(save_acme)
    assert other.run_blocking(lambda uow: uow.customers.get("acme")) is None
    assert (own.strict_holds, other.strict_holds) == (True, True)

    named = opened("memory://shared")
    named.run_blocking(save_acme)
    named.close()
    again = opened("memory://shared?strict_holds=0")
    assert again.run_blocking(lambda uow: uow.customers.get("acme")) is not None
    assert not again.strict_holds
    for store in (own, other, again):
        store.close()


@pytest.mark.parametrize("url", ["memory:?strict_holds=yes", "memory://x?cache=1"])
def test_a_memory_url_with_an_unknown_option_is_refused(url: str) -> None:
    with pytest.raises(UnsupportedDatabase):
        open_store(Settings(database_url=url))


def record(store: Store, name: str) -> None:
    store.run_blocking(lambda uow: uow.record(CustomerChanged(name)))


def test_the_log_drops_what_is_older_than_its_retention_but_its_newest_entry() -> None:
    store = MemoryStore(log_retention=timedelta(hours=1))
    for name in "abcde":
        record(store, name)
    assert store.prune() == 0  # all younger than an hour
    assert store.prune(datetime.now(UTC) + timedelta(hours=2)) == 4
    assert asyncio.run(store.log_bounds()) == (5, 5)
    record(store, "f")
    assert [logged.seq for logged in asyncio.run(store.read_log(0, 10))] == [5, 6]
    store.close()


def test_a_store_that_fell_behind_the_log_forgets_and_reloads() -> None:
    database = MemoryDatabase()
    writer = MemoryStore(timedelta(hours=1), database)
    follower = MemoryStore(timedelta(hours=1), database)
    heard: list[Published] = []
    busy, release = threading.Event(), threading.Event()

    def slow_sink(published: Sequence[Published]) -> None:
        if not busy.is_set():  # the first hand-over keeps the follower's thread busy
            busy.set()
            release.wait(10)
        heard.extend(published)

    follower.subscribe(slow_sink)
    blocked = threading.Thread(target=record, args=(follower, "mine"))
    blocked.start()
    busy.wait(10)  # the follower reads the log again only once its sink returns
    feature = b'{"name": "Calls", "kind": "metered"}'
    writer.run_blocking(lambda uow: uow.catalog.save_object("feature", "calls", feature, T0))
    for name in "abc":
        record(writer, name)
    assert writer.prune(datetime.now(UTC) + timedelta(hours=2)) == 3
    release.set()
    blocked.join()
    follower.follow()
    # Forget first; the rest of the log; the catalog whole at the end, as the same read sees it.
    assert [type(item) for item in heard] == [LoggedChange, Forget, LoggedChange, CatalogLoaded]
    loaded = heard[-1]
    assert isinstance(loaded, CatalogLoaded)
    assert list(loaded.catalog.features) == ["calls"]
    rest = heard[2]
    assert isinstance(rest, LoggedChange)
    assert (rest.seq, rest.change) == (4, CustomerChanged("c"))
    assert follower.last_seq == 4
    writer.close()
    follower.close()
