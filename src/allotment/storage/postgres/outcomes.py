"""Idempotency records on PostgreSQL: the first outcome of each (customer, route, key).

Unlike SQLite, whose batch holds the write lock and so may keep the records it saves until it
commits, a record is inserted as soon as it is saved: jobs of other processes run beside this
one, and the table's primary key is what makes one of two saves of a key fail its job. The
fingerprint column is ``bytea`` and holds the binary fingerprint only (no database made before
it was binary ran on PostgreSQL).
"""

from __future__ import annotations

from datetime import datetime

from allotment.domain.timefmt import to_epoch_micros
from allotment.service.ports import USAGE_ROUTE, StoredOutcome
from allotment.storage.postgres.db import Db, changed_rows


class PostgresOutcomes:
    def __init__(self, db: Db) -> None:
        self._db = db

    def find(self, customer_id: str, route: str, key: str) -> StoredOutcome | None:
        row = self._db.execute(
            "SELECT fingerprint, response FROM idempotency_records"
            " WHERE customer = %s AND route = %s AND key = %s",
            (customer_id, route, key),
        ).fetchone()
        if row is None:
            return None
        return StoredOutcome(fingerprint=bytes(row[0]), response=bytes(row[1]))

    def save(
        self, customer_id: str, route: str, key: str, outcome: StoredOutcome, at: datetime
    ) -> None:
        self._db.execute(
            "INSERT INTO idempotency_records"
            " (customer, route, key, fingerprint, response, created_at)"
            " VALUES (%s, %s, %s, %s, %s, %s)",
            (customer_id, route, key, outcome.fingerprint, outcome.response, to_epoch_micros(at)),
        )

    def prune_usage(self, before: datetime, limit: int) -> int:
        # The route is written into the statement, not bound: the planner uses the partial index
        # ``idempotency_records_usage_age`` (migration 0008) only for a query whose condition
        # implies the index's, which a parameter does not in a generic plan.
        return changed_rows(
            self._db,
            "DELETE FROM idempotency_records WHERE (customer, route, key) IN"
            " (SELECT customer, route, key FROM idempotency_records"
            f" WHERE route = '{USAGE_ROUTE}' AND created_at < %s ORDER BY created_at LIMIT %s)",
            (to_epoch_micros(before), limit),
        )
