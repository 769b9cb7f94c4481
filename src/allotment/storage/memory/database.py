"""The memory adapter's database: tables, the change log, and the lock jobs run under.

A :class:`MemoryDatabase` is what :class:`~allotment.storage.memory.store.MemoryStore` instances
share, as processes share a database file: the truth (usage events, ledger entries), the records
(customers, holdings, keys, ...), the change log, and one lock under which one job at a time, of
any store, reads and writes. Every write of a job goes through the database's journal, so a job
that raises is undone; the log is written only when a job commits.

Tables keep each row with its creation ``seq``, per table, as SQLite's ``seq`` columns do: lists
are ordered by it and paged with it as the cursor.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from allotment.domain.budgets import Budget, EntityPath
from allotment.domain.credits import Grant, RevenueTotals
from allotment.domain.customers import ApiKey, Customer
from allotment.domain.entities import Entity
from allotment.domain.events import LoggedEvent
from allotment.domain.holdings import Override, Promotion, Subscription
from allotment.domain.reservations import Reservation
from allotment.domain.webhooks import Delivery, Endpoint
from allotment.service.ports import LedgerRecord, Page, StoredOutcome, Timer
from allotment.storage.memory.journal import Journal

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
R = TypeVar("R")

Window = tuple[int, int]
"""(start, end) in epoch microseconds; a window that never ends has end ``NEVER_ENDS``."""

NEVER_ENDS = 2**62  # as the SQLite adapter stores an open end


class ConstraintError(RuntimeError):
    """A write the schema refuses (a unique key taken, a required value missing), as SQLite
    raises ``IntegrityError``: the job fails."""


@dataclass(frozen=True, slots=True)
class CatalogRow:
    kind: str
    id: str
    document: str
    created_at: int
    updated_at: int


@dataclass(frozen=True, slots=True)
class CustomerRow:
    customer: Customer  # its metadata is kept encoded, below, and decoded afresh on each read
    metadata: bytes


@dataclass(frozen=True, slots=True)
class PromotionRow:
    promotion: Promotion  # its spec is rebuilt from ``spec`` against the catalog it is read with
    spec: str


@dataclass(frozen=True, slots=True)
class OverrideRow:
    override: Override
    spec: str


@dataclass(frozen=True, slots=True)
class OutcomeRow:
    outcome: StoredOutcome
    created_at: int


@dataclass(frozen=True, slots=True)
class GrantRow:
    customer: str
    currency: str
    grant: Grant


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """A usage event as the figures read it."""

    timestamp: int
    amount: int
    entity_path: EntityPath


@dataclass(frozen=True, slots=True)
class LogRow:
    seq: int
    written_at: datetime
    kind: str
    customer: str | None
    payload: bytes


class Table(Generic[K, V]):
    """Rows by primary key, each with its creation ``seq`` and an owner (the customer, for the
    tables read one customer at a time). Writes go through the journal."""

    __slots__ = ("_journal", "_owned", "_sequence", "rows")

    def __init__(self, journal: Journal) -> None:
        self._journal = journal
        self._sequence: dict[str, int] = {"seq": 0}
        self.rows: dict[K, tuple[int, Hashable, V]] = {}
        self._owned: dict[Hashable, dict[K, None]] = {}

    def get(self, key: K) -> V | None:
        row = self.rows.get(key)
        return None if row is None else row[2]

    def __contains__(self, key: K) -> bool:
        return key in self.rows

    def insert(self, key: K, value: V, owner: Hashable = None) -> int:
        journal = self._journal
        seq = self._sequence["seq"] + 1
        journal.put(self._sequence, "seq", seq)
        journal.put(self.rows, key, (seq, owner, value))
        journal.put(journal.child(self._owned, owner, dict), key, None)
        return seq

    def update(self, key: K, value: V) -> None:
        """Replace the row's value; it keeps its seq and owner."""
        seq, owner, _ = self.rows[key]
        self._journal.put(self.rows, key, (seq, owner, value))

    def delete(self, key: K) -> bool:
        row = self.rows.get(key)
        if row is None:
            return False
        self._journal.delete(self.rows, key)
        self._journal.delete(self._owned[row[1]], key)
        return True

    def ordered(self, owner: Hashable = None, *, everyone: bool = False) -> list[tuple[int, V]]:
        """(seq, value) of the owner's rows (or every row), oldest first."""
        if everyone:
            found = [(seq, value) for seq, _, value in self.rows.values()]
        else:
            rows = self.rows
            found = [(rows[key][0], rows[key][2]) for key in self._owned.get(owner, ())]
        found.sort(key=_first)
        return found

    def values(self, owner: Hashable = None) -> list[V]:
        return [value for _, value in self.ordered(owner)]


def _first(row: tuple[int, Any]) -> int:
    return row[0]


def page(
    rows: Iterable[tuple[int, V]], after: str | None, limit: int, build: Callable[[V], R]
) -> Page[R]:
    """Rows after the cursor (a ``seq``), oldest first, as ``rows.page_rows`` and ``paged`` of
    the SQLite adapter give them: one more is read to know whether there is a next page."""
    start = None if after is None else int(after)
    found: list[tuple[int, V]] = []
    for seq, value in rows:
        if start is None or seq > start:
            found.append((seq, value))
            if len(found) > limit:
                break
    items = found[:limit]
    next_cursor = str(items[-1][0]) if len(found) > limit else None
    return Page(items=[build(value) for _, value in items], next_cursor=next_cursor)


