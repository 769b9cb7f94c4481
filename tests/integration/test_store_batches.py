"""Jobs of one batch: a job that fails leaves nothing that later jobs of the batch, the change
log or the cache can see; revisions stay gap-free around it."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from allotment.api.services import Services
from allotment.config import Settings
from allotment.domain.catalog import Catalog, CreditCategory
from allotment.domain.changes import CatalogChanged, CustomerChanged
from allotment.domain.documents import add_document
from allotment.domain.quantities import MICROS_PER_UNIT
from allotment.service.catalog import CatalogKind
from allotment.service.credits import GrantRequest
from allotment.service.ports import UnitOfWork


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    opened = Services.open(Settings(database_path=tmp_path / "batches.db"))
    try:
        yield opened
    finally:
        opened.close()


class _Failed(Exception):
    pass


@pytest.mark.sqlite_file
def test_a_failed_job_leaves_nothing_visible_to_later_jobs_of_its_batch(
    services: Services, tmp_path: Path
) -> None:
    runtime = services.runtime
    feature = {"name": "Staged", "kind": "boolean"}
    release = threading.Event()

    def hold_the_thread(uow: UnitOfWork) -> None:
        release.wait(10)

    def stage_then_fail(uow: UnitOfWork) -> None:
        staged = add_document(runtime.catalog_in(uow), "feature", "staged", feature)
        runtime.stage_catalog(uow, staged, CatalogChanged("feature", "staged", feature))
        runtime.customer_changed(uow, "acme")
        raise _Failed

    def read_after(uow: UnitOfWork) -> tuple[Catalog, bool]:
        changed = "acme" in uow.scratch.get("changed_customers", frozenset())
        return runtime.catalog_in(uow), changed

    def log_a_change(uow: UnitOfWork) -> None:
        uow.record(CustomerChanged("umbrella"))

    async def scenario() -> tuple[Catalog, bool]:
        blocker = asyncio.ensure_future(runtime.store.run(hold_the_thread))
        await asyncio.sleep(0.05)  # the store's thread is now inside the blocker's batch
        failing = asyncio.ensure_future(runtime.store.run(stage_then_fail))
        reading = asyncio.ensure_future(runtime.store.run(read_after))
        logging = asyncio.ensure_future(runtime.store.run(log_a_change))
        await asyncio.sleep(0.05)  # all three wait in the queue: they form the next batch
        release.set()
        await blocker
        with pytest.raises(_Failed):
            await failing
        await logging
        return await reading

    catalog, customer_marked = asyncio.run(scenario())

    assert "staged" not in catalog.features
    assert not customer_marked
    assert "staged" not in runtime.catalog.current.features
    with sqlite3.connect(tmp_path / "batches.db") as db:
        logged = db.execute("SELECT seq, kind, customer FROM change_log ORDER BY seq").fetchall()
    assert [(kind, customer) for _, kind, customer in logged] == [("customer.changed", "umbrella")]
    assert [seq for seq, _, _ in logged] == list(range(1, len(logged) + 1))


@pytest.mark.sqlite_file
def test_a_failed_job_leaves_the_credit_pools_as_they_were_for_the_rest_of_its_batch(
    services: Services, tmp_path: Path
) -> None:
    runtime = services.runtime
    release = threading.Event()
    now = runtime.clock.now()

    def hold_the_thread(uow: UnitOfWork) -> None:
        release.wait(10)

    def spend_then_fail(uow: UnitOfWork) -> None:
        for customer in ("acme", "umbrella"):  # one pool cached before, one new to the batch
            pool = uow.ledger.load_pool(customer, "tokens")
            pool.debit(40 * MICROS_PER_UNIT, (), now)
            uow.ledger.save_pool(customer, "tokens", pool)
        raise _Failed

    def balances(uow: UnitOfWork) -> list[int]:
        return [uow.ledger.load_pool(c, "tokens").balance for c in ("acme", "umbrella")]

    async def scenario() -> list[int]:
        await services.catalog.put(CatalogKind.CURRENCY, "tokens", {"name": "Tokens"})
        for customer in ("acme", "umbrella"):
            await services.customers.put_customer(
                customer, name=customer, metadata=None, billing_id=None
            )
            grant = GrantRequest(100 * MICROS_PER_UNIT, CreditCategory.PAID, f"seed-{customer}")
            await services.credits.grant(customer, "tokens", grant)
        await runtime.store.run(lambda uow: uow.ledger.load_pool("acme", "tokens"))
        blocker = asyncio.ensure_future(runtime.store.run(hold_the_thread))
        await asyncio.sleep(0.05)  # the store's thread is now inside the blocker's batch
        failing = asyncio.ensure_future(runtime.store.run(spend_then_fail))
        reading = asyncio.ensure_future(runtime.store.run(balances))
        await asyncio.sleep(0.05)  # both wait in the queue: they form the next batch
        release.set()
        await blocker
        with pytest.raises(_Failed):
            await failing
        return await reading

    in_the_batch = asyncio.run(scenario())
    after_it = runtime.store.run_blocking(balances)

    assert in_the_batch == after_it == [100 * MICROS_PER_UNIT, 100 * MICROS_PER_UNIT]
    with sqlite3.connect(tmp_path / "batches.db") as db:
        (debits,) = db.execute(
            "SELECT COUNT(*) FROM ledger_entries WHERE type = 'debit'"
        ).fetchone()
    assert debits == 0
