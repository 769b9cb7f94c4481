"""Usage events and the per-window counters that follow them."""

from __future__ import annotations

import sqlite3
from datetime import datetime

from allotment.domain.budgets import BudgetKind
from allotment.domain.projections import MAX_COUNTER, counter_overflow
from allotment.domain.quantities import Micros
from allotment.domain.timefmt import to_epoch_micros
from allotment.service.ports import UsageEvent
from allotment.storage.sqlite.budget_counters import SqliteBudgetCounters
from allotment.storage.sqlite.rows import path_text, window_end


class SqliteUsage:
    def __init__(self, db: sqlite3.Connection, budget_counters: SqliteBudgetCounters) -> None:
        self._db = db
        self._budget_counters = budget_counters

    def window_usage(
        self, customer_id: str, feature_id: str, start: datetime, end: datetime | None
    ) -> Micros:
        key = (customer_id, feature_id, to_epoch_micros(start), window_end(end))
        row = self._db.execute(
            "SELECT used FROM usage_counters WHERE customer = ? AND feature = ?"
            " AND period_start = ? AND period_end = ?",
            key,
        ).fetchone()
        if row is not None:
            return int(row[0])
        # First use of this window: project it from the events once, then keep it in step.
        try:
            (used,) = self._db.execute(
                "SELECT COALESCE(SUM(amount), 0) FROM usage_events WHERE customer = ?"
                " AND feature = ? AND timestamp >= ? AND timestamp < ?",
                key,
            ).fetchone()
        except sqlite3.OperationalError as error:  # SUM past 64 bits
            raise counter_overflow() from error
        # Windows that ended before this one starts are no longer read but by a backdated
        # report, which projects them again: drop them, so the range update of append_usage
        # stays a few rows long.
        self._db.execute(
            "DELETE FROM usage_counters WHERE customer = ? AND feature = ? AND period_end <= ?",
            (customer_id, feature_id, key[2]),
        )
        self._db.execute(
            "INSERT INTO usage_counters (customer, feature, period_start, period_end, used)"
            " VALUES (?, ?, ?, ?, ?)",
            (*key, used),
        )
        return int(used)

    def append(self, event: UsageEvent) -> None:
        timestamp = to_epoch_micros(event.timestamp)
        low, high = self._db.execute(
            "SELECT MIN(used), MAX(used) FROM usage_counters WHERE customer = ? AND feature = ?"
            " AND period_start <= ? AND period_end > ?",
            (event.customer, event.feature, timestamp, timestamp),
        ).fetchone()
        # SQLite would silently turn a counter past 64 bits into a float: refuse instead.
        if (high is not None and high + event.amount > MAX_COUNTER) or (
            low is not None and low + event.amount < -MAX_COUNTER
        ):
            raise counter_overflow()
        self._db.execute(
            "INSERT INTO usage_events (customer, feature, entity, amount, timestamp,"
            " recorded_at, idempotency_key, entity_path) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                event.customer,
                event.feature,
                event.entity,
                event.amount,
                timestamp,
                to_epoch_micros(event.recorded_at),
                event.idempotency_key,
                path_text(event.entity_path),
            ),
        )
        self._db.execute(
            "UPDATE usage_counters SET used = used + ? WHERE customer = ? AND feature = ?"
            " AND period_start <= ? AND period_end > ?",
            (event.amount, event.customer, event.feature, timestamp, timestamp),
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
