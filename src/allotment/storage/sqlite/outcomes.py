"""Idempotency records: the first outcome of each (customer, route, key).

A batch's new records are written together when it commits (:meth:`SqliteOutcomes.write`), one
row of one statement each rather than a statement each: every usage report, debit, grant and
reservation saves one. Only a record whose key this batch has looked up and found absent waits;
one saved without that look-up is inserted at once, so that a key already taken fails its own
job, as the table's primary key would have it.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime

from allotment.domain.timefmt import to_epoch_micros
from allotment.service.ports import FINGERPRINT_BYTES, USAGE_ROUTE, StoredOutcome

_INSERT = (
    "INSERT INTO idempotency_records (customer, route, key, fingerprint, response, created_at)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)
RecordKey = tuple[str, str, str]  # (customer, route, key)


def _fingerprint(kept: bytes | str) -> bytes:
    """Records written before fingerprints were binary hold the whole SHA-256 as hexadecimal
    text; its first 16 bytes are what :func:`~allotment.service.idempotency.fingerprint` is."""
    if isinstance(kept, str):
        return bytes.fromhex(kept)[:FINGERPRINT_BYTES]
    return kept


class SqliteOutcomes:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        # Saved in this batch and not yet written, in the order saved (undone from the end).
        self._unwritten: dict[RecordKey, tuple[StoredOutcome, int]] = {}
        # Looked up in this batch and not in the table: the batch holds the write lock, so
        # nothing but this batch can add them.
        self._absent: set[RecordKey] = set()

    def find(self, customer_id: str, route: str, key: str) -> StoredOutcome | None:
        primary = (customer_id, route, key)
        unwritten = self._unwritten.get(primary)
        if unwritten is not None:
            return unwritten[0]
        row = self._db.execute(
            "SELECT fingerprint, response FROM idempotency_records"
            " WHERE customer = ? AND route = ? AND key = ?",
            primary,
        ).fetchone()
        if row is None:
            self._absent.add(primary)
            return None
        return StoredOutcome(fingerprint=_fingerprint(row[0]), response=bytes(row[1]))

    def save(
        self, customer_id: str, route: str, key: str, outcome: StoredOutcome, at: datetime
    ) -> None:
        primary = (customer_id, route, key)
        created_at = to_epoch_micros(at)
        if primary in self._unwritten:  # what the table's primary key says of a second one
            raise sqlite3.IntegrityError(f"an idempotency record for {primary} exists")
        if primary in self._absent:
            self._unwritten[primary] = (outcome, created_at)
            return
        self._db.execute(_INSERT, (*primary, outcome.fingerprint, outcome.response, created_at))

    def mark(self) -> int:
        return len(self._unwritten)

    def undo(self, mark: int) -> None:
        """Forget the records saved since ``mark`` (a job that failed)."""
        unwritten = self._unwritten
        while len(unwritten) > mark:
            unwritten.popitem()

    def write(self) -> None:
        """Write the records this batch saved; before it commits."""
        if self._unwritten:
            self._db.executemany(
                _INSERT,
                [
                    (*primary, outcome.fingerprint, outcome.response, created_at)
                    for primary, (outcome, created_at) in self._unwritten.items()
                ],
            )
            self._unwritten.clear()

    def prune_usage(self, before: datetime, limit: int) -> int:
        # The route is written into the statement: SQLite uses the partial index
        # ``idempotency_records_usage_age`` (migration 0008) only for a query that repeats its
        # condition, so the records dropped are found without reading any other.
        cursor = self._db.execute(
            "DELETE FROM idempotency_records WHERE rowid IN (SELECT rowid FROM"
            f" idempotency_records WHERE route = '{USAGE_ROUTE}' AND created_at < ?"
            " ORDER BY created_at LIMIT ?)",
            (to_epoch_micros(before), limit),
        )
        return cursor.rowcount
