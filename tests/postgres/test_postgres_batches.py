"""Batches of two processes that take holds in opposite orders: the later job of each would
wait for the other's hold, which is the deadlock PostgreSQL would find after a second. Instead
a job that is not its batch's first waits only briefly, the jobs before it commit, and it runs
first in the next batch: every job succeeds and no deadlock is ever met."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from allotment.bootstrap import open_store
from allotment.config import Settings
from allotment.service.ports import UnitOfWork
from allotment.storage.postgres import PostgresStore


def holding(
    first: str, second: str, both_hold: threading.Barrier
) -> list[Callable[[UnitOfWork], str]]:
    """Two jobs for one batch: the first holds pool ``first``, then waits until the other
    store's first job holds its pool too; the second holds pool ``second``."""

    def take_first(uow: UnitOfWork) -> str:
        uow.hold_pool("acme", first)
        uow.customers.get("acme")  # a read: every statement before it has been answered
        both_hold.wait(timeout=10)
        return first

    def take_second(uow: UnitOfWork) -> str:
        uow.hold_pool("acme", second)
        uow.customers.get("acme")
        return second

    return [take_first, take_second]


def test_batches_that_would_wait_on_each_other_are_cut_not_deadlocked(
    migrated_postgres_url: str,
) -> None:
    one, other = (open_store(Settings(database_url=migrated_postgres_url)) for _ in range(2))
    assert isinstance(one, PostgresStore)
    assert isinstance(other, PostgresStore)
    both_hold = threading.Barrier(2)
    # Each store's thread is kept busy by a job until both batches are queued behind it.
    release = threading.Event()
    try:

        async def scenario() -> list[list[str]]:
            async def batch(
                store: PostgresStore, jobs: list[Callable[[UnitOfWork], str]]
            ) -> list[str]:
                blocker = store.run(lambda uow: release.wait(timeout=10))
                results = [store.run(job) for job in jobs]
                await asyncio.sleep(0.1)  # both jobs queued behind the blocker: one batch
                release.set()
                await blocker
                return list(await asyncio.gather(*results))

            return list(
                await asyncio.gather(
                    batch(one, holding("credits", "tokens", both_hold)),
                    batch(other, holding("tokens", "credits", both_hold)),
                )
            )

        assert asyncio.run(scenario()) == [["credits", "tokens"], ["tokens", "credits"]]
        for store in (one, other):
            assert "DeadlockDetected" not in store.stats.retries
        assert one.stats.batches_cut + other.stats.batches_cut >= 1
    finally:
        release.set()
        one.close()
        other.close()
