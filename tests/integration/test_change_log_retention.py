"""The change log is pruned past its retention as fast as it grows: while more than a chunk is
due, each store comes back after a short pause rather than a minute (a service writing more than
a chunk a minute would otherwise keep its log for ever), and a pass with nothing due reads the
log's oldest entry only, never a chunk of rows."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import allotment.storage.memory.store
import allotment.storage.sqlite.store
from allotment.domain.changes import CustomerChanged
from allotment.domain.timefmt import to_epoch_micros
from allotment.service.ports import Store, UnitOfWork
from allotment.storage.memory import MemoryDatabase, MemoryStore
from allotment.storage.sqlite import SqliteStore

CHUNK = 50
WRITTEN = 4 * CHUNK + 30  # five passes of the pruner, the newest entry kept
AGED = 2 * CHUNK + 20  # the oldest entries, made older than a retention of an hour


def write_log(store: Store, count: int) -> None:
    def job(uow: UnitOfWork) -> None:
        for n in range(count):
            uow.record(CustomerChanged(f"customer-{n}"))

    store.run_blocking(job)


def log_and_close(store: Store) -> None:
    """``WRITTEN`` entries in the log, by a store that is then closed."""
    try:
        write_log(store, WRITTEN)
    finally:
        store.close()


def prunes_to(store: Store, expected: tuple[int, int]) -> None:
    """``store`` prunes its log to ``expected`` bounds within seconds; then it is closed."""
    try:
        wait_for_bounds(store, expected)
    finally:
        store.close()


def wait_for_bounds(store: Store, expected: tuple[int, int]) -> None:
    deadline = time.monotonic() + 10  # a pass a minute would take four minutes
    while (bounds := asyncio.run(store.log_bounds())) != expected:
        assert time.monotonic() < deadline, bounds
        time.sleep(0.05)


@pytest.mark.sqlite_file
def test_a_sqlite_log_chunks_behind_is_pruned_within_seconds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(allotment.storage.sqlite.store, "PRUNE_CHUNK", CHUNK)
    path = tmp_path / "log.db"
    log_and_close(SqliteStore(path))
    # Every entry written before now is past a retention of 0: the store prunes soon after it
    # starts, a chunk per pass.
    prunes_to(SqliteStore(path, log_retention=timedelta(0)), (WRITTEN, WRITTEN))


def test_a_memory_log_chunks_behind_is_pruned_within_seconds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(allotment.storage.memory.store, "PRUNE_CHUNK", CHUNK)
    database = MemoryDatabase()
    log_and_close(MemoryStore(database=database))
    prunes_to(MemoryStore(timedelta(0), database), (WRITTEN, WRITTEN))


def two_hours_ago() -> int:
    return to_epoch_micros(datetime.now(UTC) - timedelta(hours=2))


@pytest.mark.sqlite_file
def test_a_sqlite_log_prunes_what_is_due_in_passes_then_waits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(allotment.storage.sqlite.store, "PRUNE_CHUNK", CHUNK)
    path = tmp_path / "log.db"
    log_and_close(SqliteStore(path))
    with sqlite3.connect(path) as db:  # the first AGED entries (seq 1 to AGED) two hours old
        db.execute("UPDATE change_log SET written_at = ? WHERE seq <= ?", (two_hours_ago(), AGED))
    store = SqliteStore(path, log_retention=timedelta(hours=1))
    try:
        # Three passes, a short pause apart: what is due goes, what is not stays.
        wait_for_bounds(store, (AGED + 1, WRITTEN))
        # Caught up, the pruner waits a minute: no pass while jobs keep running.
        ran = statements_during(store, seconds=0.5)
        assert not [sql for sql in ran if "FROM change_log" in sql], ran
    finally:
        store.close()


def statements_during(store: SqliteStore, seconds: float) -> list[str]:
    """The statements the store's thread runs while jobs run for ``seconds``."""
    ran: list[str] = []
    store._connection.set_trace_callback(ran.append)
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            store.run_blocking(lambda uow: None)
            time.sleep(0.01)
    finally:
        store._connection.set_trace_callback(None)
    return ran


def statements_of_a_prune(store: SqliteStore, between: Callable[[], None]) -> list[str]:
    """The statements the store's thread runs while ``between`` makes a pass of the pruner due
    and two jobs run: a pass runs after the first job's batch at the latest (or when the
    queue is idle before it), and ends before the second job's batch begins."""
    ran: list[str] = []
    store._connection.set_trace_callback(ran.append)
    try:
        between()
        store.run_blocking(lambda uow: None)
        store.run_blocking(lambda uow: None)
    finally:
        store._connection.set_trace_callback(None)
    return ran


@pytest.mark.sqlite_file
def test_a_pass_with_nothing_due_reads_the_oldest_entry_and_deletes_nothing(
    tmp_path: Path,
) -> None:
    store = SqliteStore(tmp_path / "log.db", log_retention=timedelta(hours=1))
    try:
        write_log(store, 20)
        store.run_blocking(lambda uow: None)  # the first pass, soon after the start, is done

        def due() -> None:
            store._last_prune = 0.0

        ran = statements_of_a_prune(store, due)
    finally:
        store.close()
    log_reads = [sql for sql in ran if "change_log" in sql and "sqlite_sequence" not in sql]
    assert log_reads == [
        "SELECT written_at FROM change_log WHERE seq < (SELECT MAX(seq) FROM change_log)"
        " ORDER BY seq LIMIT 1"
    ], ran
    assert not [sql for sql in ran if sql.startswith("DELETE FROM change_log")]
