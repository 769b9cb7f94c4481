"""The embedded SQLite store: one connection, one thread, batched durable commits.

Every job goes through a single thread that owns the connection. The thread takes all jobs that
are waiting, runs them one after another inside one ``BEGIN IMMEDIATE`` transaction, commits
once, and only then hands the batch's changes and fills to the projector and answers the
callers. With ``synchronous=FULL`` in WAL mode the commit is on disk when it returns, so an
answered write survives a crash of the process, and one fsync serves every request of the batch
(group commit).

A failing job undoes only itself. Two statements per job (``SAVEPOINT`` and ``RELEASE``) cost
about as much as a debit's ledger row, and most failures (an unknown customer, a key reused with
another body, a revoked key) come before a job writes any row. So a batch first runs its jobs
under one savepoint, and a job that fails having changed no row (SQLite's ``total_changes``) is
undone in memory alone. Only a job that fails after writing rows takes the whole batch back to
that savepoint; the batch then runs again, in a fresh unit of work, with each job under a
savepoint of its own, as does the batch after it.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

from allotment.domain.changes import LoggedChange
from allotment.domain.errors import ServiceBusy
from allotment.domain.timefmt import from_epoch_micros, to_epoch_micros
from allotment.service.changelog import decode_change
from allotment.service.ports import Published, UnitOfWork
from allotment.service.stats import StoreStats
from allotment.storage.jobs import (
    DEFAULT_LOG_RETENTION,
    DEFAULT_USAGE_KEY_RETENTION,
    PRUNE_BACKLOG_PAUSE_SECONDS,
    PRUNE_CHUNK,
    PRUNE_INTERVAL_SECONDS,
    USAGE_KEY_PRUNE_CHUNK,
    Finished,
    JobQueue,
    Pending,
    Sink,
    follow_log,
    hand_over_to,
    settle,
)
from allotment.storage.migrate import sqlite_url, upgrade_to_latest
from allotment.storage.sqlite.counter_cache import DEFAULT_CACHED_SERIES, CommittedCounters
from allotment.storage.sqlite.ledger import DEFAULT_CACHED_POOLS, CommittedPools
from allotment.storage.sqlite.lru import Committed
from allotment.storage.sqlite.outcomes import SqliteOutcomes
from allotment.storage.sqlite.uow import SqliteUnitOfWork

T = TypeVar("T")
log = logging.getLogger(__name__)

MAX_JOBS_PER_BATCH = 512
DEFAULT_PAGE_CACHE_MIB = 64
DEFAULT_WAL_PAGES = 10_000  # see ``config.DEFAULT_SQLITE_WAL_PAGES``
# Cold checks a batch takes besides every waiting write (``JobQueue``): a write waits for at
# most this many of them, each a few hundred microseconds of reads.
FILLS_PER_BATCH = 32
WRITE_LOCK_WAIT_SECONDS = 10.0
WRITE_LOCK_RETRY_SECONDS = 0.0005


class SqliteStore:
    """A :class:`~allotment.service.ports.Store` on one SQLite file."""

    def __init__(
        self,
        path: Path | str,
        log_retention: timedelta = DEFAULT_LOG_RETENTION,
        usage_key_retention: timedelta = DEFAULT_USAGE_KEY_RETENTION,
        *,
        cached_pools: int = DEFAULT_CACHED_POOLS,
        cached_counters: int = DEFAULT_CACHED_SERIES,
        page_cache_mib: int = DEFAULT_PAGE_CACHE_MIB,
        wal_pages: int = DEFAULT_WAL_PAGES,
    ) -> None:
        self.path = Path(path)
        self.log_retention = log_retention
        self.usage_key_retention = usage_key_retention
        upgrade_to_latest(sqlite_url(self.path))
        # The writer waits for the write lock itself (``_begin_immediate``); the reader lets
        # SQLite wait, which in WAL mode it hardly ever must.
        self._connection = _connect(self.path, 0, page_cache_mib, wal_pages)
        self._reader = _connect(self.path, 10_000, page_cache_mib, wal_pages)
        self._reader_lock = threading.Lock()
        self._sinks: list[Sink] = []
        (last,) = self._connection.execute(
            "SELECT COALESCE(MAX(seq), 0) FROM change_log"
        ).fetchone()
        self._last_seq: int = last  # the newest revision handed to the sinks
        self._last_prune = 0.0
        self._jobs = JobQueue()
        self._thread = threading.Thread(target=self._serve, name="allotment-sqlite", daemon=True)
        self._committed_pools: CommittedPools = Committed(capacity=cached_pools)
        self._committed_counters: CommittedCounters = Committed(capacity=cached_counters)
        (self._data_version,) = self._connection.execute("PRAGMA data_version").fetchone()
        self._follow_failed = False
        # A job of the last batch failed after writing rows: run the next one job by job.
        self._rows_failed = False
        self._stats = StoreStats()
        self._stats.caches["credit_pools"] = self._committed_pools.stats
        self._stats.caches["window_counters"] = self._committed_counters.stats
        self._thread.start()

    def run(self, job: Callable[[UnitOfWork], T], *, fill: bool = False) -> Awaitable[T]:
        return self._jobs.run(job, fill=fill)

    def run_blocking(self, job: Callable[[UnitOfWork], T]) -> T:
        return self._jobs.run_blocking(job)

    def subscribe(self, sink: Sink) -> None:
        self._sinks.append(sink)

    async def read_log(self, after: int, limit: int) -> list[LoggedChange]:
        return await asyncio.to_thread(self._read_log, after, limit)

    async def log_bounds(self) -> tuple[int, int]:
        return await asyncio.to_thread(self._log_bounds)

    def _read_log(self, after: int, limit: int) -> list[LoggedChange]:
        with self._reader_lock:
            return _logged(self._reader, after, limit)

    def _log_bounds(self) -> tuple[int, int]:
        with self._reader_lock:
            row = self._reader.execute(
                "SELECT COALESCE(MIN(seq), 0), COALESCE(MAX(seq), 0) FROM change_log"
            ).fetchone()
        return int(row[0]), int(row[1])

    @property
    def last_seq(self) -> int:
        """The newest revision this store has handed to its sinks."""
        return self._last_seq

    @property
    def stats(self) -> StoreStats:
        return self._stats

    @property
    def batches_committed(self) -> int:
        return self._stats.batches

    @property
    def jobs_committed(self) -> int:
        return self._stats.jobs

    def queue_depth(self) -> int:
        return self._jobs.depth()

    def close(self) -> None:
        if not self._jobs.closed:
            self._jobs.close()
            self._thread.join()
            self._connection.close()
            self._reader.close()

    def _serve(self) -> None:
        self._jobs.serve(
            self._run_batch,
            self._between_batches,
            self._prune_due,
            most=MAX_JOBS_PER_BATCH,
            fills=FILLS_PER_BATCH,
        )

    def _prune_due(self) -> bool:
        return time.monotonic() - self._last_prune >= PRUNE_INTERVAL_SECONDS

    def _between_batches(self) -> None:
        try:
            if self._others_committed():
                connection = self._connection
                connection.execute("BEGIN")  # one read snapshot for what is followed
                try:
                    self._follow(SqliteUnitOfWork(connection))
                finally:
                    connection.execute("COMMIT")
            if self._prune_due():
                self._prune()
        except Exception:
            log.exception("following the change log failed; trying again")

    def _others_committed(self) -> bool:
        """Whether another connection committed since this store last followed the log (or a
        follow failed and must be tried again)."""
        # data_version changes only when another connection commits to the file.
        (version,) = self._connection.execute("PRAGMA data_version").fetchone()
        return self._follow_failed or version != self._data_version

    def _follow(self, uow: SqliteUnitOfWork) -> None:
        """Hand over what other processes committed since the last revision handed over. The
        data version is taken as followed only once everything is handed over: a follow that
        fails is tried again before the next batch writes anything."""
        (version,) = self._connection.execute("PRAGMA data_version").fetchone()
        self._follow_failed = True
        # Another process wrote: the pools and counters this thread keeps beside the tables
        # are no longer the tables' only copy (fills write counter rows, too).
        self._committed_pools.clear()
        self._committed_counters.clear()
        self._last_seq = follow_log(
            self._last_seq,
            lambda after, limit: _logged(self._connection, after, limit),
            uow.catalog.load,
            self._hand_over,
        )
        self._data_version = version
        self._follow_failed = False

    def _hand_over(self, published: Sequence[Published]) -> None:
        hand_over_to(self._sinks, published)

    def _prune(self) -> None:
        """Drop log entries and usage reports' idempotency records older than their retention,
        a chunk of each in one short transaction; the log's newest entry stays, so the next
        revision is known whatever is pruned. While more of either is due, come back after a
        short pause rather than a minute: a service that writes more than a chunk a minute
        would otherwise keep its log for ever."""
        self._last_prune = time.monotonic()
        now = datetime.now(UTC)
        cutoff = to_epoch_micros(now - self.log_retention)
        connection = self._connection
        _begin_immediate(connection)
        try:
            # The DELETE reads every row of its range to test its age: run only when the
            # oldest is due, so that a minute with nothing due reads one row, not a chunk.
            log_behind = False
            if _log_due(connection, cutoff):
                connection.execute(
                    "DELETE FROM change_log WHERE seq < (SELECT MAX(seq) FROM change_log)"
                    " AND seq < (SELECT MIN(seq) FROM change_log) + ? AND written_at < ?",
                    (PRUNE_CHUNK, cutoff),
                )
                log_behind = _log_due(connection, cutoff)
            records = SqliteOutcomes(connection).prune_usage(
                now - self.usage_key_retention, USAGE_KEY_PRUNE_CHUNK
            )
            connection.execute("COMMIT")
        except Exception:
            connection.execute("ROLLBACK")
            raise
        if log_behind or records == USAGE_KEY_PRUNE_CHUNK:
            # The pause counts from the pass's end: writes get the lock between two passes.
            self._last_prune = (
                time.monotonic() - PRUNE_INTERVAL_SECONDS + PRUNE_BACKLOG_PAUSE_SECONDS
            )

    def _run_batch(self, batch: list[Pending]) -> None:
        connection = self._connection
        uow = SqliteUnitOfWork(connection, self._committed_pools, self._committed_counters)
        finished: list[Finished] = []
        try:
            began = time.perf_counter()
            _begin_immediate(connection)
            if self._others_committed():
                self._follow(uow)
            together = None if self._rows_failed else self._run_together(uow, batch)
            if together is not None:
                finished = together
            else:
                uow.abandon()
                uow = SqliteUnitOfWork(connection, self._committed_pools, self._committed_counters)
                finished = self._run_apart(uow, batch)
            uow.before_commit()
            committing = time.perf_counter()
            connection.execute("COMMIT")
            committed = time.perf_counter()
        except Exception as commit_error:
            # The batch is not durable: nobody may see its results, and the cache keeps only
            # what earlier batches committed because nothing of this batch is handed over.
            log.exception("a storage batch failed to commit")
            self._committed_pools.clear()
            self._committed_counters.clear()
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            settle([(pending, None, commit_error) for pending in batch])
            return
        pools = self._committed_pools
        for key, cached in uow.after_commit().items():
            pools.keep(key, cached)
        pools.trim()
        stats = self._stats
        stats.batches += 1
        stats.jobs += len(batch)
        stats.batch_seconds.observe(committed - began)
        stats.commit_seconds.observe(committed - committing)
        for item in reversed(uow.published):
            if isinstance(item, LoggedChange):
                self._last_seq = item.seq
                break
        self._hand_over(uow.published)
        settle(finished)

    def _run_together(self, uow: SqliteUnitOfWork, batch: list[Pending]) -> list[Finished] | None:
        """Run the jobs under one savepoint, undoing in memory a failed job that changed no
        row; None, with every job taken back, once a failed job had changed rows."""
        connection = self._connection
        connection.execute("SAVEPOINT batch")
        finished: list[Finished] = []
        for pending in batch:
            mark = uow.mark()
            changes = connection.total_changes
            try:
                result = pending.job(uow)
            except Exception as job_error:
                if connection.total_changes != changes:
                    connection.execute("ROLLBACK TO batch")
                    connection.execute("RELEASE batch")
                    self._rows_failed = True
                    return None
                uow.undo(mark)
                finished.append((pending, None, job_error))
            else:
                finished.append((pending, result, None))
        connection.execute("RELEASE batch")
        return finished

    def _run_apart(self, uow: SqliteUnitOfWork, batch: list[Pending]) -> list[Finished]:
        """Run each job under a savepoint of its own, so that a failing job undoes only
        itself."""
        connection = self._connection
        finished: list[Finished] = []
        rows_failed = False
        for pending in batch:
            mark = uow.mark()
            changes = connection.total_changes
            connection.execute("SAVEPOINT job")
            try:
                result = pending.job(uow)
            except Exception as job_error:
                rows_failed |= connection.total_changes != changes
                connection.execute("ROLLBACK TO job")
                connection.execute("RELEASE job")
                uow.undo(mark)
                finished.append((pending, None, job_error))
            else:
                connection.execute("RELEASE job")
                finished.append((pending, result, None))
        self._rows_failed = rows_failed
        return finished


def _begin_immediate(connection: sqlite3.Connection) -> None:
    """Take the database's write lock, trying again every half millisecond while another
    process holds it, for ``WRITE_LOCK_WAIT_SECONDS`` at most.

    SQLite's own busy handler sleeps ever longer between attempts (up to 100 ms), so a process
    that commits batch after batch keeps the lock from one that waits for seconds; trying often
    takes it in the short gaps between the busy process's batches.
    """
    deadline = time.monotonic() + WRITE_LOCK_WAIT_SECONDS
    while True:
        try:
            connection.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error):
                raise
            if time.monotonic() >= deadline:
                # Typed, so the API answers 503 and the client retries: the batch is not begun.
                raise ServiceBusy("The database is busy: try again shortly.") from error
        time.sleep(WRITE_LOCK_RETRY_SECONDS)


def _connect(
    path: Path, busy_timeout_ms: int, page_cache_mib: int, wal_pages: int
) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    connection.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
    # SQLite's default of 2 MiB holds a few hundred pages: the indexes a busy service writes
    # at many places (idempotency keys, budget windows, consumption per entity) outgrow it,
    # and every page it drops is read back from the operating system. The cache fills as
    # pages are read; a negative size is in KiB.
    connection.execute(f"PRAGMA cache_size=-{int(page_cache_mib) * 1024}")
    # The connection that commits copies the log into the database once it holds this many
    # pages. Busy indexes are written at many places, each page by many batches in a row; the
    # longer the log, the more of those writes a checkpoint copies as one (only a page's last
    # version is copied), at the price of a larger log file between checkpoints.
    connection.execute(f"PRAGMA wal_autocheckpoint={int(wal_pages)}")
    return connection


def _log_due(connection: sqlite3.Connection, cutoff: int) -> bool:
    """Whether the log's oldest entry, the newest aside (it is never pruned), was written before
    ``cutoff``: two reads at the ends of the log's key."""
    row = connection.execute(
        "SELECT written_at FROM change_log WHERE seq < (SELECT MAX(seq) FROM change_log)"
        " ORDER BY seq LIMIT 1"
    ).fetchone()
    return row is not None and int(row[0]) < cutoff


def _logged(connection: sqlite3.Connection, after: int, limit: int) -> list[LoggedChange]:
    rows = connection.execute(
        "SELECT seq, written_at, kind, payload FROM change_log WHERE seq > ? ORDER BY seq LIMIT ?",
        (after, limit),
    ).fetchall()
    return [
        LoggedChange(seq, from_epoch_micros(written_at), decode_change(kind, payload))
        for seq, written_at, kind, payload in rows
    ]
