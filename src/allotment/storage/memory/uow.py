"""One job's unit of work on a memory database: the repositories, the log and the fills.

Each job is its own transaction: its writes go through the database's journal (undone if the
job raises), the changes it records are kept here and written to the log when it commits (the
events among them to the events, under their revisions), and its ``scratch`` starts empty (a
batch here is one job).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from allotment.domain.budgets import EntityPath
from allotment.domain.changes import Change, EventRecorded, LoggedChange
from allotment.domain.events import LoggedEvent
from allotment.service.changelog import encode_change
from allotment.service.ports import Published
from allotment.service.projector import Fill
from allotment.storage.memory.database import LogRow, MemoryDatabase
from allotment.storage.memory.events import (
    MemoryEvents,
    MemoryTimers,
    MemoryWebhooks,
    write_events,
)
from allotment.storage.memory.figures import Figures, MemoryBudgets, MemoryUsage
from allotment.storage.memory.holds import Holds
from allotment.storage.memory.ledger import MemoryLedger
from allotment.storage.memory.records import (
    MemoryCatalog,
    MemoryCustomers,
    MemoryEntities,
    MemoryHoldings,
    MemoryKeys,
    MemoryOutcomes,
    MemoryReservations,
)


class MemoryUnitOfWork:
    def __init__(self, db: MemoryDatabase, strict_holds: bool, written_at: datetime) -> None:
        self._db = db
        self._written_at = written_at  # the wall-clock instant retention reads
        self._logged: list[LogRow] = []
        self._events: list[LoggedEvent] = []  # written when the job ends, as SQL does
        self.holds = Holds(strict_holds)
        # What the job recorded and filled, in order, for the sinks.
        self.published: list[Published] = []
        self.scratch: dict[str, Any] = {}
        figures = Figures(db)
        self.catalog = MemoryCatalog(db)
        self.customers = MemoryCustomers(db)
        self.holdings = MemoryHoldings(db)
        self.usage = MemoryUsage(figures, self.holds)
        self.outcomes = MemoryOutcomes(db)
        self.ledger = MemoryLedger(db, figures, self.holds)
        self.entities = MemoryEntities(db)
        self.budgets = MemoryBudgets(db, figures)
        self.reservations = MemoryReservations(db, self.holds)
        self.keys = MemoryKeys(db)
        self.events = MemoryEvents(db)
        self.timers = MemoryTimers(db)
        self.webhooks = MemoryWebhooks(db)

    def record(self, change: Change) -> None:
        payload = encode_change(change)
        seq = self._db.log.next_seq + len(self._logged)
        written_at = self._written_at
        self._logged.append(LogRow(seq, written_at, change.kind.value, change.customer, payload))
        self.published.append(LoggedChange(seq, written_at, change))
        if isinstance(change, EventRecorded):
            self._events.append(LoggedEvent(seq, change.event))

    def fill(self, fill: Fill) -> None:
        self.published.append(fill)

    def hold_usage(self, customer_id: str) -> None:
        self.holds.take_usage(customer_id)

    def hold_budgets(self, customer_id: str, path: EntityPath) -> None:
        self.holds.take_budgets(customer_id, path)

    def hold_pool(self, customer_id: str, currency: str) -> None:
        self.holds.take_pool(customer_id, currency)

    # The store's side.

    def before_commit(self) -> None:
        """Write the job's events: what may still fail it (an event id already taken), so the
        store calls it while it can still roll the job back."""
        write_events(self._db, self._events)

    def commit(self) -> None:
        """Make the job's writes and log rows the database's (under its lock)."""
        self._db.journal.commit()
        self._db.log.commit(self._logged)

    def rollback(self) -> None:
        self._db.journal.rollback()
