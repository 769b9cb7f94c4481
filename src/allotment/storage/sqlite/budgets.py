"""Entities and budgets."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime

from allotment.domain.budgets import Budget
from allotment.domain.entities import MAX_ENTITY_DEPTH, Entity
from allotment.domain.quantities import Micros
from allotment.domain.timefmt import to_epoch_micros
from allotment.storage.records import (
    BUDGET_COLUMNS,
    ENTITY_COLUMNS,
    budget_of,
    budget_row,
    entity_of,
    entity_row,
)
from allotment.storage.rows import NEVER_ENDS, window_end
from allotment.storage.sqlite.budget_counters import SqliteBudgetCounters

# An entity's ancestors, one indexed look-up per level. The bound on the levels only guards
# against a corrupt table: a stored tree has no cycle and at most MAX_ENTITY_DEPTH levels.
_PATH = f"""
WITH RECURSIVE up (level, id, parent, kind, name, created_at) AS (
    SELECT 0, id, parent, kind, name, created_at FROM entities WHERE customer = ?1 AND id = ?2
    UNION ALL
    SELECT up.level + 1, e.id, e.parent, e.kind, e.name, e.created_at
    FROM up JOIN entities AS e ON e.customer = ?1 AND e.id = up.parent
    WHERE up.level < {MAX_ENTITY_DEPTH}
)
SELECT id, parent, kind, name, created_at FROM up ORDER BY level
"""

# The levels below an entity, one level at a time through the (customer, parent) index; it
# stops one level past the deepest a tree may have, which is all that moving it must know.
_HEIGHT = f"""
WITH RECURSIVE down (level, id) AS (
    SELECT 1, ?2
    UNION ALL
    SELECT down.level + 1, e.id FROM down JOIN entities AS e
    ON e.customer = ?1 AND e.parent = down.id
    WHERE down.level <= {MAX_ENTITY_DEPTH}
)
SELECT MAX(level) FROM down
"""


class SqliteEntities:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def get(self, customer_id: str, entity_id: str) -> Entity | None:
        row = self._db.execute(
            f"SELECT {ENTITY_COLUMNS} FROM entities WHERE customer = ? AND id = ?",
            (customer_id, entity_id),
        ).fetchone()
        return None if row is None else entity_of(row)

    def path(self, customer_id: str, entity_id: str) -> list[Entity]:
        return [entity_of(row) for row in self._db.execute(_PATH, (customer_id, entity_id))]

    def children(self, customer_id: str, entity_id: str) -> list[str]:
        return [
            row[0]
            for row in self._db.execute(
                "SELECT id FROM entities WHERE customer = ? AND parent = ? ORDER BY seq",
                (customer_id, entity_id),
            )
        ]

    def height(self, customer_id: str, entity_id: str) -> int:
        (height,) = self._db.execute(_HEIGHT, (customer_id, entity_id)).fetchone()
        return int(height)

    def save(self, customer_id: str, entity: Entity) -> None:
        self._db.execute(
            f"INSERT INTO entities (customer, {ENTITY_COLUMNS})"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (customer, id) DO UPDATE SET"
            " parent = excluded.parent, kind = excluded.kind, name = excluded.name",
            entity_row(customer_id, entity),
        )

    def delete(self, customer_id: str, entity_id: str) -> None:
        key = (customer_id, entity_id)
        self._db.execute("DELETE FROM entities WHERE customer = ? AND id = ?", key)
        self._db.execute("DELETE FROM budgets WHERE customer = ? AND entity = ?", key)


class SqliteBudgets:
    def __init__(self, db: sqlite3.Connection, counters: SqliteBudgetCounters) -> None:
        self._db = db
        self._counters = counters

    def get(self, customer_id: str, entity_id: str, target: str) -> Budget | None:
        row = self._db.execute(
            f"SELECT {BUDGET_COLUMNS} FROM budgets WHERE customer = ? AND entity = ?"
            " AND target = ?",
            (customer_id, entity_id, target),
        ).fetchone()
        return None if row is None else budget_of(row)

    def of_entities(self, customer_id: str, entity_ids: Sequence[str]) -> list[Budget]:
        if not entity_ids:
            return []
        marks = ", ".join("?" * len(entity_ids))
        return [
            budget_of(row)
            for row in self._db.execute(
                f"SELECT {BUDGET_COLUMNS} FROM budgets WHERE customer = ?"
                f" AND entity IN ({marks}) ORDER BY seq",
                (customer_id, *entity_ids),
            )
        ]

    def save(self, customer_id: str, budget: Budget) -> None:
        self._db.execute(
            f"INSERT INTO budgets (customer, {BUDGET_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (customer, entity, target) DO UPDATE SET"
            " limit_micros = excluded.limit_micros, reset = excluded.reset,"
            " enforcement = excluded.enforcement",
            budget_row(customer_id, budget),
        )

    def delete(self, customer_id: str, entity_id: str, target: str) -> bool:
        deleted = self._db.execute(
            "DELETE FROM budgets WHERE customer = ? AND entity = ? AND target = ?",
            (customer_id, entity_id, target),
        ).rowcount
        return bool(deleted)

    def usages(
        self, customer_id: str, windows: Sequence[tuple[Budget, int, int | None]]
    ) -> list[Micros]:
        return [
            self._counters.usage(customer_id, budget, (start, NEVER_ENDS if end is None else end))
            for budget, start, end in windows
        ]

    def usage(
        self, customer_id: str, budget: Budget, start: datetime, end: datetime | None
    ) -> Micros:
        return self._counters.usage(customer_id, budget, (to_epoch_micros(start), window_end(end)))
