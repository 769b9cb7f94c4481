"""What a credit pool's history costs its debits and reads: nothing. Counted, never timed.

Pools are built through the service's jobs with a short and a long history (used-up grants
and their entries), then each operation is counted through the storage port: the calls made to
the ledger repository, the grants they hand over and write, and the entries they read. On
SQLite, the statements a debit runs are counted too, and the query plans of the reads checked.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from allotment.api.services import Services
from allotment.config import Settings
from allotment.domain.catalog import CreditCategory
from allotment.domain.credits import EntryContext, Grant, replay, revenue_totals
from allotment.domain.identifiers import new_id
from allotment.domain.quantities import MICROS_PER_UNIT
from allotment.service.catalog import CatalogKind
from allotment.service.credits import DebitRequest
from allotment.service.ports import UnitOfWork
from allotment.storage.sqlite import grants as grant_rows
from allotment.storage.sqlite.store import SqliteStore

UNIT = MICROS_PER_UNIT
CUSTOMER, CURRENCY = "acme", "credits"
SMALL, LARGE = (10, 10), (10_000, 1_000)  # (used-up grants, live grants)


@pytest.fixture
def open_services(tmp_path: Path) -> Iterator[Callable[[str], Services]]:
    opened: list[Services] = []

    def open_one(name: str) -> Services:
        services = Services.open(Settings(database_path=tmp_path / f"{name}.db"))
        opened.append(services)
        return services

    yield open_one
    for services in opened:
        services.close()


def build(services: Services, used_up: int, live: int) -> None:
    """One customer's pool: ``used_up`` grants of 1 credit drained by one debit, then ``live``
    grants of 10 credits, cost basis 0.5, burning after them."""

    async def setup() -> None:
        await services.catalog.put(CatalogKind.CURRENCY, CURRENCY, {"name": "Credits"})
        await services.customers.put_customer(CUSTOMER, name="Acme", metadata=None, billing_id=None)

    asyncio.run(setup())
    credits, runtime = services.credits, services.runtime

    def job(uow: UnitOfWork) -> None:
        now = runtime.clock.now()
        pool = credits.settled_pool(uow, CUSTOMER, CURRENCY, now)
        for n in range(used_up + live):
            pool.include(
                Grant(
                    id=new_id("grant"),
                    amount=(1 if n < used_up else 10) * UNIT,
                    category=CreditCategory.PAID,
                    cost_basis=UNIT // 2,
                    priority=0 if n < used_up else 1,
                    effective_at=now,
                    expires_at=None,
                    created_at=now,
                )
            )
        pool.settle(now)
        pool.debit(used_up * UNIT, pool.burn_order, now, EntryContext("drain"))
        credits.save(uow, CUSTOMER, CURRENCY, pool, now)

    runtime.store.run_blocking(job)


class PortCounts:
    """Calls to the ledger repository, with the grants and entries they move."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.grants_handed_over = 0  # by load_pool
        self.grants_written = 0  # by save_pool
        self.entries_written = 0
        self.rows_listed = 0  # by list_grants and list_entries

    def reset(self) -> None:
        self.__init__()  # type: ignore[misc]


@pytest.fixture
def counts(monkeypatch: pytest.MonkeyPatch) -> Callable[[Services], PortCounts]:
    def attach(services: Services) -> PortCounts:
        ledger = services.runtime.store.run_blocking(lambda uow: type(uow.ledger))
        counted = PortCounts()

        def wrap(name: str, tally: Callable[..., None]) -> None:
            original = getattr(ledger, name)

            def call(self: Any, *args: Any) -> Any:
                counted.calls[name] += 1
                if name == "save_pool":  # before it stores (and forgets) what changed
                    tally(args[2])
                result = original(self, *args)
                if name != "save_pool":
                    tally(result)
                return result

            monkeypatch.setattr(ledger, name, call)

        def handed_over(pool: Any) -> None:
            counted.grants_handed_over += len(pool.grants)

        def written(pool: Any) -> None:
            counted.grants_written += len(pool.changed_grants())
            counted.entries_written += len(pool.entries)

        def listed(page: Any) -> None:
            counted.rows_listed += len(page.items)

        wrap("load_pool", handed_over)
        wrap("save_pool", written)
        wrap("list_grants", listed)
        wrap("list_entries", listed)
        wrap("get_grant", lambda _: None)
        wrap("grant_exists", lambda _: None)
        return counted

    return attach


