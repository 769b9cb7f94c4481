"""The in-memory store: the reference implementation of the storage port, and the test double.

Each store has one thread, as :class:`~allotment.storage.sqlite.SqliteStore` has: it takes the
jobs one at a time and runs each under the database's lock, as its own transaction (a job that
raises leaves no row, log entry, fill or scratch behind). Once a job commits, the thread hands
what it published to every sink, then answers the caller.

Several stores may share one :class:`MemoryDatabase`, as processes share a file. Each follows
the others through the log as SqliteStore does: first thing in every job, under the lock (so a
job's own changes reach the sinks after everything committed before it), and every 10 ms
between jobs. :meth:`MemoryStore.follow` waits until everything committed so far is handed over.
The log is pruned like SQLite's (older than the retention by the wall clock at the write, the
newest entry kept), at start-up and once a minute between jobs, or now with :meth:`prune`.

With ``strict_holds`` (the default) every job's holds are checked (``holds.py``).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from allotment.domain.changes import LoggedChange
from allotment.service.changelog import decode_change
from allotment.service.ports import Published, UnitOfWork
from allotment.service.stats import StoreStats
from allotment.storage.jobs import (
    DEFAULT_LOG_RETENTION,
    DEFAULT_USAGE_KEY_RETENTION,
    FOLLOW_INTERVAL_SECONDS,
    PRUNE_BACKLOG_PAUSE_SECONDS,
    PRUNE_CHUNK,
    PRUNE_INTERVAL_SECONDS,
    JobQueue,
    Pending,
    Sink,
    follow_log,
    hand_over_to,
    settle,
)
from allotment.storage.memory.database import LogRow, MemoryDatabase
from allotment.storage.memory.records import MemoryCatalog, MemoryOutcomes
from allotment.storage.memory.uow import MemoryUnitOfWork

T = TypeVar("T")
log = logging.getLogger(__name__)


class MemoryStore:
    """A :class:`~allotment.service.ports.Store` on a :class:`MemoryDatabase`."""

    def __init__(
        self,
        log_retention: timedelta = DEFAULT_LOG_RETENTION,
        database: MemoryDatabase | None = None,
        *,
        strict_holds: bool = True,
        usage_key_retention: timedelta = DEFAULT_USAGE_KEY_RETENTION,
    ) -> None:
        self.database = MemoryDatabase() if database is None else database
        self.log_retention = log_retention
        self.usage_key_retention = usage_key_retention
        self.strict_holds = strict_holds
        self._sinks: list[Sink] = []
        self._last_seq = self.database.log.bounds()[1]  # the newest revision handed to sinks
        self._last_prune = 0.0
        self._jobs = JobQueue()
        self._stats = StoreStats()
        self._thread = threading.Thread(target=self._serve, name="allotment-memory", daemon=True)
        self._thread.start()

    def run(self, job: Callable[[UnitOfWork], T], *, fill: bool = False) -> Awaitable[T]:
        return self._jobs.run(job, fill=fill)

    def run_blocking(self, job: Callable[[UnitOfWork], T]) -> T:
        return self._jobs.run_blocking(job)

    def subscribe(self, sink: Sink) -> None:
        self._sinks.append(sink)

    async def read_log(self, after: int, limit: int) -> list[LoggedChange]:
        return _logged(self.database.log.read(after, limit))

    async def log_bounds(self) -> tuple[int, int]:
        return self.database.log.bounds()

    @property
    def last_seq(self) -> int:
        """The newest revision this store has handed to its sinks."""
        return self._last_seq

    @property
    def stats(self) -> StoreStats:
        """Each job is a batch of its own; there is no commit to time, so ``commit_seconds``
        stays empty and ``batch_seconds`` is the job under the database's lock."""
        return self._stats

    def queue_depth(self) -> int:
        return self._jobs.depth()

    def follow(self) -> None:
        """Hand over to the sinks everything other stores committed so far, before returning."""
        self.run_blocking(_nothing)

    def prune(self, now: datetime | None = None) -> int:
        """Drop what the log keeps past its retention now, and usage reports' idempotency
        records past theirs; how many log entries were dropped."""
        now = now or datetime.now(UTC)
        dropped = self.database.log.prune(now - self.log_retention, PRUNE_CHUNK)
        database = self.database
        with database.lock:  # between jobs: the journal holds nothing, and keeps nothing
            MemoryOutcomes(database).prune_usage(now - self.usage_key_retention, PRUNE_CHUNK)
            database.journal.commit()
        return dropped

    def close(self) -> None:
        if not self._jobs.closed:
            self._jobs.close()
            self._thread.join()

    def _serve(self) -> None:
        while True:
            try:
                # Job by job, a write and a fill at a time when both wait.
                batch = self._jobs.take(2, 1, timeout=FOLLOW_INTERVAL_SECONDS)
            except queue.Empty:
                self._between_jobs()
                continue
            if batch is None:
                return
            for pending in batch:
                self._run(pending)

    def _between_jobs(self) -> None:
        try:
            database = self.database
            if database.log.bounds()[1] > self._last_seq:
                with database.lock:
                    self._follow()
            if time.monotonic() - self._last_prune >= PRUNE_INTERVAL_SECONDS:
                self._last_prune = time.monotonic()
                if self.prune() == PRUNE_CHUNK:  # a whole chunk dropped: more may be due
                    self._last_prune -= PRUNE_INTERVAL_SECONDS - PRUNE_BACKLOG_PAUSE_SECONDS
        except Exception:
            log.exception("following the change log failed; trying again")

    def _follow(self) -> None:
        """Hand over what other stores committed past the last revision handed over (under the
        database's lock)."""
        self._last_seq = follow_log(
            self._last_seq,
            lambda after, limit: _logged(self.database.log.read(after, limit)),
            MemoryCatalog(self.database).load,
            self._hand_over,
        )

    def _run(self, pending: Pending) -> None:
        database = self.database
        with database.lock:
            began = time.perf_counter()
            try:
                self._follow()
            except Exception as error:  # as a SQLite batch that cannot follow fails whole
                log.exception("following the change log failed")
                settle([(pending, None, error)])
                return
            uow = MemoryUnitOfWork(database, self.strict_holds, datetime.now(UTC))
            try:
                result = pending.job(uow)
                uow.before_commit()
            except BaseException as job_error:
                uow.rollback()
                settle([(pending, None, job_error)])
                return
            uow.commit()
            for item in reversed(uow.published):
                if isinstance(item, LoggedChange):
                    self._last_seq = item.seq
                    break
            took = time.perf_counter() - began
        stats = self._stats
        stats.batches += 1
        stats.jobs += 1
        stats.batch_seconds.observe(took)
        self._hand_over(uow.published)
        settle([(pending, result, None)])

    def _hand_over(self, published: Sequence[Published]) -> None:
        hand_over_to(self._sinks, published)


def _nothing(uow: UnitOfWork) -> None:
    return None


def _logged(rows: list[LogRow]) -> list[LoggedChange]:
    return [
        LoggedChange(row.seq, row.written_at, decode_change(row.kind, row.payload)) for row in rows
    ]
