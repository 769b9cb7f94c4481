"""The contract of a pool's grants as pools grow: a pool loads its live grants only; ended ones
(voided, expired, used up) are read by id or a page at a time, filtered by status exactly as
``Grant.status`` says; revenue is stored with the pool as its ledger replays it; and a debit in
a pool with a long history loads the live grants and writes only what it touched."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

import pytest

from allotment.domain.credits import (
    EntryContext,
    Grant,
    GrantStatus,
    Pool,
    RevenueTotals,
    replay,
    revenue_totals,
)
from allotment.service.ports import UnitOfWork
from tests.contract.kit import (
    T0,
    ContractStore,
    all_pages,
    at,
    every_grant,
    grant,
    run,
    save_pool,
)

UNIT = 1_000_000
ORDER = ("priority", "created")


def loaded(store: ContractStore, customer_id: str = "acme", currency: str = "credits") -> Pool:
    return run(store, lambda uow: uow.ledger.load_pool(customer_id, currency))


def listed(
    store: ContractStore, status: GrantStatus | None, now: datetime, limit: int = 2
) -> list[Grant]:
    found, _ = all_pages(
        lambda after: run(
            store,
            lambda uow: uow.ledger.list_grants("acme", "credits", after, limit, status, now),
        )
    )
    return found


def write(store: ContractStore, change: object, now: datetime = T0) -> None:
    """Load the pool, settle it by ``now``, apply ``change(pool)``, save it."""

    def job(uow: UnitOfWork) -> None:
        pool = uow.ledger.load_pool("acme", "credits")
        pool.burn_order = ORDER
        pool.settle(now)
        change(pool)  # type: ignore[operator]
        save_pool(uow, pool)

    run(store, job)


def test_a_used_up_grant_leaves_the_pool_and_is_read_back_by_id(store: ContractStore) -> None:
    write(store, lambda pool: pool.add_grant(grant("used", 10, priority=0), T0))
    write(store, lambda pool: pool.add_grant(grant("kept", 10, priority=9), T0))
    write(store, lambda pool: pool.debit(10, ORDER, at(hours=1)), at(hours=1))
    assert list(loaded(store).grants) == ["kept"]
    used = run(store, lambda uow: uow.ledger.get_grant("acme", "credits", "used"))
    assert used == replace(grant("used", 10, priority=0), remaining=0, credited=True)
    assert used is not None
    assert used.status(at(hours=1)) is GrantStatus.DEPLETED
    assert list(run(store, every_grant)) == ["used", "kept"]

    # A used-up grant can still be voided: read back, it rejoins the pool for the void.
    write(store, lambda pool: (pool.include(used), pool.void("used", at(hours=2))), at(hours=2))
    voided = run(store, lambda uow: uow.ledger.get_grant("acme", "credits", "used"))
    assert voided is not None
    assert voided.voided_at == at(hours=2)
    assert list(loaded(store).grants) == ["kept"]


def test_a_grant_is_read_from_its_own_pool_only(store: ContractStore) -> None:
    write(store, lambda pool: pool.add_grant(grant("g1", 10), T0))
    for pool_and_grant in [("umbrella", "credits", "g1"), ("acme", "tokens", "g1")]:
        assert run(store, lambda uow, k=pool_and_grant: uow.ledger.get_grant(*k)) is None
    assert run(store, lambda uow: uow.ledger.get_grant("acme", "credits", "g2")) is None
    assert run(store, lambda uow: uow.ledger.get_grant("acme", "credits", "g1")) is not None
    page = run(store, lambda uow: uow.ledger.list_grants("umbrella", "credits", None, 5, None, T0))
    assert (list(page.items), page.next_cursor) == ([], None)


def test_grants_are_listed_oldest_first_a_page_at_a_time(store: ContractStore) -> None:
    for n in range(5):
        write(store, lambda pool, n=n: pool.add_grant(grant(f"g{4 - n}", 10, priority=n), T0))
    write(store, lambda pool: pool.debit(25, ORDER, T0))  # two used up: they leave the pool
    found, cursors = all_pages(
        lambda after: run(
            store, lambda uow: uow.ledger.list_grants("acme", "credits", after, 2, None, T0)
        )
    )
    assert [g.id for g in found] == ["g4", "g3", "g2", "g1", "g0"]
    assert [g.remaining for g in found] == [0, 0, 5, 10, 10]
    assert cursors[-1] is None
    assert len(cursors) == 3
    last = run(
        store, lambda uow: uow.ledger.list_grants("acme", "credits", cursors[0], 1, None, T0)
    )
    assert [g.id for g in last.items] == ["g2"]
    past = run(store, lambda uow: uow.ledger.list_grants("acme", "credits", "999999", 5, None, T0))
    assert (list(past.items), past.next_cursor) == ([], None)


def test_a_status_filter_keeps_what_grant_status_says_at_that_instant(
    store: ContractStore,
) -> None:
    def make(pool: Pool) -> None:
        pool.add_grant(grant("active", 10, priority=5), T0)
        pool.add_grant(grant("used", 10, priority=0), T0)
        pool.add_grant(grant("brief", 10, priority=9, expires_at=at(hours=2)), T0)
        pool.add_grant(grant("later", 10, effective_at=at(hours=3), expires_at=at(hours=5)), T0)
        pool.add_grant(grant("void", 10, priority=9), T0)
        pool.add_grant(grant("never", 10, effective_at=at(hours=6), expires_at=at(hours=7)), T0)
        pool.debit(10, ORDER, T0)
        pool.void("void", T0)

    write(store, make)
    write(store, lambda pool: pool.void("never", at(hours=1)), at(hours=1))
    instants = [T0, at(hours=1), at(hours=2), at(hours=3), at(hours=5), at(days=1)]
    for step, now in enumerate(instants):
        write(store, lambda pool: None, now)  # settled by now, as the service reads them
        every = listed(store, None, now)
        assert {g.id for g in every} == {"active", "used", "brief", "later", "void", "never"}
        for status in GrantStatus:
            expected = [g.id for g in every if g.status(now) is status]
            assert [g.id for g in listed(store, status, now)] == expected, (step, status)
        if now == at(hours=3):
            assert {g.id: g.status(now) for g in every} == {
                "active": GrantStatus.ACTIVE,
                "used": GrantStatus.DEPLETED,
                "brief": GrantStatus.EXPIRED,
                "later": GrantStatus.ACTIVE,
                "void": GrantStatus.VOIDED,
                "never": GrantStatus.VOIDED,
            }


def test_revenue_is_stored_with_the_pool_as_its_ledger_replays_it(store: ContractStore) -> None:
    def check() -> None:
        records, _ = all_pages(
            lambda after: run(
                store, lambda uow: uow.ledger.list_entries("acme", "credits", after, 4)
            )
        )
        state = replay((r.entry.type, r.entry.grant, r.entry.amount) for r in records)
        every = run(store, every_grant)
        assert loaded(store).revenue == revenue_totals(every, state)

    assert loaded(store).revenue == RevenueTotals()
    write(store, lambda pool: pool.debit(3 * UNIT, ORDER, T0))  # an overdraft
    # Far past 64 bits once multiplied: 9 x 10^12 micro-credits at 10^17 micro-units each.
    big = grant("big", 9 * 10**12, cost_basis=10**17, expires_at=at(hours=2))
    write(store, lambda pool: (pool.add_grant(big, T0), pool.debit(UNIT, ORDER, T0)))
    check()
    write(store, lambda pool: pool.add_grant(grant("cheap", 50 * UNIT, cost_basis=1), T0))
    write(store, lambda pool: pool.void("cheap", at(hours=1)), at(hours=1))
    check()
    write(store, lambda pool: None, at(hours=3))  # "big" expires with what it holds
    check()
    totals = loaded(store).revenue
    assert totals.deferred == 0
    assert totals.recognized == 4 * UNIT * 10**17  # the payback and the debit
    assert totals.breakage == (9 * 10**12 - 4 * UNIT) * 10**17

    # Only entries move revenue and the overdraft: a pool saved without any leaves them.
    write(store, lambda pool: pool.add_grant(grant("later", 5, effective_at=at(days=9)), T0))
    assert loaded(store).revenue == totals


@pytest.mark.parametrize(("used_up", "live"), [(10_000, 1_000)])
def test_a_debit_in_a_pool_with_a_long_history_reads_and_writes_what_it_touches(
    store: ContractStore, used_up: int, live: int
) -> None:
    def build(uow: UnitOfWork) -> None:
        pool = Pool(burn_order=ORDER)
        for n in range(used_up):
            pool.include(grant(f"old{n:05d}", UNIT, priority=0))
        for n in range(live):
            pool.include(grant(f"new{n:05d}", 10 * UNIT, priority=1))
        pool.settle(T0)
        pool.debit(used_up * UNIT, ORDER, T0, EntryContext("drain"))
        save_pool(uow, pool)

    run(store, build)

    def debit(uow: UnitOfWork) -> tuple[int, list[str], int]:
        pool = uow.ledger.load_pool("acme", "credits")
        loaded_grants = len(pool.grants)
        pool.burn_order = ORDER
        pool.settle(at(hours=1))
        pool.debit(25 * UNIT, ORDER, at(hours=1), EntryContext("d1"))
        changed = [g.id for g in pool.changed_grants()]
        return loaded_grants, changed, len(save_pool(uow, pool))

    loaded_grants, changed, written = run(store, debit)
    assert loaded_grants == live  # none of the used-up ones
    assert changed == ["new00000", "new00001", "new00002"]  # what the debit drew from
    assert written == 3
    pool = loaded(store)
    assert len(pool.grants) == live - 2
    assert pool.balance == (10 * live - 25) * UNIT
