"""Budget counters, kept in memory beside their table for the length of a batch.

A feature budget's usage is the sum of the usage events whose entity path names the budget's
entity; a currency budget's is the credits of the debit entries that do (``domain/projections``).
``entity_consumption`` indexes both by entity (migration 0009), one row per entity on a path.
The counters are that projection, per budget window: built from the truth the first time a
window is read, then moved by every event and debit along the path. Figures change in memory
(``counter_cache.py``); each window a batch changed is written once, just before it commits.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from allotment.domain.budgets import Budget, BudgetKind, EntityPath
from allotment.domain.projections import counter_overflow
from allotment.domain.quantities import MAX_COUNTER, Micros
from allotment.storage.sqlite.counter_cache import (
    BatchCounters,
    CommittedCounters,
    Series,
    Window,
)


class SqliteBudgetCounters:
    def __init__(self, db: sqlite3.Connection, committed: CommittedCounters) -> None:
        self._db = db
        self.counters = BatchCounters(committed, MAX_COUNTER)

    def count(
        self,
        customer_id: str,
        kind: BudgetKind,
        target: str,
        path: EntityPath,
        instant: int,
        amount: Micros,
        source: int,
    ) -> None:
        """Add ``amount`` to the counters of every budget window along ``path`` that holds
        ``instant``; windows not projected yet are built from the truth when first read.

        ``source`` is the ``seq`` of the event or entry: each entity on the path gets a row of
        ``entity_consumption``, the index that projecting a window reads."""
        self._db.executemany(
            "INSERT INTO entity_consumption (customer, kind, target, entity, at, source, amount)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(customer_id, kind.value, target, entity, instant, source, amount) for entity in path],
        )
        counters = self.counters
        for entity in path:
            series = (customer_id, kind.value, target, entity)
            if not counters.knows(series):
                self._load_series(series)
            try:
                counters.add(series, instant, amount)
            except OverflowError as error:  # SQLite would turn the counter into a float
                raise counter_overflow() from error

    def _load_series(self, series: Series) -> None:
        rows = self._db.execute(
            "SELECT period_start, period_end, used FROM budget_counters WHERE customer = ?"
            " AND kind = ? AND target = ? AND entity = ?",
            series,
        ).fetchall()
        self.counters.load(series, {(start, end): used for start, end, used in rows})

    def write(self, changed: Iterable[tuple[Series, Window, int]]) -> None:
        """Store the last figure of each budget window the batch changed (before commit)."""
        self._db.executemany(
            "UPDATE budget_counters SET used = ? WHERE customer = ? AND kind = ? AND target = ?"
            " AND entity = ? AND period_start = ? AND period_end = ?",
            [(used, *series, *window) for series, window, used in changed],
        )

    def usage(self, customer_id: str, budget: Budget, window: Window) -> Micros:
        kind, target, entity = budget.kind.value, budget.target, budget.entity
        series = (customer_id, kind, target, entity)
        if not self.counters.knows(series):
            self._load_series(series)
        known = self.counters.get(series, window)
        if known is not None:
            return known
        # First read of this window: project it from the truth, then keep it in step. The
        # rows read are this entity's consumption in the window, through the index.
        try:
            (used,) = self._db.execute(
                "SELECT COALESCE(SUM(amount), 0) FROM entity_consumption WHERE customer = ?"
                " AND kind = ? AND target = ? AND entity = ? AND at >= ? AND at < ?",
                (customer_id, kind, target, entity, *window),
            ).fetchone()
        except sqlite3.OperationalError as error:  # SUM past 64 bits
            raise counter_overflow() from error
        # As for usage_counters: windows that ended before this one are projected again if
        # ever read.
        self._db.execute(
            "DELETE FROM budget_counters WHERE customer = ? AND kind = ? AND target = ?"
            " AND entity = ? AND period_end <= ?",
            (customer_id, kind, target, entity, window[0]),
        )
        self._db.execute(
            "INSERT INTO budget_counters (customer, kind, target, entity, period_start,"
            " period_end, used) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (customer_id, kind, target, entity, *window, used),
        )
        self.counters.drop_ended(series, window[0])
        self.counters.put(series, window, int(used))
        return int(used)
