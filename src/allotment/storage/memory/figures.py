"""The memory adapter's figures: usage windows and budgets, from the truth.

Every figure is computed from the usage events and debit entries on each read, with the rules
of ``domain/projections.py``; nothing is kept in step (credit pools keep their figures with
them, as on SQLite: ``ledger.py``). What the SQLite adapter refuses, this
refuses too: a read whose total passes 64 bits, and a write that would take past 64 bits a window
SQLite keeps a counter for. So the windows SQLite keeps counters for are tracked (not their
figures): a window is kept once read, and reading one drops those of its series that ended
before it starts, exactly as the SQLite adapter drops their rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from allotment.domain.budgets import Budget, BudgetKind
from allotment.domain.credits import Entry
from allotment.domain.projections import (
    budget_spend,
    counter_overflow,
    counts_for,
    counts_in,
)
from allotment.domain.quantities import MAX_COUNTER, Micros
from allotment.domain.timefmt import to_epoch_micros
from allotment.service.ports import UsageEvent
from allotment.storage.memory.database import (
    NEVER_ENDS,
    MemoryDatabase,
    StoredEvent,
    Window,
)
from allotment.storage.memory.holds import Holds
from allotment.storage.memory.records import stored


def _window(start: datetime, end: datetime | None) -> Window:
    return to_epoch_micros(start), NEVER_ENDS if end is None else to_epoch_micros(end)


def _total(events: Sequence[StoredEvent], window: Window, entity: str | None = None) -> Micros:
    """Σ amount of ``events`` that count in ``window`` (and, given an entity, for it)."""
    start, end = window[0], None if window[1] == NEVER_ENDS else window[1]
    return sum(
        event.amount
        for event in events
        if counts_in(start, end, event.timestamp)
        and (entity is None or counts_for(event.entity_path, entity))
    )


class Figures:
    """The truth's sums, and the windows a write may not take past 64 bits."""

    def __init__(self, db: MemoryDatabase) -> None:
        self._db = db

    def usage(self, customer_id: str, feature_id: str, window: Window) -> Micros:
        key = (customer_id, feature_id)
        used = _total(self._db.events.get(key, ()), window)
        return self._opened(self._db.usage_windows, key, window, used)

    def budget(self, customer_id: str, budget: Budget, window: Window) -> Micros:
        target, entity = budget.target, budget.entity
        if budget.kind is BudgetKind.FEATURE:
            truth = self._db.events.get((customer_id, target), ())
        else:
            truth = self._db.spends.get((customer_id, target), ())
        used = _total(truth, window, entity)
        series = (customer_id, budget.kind.value, target, entity)
        return self._opened(self._db.budget_windows, series, window, used)

    def count_usage(self, event: UsageEvent) -> None:
        """Append ``event`` to the truth, refusing it as SQLite's counters would."""
        db, amount = self._db, event.amount
        customer, feature = event.customer, event.feature
        instant = to_epoch_micros(event.timestamp)
        to_epoch_micros(event.recorded_at)  # as SQLite stores it (a naive instant fails)
        key, magnitude = (customer, feature), ("usage", customer, feature)
        events = db.events.get(key, [])
        self._refuse_overflow(db.usage_windows.get(key), instant, amount, magnitude, events, None)
        for entity in event.entity_path:
            windows = db.budget_windows.get((customer, BudgetKind.FEATURE.value, feature, entity))
            self._refuse_overflow(windows, instant, amount, magnitude, events, entity)
        self._append(
            db.events, key, StoredEvent(instant, amount, tuple(event.entity_path)), magnitude
        )

    def count_spend(self, customer_id: str, currency: str, entry: Entry) -> None:
        """Add a debit's spend to the truth of the currency budgets along its path."""
        spent = budget_spend(entry)
        if not spent:
            return
        db, key, magnitude = self._db, (customer_id, currency), ("spend", customer_id, currency)
        instant = to_epoch_micros(entry.at)
        spends = db.spends.get(key, [])
        for entity in entry.entity_path:
            windows = db.budget_windows.get(
                (customer_id, BudgetKind.CURRENCY.value, currency, entity)
            )
            self._refuse_overflow(windows, instant, spent, magnitude, spends, entity)
        self._append(
            db.spends, key, StoredEvent(instant, spent, tuple(entry.entity_path)), magnitude
        )

    def _append(
        self,
        truth: dict[tuple[str, str], list[StoredEvent]],
        key: tuple[str, str],
        event: StoredEvent,
        magnitude: tuple[str, str, str],
    ) -> None:
        db = self._db
        db.journal.append(db.journal.child(truth, key, list), event)
        db.journal.put(
            db.magnitudes, magnitude, db.magnitudes.get(magnitude, 0) + abs(event.amount)
        )

    def _refuse_overflow(
        self,
        windows: dict[Window, None] | None,
        instant: int,
        amount: Micros,
        magnitude: tuple[str, str, str],
        truth: Sequence[StoredEvent],
        entity: str | None,
    ) -> None:
        """Refuse ``amount`` at ``instant`` if a kept window holding it would pass 64 bits."""
        if not windows or self._db.magnitudes.get(magnitude, 0) + abs(amount) <= MAX_COUNTER:
            return  # no window of this truth can pass 64 bits
        for window in windows:
            start, end = window
            if start <= instant < end and abs(_total(truth, window, entity) + amount) > MAX_COUNTER:
                raise counter_overflow()

    def _opened(
        self,
        kept: dict[tuple[str, ...], dict[Window, None]],
        series: tuple[str, ...],
        window: Window,
        used: Micros,
    ) -> Micros:
        """``used``, once the window is kept (SQLite would have failed to sum past 64 bits)."""
        if abs(used) > MAX_COUNTER:
            raise counter_overflow()
        windows = kept.get(series)
        if windows is not None and window in windows:
            return used
        journal = self._db.journal
        windows = journal.child(kept, series, dict)
        for ended in [w for w in windows if w[1] <= window[0]]:
            journal.delete(windows, ended)
        journal.put(windows, window, None)
        return used