class MemoryLog:
    """The change log: rows in ``seq`` order, gap-free, a revision never given twice.

    It has its own lock, taken only for a moment, so reading it never waits for a job."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rows: list[LogRow] = []  # committed rows, oldest kept first
        self._next_seq = 1

    @property
    def next_seq(self) -> int:
        """The revision the next logged change gets (read under the database's lock)."""
        return self._next_seq

    def commit(self, rows: list[LogRow]) -> None:
        if not rows:
            return
        with self._lock:
            assert rows[0].seq == self._next_seq, "log rows are committed in revision order"
            self._rows.extend(rows)
            self._next_seq = rows[-1].seq + 1

    def read(self, after: int, limit: int) -> list[LogRow]:
        with self._lock:
            rows = self._rows
            if not rows or limit <= 0:
                return []
            start = max(0, after + 1 - rows[0].seq)
            return rows[start : start + limit]

    def bounds(self) -> tuple[int, int]:
        with self._lock:
            if not self._rows:
                return 0, 0
            return self._rows[0].seq, self._rows[-1].seq

    def prune(self, cutoff: datetime, chunk: int) -> int:
        """Drop up to ``chunk`` of the oldest rows written before ``cutoff``; the newest row
        stays, so the next revision is known whatever is pruned. How many were dropped."""
        with self._lock:
            rows = self._rows
            count = 0
            while count < min(chunk, len(rows) - 1) and rows[count].written_at < cutoff:
                count += 1
            del rows[:count]
            return count


class MemoryDatabase:
    """Everything the stores on one database share; touched only under ``lock``, but the log."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.journal = journal = Journal()
        self.log = MemoryLog()
        self.catalog: Table[tuple[str, str], CatalogRow] = Table(journal)
        self.customers: Table[str, CustomerRow] = Table(journal)
        self.subscriptions: Table[str, Subscription] = Table(journal)
        self.promotions: Table[str, PromotionRow] = Table(journal)
        self.overrides: Table[tuple[str, str], OverrideRow] = Table(journal)
        self.outcomes: Table[tuple[str, str, str], OutcomeRow] = Table(journal)
        self.keys: Table[str, ApiKey] = Table(journal)
        self.key_hashes: dict[str, str] = {}  # key_hash -> key id (a unique column)
        self.entities: Table[tuple[str, str], Entity] = Table(journal)
        self.budgets: Table[tuple[str, str, str], Budget] = Table(journal)
        self.reservations: Table[str, Reservation] = Table(journal)
        self.grants: Table[str, GrantRow] = Table(journal)
        # The ids of each pool's live grants (not ended), oldest first: what a pool loads, as
        # SQLite reads them through its partial index.
        self.live_grants: dict[tuple[str, str], dict[str, None]] = {}
        # Each pool's row: its overdraft and revenue (the pools that have a row).
        self.overdrafts: dict[tuple[str, str], int] = {}
        self.revenues: dict[tuple[str, str], RevenueTotals] = {}
        # The truth: usage events per (customer, feature), ledger entries per (customer,
        # currency), each in the order written.
        self.events: dict[tuple[str, str], list[StoredEvent]] = {}
        self.entries: dict[tuple[str, str], list[LedgerRecord]] = {}
        # What the currency budgets count: each debit along a path with its budget_spend, as
        # written to the ledger (an index of the entries, not a counter).
        self.spends: dict[tuple[str, str], list[StoredEvent]] = {}
        self.sequences: dict[str, int] = {}  # for rows kept in lists: ledger_entries
        # The windows SQLite keeps counters for: their figures come from the truth here, but
        # which windows a write may not take past 64 bits follows SQLite exactly.
        # (customer, feature) and (customer, kind, target, entity) -> the windows kept
        self.usage_windows: dict[tuple[str, ...], dict[Window, None]] = {}
        self.budget_windows: dict[tuple[str, ...], dict[Window, None]] = {}
        # Σ|amount| of the events of (customer, feature) and of the budget spend of (customer,
        # currency): no window of them can pass 64 bits while this does not.
        self.magnitudes: dict[tuple[str, str, str], int] = {}
        # Events by revision (the seq of the change each was logged with) and their ids (a
        # unique column); the marks of what is sent once, with the instant each was made
        # (epoch microseconds); timers by key.
        self.logged_events: dict[int, LoggedEvent] = {}
        self.event_ids: dict[str, int] = {}
        self.event_marks: dict[str, int] = {}
        self.timers: dict[str, Timer] = {}
        # Webhook endpoints, and their deliveries (each owned by its endpoint).
        self.endpoints: Table[str, Endpoint] = Table(journal)
        self.deliveries: Table[str, Delivery] = Table(journal)

    def next_seq(self, table: str) -> int:
        seq = self.sequences.get(table, 0) + 1
        self.journal.put(self.sequences, table, seq)
        return seq


_shared: dict[str, MemoryDatabase] = {}
_shared_lock = threading.Lock()


def shared_database(name: str) -> MemoryDatabase:
    """The process-wide database called ``name`` (``memory://NAME``), made on first use: stores
    opened on one name share it, and a store opened later finds what earlier ones wrote."""
    with _shared_lock:
        database = _shared.get(name)
        if database is None:
            database = _shared[name] = MemoryDatabase()
        return database


def forget_shared_databases() -> None:
    """Drop every named database (tests, between cases)."""
    with _shared_lock:
        _shared.clear()
