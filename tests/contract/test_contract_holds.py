"""The holds contract: a job holds the customer's usage, then the budget series of entity paths,
then credit pools, never back, and makes each write of counters, pools and live reservations
under its hold. Jobs that do pass on every adapter; the memory adapter (strict) refuses those
that do not, and a refused job leaves nothing behind."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from allotment.domain.credits import EntryContext, Pool
from allotment.domain.errors import AllotmentError
from allotment.domain.reservations import ReservationStatus
from allotment.service.ports import UnitOfWork
from allotment.storage.memory import (
    HoldOrderError,
    MemoryDatabase,
    MemoryStore,
    MissingHoldError,
)
from tests.contract.kit import (
    ContractStore,
    at,
    debit_entry,
    event,
    every_grant,
    grant,
    reservation,
    run,
)

PATH = ("agent", "team", "org")


def write_everything(uow: UnitOfWork) -> None:
    """Usage along a path, a debit along it, a live hold: each under its hold, taken in order."""
    uow.hold_usage("acme")
    uow.hold_usage("umbrella")
    uow.hold_budgets("acme", PATH[1:])  # the root first, then down: "team", "org"
    uow.hold_budgets("acme", PATH)
    uow.hold_pool("acme", "credits")
    uow.hold_pool("acme", "tokens")
    uow.hold_usage("acme")  # held already: no new hold, whatever was taken since
    uow.usage.append(event(3, at(), path=PATH))
    uow.usage.append(event(1, at(), customer_id="umbrella"))
    uow.reservations.save(reservation("res_1", entity="agent", entity_path=PATH))
    pool = Pool()
    pool.add_grant(grant("g1", 100), at())
    pool.debit(10, (), at(), EntryContext(entity="agent", entity_path=PATH))
    uow.ledger.save_pool("acme", "credits", pool)


def test_jobs_that_hold_in_order_pass(store: ContractStore) -> None:
    run(store, write_everything)
    assert run(store, lambda uow: uow.usage.window_usage("acme", "calls", at(), at(1))) == 3
    assert run(store, lambda uow: uow.ledger.load_pool("acme", "credits")).balance == 90


def test_writes_that_need_no_hold_pass_without_one(store: ContractStore) -> None:
    def job(uow: UnitOfWork) -> None:
        ended = reservation("res_1", ended_at=at(), ended_as=ReservationStatus.RELEASED)
        uow.reservations.save(ended)
        pool = Pool()
        pool.add_grant(grant("later", 5, effective_at=at(3)), at())  # writes no entry
        uow.ledger.save_pool("acme", "credits", pool)
        uow.usage.window_usage("acme", "calls", at(), at(1))

    run(store, job)


# ---------------------------------------------------------------- the memory adapter's checks


@pytest.fixture
def strict() -> Iterator[MemoryStore]:
    store = MemoryStore(database=MemoryDatabase())  # strict holds are the default
    yield store
    store.close()


def refused(
    store: MemoryStore, job: Callable[[UnitOfWork], object], error: type[Exception]
) -> None:
    with pytest.raises(error):
        store.run_blocking(job)
    assert store.run_blocking(lambda uow: uow.usage.window_usage("acme", "calls", at(), at(1))) == 0
    assert store.run_blocking(lambda uow: uow.reservations.get("res_1")) is None
    assert store.run_blocking(lambda uow: every_grant(uow, "acme", "credits")) == {}


@pytest.mark.parametrize(
    "holds",
    [
        [("budgets", PATH), ("usage", "umbrella")],
        [("pool", "credits"), ("budgets", PATH)],
        [("pool", "credits"), ("usage", "umbrella")],
        [("budgets", PATH), ("pool", "credits"), ("usage", "umbrella")],
        [("pool", "credits"), ("budgets", ("other",))],
    ],
)
def test_an_earlier_kind_of_hold_after_a_later_one_is_refused(
    strict: MemoryStore, holds: list[tuple[str, object]]
) -> None:
    def job(uow: UnitOfWork) -> None:
        uow.hold_usage("acme")
        uow.usage.append(event(1, at()))  # written, then undone with the job
        for kind, what in holds:
            if kind == "usage":
                uow.hold_usage(str(what))
            elif kind == "budgets":
                assert isinstance(what, tuple)
                uow.hold_budgets("acme", what)
            else:
                uow.hold_pool("acme", str(what))

    refused(strict, job, HoldOrderError)


def test_taking_again_what_is_held_is_no_new_hold(strict: MemoryStore) -> None:
    def job(uow: UnitOfWork) -> None:
        uow.hold_usage("acme")
        uow.hold_budgets("acme", PATH)
        uow.hold_pool("acme", "credits")
        uow.hold_budgets("acme", PATH[1:])  # every entity held already
        uow.hold_usage("acme")

    strict.run_blocking(job)


def test_usage_appended_without_its_holds_is_refused(strict: MemoryStore) -> None:
    refused(strict, lambda uow: uow.usage.append(event(1, at())), MissingHoldError)

    def partly(uow: UnitOfWork) -> None:
        uow.hold_usage("acme")
        uow.hold_budgets("acme", PATH[1:])  # not "agent"
        uow.usage.append(event(1, at(), path=PATH))

    refused(strict, partly, MissingHoldError)

    def other_customer(uow: UnitOfWork) -> None:
        uow.hold_usage("umbrella")
        uow.usage.append(event(1, at()))

    refused(strict, other_customer, MissingHoldError)


def test_entries_saved_without_their_pools_hold_are_refused(strict: MemoryStore) -> None:
    def unheld(uow: UnitOfWork) -> None:
        pool = Pool()
        pool.add_grant(grant("g1", 100), at())
        uow.ledger.save_pool("acme", "credits", pool)

    refused(strict, unheld, MissingHoldError)

    def other_pool(uow: UnitOfWork) -> None:
        uow.hold_pool("acme", "tokens")
        unheld(uow)

    refused(strict, other_pool, MissingHoldError)


def test_a_debit_along_a_path_needs_its_budgets_held(strict: MemoryStore) -> None:
    def debit(uow: UnitOfWork) -> None:
        uow.hold_pool("acme", "credits")
        pool = Pool()
        pool.add_grant(grant("g1", 100), at())
        pool.entries.append(debit_entry(5, at(), PATH))
        uow.ledger.save_pool("acme", "credits", pool)

    refused(strict, debit, MissingHoldError)


def test_a_live_reservation_needs_the_customers_usage_held(strict: MemoryStore) -> None:
    refused(strict, lambda uow: uow.reservations.save(reservation("res_1")), MissingHoldError)


def test_without_strict_holds_the_same_writes_pass() -> None:
    lax = MemoryStore(strict_holds=False)

    def careless(uow: UnitOfWork) -> None:
        uow.hold_pool("acme", "credits")
        uow.hold_usage("acme")  # out of order
        uow.usage.append(event(1, at(), path=PATH))
        uow.reservations.save(reservation("res_1"))
        pool = Pool()
        pool.add_grant(grant("g1", 100), at())
        pool.entries.append(debit_entry(5, at(), PATH))
        uow.ledger.save_pool("umbrella", "credits", pool)

    lax.run_blocking(careless)
    assert lax.run_blocking(lambda uow: uow.usage.window_usage("acme", "calls", at(), at(1))) == 1
    lax.close()


def test_hold_errors_are_programming_errors_not_refusals() -> None:
    for error in (HoldOrderError, MissingHoldError):
        assert issubclass(error, RuntimeError)
        assert not issubclass(error, AllotmentError)