class MemoryUsage:
    def __init__(self, figures: Figures, holds: Holds) -> None:
        self._figures = figures
        self._holds = holds

    def window_usage(
        self, customer_id: str, feature_id: str, start: datetime, end: datetime | None
    ) -> Micros:
        return self._figures.usage(customer_id, feature_id, _window(start, end))

    def append(self, event: UsageEvent) -> None:
        holds = self._holds
        holds.require_usage(event.customer, "usage.append")
        if event.entity_path:
            holds.require_budgets(event.customer, event.entity_path, "usage.append")
        self._figures.count_usage(event)


class MemoryBudgets:
    def __init__(self, db: MemoryDatabase, figures: Figures) -> None:
        self._table = db.budgets
        self._figures = figures

    def get(self, customer_id: str, entity_id: str, target: str) -> Budget | None:
        return self._table.get((customer_id, entity_id, target))

    def of_entities(self, customer_id: str, entity_ids: Sequence[str]) -> list[Budget]:
        wanted = set(entity_ids)
        return [b for b in self._table.values(customer_id) if b.entity in wanted]

    def save(self, customer_id: str, budget: Budget) -> None:
        budget = stored(budget)
        key = (customer_id, budget.entity, budget.target)
        existing = self._table.get(key)
        if existing is None:
            self._table.insert(key, budget, customer_id)
            return
        changed = replace(
            existing, limit=budget.limit, reset=budget.reset, enforcement=budget.enforcement
        )
        self._table.update(key, changed)

    def delete(self, customer_id: str, entity_id: str, target: str) -> bool:
        return self._table.delete((customer_id, entity_id, target))

    def usage(
        self, customer_id: str, budget: Budget, start: datetime, end: datetime | None
    ) -> Micros:
        return self._figures.budget(customer_id, budget, _window(start, end))

    def usages(
        self, customer_id: str, windows: Sequence[tuple[Budget, int, int | None]]
    ) -> list[Micros]:
        budget = self._figures.budget
        return [
            budget(customer_id, found, (start, NEVER_ENDS if end is None else end))
            for found, start, end in windows
        ]
