"""Idempotency records: the first outcome of each (customer, route, key)."""

from __future__ import annotations

import sqlite3
from datetime import datetime

from allotment.domain.timefmt import to_epoch_micros
from allotment.service.ports import USAGE_ROUTE, StoredOutcome


class SqliteOutcomes:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def find(self, customer_id: str, route: str, key: str) -> StoredOutcome | None:
        row = self._db.execute(
            "SELECT fingerprint, response FROM idempotency_records"
            " WHERE customer = ? AND route = ? AND key = ?",
            (customer_id, route, key),
        ).fetchone()
        return None if row is None else StoredOutcome(fingerprint=row[0], response=bytes(row[1]))

    def save(
        self, customer_id: str, route: str, key: str, outcome: StoredOutcome, at: datetime
    ) -> None:
        self._db.execute(
            "INSERT INTO idempotency_records (customer, route, key, fingerprint, response,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?)",
            (customer_id, route, key, outcome.fingerprint, outcome.response, to_epoch_micros(at)),
        )

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
