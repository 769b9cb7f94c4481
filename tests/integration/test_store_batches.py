"""Jobs of one batch: a job that fails leaves nothing that later jobs of the batch, the change
log or the cache can see; revisions stay gap-free around it."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from allotment.api.services import Services
from allotment.config import Settings
from allotment.domain.catalog import Catalog, CreditCategory
from allotment.domain.changes import CatalogChanged, CustomerChanged
from allotment.domain.documents import add_document
from allotment.domain.quantities import MICROS_PER_UNIT
from allotment.service.catalog import CatalogKind
from allotment.service.credits import DebitRequest, GrantRequest
from allotment.service.ports import StoredOutcome, UnitOfWork
from allotment.storage.sqlite.store import SqliteStore


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    opened = Services.open(Settings(database_path=tmp_path / "batches.db"))
    try:
        yield opened
    finally:
        opened.close()


class _Failed(Exception):
    pass


async def seed_pool(services: Services) -> datetime:
    """Customer acme with a pool of 100 tokens in one grant; the instant after."""
    await services.catalog.put(CatalogKind.CURRENCY, "tokens", {"name": "Tokens"})
    await services.customers.put_customer("acme", name="Acme", metadata=None, billing_id=None)
    grant = GrantRequest(100 * MICROS_PER_UNIT, CreditCategory.PAID, "seed")
    await services.credits.grant("acme", "tokens", grant)
    return services.runtime.clock.now()


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
        runtime.stage_catalog(uow, staged, [CatalogChanged("feature", "staged", feature)])
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


@pytest.mark.sqlite_file
def test_grant_figures_written_once_per_batch_survive_a_job_that_read_them_and_failed(
    services: Services, tmp_path: Path
) -> None:
    """A batch writes a grant's figures when it commits or before a job reads the grants; a job
    that failed after such a read took the write back with its savepoint, and the figures of the
    jobs before it must still reach the table."""
    runtime = services.runtime
    release = threading.Event()
    now = runtime.clock.now()  # set again once the grant exists

    def hold_the_thread(uow: UnitOfWork) -> None:
        release.wait(10)

    def debit(units: int) -> object:
        def job(uow: UnitOfWork) -> None:
            pool = uow.ledger.load_pool("acme", "tokens")
            pool.debit(units * MICROS_PER_UNIT, (), now)
            uow.ledger.save_pool("acme", "tokens", pool)

        return job

    def remaining(uow: UnitOfWork) -> list[int]:
        page = uow.ledger.list_grants("acme", "tokens", None, 10, None, now)
        return [grant.remaining for grant in page.items]

    def read_then_fail(uow: UnitOfWork) -> None:
        assert remaining(uow) == [90 * MICROS_PER_UNIT]  # an earlier job's, written for this read
        raise _Failed

    def debit_read_then_fail(uow: UnitOfWork) -> None:
        debit(20)(uow)  # type: ignore[operator]
        assert remaining(uow) == [70 * MICROS_PER_UNIT]  # written for this read, in this job
        raise _Failed

    async def scenario() -> list[object]:
        nonlocal now
        now = await seed_pool(services)
        blocker = asyncio.ensure_future(runtime.store.run(hold_the_thread))
        await asyncio.sleep(0.05)  # the store's thread is now inside the blocker's batch
        jobs = [
            asyncio.ensure_future(runtime.store.run(job))
            for job in (
                debit(10),
                read_then_fail,
                remaining,
                debit_read_then_fail,
                remaining,
                debit(5),
                debit(1),
                remaining,
            )
        ]
        await asyncio.sleep(0.05)  # all wait in the queue: they form the next batch
        release.set()
        await blocker
        return await asyncio.gather(*jobs, return_exceptions=True)

    outcomes = asyncio.run(scenario())

    assert isinstance(outcomes[1], _Failed)
    assert isinstance(outcomes[3], _Failed)
    assert outcomes[2] == outcomes[4] == [90 * MICROS_PER_UNIT]
    assert outcomes[7] == [84 * MICROS_PER_UNIT]
    assert runtime.store.run_blocking(
        lambda uow: uow.ledger.load_pool("acme", "tokens").balance
    ) == (84 * MICROS_PER_UNIT)
    with sqlite3.connect(tmp_path / "batches.db") as db:
        rows = db.execute("SELECT remaining FROM credit_grants WHERE customer = 'acme'").fetchall()
    assert rows == [(84 * MICROS_PER_UNIT,)]


@pytest.mark.sqlite_file
def test_a_batch_of_debits_on_one_grant_updates_it_once(services: Services) -> None:
    runtime = services.runtime
    release = threading.Event()
    statements: list[str] = []

    async def scenario() -> None:
        await services.catalog.put(CatalogKind.CURRENCY, "tokens", {"name": "Tokens"})
        await services.customers.put_customer("acme", name="Acme", metadata=None, billing_id=None)
        grant = GrantRequest(100 * MICROS_PER_UNIT, CreditCategory.PAID, "seed")
        await services.credits.grant("acme", "tokens", grant)
        await services.credits.debit("acme", "tokens", DebitRequest(MICROS_PER_UNIT, "warm"))
        blocker = asyncio.ensure_future(runtime.store.run(lambda uow: release.wait(10)))
        await asyncio.sleep(0.05)
        store = runtime.store
        assert isinstance(store, SqliteStore)
        connection = store._connection  # the writer's connection: what a job runs on
        connection.set_trace_callback(statements.append)
        debits = [
            asyncio.ensure_future(
                services.credits.debit("acme", "tokens", DebitRequest(MICROS_PER_UNIT, f"d{n}"))
            )
            for n in range(20)
        ]
        await asyncio.sleep(0.05)
        release.set()
        await blocker
        await asyncio.gather(*debits)
        connection.set_trace_callback(None)

    asyncio.run(scenario())
    updates = [s for s in statements if s.startswith("UPDATE credit_grants")]
    assert len(updates) == 1
    assert f"remaining = {79 * MICROS_PER_UNIT}" in updates[0]


@pytest.mark.sqlite_file
def test_idempotency_records_kept_for_the_commit_are_found_later_and_dropped_with_a_failed_job(
    services: Services, tmp_path: Path
) -> None:
    """A batch writes the records whose keys it found absent when it commits: later jobs of the
    batch find them, a failed job's goes with it (its key free for a later job), and a key saved
    twice still fails the second job."""
    runtime = services.runtime
    release = threading.Event()
    now = runtime.clock.now()
    first, second = StoredOutcome(b"fp1", b"1"), StoredOutcome(b"fp2", b"2")

    def claim(key: str, outcome: StoredOutcome, *, fail: bool = False) -> object:
        def job(uow: UnitOfWork) -> StoredOutcome | None:
            found = uow.outcomes.find("acme", "reservations", key)
            if found is None:
                uow.outcomes.save("acme", "reservations", key, outcome, now)
            if fail:
                raise _Failed
            return found

        return job

    def save_again(uow: UnitOfWork) -> None:
        uow.outcomes.save("acme", "reservations", "k1", second, now)

    async def scenario() -> list[object]:
        blocker = asyncio.ensure_future(runtime.store.run(lambda uow: release.wait(10)))
        await asyncio.sleep(0.05)  # the store's thread is now inside the blocker's batch
        jobs = [
            asyncio.ensure_future(runtime.store.run(job))  # type: ignore[arg-type]
            for job in (
                claim("k1", first),
                claim("k1", second),  # finds the first, kept for the commit
                claim("k2", first, fail=True),
                claim("k2", second),  # the failed job's record went with it
                save_again,  # k1 is taken: this job fails, the batch goes on
                claim("k3", first),
            )
        ]
        await asyncio.sleep(0.05)  # all wait in the queue: they form the next batch
        release.set()
        await blocker
        return await asyncio.gather(*jobs, return_exceptions=True)

    outcomes = asyncio.run(scenario())

    assert outcomes[0] is None
    assert outcomes[1] == first
    assert isinstance(outcomes[2], _Failed)
    assert outcomes[3] is None
    assert isinstance(outcomes[4], sqlite3.IntegrityError)
    assert outcomes[5] is None
    with sqlite3.connect(tmp_path / "batches.db") as db:
        rows = db.execute(
            "SELECT key, fingerprint FROM idempotency_records WHERE customer = 'acme' ORDER BY key"
        ).fetchall()
    assert rows == [("k1", b"fp1"), ("k2", b"fp2"), ("k3", b"fp1")]


@pytest.mark.sqlite_file
def test_a_batch_runs_under_one_savepoint_and_again_job_by_job_only_when_a_job_wrote_then_failed(
    services: Services, tmp_path: Path
) -> None:
    """Jobs run together; one that fails before writing a row is undone in memory and the
    batch goes on. One that fails after writing rows takes the batch back: it runs again job by
    job, and so does the batch after it. Each job's change is logged once, whichever way."""
    runtime = services.runtime
    store = runtime.store
    assert isinstance(store, SqliteStore)
    statements: list[str] = []
    now = runtime.clock.now()

    def log_a_change(customer: str) -> object:
        def job(uow: UnitOfWork) -> str:
            uow.record(CustomerChanged(customer))
            return customer

        return job

    def fail(uow: UnitOfWork) -> None:
        uow.record(CustomerChanged("never"))
        raise _Failed

    def write_then_fail(uow: UnitOfWork) -> None:
        uow.record(CustomerChanged("never"))
        uow.outcomes.save("acme", "reservations", "k", StoredOutcome(b"fp", b"1"), now)
        raise _Failed

    async def batch(*jobs: object) -> tuple[list[object], list[str]]:
        release = threading.Event()
        blocker = asyncio.ensure_future(runtime.store.run(lambda uow: release.wait(10)))
        await asyncio.sleep(0.05)  # the store's thread is now inside the blocker's batch
        running = [asyncio.ensure_future(runtime.store.run(job)) for job in jobs]  # type: ignore[arg-type]
        await asyncio.sleep(0.05)  # all wait in the queue: they form the next batch
        release.set()
        await blocker
        outcomes = await asyncio.gather(*running, return_exceptions=True)
        savepoints = [s for s in statements if s.startswith(("SAVEPOINT", "ROLLBACK TO"))]
        statements.clear()
        return outcomes, savepoints

    async def scenario() -> list[tuple[list[object], list[str]]]:
        store._connection.set_trace_callback(statements.append)
        try:
            return [
                await batch(log_a_change("a1"), fail, log_a_change("a2")),
                await batch(log_a_change("b1"), write_then_fail, log_a_change("b2")),
                await batch(log_a_change("c1"), log_a_change("c2")),
                await batch(log_a_change("d1"), log_a_change("d2")),
            ]
        finally:
            store._connection.set_trace_callback(None)

    failed_in_memory, failed_after_writing, after, together_again = asyncio.run(scenario())

    # Each list begins with the blocker's batch, which runs as the batch before it left things.
    outcomes, savepoints = failed_in_memory
    assert (outcomes[0], outcomes[2]) == ("a1", "a2")
    assert isinstance(outcomes[1], _Failed)
    assert savepoints == ["SAVEPOINT batch", "SAVEPOINT batch"]  # nothing taken back, no rerun
    outcomes, savepoints = failed_after_writing
    assert (outcomes[0], outcomes[2]) == ("b1", "b2")
    assert isinstance(outcomes[1], _Failed)
    assert savepoints == [
        "SAVEPOINT batch",
        "SAVEPOINT batch",
        "ROLLBACK TO batch",
        "SAVEPOINT job",
        "SAVEPOINT job",
        "ROLLBACK TO job",
        "SAVEPOINT job",
    ]
    # The blocker's batch, the first after that, ran job by job; nothing in it failed, so the
    # next ran together again.
    assert after == (["c1", "c2"], ["SAVEPOINT job", "SAVEPOINT batch"])
    assert together_again == (["d1", "d2"], ["SAVEPOINT batch", "SAVEPOINT batch"])
    with sqlite3.connect(tmp_path / "batches.db") as db:
        logged = [row[0] for row in db.execute("SELECT customer FROM change_log ORDER BY seq")]
        records = db.execute("SELECT COUNT(*) FROM idempotency_records").fetchone()[0]
    assert logged == ["a1", "a2", "b1", "b2", "c1", "c2", "d1", "d2"]
    assert records == 0


