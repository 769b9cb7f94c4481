"""Budget counters and the consumption index on PostgreSQL, kept in step statement by statement.

The projection is the SQLite adapter's (``storage/sqlite/budget_counters.py``): a feature
budget's usage is the sum of the usage events whose entity path names its entity, a currency
budget's the credits of the debits that do; ``entity_consumption`` holds each entity's share of
them per whole second, and ``budget_counters`` each budget window's figure, projected from that
index the first time the window is read and moved by every event and debit after. Here nothing
is kept between statements: several processes write these rows, each under the holds of its job
(``uow.py``), so every change is an ``UPDATE`` that adds to what the row holds.
"""

from __future__ import annotations

from allotment.domain.budgets import Budget, BudgetKind, EntityPath
from allotment.domain.quantities import Micros
from allotment.storage.postgres.db import Db, counting, hold
from allotment.storage.rows import NEVER_ENDS

MICROS_PER_SECOND = 1_000_000
Window = tuple[int, int]
"""(period_start, period_end) in epoch microseconds, as in the table."""


class PostgresBudgetCounters:
    def __init__(self, db: Db) -> None:
        self._db = db

    def count(
        self,
        customer_id: str,
        kind: BudgetKind,
        target: str,
        path: EntityPath,
        instant: int,
        amount: Micros,
    ) -> None:
        """Add ``amount`` to every entity of ``path`` in the consumption index at ``instant``'s
        whole second, and to the counters of their budget windows that hold ``instant`` (those
        not projected yet are built from the index when first read)."""
        if not path:
            return
        second = instant - instant % MICROS_PER_SECOND
        rows = [(customer_id, kind.value, target, entity, second, amount) for entity in path]
        windows = [
            (amount, customer_id, kind.value, target, entity, instant, instant) for entity in path
        ]

        def write() -> None:
            with self._db.cursor() as cursor:
                cursor.executemany(
                    "INSERT INTO entity_consumption (customer, kind, target, entity, second,"
                    " amount) VALUES (%s, %s, %s, %s, %s, %s)"
                    " ON CONFLICT (customer, kind, target, entity, second)"
                    " DO UPDATE SET amount = entity_consumption.amount + excluded.amount",
                    rows,
                )
                cursor.executemany(
                    "UPDATE budget_counters SET used = used + %s WHERE customer = %s"
                    " AND kind = %s AND target = %s AND entity = %s AND period_start <= %s"
                    " AND %s < period_end",
                    windows,
                )

        counting(self._db, write)

    def usage(self, customer_id: str, budget: Budget, window: Window) -> Micros:
        """The budget's usage in ``window``: its counter, or projected from the index once."""
        key = (customer_id, budget.kind.value, budget.target, budget.entity)
        row = self._db.execute(
            "SELECT used FROM budget_counters WHERE customer = %s AND kind = %s AND target = %s"
            " AND entity = %s AND period_start = %s AND period_end = %s",
            (*key, *window),
        ).fetchone()
        if row is not None:
            return int(row[0])
        start, end = window
        if start % MICROS_PER_SECOND or (end != NEVER_ENDS and end % MICROS_PER_SECOND):
            raise ValueError(f"budget windows start and end on whole seconds, not {window}")
        # Projected under the entity's budget hold, even for a read: a job of another process
        # that counted consumption before the row existed holds it until it commits, and the
        # sum must see that (as ``PostgresUsage.window_usage`` does for usage windows).
        hold(self._db, "budgets", customer_id, budget.entity)
        row = self._db.execute(
            "SELECT used FROM budget_counters WHERE customer = %s AND kind = %s AND target = %s"
            " AND entity = %s AND period_start = %s AND period_end = %s",
            (*key, *window),
        ).fetchone()
        if row is not None:  # projected by another process while this one waited
            return int(row[0])

        def project() -> int:
            (used,) = self._db.execute(
                "SELECT COALESCE(SUM(amount), 0) FROM entity_consumption WHERE customer = %s"
                " AND kind = %s AND target = %s AND entity = %s AND second >= %s AND second < %s",
                (*key, *window),
            ).fetchone() or (0,)
            # Windows that ended before this one are projected again if ever read.
            self._db.execute(
                "DELETE FROM budget_counters WHERE customer = %s AND kind = %s AND target = %s"
                " AND entity = %s AND period_end <= %s",
                (*key, start),
            )
            # Cast here: a sum past 64 bits is refused as an overflow, as SQLite refuses it.
            self._db.execute(
                "INSERT INTO budget_counters (customer, kind, target, entity, period_start,"
                " period_end, used) VALUES (%s, %s, %s, %s, %s, %s, %s::numeric::bigint)",
                (*key, *window, used),
            )
            return int(used)

        return counting(self._db, project)
