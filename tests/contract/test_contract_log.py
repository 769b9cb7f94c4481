"""The contract of jobs and the change log: each job a transaction (a failing one leaves no row,
log entry, fill or scratch change), revisions gap-free in commit order, sinks handed each job's
changes and fills in order after the commit, the log read beside the writer, and stores on one
database following each other."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from allotment.domain.changes import CustomerChanged, LoggedChange, UsageRecorded
from allotment.domain.credits import Pool
from allotment.service.ports import UnitOfWork
from allotment.service.projector import SnapshotLoaded
from tests.contract.kit import (
    Boom,
    ContractStore,
    Recorder,
    api_key,
    append_usage,
    at,
    customer,
    event,
    grant,
    run,
    save_pool,
)


def changed(name: str) -> Callable[[UnitOfWork], None]:
    def job(uow: UnitOfWork) -> None:
        uow.record(CustomerChanged(name))

    return job


def seqs(items: list[object]) -> list[int]:
    return [item.seq for item in items if isinstance(item, LoggedChange)]


def test_recorded_changes_get_gap_free_revisions_from_one(store: ContractStore) -> None:
    recorder = Recorder()
    store.subscribe(recorder)

    def two(uow: UnitOfWork) -> None:
        uow.record(CustomerChanged("a"))
        uow.record(CustomerChanged("b"))

    run(store, two)
    run(store, changed("c"))
    run(store, lambda uow: None)  # records nothing
    run(store, changed("d"))
    assert seqs(recorder.items) == [1, 2, 3, 4]
    assert [item.change for item in recorder.items if isinstance(item, LoggedChange)] == [
        CustomerChanged(name) for name in "abcd"
    ]
    assert store.last_seq == 4


def test_a_changes_written_at_is_the_wall_clock_at_the_write(store: ContractStore) -> None:
    recorder = Recorder()
    store.subscribe(recorder)
    before = datetime.now(UTC)
    run(store, changed("a"))
    after = datetime.now(UTC)
    (logged,) = recorder.items
    assert isinstance(logged, LoggedChange)
    assert before <= logged.written_at <= after
    (read,) = asyncio.run(store.read_log(0, 10))
    assert read.written_at == logged.written_at


def test_the_log_is_read_after_a_revision_up_to_a_limit(store: ContractStore) -> None:
    assert asyncio.run(store.log_bounds()) == (0, 0)
    assert asyncio.run(store.read_log(0, 10)) == []
    usage = UsageRecorded("acme", "calls", "agent", 5, at(), ("agent", "team"))
    run(store, lambda uow: uow.record(usage))
    for name in "bcde":
        run(store, changed(name))
    assert asyncio.run(store.log_bounds()) == (1, 5)
    everything = asyncio.run(store.read_log(0, 100))
    assert [logged.seq for logged in everything] == [1, 2, 3, 4, 5]
    assert everything[0].change == usage
    assert [logged.seq for logged in asyncio.run(store.read_log(2, 2))] == [3, 4]
    assert asyncio.run(store.read_log(5, 10)) == []
    assert asyncio.run(store.read_log(99, 10)) == []


def test_a_failing_job_leaves_nothing_behind(store: ContractStore) -> None:
    recorder = Recorder()
    store.subscribe(recorder)
    run(store, lambda uow: uow.customers.save(customer("kept")))
    run(store, changed("kept"))
    assert window_and_rows(store) == (0, [], None, [])

    def fail(uow: UnitOfWork) -> None:
        uow.customers.save(customer("acme"))
        uow.customers.save(customer("kept", name="Changed"))
        uow.keys.save(api_key("key_1"))
        append_usage(uow, event(5, at(), path=("team",)))
        pool = Pool()
        pool.add_grant(grant("g1", 10), at())
        save_pool(uow, pool)
        uow.record(CustomerChanged("acme"))
        uow.fill(SnapshotLoaded("acme", None))
        uow.scratch["staged"] = "yes"
        raise Boom

    with pytest.raises(Boom):
        run(store, fail)
    assert window_and_rows(store) == (0, [], None, [])
    kept = run(store, lambda uow: uow.customers.get("kept"))
    assert kept == customer("kept")
    assert run(store, lambda uow: uow.keys.get("key_1")) is None
    assert asyncio.run(store.log_bounds()) == (1, 1)
    assert seqs(recorder.items) == [1]
    assert not any(isinstance(item, SnapshotLoaded) for item in recorder.items)
    assert run(store, lambda uow: uow.scratch.get("staged")) is None
    run(store, changed("next"))
    assert seqs(recorder.items) == [1, 2]  # the failed job's revision is given to the next


def window_and_rows(store: ContractStore) -> tuple[int, list[str], object, list[object]]:
    def read(uow: UnitOfWork) -> tuple[int, list[str], object, list[object]]:
        used = uow.usage.window_usage("acme", "calls", at(), at(1))
        customers = [c.id for c in uow.customers.list(None, 10).items if c.id != "kept"]
        entries = list(uow.ledger.list_entries("acme", "credits", None, 10).items)
        return used, customers, uow.customers.get("acme"), entries

    return run(store, read)


def test_a_failed_jobs_scratch_is_not_seen_by_the_jobs_after_it(store: ContractStore) -> None:
    running, release = threading.Event(), threading.Event()

    def block(uow: UnitOfWork) -> None:
        running.set()
        release.wait(10)

    def stage_then_fail(uow: UnitOfWork) -> None:
        uow.scratch["staged"] = "yes"
        raise Boom

    def read(uow: UnitOfWork) -> object:
        return uow.scratch.get("staged")

    async def scenario() -> object:
        blocker = asyncio.ensure_future(store.run(block))
        await asyncio.to_thread(running.wait, 10)
        failing = asyncio.ensure_future(store.run(stage_then_fail))
        reading = asyncio.ensure_future(store.run(read))
        await asyncio.sleep(0)  # both are queued behind the blocker (one batch, on SQLite)
        release.set()
        await blocker
        with pytest.raises(Boom):
            await failing
        return await reading

    assert asyncio.run(scenario()) is None


def test_sinks_get_each_jobs_changes_and_fills_in_order_after_it_commits(
    store: ContractStore,
) -> None:
    first, second = Recorder(), Recorder()
    store.subscribe(first)
    store.subscribe(second)

    def one(uow: UnitOfWork) -> None:
        uow.record(CustomerChanged("a"))
        uow.fill(SnapshotLoaded("a", None))
        uow.record(CustomerChanged("b"))

    def two(uow: UnitOfWork) -> list[object]:
        seen = list(first.items)  # everything before this job, nothing of it
        uow.fill(SnapshotLoaded("c", None))
        uow.record(CustomerChanged("c"))
        assert list(first.items) == seen
        return seen

    run(store, one)
    seen = run(store, two)
    assert seqs(seen) == [1, 2]
    expected = [
        (1, CustomerChanged("a")),
        SnapshotLoaded("a", None),
        (2, CustomerChanged("b")),
        SnapshotLoaded("c", None),
        (3, CustomerChanged("c")),
    ]
    for recorder in (first, second):
        got = [
            (item.seq, item.change) if isinstance(item, LoggedChange) else item
            for item in recorder.items
        ]
        assert got == expected


def test_a_failing_sink_stops_neither_the_others_nor_the_job(store: ContractStore) -> None:
    def broken(published: object) -> None:
        raise RuntimeError("a broken sink")

    recorder = Recorder()
    store.subscribe(broken)
    store.subscribe(recorder)
    assert run(store, lambda uow: uow.record(CustomerChanged("a")) or "done") == "done"
    assert seqs(recorder.items) == [1]


def test_jobs_run_one_at_a_time(store: ContractStore) -> None:
    run(store, lambda uow: uow.customers.save(customer("acme", metadata={"n": 0})))

    def increment(uow: UnitOfWork) -> int:
        found = uow.customers.get("acme")
        assert found is not None
        n = int(found.metadata["n"]) + 1
        uow.customers.save(customer("acme", metadata={"n": n}))
        return n

    async def many() -> list[int]:
        return await asyncio.gather(*(store.run(increment) for _ in range(40)))

    assert sorted(asyncio.run(many())) == list(range(1, 41))
    found = run(store, lambda uow: uow.customers.get("acme"))
    assert found is not None
    assert found.metadata == {"n": 40}


def test_run_answers_with_the_result_or_the_error(store: ContractStore) -> None:
    def fail(uow: UnitOfWork) -> int:
        raise Boom

    async def scenario() -> int:
        with pytest.raises(Boom):
            await store.run(fail)
        return await store.run(lambda uow: 42)

    assert asyncio.run(scenario()) == 42


# ---------------------------------------------------------------- stores on one database


def test_two_stores_on_one_database_follow_each_other(
    open_store: Callable[[], ContractStore],
) -> None:
    first, second = open_store(), open_store()
    heard_first, heard_second = Recorder(), Recorder()
    first.subscribe(heard_first)
    second.subscribe(heard_second)
    run(first, changed("a"))
    run(first, changed("b"))
    run(second, lambda uow: None)  # a job starts by following the log
    assert [
        (item.seq, item.change) for item in heard_second.items if isinstance(item, LoggedChange)
    ] == [
        (1, CustomerChanged("a")),
        (2, CustomerChanged("b")),
    ]
    run(second, changed("c"))
    assert seqs(heard_second.items) == [1, 2, 3]
    run(first, changed("d"))  # follows "c" first
    assert seqs(heard_first.items) == [1, 2, 3, 4]
    assert (first.last_seq, second.last_seq) == (4, 3)
    assert asyncio.run(second.read_log(0, 10)) == asyncio.run(first.read_log(0, 10))
    assert asyncio.run(second.log_bounds()) == (1, 4)


def test_what_one_store_writes_the_other_reads(open_store: Callable[[], ContractStore]) -> None:
    first, second = open_store(), open_store()
    run(first, lambda uow: uow.customers.save(customer("acme")))
    run(first, lambda uow: append_usage(uow, event(3, at())))
    assert run(second, lambda uow: uow.customers.get("acme")) == customer("acme")
    assert run(second, lambda uow: uow.usage.window_usage("acme", "calls", at(), at(1))) == 3
    run(second, lambda uow: append_usage(uow, event(4, at())))
    assert run(first, lambda uow: uow.usage.window_usage("acme", "calls", at(), at(1))) == 7


def test_a_store_opened_on_a_database_with_history_starts_at_its_newest_revision(
    open_store: Callable[[], ContractStore],
) -> None:
    first = open_store()
    for name in "abc":
        run(first, changed(name))
    later = open_store()
    heard = Recorder()
    later.subscribe(heard)
    assert later.last_seq == 3
    run(later, lambda uow: None)
    assert seqs(heard.items) == []
    run(first, changed("d"))
    run(later, changed("e"))
    assert seqs(heard.items) == [4, 5]
