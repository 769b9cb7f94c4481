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
from allotment.domain.catalog import Catalog
from allotment.domain.changes import CatalogChanged, CustomerChanged
from allotment.domain.documents import add_document
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
