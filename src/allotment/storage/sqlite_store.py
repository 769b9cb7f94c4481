"""The embedded SQLite store: one connection, one thread, batched durable commits.

Every job goes through a single thread that owns the connection. The thread takes all jobs that
are waiting, runs them one after another inside one ``BEGIN IMMEDIATE`` transaction (each under
its own savepoint, so a failing job undoes only itself), commits once, and only then runs the
jobs' after-commit hooks and answers their callers. With ``synchronous=FULL`` in WAL mode the
commit is on disk when it returns, so an answered write survives a crash of the process, and
one fsync serves every request of the batch (group commit).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from allotment.service.ports import Session
from allotment.storage.counter_cache import CommittedCounters
from allotment.storage.migrate import sqlite_url, upgrade_to_latest
from allotment.storage.sqlite_session import PoolCache, SqliteSession

T = TypeVar("T")
log = logging.getLogger(__name__)

MAX_JOBS_PER_BATCH = 512
MAX_CACHED_POOLS = 100_000


@dataclass(slots=True)
class _Pending:
    job: Callable[[Session], Any]
    settle: Callable[[Any, BaseException | None], None]


class SqliteStore:
    """A :class:`~allotment.service.ports.Store` on one SQLite file."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        upgrade_to_latest(sqlite_url(self.path))
        self._connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._connection.execute("PRAGMA journal_mode=WAL")
        self._connection.execute("PRAGMA synchronous=FULL")
        self._connection.execute("PRAGMA busy_timeout=10000")
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name="allotment-sqlite", daemon=True)
        self._closed = False
        self._committed_pools: PoolCache = {}
        self._committed_counters: CommittedCounters = {}
        self._data_version: int | None = None
        self._foreign_write_callbacks: list[Callable[[Session], None]] = []
        self.batches_committed = 0
        self.jobs_committed = 0
        self._thread.start()

    async def run(self, job: Callable[[Session], T]) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()

        def settle(result: Any, error: BaseException | None) -> None:
            loop.call_soon_threadsafe(_settle_async, future, result, error)

        self._submit(_Pending(job, settle))
        return await future

    def run_blocking(self, job: Callable[[Session], T]) -> T:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def settle(result: Any, error: BaseException | None) -> None:
            if error is None:
                future.set_result(result)
            else:
                future.set_exception(error)

        self._submit(_Pending(job, settle))
        return future.result()

    def on_foreign_write(self, callback: Callable[[Session], None]) -> None:
        """Call ``callback`` (on the store's thread, before the batch's jobs) whenever another
        connection has committed to the file since this store's last batch."""
        self._foreign_write_callbacks.append(callback)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._thread.join()
            self._connection.close()

    def _submit(self, pending: _Pending) -> None:
        if self._closed:
            raise RuntimeError("the store is closed")
        self._queue.put(pending)

    def _serve(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < MAX_JOBS_PER_BATCH:
                try:
                    pending = self._queue.get_nowait()
                except queue.Empty:
                    break
                if pending is None:
                    self._queue.put(None)  # finish this batch, then stop
                    break
                batch.append(pending)
            self._run_batch(batch)

    def _notice_foreign_writes(self, session: SqliteSession) -> None:
        # data_version changes only when another connection commits: then nothing cached from
        # this file can be trusted, since this thread is no longer its only writer.
        (version,) = self._connection.execute("PRAGMA data_version").fetchone()
        changed = self._data_version is not None and version != self._data_version
        self._data_version = version
        if changed:
            log.warning("another process wrote to %s: dropping cached state", self.path)
            self._committed_pools.clear()
            self._committed_counters.clear()
            for callback in self._foreign_write_callbacks:
                callback(session)

    def _run_batch(self, batch: list[_Pending]) -> None:
        connection = self._connection
        session = SqliteSession(connection, self._committed_pools, self._committed_counters)
        outcomes: list[tuple[_Pending, Any, BaseException | None]] = []
        try:
            connection.execute("BEGIN IMMEDIATE")
            self._notice_foreign_writes(session)
            for pending in batch:
                hooks_before = len(session.hooks)
                pools_before = dict(session.pools_as_stored)
                counters_before = session.budget_counters.mark()
                connection.execute("SAVEPOINT job")
                try:
                    result = pending.job(session)
                except Exception as job_error:
                    connection.execute("ROLLBACK TO job")
                    connection.execute("RELEASE job")
                    del session.hooks[hooks_before:]
                    session.pools_as_stored = pools_before
                    session.budget_counters.undo(counters_before)
                    outcomes.append((pending, None, job_error))
                else:
                    connection.execute("RELEASE job")
                    outcomes.append((pending, result, None))
            session.write_budget_counters()
            connection.execute("COMMIT")
        except Exception as commit_error:
            # The batch is not durable: nobody may see its results, and the cache keeps only
            # what earlier batches committed because the hooks never run.
            log.exception("a storage batch failed to commit")
            self._committed_pools.clear()
            self._committed_counters.clear()
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            for pending in batch:
                pending.settle(None, commit_error)
            return
        if len(self._committed_pools) > MAX_CACHED_POOLS:
            self._committed_pools.clear()
        self._committed_pools.update(session.pools_as_stored)
        session.budget_counters.publish()
        self.batches_committed += 1
        self.jobs_committed += len(batch)
        for hook in session.hooks:
            try:
                hook()
            except Exception:
                log.exception("an after-commit hook failed")
        for pending, result, error in outcomes:
            pending.settle(result, error)


def _settle_async(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)
