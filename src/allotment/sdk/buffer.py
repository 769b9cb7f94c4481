"""The SDK's durable local usage buffer and the loop that delivers it to the service.

``report_usage`` must not lose a report when the service is down, slow or unreachable, nor
when the app process is killed right after the call returned. So a report is first written
to a local SQLite file (one INSERT, committed before ``append`` returns) and only then sent,
in the background, byte for byte as it was written, and removed once the service answered it.

Apps run under pre-forking servers (gunicorn, uWSGI) with several processes that may share
one buffer file. The processes coordinate through the file: a report is leased to one
deliverer at a time, and reports are delivered oldest first across all of them (a claim never
skips over a report another deliverer holds), because the order of ``behavior: "set"``
reports decides the value the service ends with.
"""

from __future__ import annotations

import json
import logging
import os
import random
import socket
import sqlite3
import threading
import time
import uuid
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Literal

import httpx

log = logging.getLogger("allotment.sdk")

SCHEMA_VERSION = 2
BUSY_TIMEOUT_MS = 5_000
RECOUNT_INTERVAL_SECONDS = 1.0
THREAD_NAME = "allotment-usage-delivery"

# Version 2 keeps each deliverer's lease as one row, the range of reports it claimed, instead
# of a lease written on every report: a claim then writes one row, not a hundred rows and their
# index entries, and holds the file (and the application's appends) a fifth as long. The
# reports' own lease columns are left unused; leases a version 1 deliverer held end.
_SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS usage_reports (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        idempotency_key TEXT NOT NULL,
        body BLOB NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        lease_owner TEXT,
        lease_until REAL
    )
    """,
    "DROP INDEX IF EXISTS usage_reports_leases",
    "UPDATE usage_reports SET lease_owner = NULL, lease_until = NULL WHERE lease_owner IS NOT NULL",
    """
    CREATE TABLE IF NOT EXISTS delivery_leases (
        owner TEXT PRIMARY KEY,
        first_id INTEGER NOT NULL,
        last_id INTEGER NOT NULL,
        until REAL NOT NULL
    )
    """,
)
_INSERT = "INSERT INTO usage_reports (idempotency_key, body) VALUES (?, ?)"
_LIVE_LEASES = "SELECT owner, first_id FROM delivery_leases WHERE until > ?"
_END_EXPIRED = "DELETE FROM delivery_leases WHERE until <= ?"
_END_LEASE = "DELETE FROM delivery_leases WHERE owner = ?"
_END_LEASE_HOLDING = "DELETE FROM delivery_leases WHERE first_id <= ? AND last_id >= ?"
_TAKE_LEASE = (
    "INSERT OR REPLACE INTO delivery_leases (owner, first_id, last_id, until) VALUES (?, ?, ?, ?)"
)
_CLAIMABLE = (
    "SELECT id, idempotency_key, body, attempts FROM usage_reports WHERE id < ? ORDER BY id LIMIT ?"
)
_ATTEMPTS = "UPDATE usage_reports SET attempts = ? WHERE id = ?"
_DELETE = "DELETE FROM usage_reports WHERE id = ?"
_COUNT = "SELECT COUNT(*) FROM usage_reports"
_ALL = "SELECT id, idempotency_key, body, attempts FROM usage_reports ORDER BY id"
_NO_ROW_ABOVE = 2**63 - 1

_SYNCHRONOUS = {"process": "NORMAL", "power": "FULL"}

# Connections a forked child inherited from its parent. SQLite forbids using or closing them
# in the child (the locks they record are the parent's, and closing one acts on the files the
# parent is using), so they are kept referenced here for the life of the process.
_INHERITED_CONNECTIONS: list[sqlite3.Connection] = []
# The buffers of this process, for the fork hooks at the end of the module, and the ones the
# hook before a fork holds until the fork is done.
_LIVE_BUFFERS: weakref.WeakSet[UsageBuffer] = weakref.WeakSet()
_HELD_FOR_FORK: list[UsageBuffer] = []


@dataclass(frozen=True, slots=True)
class BufferedReport:
    """A report as the buffer holds it: ``body`` is exactly what is posted."""

    id: int
    idempotency_key: str
    body: bytes
    attempts: int


class BufferFull(Exception):
    """The buffer already holds ``max_reports``: the report was not stored, so the caller
    knows it is lost rather than finding out from the service's totals."""