def debit(services: Services, credits: int, key: str) -> Any:
    request = DebitRequest(amount=credits * UNIT, idempotency_key=key)
    return asyncio.run(services.credits.debit(CUSTOMER, CURRENCY, request))


@pytest.mark.parametrize(("used_up", "live"), [SMALL, LARGE], ids=["short", "long"])
def test_a_debit_hands_over_the_live_grants_and_writes_what_it_drew_from(
    open_services: Callable[[str], Services],
    counts: Callable[[Services], PortCounts],
    used_up: int,
    live: int,
) -> None:
    services = open_services("pool")
    build(services, used_up, live)
    counted = counts(services)
    # Debits of 25 from grants of 10: three entries each (10 + 10 + 5, 5 + 10 + 10, ...), and
    # the grants they drain leave the pool.
    for n, left in enumerate([live, live - 2, live - 5]):
        counted.reset()
        answer = debit(services, 25, f"d{n}")
        assert answer.applied
        assert len(answer.entries) == 3
        assert counted.calls == {"load_pool": 1, "save_pool": 1}
        assert counted.grants_handed_over == left
        assert (counted.grants_written, counted.entries_written, counted.rows_listed) == (3, 3, 0)


@pytest.mark.parametrize(("used_up", "live"), [SMALL, LARGE], ids=["short", "long"])
def test_reads_of_a_pool_read_what_they_answer(
    open_services: Callable[[str], Services],
    counts: Callable[[Services], PortCounts],
    used_up: int,
    live: int,
) -> None:
    services = open_services("pool")
    build(services, used_up, live)
    debit(services, 5, "d1")
    counted = counts(services)
    credits = services.credits

    balance = asyncio.run(credits.balance(CUSTOMER, CURRENCY))
    assert len(balance.grants) == live  # the live grants only
    assert counted.calls == {"load_pool": 1, "save_pool": 1}
    assert counted.grants_written == counted.rows_listed == 0

    counted.reset()
    revenue = asyncio.run(credits.revenue(CUSTOMER, CURRENCY))
    assert counted.calls == {"load_pool": 1, "save_pool": 1}  # no entry read
    assert revenue.recognized == Decimal(used_up + 5) / 2

    counted.reset()
    page = asyncio.run(credits.ledger(CUSTOMER, CURRENCY, None, 100))
    assert counted.calls == {"load_pool": 1, "save_pool": 1, "list_entries": 1}
    assert counted.rows_listed == len(page.items) == min(100, 2 * used_up + live + 1)

    counted.reset()
    grants = asyncio.run(credits.grants(CUSTOMER, CURRENCY, None, 100))
    assert counted.calls == {"load_pool": 1, "save_pool": 1, "list_grants": 1}
    assert counted.rows_listed == len(grants.items) == min(100, used_up + live)


def test_revenue_kept_with_the_pool_is_what_its_ledger_replays_to(
    open_services: Callable[[str], Services],
) -> None:
    services = open_services("pool")
    build(services, 50, 20)
    for n in range(5):
        debit(services, 7 + n, f"d{n}")

    def rebuild(uow: UnitOfWork) -> tuple[object, object]:
        records, after = [], None
        while True:
            page = uow.ledger.list_entries(CUSTOMER, CURRENCY, after, 1000)
            records.extend(page.items)
            if page.next_cursor is None:
                break
            after = page.next_cursor
        grants, after = {}, None
        while True:
            listed = uow.ledger.list_grants(
                CUSTOMER, CURRENCY, after, 1000, None, services.runtime.clock.now()
            )
            grants.update((g.id, g) for g in listed.items)
            if listed.next_cursor is None:
                break
            after = listed.next_cursor
        state = replay((r.entry.type, r.entry.grant, r.entry.amount) for r in records)
        return uow.ledger.load_pool(CUSTOMER, CURRENCY).revenue, revenue_totals(grants, state)

    kept, rebuilt = services.runtime.store.run_blocking(rebuild)
    assert kept == rebuilt


# ---------------------------------------------------------------- SQLite: statements and plans


def statements_of(services: Services, action: Callable[[], object]) -> list[str]:
    store = services.runtime.store
    assert isinstance(store, SqliteStore)
    connection = store._connection  # the writer's connection: what a job runs on
    ran: list[str] = []
    connection.set_trace_callback(ran.append)
    try:
        action()
    finally:
        connection.set_trace_callback(None)
    return ran


