"""Usage events and the per-window counters that follow them, on PostgreSQL.

The projection is the SQLite adapter's (``storage/sqlite/usage.py``), without its counter
cache: several processes write these rows, so a window's figure is read from its row and every
event adds to the rows in the statement that moves them, and a figure past 64 bits is refused
by PostgreSQL's ``bigint`` itself (``counting``).
"""

from __future__ import annotations

from datetime import datetime

from allotment.domain.budgets import BudgetKind
from allotment.domain.quantities import Micros
from allotment.domain.timefmt import to_epoch_micros
from allotment.service.ports import UsageEvent
from allotment.storage.postgres.budget_counters import PostgresBudgetCounters
from allotment.storage.postgres.db import Db, counting, hold
from allotment.storage.records import USAGE_EVENT_COLUMNS, usage_event_row
from allotment.storage.rows import window_end


class PostgresUsage:
    def __init__(self, db: Db, counters: PostgresBudgetCounters) -> None:
        self._db = db
        self._counters = counters

    def window_usage(
        self, customer_id: str, feature_id: str, start: datetime, end: datetime | None
    ) -> Micros:
        window = (to_epoch_micros(start), window_end(end))
        row = self._db.execute(
            "SELECT used FROM usage_counters WHERE customer = %s AND feature = %s"
            " AND period_start = %s AND period_end = %s",
            (customer_id, feature_id, *window),
        ).fetchone()
        if row is not None:
            return int(row[0])

        # First use of this window: project it from the events once, then keep it in step.
        # Under the customer's usage hold, even for a read: a job of another process that
        # appended an event before the row existed (its UPDATE moved nothing) holds it until
        # it commits, and the sum must see that event. Taken after later holds, it may meet a
        # deadlock, which the store runs the job again for; a wrong counter would stay wrong.
        hold(self._db, "usage", customer_id)
        row = self._db.execute(
            "SELECT used FROM usage_counters WHERE customer = %s AND feature = %s"
            " AND period_start = %s AND period_end = %s",
            (customer_id, feature_id, *window),
        ).fetchone()
        if row is not None:  # projected by another process while this one waited
            return int(row[0])

        def project() -> int:
            (used,) = self._db.execute(
                "SELECT COALESCE(SUM(amount), 0) FROM usage_events WHERE customer = %s"
                " AND feature = %s AND timestamp >= %s AND timestamp < %s",
                (customer_id, feature_id, *window),
            ).fetchone() or (0,)
            # Windows that ended before this one starts are no longer read but by a backdated
            # report, which projects them again: drop them, so that an event moves a few windows.
            self._db.execute(
                "DELETE FROM usage_counters WHERE customer = %s AND feature = %s"
                " AND period_end <= %s",
                (customer_id, feature_id, window[0]),
            )
            # The SUM is numeric: the cast refuses one past 64 bits, as SQLite's SUM does.
            self._db.execute(
                "INSERT INTO usage_counters (customer, feature, period_start, period_end, used)"
                " VALUES (%s, %s, %s, %s, %s::numeric::bigint)",
                (customer_id, feature_id, *window, used),
            )
            return int(used)

        return counting(self._db, project)

    def append(self, event: UsageEvent) -> None:
        timestamp = to_epoch_micros(event.timestamp)
        self._db.execute(
            f"INSERT INTO usage_events ({USAGE_EVENT_COLUMNS})"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            usage_event_row(event, timestamp),
        )
        # Every projected window that holds the event moves with it; those not projected yet
        # are built from the events when first read.
        counting(
            self._db,
            lambda: self._db.execute(
                "UPDATE usage_counters SET used = used + %s WHERE customer = %s"
                " AND feature = %s AND period_start <= %s AND %s < period_end",
                (event.amount, event.customer, event.feature, timestamp, timestamp),
            ),
        )
        if event.entity_path:
            self._counters.count(
                event.customer,
                BudgetKind.FEATURE,
                event.feature,
                event.entity_path,
                timestamp,
                event.amount,
            )
