"""The contract of credit pools and the ledger: entries appended with ids and increasing
sequence numbers, pools of live grants and an overdraft, grants kept once they end, paging."""

from __future__ import annotations

from dataclasses import replace

from allotment.domain.catalog import CreditCategory
from allotment.domain.credits import EntryContext, EntryType, Pool, replay
from allotment.service.ports import LedgerRecord, UnitOfWork
from tests.contract.kit import (
    ContractStore,
    all_pages,
    at,
    every_grant,
    grant,
    run,
    save_pool,
)


def pool_of(store: ContractStore, customer_id: str = "acme", currency: str = "credits") -> Pool:
    return run(store, lambda uow: uow.ledger.load_pool(customer_id, currency))


def entries(store: ContractStore, customer_id: str = "acme") -> list[LedgerRecord]:
    found, _ = all_pages(
        lambda after: run(
            store, lambda uow: uow.ledger.list_entries(customer_id, "credits", after, 3)
        )
    )
    return found


def test_an_unknown_pool_is_empty(store: ContractStore) -> None:
    pool = pool_of(store)
    assert (pool.grants, pool.overdraft, pool.entries) == ({}, 0, [])
    assert run(store, lambda uow: every_grant(uow, "acme", "credits")) == {}
    assert run(store, lambda uow: uow.ledger.grant_exists("acme", "credits", "g1")) is False


def test_saving_a_pool_appends_its_entries_and_stores_its_grants(store: ContractStore) -> None:
    def write(uow: UnitOfWork) -> tuple[list[LedgerRecord], Pool]:
        pool = Pool()
        pool.add_grant(grant("g1", 100), at())
        pool.debit(30, (), at(hours=1), EntryContext("k1", "agent", "calls", ("agent",)))
        written = list(pool.entries)
        records = save_pool(uow, pool)
        assert [record.entry for record in records] == written
        return records, pool

    records, pool = run(store, write)
    assert pool.entries == []
    assert [r.entry.type for r in records] == [EntryType.GRANT, EntryType.DEBIT]
    assert all(
        r.id.startswith("led_") and (r.customer, r.currency) == ("acme", "credits") for r in records
    )
    assert records[0].seq < records[1].seq
    assert len({r.id for r in records}) == 2
    assert entries(store) == records
    loaded = pool_of(store)
    assert loaded.grants == {"g1": replace(grant("g1", 100), remaining=70, credited=True)}
    assert (loaded.overdraft, loaded.balance, loaded.entries) == (0, 70, [])


def test_sequence_numbers_increase_in_write_order_across_pools(store: ContractStore) -> None:
    seqs: list[int] = []
    for n, (customer_id, currency) in enumerate(
        [("acme", "credits"), ("umbrella", "credits"), ("acme", "tokens"), ("acme", "credits")]
    ):

        def write(
            uow: UnitOfWork, c: str = customer_id, cur: str = currency, i: int = n
        ) -> list[int]:
            pool = uow.ledger.load_pool(c, cur)
            pool.add_grant(grant(f"g{i}", 10), at())
            return [record.seq for record in save_pool(uow, pool, c, cur)]

        seqs += run(store, write)
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == len(seqs)
    assert [r.entry.grant for r in entries(store)] == ["g0", "g3"]
    assert [r.entry.grant for r in entries(store, "umbrella")] == ["g1"]


def test_entries_page_with_next(store: ContractStore) -> None:
    def write(uow: UnitOfWork) -> None:
        pool = Pool()
        for n in range(7):
            pool.add_grant(grant(f"g{n}", 10 + n), at(seconds=n))
        save_pool(uow, pool)

    run(store, write)
    first = run(store, lambda uow: uow.ledger.list_entries("acme", "credits", None, 3))
    found, cursors = all_pages(
        lambda after: run(store, lambda uow: uow.ledger.list_entries("acme", "credits", after, 3))
    )
    assert [r.entry.amount for r in found] == [10 + n for n in range(7)]
    assert first.next_cursor == str(first.items[-1].seq)
    assert cursors[-1] is None
    assert len(cursors) == 3
    empty = run(store, lambda uow: uow.ledger.list_entries("acme", "other", None, 3))
    assert (list(empty.items), empty.next_cursor) == ([], None)


