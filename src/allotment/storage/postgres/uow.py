"""One batch's unit of work on PostgreSQL: the repositories, the holds, the change log.

Not thread-safe: it lives on the store's thread, inside the batch's transaction. Unlike SQLite,
where a batch holds the whole database's write lock, other processes write beside this one, so
the holds are locks: transaction-scoped advisory locks, one per customer's usage, per entity's
budgets and per credit pool, taken in the order the port prescribes (usage, then the budgets of
a path from the root down, then a pool). A lock taken by a job that fails is released with its
savepoint; the others are held until the batch commits.

The batch's changes get their revisions from ``change_log_head`` as the last statement before
``COMMIT`` (migration 0010): gap-free and in commit order across processes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, NamedTuple

from allotment.domain.budgets import EntityPath
from allotment.domain.changes import CHANGES, Change, EventRecorded, LoggedChange
from allotment.domain.timefmt import to_epoch_micros
from allotment.service.changelog import encode_change
from allotment.service.ports import Published
from allotment.service.projector import Fill
from allotment.storage.event_tables import SqlEvents, SqlTimers, SqlWebhooks, event_row
from allotment.storage.postgres.budget_counters import PostgresBudgetCounters
from allotment.storage.postgres.budgets import PostgresBudgets, PostgresEntities
from allotment.storage.postgres.catalog import PostgresCatalog
from allotment.storage.postgres.customers import PostgresCustomers, PostgresHoldings
from allotment.storage.postgres.db import Db, hold
from allotment.storage.postgres.events import PostgresSql
from allotment.storage.postgres.keys import PostgresKeys
from allotment.storage.postgres.ledger import PostgresLedger
from allotment.storage.postgres.outcomes import PostgresOutcomes
from allotment.storage.postgres.reservations import PostgresReservations
from allotment.storage.postgres.usage import PostgresUsage


class JobMark(NamedTuple):
    """What a job may change in memory, as it was before the job: taken back if it fails."""

    effects: int
    scratch: dict[str, Any]


class PostgresUnitOfWork:
    def __init__(self, db: Db) -> None:
        self._db = db
        # What the batch's jobs recorded and filled, in job order; the changes get their
        # revisions when the batch is written (``published``, for the projector).
        self._effects: list[Change | Fill] = []
        self.published: list[Published] = []
        self.scratch: dict[str, Any] = {}
        counters = PostgresBudgetCounters(db)
        self.catalog = PostgresCatalog(db)
        self.customers = PostgresCustomers(db)
        self.holdings = PostgresHoldings(db)
        self.usage = PostgresUsage(db, counters)
        self.outcomes = PostgresOutcomes(db)
        self.ledger = PostgresLedger(db, counters)
        self.entities = PostgresEntities(db)
        self.budgets = PostgresBudgets(db, counters)
        self.reservations = PostgresReservations(db)
        self.keys = PostgresKeys(db)
        sql = PostgresSql(db)
        self.events = SqlEvents(sql)
        self.timers = SqlTimers(sql)
        self.webhooks = SqlWebhooks(sql)

    def record(self, change: Change) -> None:
        self._effects.append(change)

    def fill(self, fill: Fill) -> None:
        self._effects.append(fill)

    def hold_usage(self, customer_id: str) -> None:
        hold(self._db, "usage", customer_id)

    def hold_budgets(self, customer_id: str, path: EntityPath) -> None:
        # The path is nearest first; locks go from the root down, as every job takes them, so
        # that sibling agents under one team never wait on each other in a cycle.
        for entity in reversed(path):
            hold(self._db, "budgets", customer_id, entity)

    def hold_pool(self, customer_id: str, currency: str) -> None:
        hold(self._db, "pool", customer_id, currency)

    # The store's side: undoing a failed job, and finishing the batch.

    def mark(self) -> JobMark:
        return JobMark(len(self._effects), dict(self.scratch))

    def undo(self, mark: JobMark) -> None:
        del self._effects[mark.effects :]
        self.scratch = mark.scratch

    def before_commit(self) -> None:
        """Give each recorded change its revision and write them (the batch's last writes)."""
        changes = [effect for effect in self._effects if isinstance(effect, CHANGES)]
        published: list[Published] = []
        if not changes:  # fills only
            self.published = [effect for effect in self._effects if not isinstance(effect, CHANGES)]
            return
        row = self._db.execute(
            "UPDATE change_log_head SET seq = seq + %s WHERE id = 1 RETURNING seq",
            (len(changes),),
        ).fetchone()
        if row is None:
            raise RuntimeError("change_log_head has no row: run allotment migrate")
        seq = int(row[0]) - len(changes)
        # One wall-clock instant for the whole batch: what retention reads.
        written_at = datetime.now(UTC)
        written_at_micros = to_epoch_micros(written_at)
        rows = []
        events = []
        for effect in self._effects:
            if isinstance(effect, CHANGES):
                seq += 1
                published.append(LoggedChange(seq, written_at, effect))
                payload = encode_change(effect).decode()  # JSON, in a text column
                rows.append((seq, effect.kind.value, effect.customer, written_at_micros, payload))
                if isinstance(effect, EventRecorded):
                    events.append(event_row(seq, effect.event))
            else:
                published.append(effect)
        with self._db.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO change_log (seq, kind, customer, written_at, payload)"
                " VALUES (%s, %s, %s, %s, %s)",
                rows,
            )
            if events:  # under the change's revision, in the same transaction
                cursor.executemany(
                    "INSERT INTO events (seq, id, type, customer, created_at, data)"
                    " VALUES (%s, %s, %s, %s, %s, %s)",
                    events,
                )
        self.published = published

    @property
    def first_revision(self) -> int | None:
        """The revision of the batch's first change, once written; None when it has none."""
        for item in self.published:
            if isinstance(item, LoggedChange):
                return item.seq
        return None
