"""Entities and budgets."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime

from allotment.domain.budgets import Budget, BudgetKind
from allotment.domain.catalog import Enforcement
from allotment.domain.entities import Entity
from allotment.domain.periods import ResetPeriod
from allotment.domain.quantities import Micros
from allotment.domain.timefmt import from_epoch_micros, to_epoch_micros
from allotment.storage.sqlite.budget_counters import SqliteBudgetCounters
from allotment.storage.sqlite.rows import NEVER_ENDS, window_end


class SqliteEntities:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def load(self, customer_id: str) -> dict[str, Entity]:
        return {
            row[0]: Entity(row[0], row[1], row[2], row[3], from_epoch_micros(row[4]))
            for row in self._db.execute(
                "SELECT id, parent, kind, name, created_at FROM entities WHERE customer = ?"
                " ORDER BY seq",
                (customer_id,),
            )
        }

    def save(self, customer_id: str, entity: Entity) -> None:
        self._db.execute(
            "INSERT INTO entities (customer, id, parent, kind, name, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (customer, id) DO UPDATE SET"
            " parent = excluded.parent, kind = excluded.kind, name = excluded.name",
            (
                customer_id,
                entity.id,
                entity.parent,
                entity.kind,
                entity.name,
                to_epoch_micros(entity.created_at),
            ),
        )

    def delete(self, customer_id: str, entity_id: str) -> None:
        key = (customer_id, entity_id)
        self._db.execute("DELETE FROM entities WHERE customer = ? AND id = ?", key)
        self._db.execute("DELETE FROM budgets WHERE customer = ? AND entity = ?", key)


class SqliteBudgets:
    def __init__(self, db: sqlite3.Connection, counters: SqliteBudgetCounters) -> None:
        self._db = db
        self._counters = counters

    def load(self, customer_id: str) -> list[Budget]:
        return [
            Budget(
                entity=row[0],
                target=row[1],
                kind=BudgetKind(row[2]),
                limit=row[3],
                reset=ResetPeriod(row[4]),
                enforcement=Enforcement(row[5]),
                created_at=from_epoch_micros(row[6]),
            )
            for row in self._db.execute(
                "SELECT entity, target, kind, limit_micros, reset, enforcement, created_at"
                " FROM budgets WHERE customer = ? ORDER BY seq",
                (customer_id,),
            )
        ]

    def save(self, customer_id: str, budget: Budget) -> None:
        self._db.execute(
            "INSERT INTO budgets (customer, entity, target, kind, limit_micros, reset,"
            " enforcement, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (customer, entity, target) DO UPDATE SET"
            " limit_micros = excluded.limit_micros, reset = excluded.reset,"
            " enforcement = excluded.enforcement",
            (
                customer_id,
                budget.entity,
                budget.target,
                budget.kind.value,
                budget.limit,
                budget.reset.value,
                budget.enforcement.value,
                to_epoch_micros(budget.created_at),
            ),
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