def test_a_pool_holds_live_grants_and_all_grants_keeps_the_ended(store: ContractStore) -> None:
    def create(uow: UnitOfWork) -> None:
        pool = Pool()
        pool.add_grant(grant("soon", 50, expires_at=at(hours=2)), at())
        pool.add_grant(grant("void", 20), at())
        pool.add_grant(grant("keep", 30, category=CreditCategory.PROMOTIONAL), at())
        save_pool(uow, pool)

    run(store, create)
    assert list(pool_of(store).grants) == ["soon", "void", "keep"]

    def end_two(uow: UnitOfWork) -> None:
        pool = uow.ledger.load_pool("acme", "credits")
        pool.settle(at(hours=3))  # "soon" expires
        pool.void("void", at(hours=3))
        save_pool(uow, pool)

    run(store, end_two)
    live = pool_of(store)
    assert list(live.grants) == ["keep"]
    assert live.balance == 30
    every = run(store, lambda uow: every_grant(uow, "acme", "credits"))
    assert list(every) == ["soon", "void", "keep"]
    assert (every["soon"].expired, every["soon"].remaining) == (True, 0)
    assert (every["void"].voided_at, every["void"].remaining) == (at(hours=3), 0)
    assert run(store, lambda uow: uow.ledger.grant_exists("acme", "credits", "soon")) is True
    assert run(store, lambda uow: uow.ledger.grant_exists("acme", "tokens", "soon")) is False
    assert run(store, lambda uow: uow.ledger.grant_exists("umbrella", "credits", "soon")) is False


def test_a_scheduled_grant_is_kept_before_it_enters_the_ledger(store: ContractStore) -> None:
    def schedule(uow: UnitOfWork) -> list[LedgerRecord]:
        pool = Pool()
        pool.add_grant(grant("later", 40, effective_at=at(1)), at())
        return uow.ledger.save_pool("acme", "credits", pool)  # no entries: no hold needed

    assert run(store, schedule) == []
    scheduled = pool_of(store).grants["later"]
    assert (scheduled.credited, scheduled.remaining) == (False, 0)

    def settle(uow: UnitOfWork) -> list[LedgerRecord]:
        pool = uow.ledger.load_pool("acme", "credits")
        pool.settle(at(2))
        return save_pool(uow, pool)

    assert [r.entry.type for r in run(store, settle)] == [EntryType.GRANT]
    assert pool_of(store).balance == 40


def test_the_overdraft_is_stored_and_paid_back(store: ContractStore) -> None:
    def overdraw(uow: UnitOfWork) -> None:
        pool = Pool()
        pool.add_grant(grant("g1", 10), at())
        pool.debit(25, (), at(hours=1))
        save_pool(uow, pool)

    run(store, overdraw)
    pool = pool_of(store)
    assert (pool.overdraft, pool.balance) == (15, -15)

    def pay_back(uow: UnitOfWork) -> None:
        pool = uow.ledger.load_pool("acme", "credits")
        pool.add_grant(grant("g2", 100), at(hours=2))
        save_pool(uow, pool)

    run(store, pay_back)
    pool = pool_of(store)
    assert (pool.overdraft, pool.balance, pool.grants["g2"].remaining) == (0, 85, 85)


def test_a_grant_update_changes_its_figures_and_state(store: ContractStore) -> None:
    def create(uow: UnitOfWork) -> None:
        pool = Pool()
        pool.add_grant(grant("g1", 100, priority=1), at())
        save_pool(uow, pool)

    run(store, create)

    def rewrite(uow: UnitOfWork) -> None:
        pool = uow.ledger.load_pool("acme", "credits")
        pool.grants["g1"] = replace(pool.grants["g1"], remaining=60)
        uow.ledger.save_pool("acme", "credits", pool)

    run(store, rewrite)
    expected = replace(grant("g1", 100, priority=1), remaining=60, credited=True)
    assert pool_of(store).grants["g1"] == expected
    assert run(store, lambda uow: every_grant(uow, "acme", "credits")) == {"g1": expected}


def test_the_stored_figures_are_the_replay_of_the_entries(store: ContractStore) -> None:
    def write(uow: UnitOfWork, step: int) -> None:
        pool = uow.ledger.load_pool("acme", "credits")
        now = at(hours=step)
        if step % 3 == 0:
            pool.add_grant(grant(f"g{step}", 20 + step, expires_at=at(hours=step + 4)), now)
        else:
            pool.settle(now)
            pool.debit(7 + step, ("expiry",), now)
        save_pool(uow, pool)

    for step in range(10):
        run(store, lambda uow, s=step: write(uow, s))  # type: ignore[misc]
    rebuilt = replay((r.entry.type, r.entry.grant, r.entry.amount) for r in entries(store))
    every = run(store, lambda uow: every_grant(uow, "acme", "credits"))
    assert {g: every[g].remaining for g in every} == {g: rebuilt.remaining.get(g, 0) for g in every}
    pool = pool_of(store)
    assert pool.overdraft == rebuilt.overdraft
    assert pool.balance == rebuilt.balance == entries(store)[-1].entry.balance_after
