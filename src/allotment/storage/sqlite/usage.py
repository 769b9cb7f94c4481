"""Usage events and the per-window counters that follow them.

A customer's window counters of a feature are one series of the batch's counter cache
(``counter_cache.py``), as budget counters are: read from the table once, then moved in memory
by every event, and each window a batch changed written once, just before it commits.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from datetime import datetime

from allotment.domain.budgets import BudgetKind
from allotment.domain.projections import counter_overflow
from allotment.domain.quantities import Micros
from allotment.domain.timefmt import to_epoch_micros
from allotment.service.ports import UsageEvent
from allotment.storage.records import USAGE_EVENT_COLUMNS, usage_event_row
from allotment.storage.rows import window_end
from allotment.storage.sqlite.budget_counters import SqliteBudgetCounters
from allotment.storage.sqlite.counter_cache import Series, Window

USAGE_SERIES = "usage"
"""The kind of a customer's own window counters in the counter cache; budget kinds differ."""


def usage_series(customer_id: str, feature_id: str) -> Series:
    return (customer_id, USAGE_SERIES, feature_id, "")


class SqliteUsage:
    def __init__(self, db: sqlite3.Connection, budget_counters: SqliteBudgetCounters) -> None:
        self._db = db
        self._budget_counters = budget_counters
        self._counters = budget_counters.counters

    def window_usage(
        self, customer_id: str, feature_id: str, start: datetime, end: datetime | None
    ) -> Micros:
        series = usage_series(customer_id, feature_id)
        self._know(series)
        window = (to_epoch_micros(start), window_end(end))
        known = self._counters.get(series, window)
        if known is not None:
            return known
        # First use of this window: project it from the events once, then keep it in step.
        try:
            (used,) = self._db.execute(
                "SELECT COALESCE(SUM(amount), 0) FROM usage_events WHERE customer = ?"
                " AND feature = ? AND timestamp >= ? AND timestamp < ?",
                (customer_id, feature_id, *window),
            ).fetchone()
        except sqlite3.OperationalError as error:  # SUM past 64 bits
            raise counter_overflow() from error
        # Windows that ended before this one starts are no longer read but by a backdated
        # report, which projects them again: drop them, so that an event moves a few windows.
        self._db.execute(
            "DELETE FROM usage_counters WHERE customer = ? AND feature = ? AND period_end <= ?",
            (customer_id, feature_id, window[0]),
        )
        self._db.execute(
            "INSERT INTO usage_counters (customer, feature, period_start, period_end, used)"
            " VALUES (?, ?, ?, ?, ?)",
            (customer_id, feature_id, *window, used),
        )
        self._counters.drop_ended(series, window[0])
        self._counters.put(series, window, int(used))
        return int(used)

    def append(self, event: UsageEvent) -> None:
        timestamp = to_epoch_micros(event.timestamp)
        series = usage_series(event.customer, event.feature)
        self._know(series)
        try:
            self._counters.add(series, timestamp, event.amount)
        except OverflowError as error:  # SQLite would silently make the counter a float
            raise counter_overflow() from error
        self._db.execute(
            f"INSERT INTO usage_events ({USAGE_EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            usage_event_row(event, timestamp),
        )
        if event.entity_path:
            self._budget_counters.count(
                event.customer,
                BudgetKind.FEATURE,
                event.feature,
                event.entity_path,
                timestamp,
                event.amount,
            )

    def write_counters(self, changed: Iterable[tuple[Series, Window, int]]) -> None:
        """Store the last figure of each window counter the batch changed (before commit)."""
        self._db.executemany(
            "UPDATE usage_counters SET used = ? WHERE customer = ? AND feature = ?"
            " AND period_start = ? AND period_end = ?",
            [(used, series[0], series[2], *window) for series, window, used in changed],
        )

    def _know(self, series: Series) -> None:
        """Read every stored window of ``series`` once, when the cache does not hold it."""
        if not self._counters.knows(series):
            rows = self._db.execute(
                "SELECT period_start, period_end, used FROM usage_counters"
                " WHERE customer = ? AND feature = ?",
                (series[0], series[2]),
            ).fetchall()
            self._counters.load(series, {(start, end): used for start, end, used in rows})
