"""Budget counters, kept in memory beside their table for the length of a batch.

A feature budget's usage is the sum of the usage events whose entity path names the budget's
entity; a currency budget's is the credits of the debit entries that do (``domain/projections``).
``entity_consumption`` indexes both by entity (migration 0009): a row per entity on a path and
whole second, summed.
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
from allotment.storage.rows import NEVER_ENDS
from allotment.storage.sqlite.counter_cache import (
    BatchCounters,
    CommittedCounters,
    Series,
    Window,
)

Consumed = tuple[str, str, str, str, int, int]
"""(customer, kind, target, entity, second, amount): one entity's share of an event or debit."""

MICROS_PER_SECOND = 1_000_000


ConsumptionMark = tuple[int, int]
"""(rows consumed, rows written) when a job started: a plain tuple, made for every job."""


class SqliteBudgetCounters:
    def __init__(self, db: sqlite3.Connection, committed: CommittedCounters) -> None:
        self._db = db
        self.counters = BatchCounters(committed, MAX_COUNTER)
        # What the batch's jobs consumed along paths, in order; the rows from ``_written`` on
        # are not in ``entity_consumption`` yet (``flush``).
        self._consumed: list[Consumed] = []
        self._written = 0

    def count(
        self,
        customer_id: str,
        kind: BudgetKind,
        target: str,
        path: EntityPath,
        instant: int,
        amount: Micros,
    ) -> None:
        """Add ``amount`` to the counters of every budget window along ``path`` that holds
        ``instant``; windows not projected yet are built from the truth when first read.

        Each entity on the path gets ``amount`` in ``entity_consumption``, the index that
        projecting a window reads, at ``instant``'s whole second: summed in memory for the
        batch, written once (``flush``)."""
        second = instant - instant % MICROS_PER_SECOND
        kind_value = kind.value
        self._consumed += [
            (customer_id, kind_value, target, entity, second, amount) for entity in path
        ]
        counters = self.counters
        for entity in path:
            series = (customer_id, kind_value, target, entity)
            if not counters.knows(series):
                self._load_series(series)
            try:
                counters.add(series, instant, amount)
            except OverflowError as error:  # SQLite would turn the counter into a float
                raise counter_overflow() from error

    def flush(self) -> None:
        """Write what the batch consumed since the last flush, one row per entity and second:
        before the batch commits, and before a window is projected from the index."""
        pending = self._consumed[self._written :]
        if not pending:
            return
        sums: dict[tuple[str, str, str, str, int], int] = {}
        for customer, kind, target, entity, second, amount in pending:
            key = (customer, kind, target, entity, second)
            sums[key] = sums.get(key, 0) + amount
        rows: list[Consumed] = []
        for key, total in sorted(sums.items()):
            if -MAX_COUNTER - 1 <= total <= MAX_COUNTER:
                rows.append((*key, total))
            else:
                # Past 64 bits: added one by one, SQLite makes the row a float, which
                # projecting a window over it refuses, as it refuses a sum past 64 bits.
                rows += [row for row in pending if row[:5] == key]
        self._db.executemany(
            "INSERT INTO entity_consumption (customer, kind, target, entity, second, amount)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (customer, kind, target, entity, second)"
            " DO UPDATE SET amount = amount + excluded.amount",
            rows,
        )
        self._written = len(self._consumed)

    def mark(self) -> ConsumptionMark:
        return (len(self._consumed), self._written)

    def undo(self, mark: ConsumptionMark) -> None:
        """Take back what a failed job consumed. A job that failed after writing rows was rolled
        back to its own savepoint (``_run_apart``), taking the earlier jobs' rows it flushed
        with it: they are pending again. (When jobs run together, such a job sends the whole
        batch back, and the unit of work is dropped.)"""
        rows, written = mark
        del self._consumed[rows:]
        self._written = min(self._written, written)

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
        # rows read are this entity's consumption in the window, a row per second, through
        # the index; windows start and end on whole seconds (budgets are anchored at one).
        start, end = window
        if start % MICROS_PER_SECOND or (end != NEVER_ENDS and end % MICROS_PER_SECOND):
            raise ValueError(f"budget windows start and end on whole seconds, not {window}")
        self.flush()
        try:
            (used,) = self._db.execute(
                "SELECT COALESCE(SUM(amount), 0) FROM entity_consumption WHERE customer = ?"
                " AND kind = ? AND target = ? AND entity = ? AND second >= ? AND second < ?",
                (customer_id, kind, target, entity, *window),
            ).fetchone()
        except sqlite3.OperationalError as error:  # SUM past 64 bits
            raise counter_overflow() from error
        if not isinstance(used, int):  # a per-second sum went past 64 bits and became a float
            raise counter_overflow()
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