@pytest.mark.sqlite_file
def test_a_batch_taken_back_whole_leaves_pools_and_grants_as_committed_before_it(
    services: Services, tmp_path: Path
) -> None:
    """Jobs change the store's cached pools in place; when a job fails after writing rows and
    the whole batch is taken back, the batch runs again from what was committed: each debit is
    made once, in memory and in the tables."""
    runtime = services.runtime
    release = threading.Event()
    now = runtime.clock.now()

    def debit(units: int) -> object:
        def job(uow: UnitOfWork) -> int:
            pool = uow.ledger.load_pool("acme", "tokens")
            pool.debit(units * MICROS_PER_UNIT, (), now)
            uow.ledger.save_pool("acme", "tokens", pool)
            return pool.balance

        return job

    def write_then_fail(uow: UnitOfWork) -> None:
        debit(50)(uow)  # type: ignore[operator]
        raise _Failed

    async def scenario() -> list[object]:
        nonlocal now
        now = await seed_pool(services)
        await runtime.store.run(debit(1))  # the pool is now in the store's cache
        blocker = asyncio.ensure_future(runtime.store.run(lambda uow: release.wait(10)))
        await asyncio.sleep(0.05)
        jobs = [
            asyncio.ensure_future(runtime.store.run(job))  # type: ignore[arg-type]
            for job in (debit(10), write_then_fail, debit(5))
        ]
        await asyncio.sleep(0.05)
        release.set()
        await blocker
        outcomes = await asyncio.gather(*jobs, return_exceptions=True)
        outcomes.append(await runtime.store.run(debit(1)))  # from the cache again
        return outcomes

    outcomes = asyncio.run(scenario())

    unit = MICROS_PER_UNIT
    assert outcomes[0] == 89 * unit
    assert isinstance(outcomes[1], _Failed)
    assert outcomes[2] == 84 * unit
    assert outcomes[3] == 83 * unit
    with sqlite3.connect(tmp_path / "batches.db") as db:
        (remaining,) = db.execute("SELECT remaining FROM credit_grants").fetchone()
        debits = db.execute(
            "SELECT COUNT(*), -SUM(amount) FROM ledger_entries WHERE type = 'debit'"
        ).fetchone()
    assert remaining == 83 * unit
    assert debits == (4, 17 * unit)