class UsageBuffer:
    """Reports waiting for delivery, in a SQLite file several processes may share.

    ``path=None`` keeps a private in-memory buffer: it is not durable (a report is lost with
    the process) and no other process sees it. With a file, a report survives the process
    being killed as soon as ``append`` returned; with ``durability="power"`` each append is
    also synced to disk, so it survives power loss too, at the cost of an fsync per report.

    One connection serves every thread, guarded by a lock: ``append`` runs on app threads,
    ``claim``, ``remove`` and ``release`` on the delivery thread.

    ``os.fork()`` is handled without help: the connection to a file is closed just before
    the fork and opened again after it, in parent and child, because a child that inherits
    an open connection shares SQLite's record of the parent's file locks and holds none of
    its own, so its reports can be lost once the parent closes the file. Servers that fork
    from C without Python's fork hooks (uWSGI) must call ``after_fork()`` in the child.
    """

    _connection: sqlite3.Connection
    _inserter: sqlite3.Cursor
    _opened_by: int
    _closed_for_fork: bool
    _count: int
    _recount_at: float

    def __init__(
        self,
        path: str | os.PathLike[str] | None,
        *,
        max_reports: int = 100_000,
        durability: Literal["process", "power"] = "process",
    ) -> None:
        if durability not in _SYNCHRONOUS:
            raise ValueError(f"durability is 'process' or 'power', not {durability!r}")
        if max_reports < 1:
            raise ValueError("max_reports must be at least 1")
        self._path = None if path is None else os.fspath(path)
        self._durability = durability
        self._max_reports = max_reports
        self._lock = threading.Lock()
        self._refused = 0
        self._full = False
        self._closed = False
        self._connect()
        _LIVE_BUFFERS.add(self)

    def append(self, idempotency_key: str, body: bytes) -> int:
        """Store a report; it is committed (durable as configured) when this returns.

        Returns the report's row id. Raises ``BufferFull`` when the buffer holds
        ``max_reports`` already; the first refusal after the buffer had room logs a warning.
        """
        with self._lock:
            if time.monotonic() >= self._recount_at:
                self._recount()
            if self._count >= self._max_reports:
                self._refused += 1
                first_refusal = not self._full
                self._full = True
            else:
                return self._insert(idempotency_key, body)
        if first_refusal:
            log.warning(
                "The usage buffer %s is full (%d reports waiting for delivery): new usage "
                "reports are refused until deliveries drain it.",
                self._path or "(in memory)",
                self._max_reports,
            )
        raise BufferFull(f"the usage buffer holds {self._max_reports} reports already")

    def claim(
        self, owner: str, limit: int, lease_seconds: float, now: float
    ) -> list[BufferedReport]:
        """Lease the oldest reports nobody holds to ``owner`` until ``now + lease_seconds``.

        A lease that ran out counts as free. The claim stops before the oldest report another
        deliverer still holds, so deliverers sharing a file neither post the same report at
        the same time nor post a newer report before an older one. ``now`` is wall-clock time
        (seconds since the epoch), the one clock processes sharing a file agree on.
        """
        if limit < 1:
            return []
        with self._lock:
            self._connection.execute("BEGIN IMMEDIATE")
            try:
                bound = self._first_held_by_others(owner, now)
                rows = self._connection.execute(_CLAIMABLE, (bound, limit)).fetchall()
                if rows:
                    lease = (owner, rows[0][0], rows[-1][0], now + lease_seconds)
                    self._connection.execute(_TAKE_LEASE, lease)
                else:
                    self._connection.execute(_END_LEASE, (owner,))
                self._connection.execute("COMMIT")
            except BaseException:
                self._connection.execute("ROLLBACK")
                raise
        return [BufferedReport(row[0], row[1], bytes(row[2]), row[3]) for row in rows]

    def _first_held_by_others(self, owner: str, now: float) -> int:
        """The first report another deliverer's live lease holds (past every report when
        none does). Leases that ran out, and those of processes of this host that are gone
        (killed while delivering), end here: their reports need not wait."""
        self._connection.execute(_END_EXPIRED, (now,))
        bound = _NO_ROW_ABOVE
        for holder, first_id in self._connection.execute(_LIVE_LEASES, (now,)).fetchall():
            if holder == owner:
                continue  # this deliverer's own lease, replaced by the claim
            if _gone(holder):
                self._connection.execute(_END_LEASE, (holder,))
                continue
            bound = min(bound, int(first_id))
        return bound

    def remove(self, report_id: int) -> None:
        """Forget a report the service answered. Removing it twice is harmless: ids are
        never reused, so a late remove cannot hit a newer report."""
        with self._lock:
            removed = self._connection.execute(_DELETE, (report_id,)).rowcount
            self._count = max(0, self._count - removed)

    def remove_all(self, report_ids: Sequence[int]) -> None:
        """Forget reports the service answered, in one transaction."""
        if not report_ids:
            return
        with self._lock:
            self._connection.execute("BEGIN IMMEDIATE")
            try:
                removed = self._connection.executemany(
                    _DELETE, [(report_id,) for report_id in report_ids]
                ).rowcount
                self._connection.execute("COMMIT")
            except BaseException:
                self._connection.execute("ROLLBACK")
                raise
            self._count = max(0, self._count - removed)

    def release(self, report_id: int, attempts: int) -> None:
        """Keep a report, recording how many attempts were made, and end the lease that holds
        it (a deliverer releases when its pass stops: the rest of the lease goes too)."""
        with self._lock:
            self._connection.execute("BEGIN IMMEDIATE")
            try:
                self._connection.execute(_ATTEMPTS, (attempts, report_id))
                self._connection.execute(_END_LEASE_HOLDING, (report_id, report_id))
                self._connection.execute("COMMIT")
            except BaseException:
                self._connection.execute("ROLLBACK")
                raise

    def end_lease(self, owner: str) -> None:
        """End ``owner``'s lease: what it claimed and did not remove is free again."""
        with self._lock:
            self._connection.execute(_END_LEASE, (owner,))

    def held(self) -> list[BufferedReport]:
        """Every report the buffer holds, oldest first, leased or not (read once, when a
        client starts on a file that holds reports)."""
        with self._lock:
            rows = self._connection.execute(_ALL).fetchall()
        return [BufferedReport(row[0], row[1], bytes(row[2]), row[3]) for row in rows]

    def depth(self) -> int:
        """How many reports the buffer holds, counted in the table so reports appended or
        delivered by other processes sharing the file are included."""
        with self._lock:
            self._recount()
            return self._count

    @property
    def refused(self) -> int:
        """How many reports ``append`` refused because the buffer was full."""
        return self._refused

    def after_fork(self) -> None:
        """Give a forked child its own connection and lock; a no-op when this process opened
        the connection (Python's fork hooks already did, on ``os.fork()``).

        An inherited connection is set aside, neither used nor closed (SQLite handles must
        not cross a fork), and the inherited lock may have been held by a parent thread that
        does not exist here. Such a child holds no file lock of its own (SQLite's record of
        locks is per process and was copied from the parent), so the parent must keep its
        buffer open while children write. An in-memory buffer starts empty in the child: its
        reports are the parent's, which delivers them.
        """
        if self._closed or self._opened_by == os.getpid():
            return
        if not self._closed_for_fork:
            _INHERITED_CONNECTIONS.append(self._connection)
        self._lock = threading.Lock()
        self._full = False
        self._connect()

    def close(self) -> None:
        """Close the connection (stop the delivery first); later calls are no-ops."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            _LIVE_BUFFERS.discard(self)
            self._connection.close()

    def _connect(self) -> None:
        self._connection = _open(self._path, self._durability)
        self._inserter = self._connection.cursor()
        self._opened_by = os.getpid()
        self._closed_for_fork = False
        self._recount()

    def _hold_for_fork(self) -> None:
        """Before a fork: wait for the statement in progress, then close the file so the
        child inherits no connection to it. The lock stays held until the fork is done."""
        self._lock.acquire()
        if self._path is not None and not self._closed:
            self._connection.close()
            self._closed_for_fork = True

    def _resume_after_fork(self) -> None:
        """In the parent after a fork: open the file again and let callers in."""
        try:
            if self._closed_for_fork:
                self._connect()
        finally:
            self._lock.release()

    def _insert(self, idempotency_key: str, body: bytes) -> int:
        self._inserter.execute(_INSERT, (idempotency_key, body))
        report_id = self._inserter.lastrowid
        if report_id is None:
            raise sqlite3.DatabaseError("SQLite gave no row id for a stored usage report")
        self._count += 1
        self._full = False
        return report_id

    def _recount(self) -> None:
        """Refresh the in-memory count from the table: other processes sharing the file
        append and deliver without this one knowing."""
        self._count = _count(self._connection)
        self._recount_at = time.monotonic() + RECOUNT_INTERVAL_SECONDS


def _hold_buffers_for_fork() -> None:
    for buffer in list(_LIVE_BUFFERS):
        _HELD_FOR_FORK.append(buffer)
        buffer._hold_for_fork()


def _resume_buffers_in_parent() -> None:
    held = list(_HELD_FOR_FORK)
    _HELD_FOR_FORK.clear()
    for buffer in held:
        buffer._resume_after_fork()


def _reopen_buffers_in_child() -> None:
    _HELD_FOR_FORK.clear()
    for buffer in list(_LIVE_BUFFERS):
        buffer.after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_hold_buffers_for_fork,
        after_in_parent=_resume_buffers_in_parent,
        after_in_child=_reopen_buffers_in_child,
    )


def _open(path: str | None, durability: str) -> sqlite3.Connection:
    """A connection in autocommit mode (each append is its own transaction, committed by the
    INSERT itself), on a file in WAL mode so appends do not wait for deliveries' reads."""
    connection = sqlite3.connect(
        ":memory:" if path is None else path, isolation_level=None, check_same_thread=False
    )
    connection.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    if path is not None:
        _use_wal(connection, path)
        connection.execute(f"PRAGMA synchronous={_SYNCHRONOUS[durability]}")
    _migrate(connection)
    return connection


