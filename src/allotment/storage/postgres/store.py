"""The PostgreSQL store: one connection and one thread per process, batched commits.

Each process runs its jobs as the SQLite store does: a thread takes every job waiting, runs them
one after another inside one transaction, each under a savepoint of its own (a failing job
undoes only itself), commits once, and only then hands the batch's changes and fills to the
projector and answers the callers. What differs is that other processes commit beside it:

- **Holds are locks** (``uow.py``), released when the batch commits. Only a batch's first job
  waits for one as long as it takes; a later job that would wait longer than
  ``HOLD_WAIT_IN_BATCH`` ends the batch early and starts the next (``_run_transaction``), so
  batches of two processes never wait on each other in a cycle. A job that meets a deadlock,
  a serialization failure or a unique violation (another process wrote the same key first) is
  rolled back to its savepoint and run again, up to ``JOB_ATTEMPTS`` times, never answered as
  an error for that alone.
- **Revisions** come from ``change_log_head`` as the batch's last statement (migration 0010),
  so they are gap-free and in commit order across processes. Before handing its own changes
  over, the store hands over every revision below its first that it has not handed over yet:
  those committed just before it, by others.
- **Following**: between batches, every ``FOLLOW_INTERVAL_SECONDS``, and as a batch begins, the
  store reads ``change_log_head`` and hands over what others committed past its last revision.

Nothing is cached between batches but what the projector keeps: pools and counters are read
from their rows by every job that needs them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import psycopg
from psycopg import errors
from psycopg_pool import ConnectionPool

from allotment.domain.changes import LoggedChange
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
from allotment.storage.migrate import upgrade_to_latest
from allotment.storage.postgres.catalog import PostgresCatalog
from allotment.storage.postgres.db import Db
from allotment.storage.postgres.outcomes import PostgresOutcomes
from allotment.storage.postgres.uow import PostgresUnitOfWork

T = TypeVar("T")
log = logging.getLogger(__name__)

MAX_JOBS_PER_BATCH = 512
READER_CONNECTIONS = 4
PREPARE_THRESHOLD = 5  # psycopg's own default
FILLS_PER_BATCH = 32
JOB_ATTEMPTS = 5
# Failures that say "this transaction met another one", not "this job is wrong". A unique
# violation is one too: two processes that both found no idempotency record for a key (or no
# customer, key or object of an id) and both wrote one; the loser waited for the winner's
# commit, and its job, run again, finds what the winner wrote (a replay, an update).
RETRIED = (
    errors.DeadlockDetected,
    errors.SerializationFailure,
    errors.UniqueViolation,
    errors.LockNotAvailable,  # a first job past a lock_timeout the server sets
)
# How long a job other than its transaction's first may wait for a hold (``_run_transaction``).
HOLD_WAIT_IN_BATCH = "20ms"


class PostgresStore:
    """A :class:`~allotment.service.ports.Store` on one PostgreSQL database."""

    def __init__(
        self,
        url: str,
        log_retention: timedelta = DEFAULT_LOG_RETENTION,
        usage_key_retention: timedelta = DEFAULT_USAGE_KEY_RETENTION,
        *,
        prepared_statements: bool = True,
    ) -> None:
        self.url = url
        self.log_retention = log_retention
        self.usage_key_retention = usage_key_retention
        upgrade_to_latest(url)
        # psycopg prepares a statement it has run five times; a pooler in transaction mode
        # that cannot keep prepared statements (PgBouncer before 1.21) needs that off.
        prepare_threshold = PREPARE_THRESHOLD if prepared_statements else None
        self._connection: Db = psycopg.connect(
            url, autocommit=True, prepare_threshold=prepare_threshold
        )
        # Readers of the log (``GET /v1/stream``, ``/readyz``) beside the writer: a few pooled
        # connections, so that readers never wait behind the store's batches or each other.
        self._readers: ConnectionPool[Db] = ConnectionPool(
            url,
            min_size=1,
            max_size=READER_CONNECTIONS,
            kwargs={"autocommit": True, "prepare_threshold": prepare_threshold},
            name="allotment-log-readers",
            open=True,
        )
        self._sinks: list[Sink] = []
        self._last_seq = self._head()  # the newest revision handed to the sinks
        self._last_prune = 0.0
        self._jobs = JobQueue()
        self._stats = StoreStats()
        self._thread = threading.Thread(target=self._serve, name="allotment-postgres", daemon=True)
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
        with self._readers.connection() as reader:
            return _logged(reader, after, limit)

    def _log_bounds(self) -> tuple[int, int]:
        with self._readers.connection() as reader:
            row = reader.execute(
                "SELECT COALESCE(MIN(seq), 0), COALESCE(MAX(seq), 0) FROM change_log"
            ).fetchone()
        assert row is not None
        return int(row[0]), int(row[1])

    @property
    def last_seq(self) -> int:
        return self._last_seq

    @property
    def stats(self) -> StoreStats:
        return self._stats

    def queue_depth(self) -> int:
        return self._jobs.depth()

    def close(self) -> None:
        if not self._jobs.closed:
            self._jobs.close()
            self._thread.join()
            self._connection.close()
            self._readers.close()

    # ------------------------------------------------------------------ the store's thread

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
            self._follow()
            if self._prune_due():
                self._prune()
        except Exception:
            log.exception("following the change log failed; trying again")

    def _head(self) -> int:
        row = self._connection.execute("SELECT seq FROM change_log_head WHERE id = 1").fetchone()
        return 0 if row is None else int(row[0])

    def _follow(self, below: int | None = None) -> None:
        """Hand over what others committed past the last revision handed over (below
        ``below``, the batch's own first revision, when given)."""
        if below is None and self._head() <= self._last_seq:
            return
        connection = self._connection

        def read(after: int, limit: int) -> list[LoggedChange]:
            return _logged(connection, after, limit, below)

        self._last_seq = follow_log(
            self._last_seq, read, PostgresCatalog(connection).load, self._hand_over
        )

    def _hand_over(self, published: Sequence[Published]) -> None:
        hand_over_to(self._sinks, published)

    def _prune(self) -> None:
        """As the SQLite store prunes: a chunk of the log and of the usage reports' idempotency
        records past their retention, in one short transaction; again after a short pause while
        more of either is due."""
        self._last_prune = time.monotonic()
        now = datetime.now(UTC)
        cutoff = to_epoch_micros(now - self.log_retention)
        connection = self._connection
        with connection.transaction():
            log_behind = False
            if _log_due(connection, cutoff):
                connection.execute(
                    "DELETE FROM change_log WHERE seq < (SELECT MAX(seq) FROM change_log)"
                    " AND seq < (SELECT MIN(seq) FROM change_log) + %s AND written_at < %s",
                    (PRUNE_CHUNK, cutoff),
                )
                log_behind = _log_due(connection, cutoff)
            records = PostgresOutcomes(connection).prune_usage(
                now - self.usage_key_retention, USAGE_KEY_PRUNE_CHUNK
            )
        if log_behind or records == USAGE_KEY_PRUNE_CHUNK:
            # The pause counts from the pass's end: writes get the lock between two passes.
            self._last_prune = (
                time.monotonic() - PRUNE_INTERVAL_SECONDS + PRUNE_BACKLOG_PAUSE_SECONDS
            )

    def _run_batch(self, batch: list[Pending]) -> None:
        while batch:
            batch = self._run_transaction(batch)

    def _run_transaction(self, batch: list[Pending]) -> list[Pending]:
        """Run jobs of ``batch`` in one transaction and commit; the jobs left for the next.

        Only the first job may wait for a hold as long as it takes: it holds nothing else yet,
        and takes its own in the port's order. A later one waits at most ``HOLD_WAIT_IN_BATCH``
        (``lock_timeout``), because the batch holds what the jobs before it took, in no order:
        another process's batch may be waiting for those. Past it, the job is taken back, the
        jobs before it commit (releasing their holds), and it starts the next transaction, as
        its first job. So no two batches ever wait on each other for long, and none deadlocks."""
        connection = self._connection
        uow = PostgresUnitOfWork(connection)
        finished: list[Finished] = []
        left: list[Pending] = []
        try:
            self._follow()
            began = time.perf_counter()
            # In pipeline mode a statement whose result nobody reads is sent without waiting
            # for its answer; a read, and the end of every job, wait for all before them.
            with connection.pipeline() as pipeline:
                connection.execute("BEGIN")
                for index, pending in enumerate(batch):
                    if index == 1:
                        connection.execute(f"SET LOCAL lock_timeout = '{HOLD_WAIT_IN_BATCH}'")
                    done = self._run_job(uow, pending, pipeline, first=index == 0)
                    if done is None:
                        left = batch[index:]
                        self._stats.batches_cut += 1
                        break
                    finished.append(done)
                uow.before_commit()
                committing = time.perf_counter()
                connection.execute("COMMIT")
            committed = time.perf_counter()
        except Exception as commit_error:
            # Not durable: nobody may see its results, and nothing of it is handed over.
            log.exception("a storage batch failed to commit")
            if connection.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                connection.execute("ROLLBACK")
            settle([(pending, None, commit_error) for pending in batch])
            return []
        stats = self._stats
        stats.batches += 1
        stats.jobs += len(finished)
        stats.batch_seconds.observe(committed - began)
        stats.commit_seconds.observe(committed - committing)
        first = uow.first_revision
        if first is not None:
            if first > self._last_seq + 1:
                self._follow(below=first)  # others' commits just before this one
            for item in reversed(uow.published):
                if isinstance(item, LoggedChange):
                    self._last_seq = item.seq
                    break
        self._hand_over(uow.published)
        settle(finished)
        return left

    def _run_job(
        self, uow: PostgresUnitOfWork, pending: Pending, pipeline: psycopg.Pipeline, first: bool
    ) -> Finished | None:
        """Run one job under a savepoint of its own; again when it only met another
        transaction (a deadlock, a serialization failure, a unique violation); None when it
        is not its transaction's first job and would have waited longer for a hold.

        The job's last statements may still be on their way when it returns: the pipeline's
        sync waits for them, so that an error any of them met is the job's, raised here."""
        connection = self._connection
        for attempt in range(1, JOB_ATTEMPTS + 1):
            mark = uow.mark()
            connection.execute("SAVEPOINT job")
            try:
                result: Any = pending.job(uow)
                connection.execute("RELEASE SAVEPOINT job")
                pipeline.sync()
            except Exception as job_error:
                # A statement that failed before a sync leaves the pipeline aborted up to the
                # next one: end that stretch first (what it raises is the job's error again).
                with contextlib.suppress(psycopg.Error):
                    pipeline.sync()
                # The savepoint stands: a statement after a failed one is not run.
                connection.execute("ROLLBACK TO SAVEPOINT job")
                connection.execute("RELEASE SAVEPOINT job")
                pipeline.sync()
                uow.undo(mark)
                if isinstance(job_error, errors.LockNotAvailable) and not first:
                    return None
                if isinstance(job_error, RETRIED) and attempt < JOB_ATTEMPTS:
                    reason = type(job_error).__name__
                    self._stats.retries[reason] = self._stats.retries.get(reason, 0) + 1
                    continue
                return (pending, None, job_error)
            return (pending, result, None)
        raise AssertionError("unreachable: the last attempt returns")


def _log_due(connection: Db, cutoff: int) -> bool:
    """Whether the log's oldest entry, the newest aside (it is never pruned), was written before
    ``cutoff``: two reads at the ends of the log's key. The DELETE reads every row of its range
    to test its age, so it runs only when this says some are due."""
    row = connection.execute(
        "SELECT written_at FROM change_log WHERE seq < (SELECT MAX(seq) FROM change_log)"
        " ORDER BY seq LIMIT 1"
    ).fetchone()
    return row is not None and int(row[0]) < cutoff


def _logged(connection: Db, after: int, limit: int, below: int | None = None) -> list[LoggedChange]:
    rows = connection.execute(
        "SELECT seq, written_at, kind, payload FROM change_log WHERE seq > %s AND seq < %s"
        " ORDER BY seq LIMIT %s",
        (after, 2**63 - 1 if below is None else below, limit),
    ).fetchall()
    return [
        LoggedChange(seq, from_epoch_micros(written_at), decode_change(kind, payload))
        for seq, written_at, kind, payload in rows
    ]
