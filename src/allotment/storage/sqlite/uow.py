"""One batch's unit of work on SQLite: the repositories, the change log and the fills.

Not thread-safe: it lives on the store's thread. The batch's changes are written to the log
together, just before it commits: the batch holds the write lock, so their revisions follow the
newest one in the log without a gap, and a failed job's changes, dropped with it, never took
one. Holds are free here: a batch holds the
database's write lock from ``BEGIN IMMEDIATE`` to ``COMMIT`` and runs its jobs one at a time,
so whatever a job reads stays as it read it until the job ends.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from typing import Any, NamedTuple

from allotment.domain.budgets import EntityPath
from allotment.domain.changes import CHANGES, Change, EventRecorded, LoggedChange
from allotment.domain.timefmt import to_epoch_micros
from allotment.service.changelog import encode_change
from allotment.service.ports import Published
from allotment.service.projector import Fill
from allotment.storage.event_tables import SqlEvents, SqlTimers, SqlWebhooks, event_row
from allotment.storage.sqlite.budget_counters import ConsumptionMark, SqliteBudgetCounters
from allotment.storage.sqlite.budgets import SqliteBudgets, SqliteEntities
from allotment.storage.sqlite.catalog import SqliteCatalog
from allotment.storage.sqlite.counter_cache import (
    DEFAULT_CACHED_SERIES,
    CommittedCounters,
    Series,
    Window,
)
from allotment.storage.sqlite.customers import SqliteCustomers, SqliteHoldings
from allotment.storage.sqlite.events import SqliteSql
from allotment.storage.sqlite.keys import SqliteKeys
from allotment.storage.sqlite.ledger import (
    DEFAULT_CACHED_POOLS,
    CommittedPools,
    PoolCache,
    SqliteLedger,
)
from allotment.storage.sqlite.lru import Committed
from allotment.storage.sqlite.outcomes import SqliteOutcomes
from allotment.storage.sqlite.reservations import SqliteReservations
from allotment.storage.sqlite.usage import USAGE_SERIES, SqliteUsage


class JobMark(NamedTuple):
    """What a job may change in memory, as it was before the job: taken back if it fails."""

    effects: int
    scratch: dict[str, Any]
    pools: int
    counters: int
    consumption: ConsumptionMark
    outcomes: int


class SqliteUnitOfWork:
    def __init__(
        self,
        db: sqlite3.Connection,
        committed_pools: CommittedPools | None = None,
        committed_counters: CommittedCounters | None = None,
    ) -> None:
        self._db = db
        # What the batch's jobs recorded and filled, in job order; the changes get their
        # revisions when the batch is written (``published``, for the projector).
        self._effects: list[Change | Fill] = []
        self.published: list[Published] = []
        self.scratch: dict[str, Any] = {}
        self._budget_counters = SqliteBudgetCounters(
            db,
            Committed(capacity=DEFAULT_CACHED_SERIES)
            if committed_counters is None
            else committed_counters,
        )
        self.catalog = SqliteCatalog(db)
        self.customers = SqliteCustomers(db)
        self.holdings = SqliteHoldings(db)
        self.usage = SqliteUsage(db, self._budget_counters)
        self.outcomes = SqliteOutcomes(db)
        self.ledger = SqliteLedger(
            db,
            Committed(capacity=DEFAULT_CACHED_POOLS)
            if committed_pools is None
            else committed_pools,
            self._budget_counters,
        )
        self.entities = SqliteEntities(db)
        self.budgets = SqliteBudgets(db, self._budget_counters)
        self.reservations = SqliteReservations(db)
        self.keys = SqliteKeys(db)
        sql = SqliteSql(db)
        self.events = SqlEvents(sql)
        self.timers = SqlTimers(sql)
        self.webhooks = SqlWebhooks(sql)

    def record(self, change: Change) -> None:
        self._effects.append(change)

    def fill(self, fill: Fill) -> None:
        self._effects.append(fill)

    def hold_usage(self, customer_id: str) -> None:
        pass  # the batch's write lock holds everything (see the module's docstring)

    def hold_budgets(self, customer_id: str, path: EntityPath) -> None:
        pass

    def hold_pool(self, customer_id: str, currency: str) -> None:
        pass

    # The store's side: undoing a failed job, and finishing the batch.

    def mark(self) -> JobMark:
        return JobMark(
            len(self._effects),
            dict(self.scratch),
            self.ledger.mark(),
            self._budget_counters.counters.mark(),
            self._budget_counters.mark(),
            self.outcomes.mark(),
        )

    def abandon(self) -> None:
        """The batch is given up (its transaction taken back): nothing it changed may stay."""
        self.ledger.abandon()

    def undo(self, mark: JobMark) -> None:
        del self._effects[mark.effects :]
        self.scratch = mark.scratch
        self.ledger.undo(mark.pools)
        self._budget_counters.counters.undo(mark.counters)
        self._budget_counters.undo(mark.consumption)
        self.outcomes.undo(mark.outcomes)

    def before_commit(self) -> None:
        usage: list[tuple[Series, Window, int]] = []
        budgets: list[tuple[Series, Window, int]] = []
        for changed in self._budget_counters.counters.take_changed():
            (usage if changed[0][1] == USAGE_SERIES else budgets).append(changed)
        self.usage.write_counters(usage)
        self._budget_counters.write(budgets)
        self._budget_counters.flush()
        self.ledger.write_grants()
        self.outcomes.write()
        self._write_log()

    def _write_log(self) -> None:
        """Give each recorded change its revision and write them all (one statement)."""
        (seq,) = self._db.execute(
            "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'change_log'), 0)"
        ).fetchone()
        # One wall-clock instant for the whole batch, inside its transaction: what retention
        # reads.
        written_at = datetime.now(UTC)
        written_at_micros = to_epoch_micros(written_at)
        rows = []
        events = []
        published: list[Published] = []
        for effect in self._effects:
            if isinstance(effect, CHANGES):
                seq += 1
                published.append(LoggedChange(seq, written_at, effect))
                payload = encode_change(effect)
                rows.append((seq, effect.kind.value, effect.customer, written_at_micros, payload))
                if isinstance(effect, EventRecorded):
                    events.append(event_row(seq, effect.event))
            else:
                published.append(effect)
        if rows:
            self._db.executemany(
                "INSERT INTO change_log (seq, kind, customer, written_at, payload)"
                " VALUES (?, ?, ?, ?, ?)",
                rows,
            )
        if events:  # under the change's revision, in the same transaction
            self._db.executemany(
                "INSERT INTO events (seq, id, type, customer, created_at, data)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                events,
            )
        self.published = published

    def after_commit(self) -> PoolCache:
        """Make the batch's counters the committed ones; the pools as the batch left them."""
        self._budget_counters.counters.publish()
        return self.ledger.pools_in_batch