def _use_wal(connection: sqlite3.Connection, path: str) -> None:
    (mode,) = connection.execute("PRAGMA journal_mode=WAL").fetchone()
    if str(mode).lower() != "wal":
        log.warning(
            "The usage buffer %s could not use SQLite's WAL mode (its file system may not "
            "support it) and uses %s: appends are slower and wait for deliveries.",
            path,
            mode,
        )


def _migrate(connection: sqlite3.Connection) -> None:
    """Create the schema once, under the write lock, so processes opening a new file at the
    same time do not race; refuse a file a newer SDK has changed in ways this one cannot read.
    """
    if _schema_version(connection) == SCHEMA_VERSION:
        return
    connection.execute("BEGIN IMMEDIATE")
    try:
        version = _schema_version(connection)
        if version > SCHEMA_VERSION:
            raise RuntimeError(
                f"the usage buffer's schema is version {version}, written by a newer SDK; "
                f"this SDK reads version {SCHEMA_VERSION}"
            )
        for statement in _SCHEMA:
            connection.execute(statement)
        connection.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise


def _schema_version(connection: sqlite3.Connection) -> int:
    (version,) = connection.execute("PRAGMA user_version").fetchone()
    return int(version)


def _count(connection: sqlite3.Connection) -> int:
    (count,) = connection.execute(_COUNT).fetchone()
    return int(count)