def statements_at_both_sizes(
    open_services: Callable[[str], Services], action: Callable[[Services], object]
) -> tuple[list[str], list[str]]:
    """The statements ``action`` runs on a pool with a short history and on one with a long
    one, each built and warmed by a first debit."""
    ran = []
    for name, (used_up, live) in (("short", SMALL), ("long", LARGE)):
        services = open_services(name)
        build(services, used_up, live)
        debit(services, 1, "warm")
        ran.append(statements_of(services, lambda s=services: action(s)))
    short, long = ran
    return short, long


@pytest.mark.sqlite_file
def test_a_debit_runs_as_many_statements_whatever_the_pools_history(
    open_services: Callable[[str], Services],
) -> None:
    short, long = statements_at_both_sizes(
        open_services, lambda services: debit(services, 25, "d1")
    )
    assert len(short) == len(long)
    assert not [sql for sql in long if "FROM credit_grants" in sql]  # the pool is kept
    # The three grants it spends from, each with a narrow UPDATE (the table holds them), and
    # its three entries, and the pool's row once (its revenue moved: the grants cost 0.5).
    grant_writes = [sql for sql in long if "credit_grants" in sql]
    entry_writes = [sql for sql in long if "INTO ledger_entries" in sql]
    assert [sql.split(" SET ")[0] for sql in grant_writes] == ["UPDATE credit_grants"] * 3
    assert len(entry_writes) == 3
    assert len([sql for sql in long if "credit_pools" in sql]) == 1


@pytest.mark.sqlite_file
def test_revenue_of_a_kept_pool_touches_none_of_its_tables_whatever_its_history(
    open_services: Callable[[str], Services],
) -> None:
    short, long = statements_at_both_sizes(
        open_services, lambda services: asyncio.run(services.credits.revenue(CUSTOMER, CURRENCY))
    )
    assert short == long
    # Only the batch's own statements: the pool, its row and its figures are kept in memory,
    # and a read that changes nothing stores nothing.
    tables = ("credit_", "ledger_", "customers", "change_log (")
    assert not [sql for sql in long if any(table in sql for table in tables)]
    assert not [sql for sql in long if sql.startswith(("INSERT", "UPDATE", "DELETE"))]


@pytest.mark.sqlite_file
def test_a_pool_loaded_from_the_tables_reads_its_live_grants_through_their_index(
    open_services: Callable[[str], Services], tmp_path: Path
) -> None:
    services = open_services("pool")
    build(services, *LARGE)
    services.close()
    again = open_services("pool")  # a cold store: nothing kept
    ran = statements_of(again, lambda: debit(again, 25, "d1"))
    reads = [sql for sql in ran if "FROM credit_grants" in sql]
    assert len(reads) == 1
    assert grant_rows.LIVE in reads[0]
    loaded = again.runtime.store.run_blocking(
        lambda uow: len(uow.ledger.load_pool(CUSTOMER, CURRENCY).grants)
    )
    assert loaded == LARGE[1] - 2

    with sqlite3.connect(tmp_path / "pool.db") as db:

        def plan(sql: str, params: dict[str, Any]) -> str:
            return " | ".join(row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {sql}", params))

        pool = {"customer": CUSTOMER, "currency": CURRENCY}
        live = plan(
            f"SELECT {grant_rows.COLUMNS} FROM credit_grants WHERE customer = :customer"
            f" AND currency = :currency AND {grant_rows.LIVE} ORDER BY seq",
            pool,
        )
        assert "USING INDEX credit_grants_live" in live
        ledger = plan(
            "SELECT seq, id FROM ledger_entries WHERE customer = :customer"
            " AND currency = :currency AND seq > :after ORDER BY seq LIMIT 101",
            {**pool, "after": 0},
        )
        assert "INDEX ledger_entries_by_pool (customer=? AND currency=? AND seq>?)" in ledger
        for status in [None, *grant_rows.STATUS]:
            where = "" if status is None else f" AND {grant_rows.STATUS[status]}"
            listed = plan(
                f"SELECT seq FROM credit_grants WHERE customer = :customer"
                f" AND currency = :currency AND seq > :after{where} ORDER BY seq LIMIT 101",
                {**pool, "after": 0, "now": 0},
            )
            assert "SEARCH credit_grants USING" in listed
            assert "TEMP B-TREE" not in listed
        for found in (live, ledger):
            assert "SCAN" not in found
            assert "TEMP B-TREE" not in found