@dataclass(frozen=True, slots=True)
class Answer:
    """The service's answer to one posted report; ``retry_after`` is its Retry-After header
    in seconds, when it sent one."""

    status: int
    body: bytes
    retry_after: float | None = None


# Sends one body to ``POST /v1/usage`` and returns the answer, whatever its status; a network
# failure raises httpx.TransportError or OSError.
Post = Callable[[bytes], Answer]


class DeliveryState(StrEnum):
    """What the delivery is doing, for health checks and metrics."""

    IDLE = "idle"
    DELIVERING = "delivering"
    BACKING_OFF = "backing_off"
    UNAUTHORIZED = "unauthorized"
    STOPPED = "stopped"


class Backoff:
    """How long to wait after a failed attempt: ``first`` seconds, doubling up to ``cap``, a
    random delay within the upper half of that so processes that failed together do not
    retry together, and back to ``first`` once ``healthy_reset`` seconds passed without a
    failure (a service that fails now and then is not treated as one that is down).
    """

    def __init__(
        self,
        *,
        first: float = 1.0,
        cap: float = 30.0,
        healthy_reset: float = 60.0,
        rng: random.Random | None = None,
    ) -> None:
        self._first = first
        self._cap = cap
        self._healthy_reset = healthy_reset
        self._rng = rng or random.Random()
        self._ceiling: float | None = None
        self._last_failure: float | None = None

    def failed(self, now: float) -> float:
        """Record a failure at ``now`` and return the delay before the next attempt."""
        self._forget_if_healthy(now)
        self._ceiling = self._first if self._ceiling is None else min(self._cap, self._ceiling * 2)
        self._last_failure = now
        return self._rng.uniform(self._ceiling / 2, self._ceiling)

    def succeeded(self, now: float) -> None:
        """Record a success at ``now``; the delays start over only once the service has been
        healthy for ``healthy_reset`` seconds."""
        self._forget_if_healthy(now)

    def reset(self) -> None:
        """Start the delays over: the service is known to be back."""
        self._ceiling = None
        self._last_failure = None

    def _forget_if_healthy(self, now: float) -> None:
        if self._last_failure is not None and now - self._last_failure >= self._healthy_reset:
            self._ceiling = None
            self._last_failure = None


class _Verdict(Enum):
    ACCEPTED = "accepted"
    UNAUTHORIZED = "unauthorized"
    REFUSED = "refused"
    RETRY = "retry"


@dataclass(frozen=True, slots=True)
class _Halt:
    """The pass stops here, in ``state``; the next one comes after ``delay`` seconds (None:
    on a wake)."""

    state: DeliveryState
    delay: float | None


class UsageDelivery:
    """Posts the buffer's reports to the service, oldest first, from one daemon thread.

    A report is removed once the service answered it: accepted (2xx) or refused for good
    (a 4xx other than 401, 403, 408 and 429). Anything else keeps it: a failure (408, 429,
    5xx, another status, a network error) is retried forever with backoff; 401 or 403 stops
    deliveries until ``resume()`` or ``start()``, since a wrong or revoked key never heals
    by retrying. ``on_answer`` hears the answer that settled each report.

    The thread sleeps until ``wake()``; it also looks at the buffer every ``lease_seconds``
    for reports another process sharing the file appended or left behind. A pass posts only
    while at least half of its lease is left, so a post that takes less than half the lease
    never overlaps another process's post of the same report.
    """

    delivered: int
    rejected: int
    failures: int
    last_error: str | None
    _control: threading.Lock
    _wakeup: threading.Event
    _stopping: threading.Event
    _retry: threading.Event
    _thread: threading.Thread | None
    _state: DeliveryState

    def __init__(
        self,
        buffer: UsageBuffer,
        post: Post,
        *,
        on_answer: Callable[[BufferedReport, Answer], None] | None = None,
        owner: str | None = None,
        batch: int = 100,
        lease_seconds: float = 30.0,
        backoff: Backoff | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if batch < 1 or lease_seconds <= 0:
            raise ValueError("batch must be at least 1 and lease_seconds more than 0")
        self._buffer = buffer
        self._answered: list[int] = []  # reports answered in this pass, removed at its end
        self._post = post
        self._on_answer = on_answer
        self._owner_given = owner is not None
        self._owner = owner or _default_owner()
        self._batch = batch
        self._lease_seconds = lease_seconds
        self._backoff = backoff or Backoff()
        self._clock = clock
        self._wall_clock = wall_clock
        self._reset_process_state()

    @property
    def state(self) -> DeliveryState:
        return self._state

    def start(self) -> None:
        """Start the delivery thread; if it runs already, resume deliveries a 401 or 403
        stopped."""
        with self._control:
            self._stopped = False
            running = self._thread is not None and self._thread.is_alive()
            if not running or self._stopping.is_set():
                self._state = DeliveryState.IDLE
                self._unauthorized = False
                self._stopping = threading.Event()
                self._thread = threading.Thread(
                    target=self._run, args=(self._stopping,), name=THREAD_NAME, daemon=True
                )
                self._thread.start()
                return
        self.resume()

    def resume(self) -> None:
        """Deliver again after a 401 or 403 (once the key is fixed)."""
        with self._control:
            if self._unauthorized:
                self._unauthorized = False
                if not self._stopped:
                    self._state = DeliveryState.IDLE
        self._wakeup.set()

    def wake(self) -> None:
        """Deliver now rather than on the next poll: called after each append, so a report
        reaches a healthy service within milliseconds. A wake does not cut a backoff short."""
        self._wakeup.set()

    def retry_now(self) -> None:
        """The service is known to answer again (its change feed is live): cut a backoff
        short and start its delays over, so reports held through an outage go at once."""
        self._backoff.reset()
        self._retry.set()
        self._wakeup.set()

    def stop(self, timeout: float) -> bool:
        """Ask the thread to stop and wait ``timeout`` seconds at most for it.

        True if it ended. A thread blocked in a post ends when the post returns, without
        posting again; the reports it held stay in the buffer.
        """
        with self._control:
            self._stopped = True
            self._state = DeliveryState.STOPPED
            self._stopping.set()
            self._retry.set()
            self._wakeup.set()
            thread = self._thread
        if thread is None or thread is threading.current_thread():
            return thread is None
        thread.join(max(0.0, timeout))
        return not thread.is_alive()

    def after_fork(self) -> None:
        """Forget the parent's thread, events, lock and counters in a forked child, so
        ``start()`` starts a fresh thread. Call ``buffer.after_fork()`` first."""
        if not self._owner_given:
            self._owner = _default_owner()
        self._reset_process_state()

    def deliver_once(self) -> float | None:
        """One pass: claim a batch and post each report in order until one cannot be settled.

        Returns the delay before the next pass: 0 when more reports may be waiting, the
        backoff after a failure, None when nothing is waiting or deliveries are stopped by a
        401/403. An unexpected exception (from ``post`` or the buffer) propagates, after the
        claimed reports were released.
        """
        return self._pass(None)

    def _reset_process_state(self) -> None:
        self._control = threading.Lock()
        self._wakeup = threading.Event()
        self._retry = threading.Event()
        self._stopping = threading.Event()
        self._thread = None
        self._state = DeliveryState.IDLE
        self._stopped = False
        self._unauthorized = False
        self._streak = 0
        self.delivered = 0
        self.rejected = 0
        self.failures = 0
        self.last_error = None

    def _run(self, stopping: threading.Event) -> None:
        delay: float | None = 0.0
        while not stopping.is_set():
            self._sleep(delay, stopping)
            if stopping.is_set():
                return
            delay = self._guarded_pass(stopping)

    def _sleep(self, delay: float | None, stopping: threading.Event) -> None:
        """Wait for a wake (or the poll) when idle, and the whole delay when backing off:
        appends during an outage must not turn the backoff into a retry per report."""
        if delay is None:
            self._wakeup.wait(self._lease_seconds)
        elif delay > 0:
            self._retry.wait(delay)  # set by stop() too
        self._retry.clear()
        self._wakeup.clear()

    def _guarded_pass(self, stopping: threading.Event) -> float | None:
        """A pass that cannot end the thread: an unexpected error is logged and retried
        after a backoff, like a failed delivery."""
        try:
            return self._pass(stopping)
        except Exception as error:
            self.failures += 1
            self.last_error = f"{type(error).__name__}: {error}"
            delay = self._backoff.failed(self._clock())
            log.exception("Usage delivery failed unexpectedly; retrying in %.1f s.", delay)
            self._settle(DeliveryState.BACKING_OFF, stopping)
            return delay

    def _pass(self, stopping: threading.Event | None) -> float | None:
        if self._unauthorized:
            return None
        self._settle(DeliveryState.DELIVERING, stopping)
        claimed_at = self._wall_clock()
        reports = self._buffer.claim(self._owner, self._batch, self._lease_seconds, claimed_at)
        pending = deque(reports)
        try:
            while pending:
                if self._should_pause(stopping, claimed_at):
                    return 0.0
                halt = self._deliver(pending.popleft())
                if halt is not None:
                    self._settle(halt.state, stopping)
                    return halt.delay
        finally:
            self._forget_answered()
            self._release_unposted(pending)
        self._settle(DeliveryState.IDLE, stopping)
        return 0.0 if len(reports) == self._batch else None

    def _should_pause(self, stopping: threading.Event | None, claimed_at: float) -> bool:
        """Stop posting when asked to, or when less than half the lease is left: another
        process may claim the report once the lease runs out, mid-post."""
        if stopping is not None and stopping.is_set():
            return True
        return self._wall_clock() - claimed_at >= self._lease_seconds / 2

    def _release_unposted(self, reports: Iterable[BufferedReport]) -> None:
        """End the pass's lease: what it claimed but did not post is free again, so the next
        pass (here or in another process) starts with the oldest report rather than after the
        lease runs out."""
        self._buffer.end_lease(self._owner)

    def _deliver(self, report: BufferedReport) -> _Halt | None:
        try:
            answer = self._post(report.body)
        except (httpx.TransportError, OSError) as error:
            return self._failed(report, f"{type(error).__name__}: {error}", None)
        except Exception:
            self._buffer.release(report.id, report.attempts + 1)
            raise
        verdict = _verdict(answer.status)
        if verdict is _Verdict.UNAUTHORIZED:
            return self._denied(report, answer)
        if verdict is _Verdict.RETRY:
            return self._failed(report, _describe(answer), answer.retry_after)
        if verdict is _Verdict.ACCEPTED:
            self._accepted(report, answer)
        else:
            self._refused(report, answer)
        return None

    def _forget_answered(self) -> None:
        """Remove the reports this pass got answers for, in one transaction: the buffer's
        lock is then taken once a pass rather than once a report, and the application's
        appends wait for it less. A report answered but not yet removed when the process dies
        is sent again, and its idempotency key makes the service answer it as a replay."""
        answered, self._answered = self._answered, []
        self._buffer.remove_all(answered)

    def _accepted(self, report: BufferedReport, answer: Answer) -> None:
        self._answered.append(report.id)
        self.delivered += 1
        self._backoff.succeeded(self._clock())
        self._end_streak()
        self._notify(report, answer)

    def _refused(self, report: BufferedReport, answer: Answer) -> None:
        """The service answered and will never accept this report: keeping it would block
        every report after it forever."""
        self._answered.append(report.id)
        self.rejected += 1
        self.last_error = f"report {report.idempotency_key} refused: {_describe(answer)}"
        log.warning(
            "The service refused usage report %s (%s); it is dropped from the buffer.",
            report.idempotency_key,
            _describe(answer),
        )
        self._end_streak()
        self._notify(report, answer)

    def _denied(self, report: BufferedReport, answer: Answer) -> _Halt:
        self._buffer.release(report.id, report.attempts + 1)
        self._unauthorized = True
        self.last_error = _describe(answer)
        log.error(
            "Usage deliveries are stopped: the service denied the API key (%s). Reports are "
            "kept in the buffer and delivered after the key is fixed and deliveries resumed.",
            _describe(answer),
        )
        return _Halt(DeliveryState.UNAUTHORIZED, None)

    def _failed(self, report: BufferedReport, reason: str, retry_after: float | None) -> _Halt:
        self._buffer.release(report.id, report.attempts + 1)
        self.failures += 1
        self.last_error = reason
        delay = self._backoff.failed(self._clock())
        if retry_after is not None and retry_after > delay:
            delay = retry_after
        self._streak += 1
        level = logging.WARNING if self._streak == 1 else logging.INFO
        log.log(
            level,
            "Usage delivery failed (%s, attempt %d of report %s); retrying in %.1f s.",
            reason,
            report.attempts + 1,
            report.idempotency_key,
            delay,
        )
        return _Halt(DeliveryState.BACKING_OFF, delay)

    def _end_streak(self) -> None:
        if self._streak:
            log.info("Usage delivery recovered after %d failed attempts.", self._streak)
            self._streak = 0

    def _notify(self, report: BufferedReport, answer: Answer) -> None:
        """Tell the app about the answer; its callback's errors must not stop deliveries."""
        if self._on_answer is None:
            return
        try:
            self._on_answer(report, answer)
        except Exception:
            log.exception("on_answer raised for usage report %s", report.idempotency_key)

    def _settle(self, state: DeliveryState, stopping: threading.Event | None) -> None:
        """Record the state, unless deliveries were stopped: a pass finishing after stop()
        (or a thread outliving it, blocked in a post) must not make them look alive."""
        with self._control:
            if not self._stopped and (stopping is None or not stopping.is_set()):
                self._state = state


def _verdict(status: int) -> _Verdict:
    if 200 <= status < 300:
        return _Verdict.ACCEPTED
    if status in (401, 403):
        return _Verdict.UNAUTHORIZED
    if status in (408, 429):
        return _Verdict.RETRY
    if 400 <= status < 500:
        return _Verdict.REFUSED
    return _Verdict.RETRY


def _describe(answer: Answer) -> str:
    return f"HTTP {answer.status}: {_error_message(answer.body)}"


def _error_message(body: bytes) -> str:
    """The message of the service's error body (``{"error": {"message": ...}}``), or the
    start of the body as text when it is something else (a proxy's page)."""
    try:
        message = json.loads(body)["error"]["message"]
    except (ValueError, TypeError, KeyError):
        message = None
    if isinstance(message, str):
        return message
    text = body[:200].decode("utf-8", errors="replace").strip()
    return text or "(empty body)"


def _default_owner() -> str:
    """Names the lease holder in the file, for whoever inspects it: host, process, instance."""
    return f"{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:8]}"


def _gone(owner: str) -> bool:
    """Whether ``owner`` (``_default_owner``'s host/pid/instance) is a process of this host
    that no longer runs. Owners of other hosts, or named otherwise, are never judged."""
    host, _, rest = owner.partition("/")
    pid_text = rest.partition("/")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, under another user
    return False
