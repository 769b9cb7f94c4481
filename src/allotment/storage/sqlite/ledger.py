"""Credit pools: the pools the store keeps between batches, and the append-only ledger.

The store keeps each pool as the last committed batch left it (``CommittedPools``): the very
:class:`~allotment.domain.credits.Pool` the next job loads, which keeps its figures and orders
in step as it changes. A debit therefore reads nothing back from SQLite and writes only what it
touched, however many grants the pool holds; and a pool holds its live grants only
(``Pool.stored`` lets the ended ones go; they stay in ``credit_grants`` and the ledger). At most
``ALLOTMENT_CACHE_POOLS`` pools stay: past that, those least recently used leave (``lru.py``).

A job that fails may have changed the pools it loaded: they are dropped from the batch and from
the store, and read again from the tables (which the job's savepoint rolled back) by the next
job that loads them.

The figures of grants the table already holds are written once per batch, not once per job: a
hot pool's grant is debited by most jobs of a batch, and one ``UPDATE`` per debit was the
largest statement a debit made after its ledger entry. :class:`UnwrittenGrants` keeps each
grant's latest figures until the batch commits or a job reads ``credit_grants``, and takes back
what a failed job changed.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from datetime import datetime

from allotment.domain.budgets import BudgetKind
from allotment.domain.credits import Entry, Grant, GrantStatus, Pool
from allotment.domain.identifiers import new_id
from allotment.domain.projections import budget_spend, require_pool_within_counter
from allotment.domain.timefmt import to_epoch_micros
from allotment.service.ports import LedgerRecord, Page
from allotment.storage.records import (
    ENTRY_COLUMNS,
    POOL_COLUMNS,
    PoolRow,
    entry_row,
    ledger_record_of,
    pool_of,
    pool_row,
)
from allotment.storage.rows import micros, paged
from allotment.storage.sqlite import grants as grant_rows
from allotment.storage.sqlite.budget_counters import SqliteBudgetCounters
from allotment.storage.sqlite.lru import Committed
from allotment.storage.sqlite.rows import page_rows

PoolKey = tuple[str, str]


@dataclass(slots=True)
class CachedPool:
    pool: Pool
    row: PoolRow | None  # what credit_pools holds for the pool; None: no row yet
    # Live grants the table holds: stored with a narrow UPDATE, the others inserted.
    stored_grants: set[str] = field(default_factory=set)


PoolCache = dict[PoolKey, CachedPool]
"""(customer, currency) -> the pool as a batch loaded or saved it."""

CommittedPools = Committed[PoolKey, CachedPool]
"""(customer, currency) -> the pool as the last batch that loaded or saved it left it."""

DEFAULT_CACHED_POOLS = 100_000

GrantFigures = tuple[int, int, int, int | None, str]
"""What a pool changes of a grant the table holds, as ``grants.UPDATE_FIGURES`` writes it:
remaining, credited, expired, voided at (epoch microseconds), and the grant's id."""


class UnwrittenGrants:
    """The latest figures of the grants a batch changed, written when the batch commits or
    before anything reads ``credit_grants``.

    ``latest`` holds every grant the batch changed, ``unwritten`` those whose latest figures the
    table does not hold yet. A failed job is taken back from a journal of what each of its
    changes replaced; and since its savepoint also took back what it wrote of earlier jobs'
    figures, every grant it wrote or changed is written again."""

    __slots__ = ("_job_start", "_journal", "_written_in_job", "latest", "unwritten")

    def __init__(self) -> None:
        self.latest: dict[str, GrantFigures] = {}
        self.unwritten: set[str] = set()
        self._journal: list[tuple[str, GrantFigures | None]] = []
        self._job_start = 0
        self._written_in_job: set[str] = set()

    def job_starts(self) -> None:
        self._job_start = len(self._journal)
        self._written_in_job = set()

    def change(self, grant: Grant) -> None:
        self._journal.append((grant.id, self.latest.get(grant.id)))
        self.latest[grant.id] = (
            grant.remaining,
            grant.credited,
            grant.expired,
            micros(grant.voided_at),
            grant.id,
        )
        self.unwritten.add(grant.id)

    def write(self, db: sqlite3.Connection) -> None:
        if self.unwritten:
            latest = self.latest
            db.executemany(grant_rows.UPDATE_FIGURES, [latest[id_] for id_ in self.unwritten])
            self._written_in_job |= self.unwritten
            self.unwritten = set()

    def job_failed(self) -> None:
        changed = self._journal[self._job_start :]
        again = self._written_in_job | {grant_id for grant_id, _ in changed}
        for grant_id, replaced in reversed(changed):
            if replaced is None:
                del self.latest[grant_id]
            else:
                self.latest[grant_id] = replaced
        del self._journal[self._job_start :]
        for grant_id in again:
            if grant_id in self.latest:
                self.unwritten.add(grant_id)
            else:  # first changed by the failed job: the table holds what it held before
                self.unwritten.discard(grant_id)
        self._written_in_job = set()


class SqliteLedger:
    def __init__(
        self,
        db: sqlite3.Connection,
        committed_pools: CommittedPools,
        budget_counters: SqliteBudgetCounters,
    ) -> None:
        self._db = db
        self._committed_pools = committed_pools
        self._budget_counters = budget_counters
        # The pools this batch loaded or saved, for the store once it commits.
        self.pools_in_batch: PoolCache = {}
        # Every pool a job loaded or saved, in order: a failed job drops those it touched.
        self._touched: list[PoolKey] = []
        self._in_job: set[PoolKey] = set()  # those the running job touched
        self._grants = UnwrittenGrants()

    def mark(self) -> int:
        """A job starts."""
        self._in_job = set()
        self._grants.job_starts()
        return len(self._touched)

    def undo(self, mark: int) -> None:
        """The job that started at ``mark`` (the last one) failed: drop every pool it touched."""
        for key in self._touched[mark:]:
            self.pools_in_batch.pop(key, None)
            self._committed_pools.pop(key, None)
        del self._touched[mark:]
        self._grants.job_failed()

    def abandon(self) -> None:
        """The batch is given up: the pools it touched, which its jobs changed in place, leave
        the store's cache and are read from the tables again."""
        for key in self._touched:
            self._committed_pools.pop(key, None)

    def write_grants(self) -> None:
        """Write the grants' figures the batch changed: before it commits, or anything reads
        ``credit_grants``."""
        self._grants.write(self._db)

    def _use(self, key: PoolKey, cached: CachedPool) -> None:
        self.pools_in_batch[key] = cached
        self._touched.append(key)
        self._in_job.add(key)

    def load_pool(self, customer_id: str, currency: str) -> Pool:
        key = (customer_id, currency)
        in_batch = self.pools_in_batch.get(key)
        cached = in_batch or self._committed_pools.get(key)
        if cached is not None and cached.pool.pending and key not in self._in_job:
            # An earlier job changed it without storing it (and did not fail): not what the
            # tables hold, so read it again.
            cached = None
        stats = self._committed_pools.stats
        if cached is None:
            stats.misses += 1
            cached = self._read(customer_id, currency)
        elif in_batch is None:
            stats.hits += 1
        self._use(key, cached)
        return cached.pool

    def _read(self, customer_id: str, currency: str) -> CachedPool:
        self.write_grants()
        live = grant_rows.load_live(self._db, customer_id, currency)
        row = self._db.execute(
            f"SELECT {POOL_COLUMNS} FROM credit_pools WHERE customer = ? AND currency = ?",
            (customer_id, currency),
        ).fetchone()
        if row is None:
            return CachedPool(Pool(grants=live), None, set(live))
        pool = pool_of(live, row)
        return CachedPool(pool, pool_row(pool), set(live))

    def save_pool(self, customer_id: str, currency: str, pool: Pool) -> list[LedgerRecord]:
        changed = pool.changed_grants()
        require_pool_within_counter(pool, changed)
        key = (customer_id, currency)
        cached = self.pools_in_batch.get(key)
        if cached is None or cached.pool is not pool:
            cached = None  # not the pool this store holds: store every figure in full
        stored = cached.stored_grants if cached is not None else set()
        new_grants = []
        for grant in changed:
            if grant.id in stored:
                self._grants.change(grant)
            else:
                new_grants.append(grant)
        if new_grants:
            grant_rows.save(self._db, customer_id, currency, new_grants)
        row = pool_row(pool)
        if cached is None or cached.row is None:
            self._save_row(customer_id, currency, row, replace=bool(pool.entries))
        elif row != cached.row:
            self._save_row(customer_id, currency, row, replace=True)
        records = [self._append(customer_id, currency, entry) for entry in pool.entries]
        pool.stored()
        # Only the grants it changed can have been added or have left: the rest stay as they are,
        # so a save costs what it wrote, not the size of the pool.
        live = pool.grants
        for grant in changed:
            if grant.id in live:
                stored.add(grant.id)
            else:
                stored.discard(grant.id)
        self._use(key, CachedPool(pool, row, stored))
        return records

    def _save_row(self, customer_id: str, currency: str, row: PoolRow, *, replace: bool) -> None:
        """The pool's overdraft and revenue, which only entries change: a pool saved without
        entries makes its row if it has none and leaves one it has as it is."""
        on_conflict = (
            "DO UPDATE SET overdraft = excluded.overdraft, deferred = excluded.deferred,"
            " recognized = excluded.recognized, breakage = excluded.breakage"
            if replace
            else "DO NOTHING"
        )
        self._db.execute(
            f"INSERT INTO credit_pools (customer, currency, {POOL_COLUMNS})"
            f" VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (customer, currency) {on_conflict}",
            (customer_id, currency, *row),
        )

    def _append(self, customer_id: str, currency: str, entry: Entry) -> LedgerRecord:
        entry_id = new_id("led")
        cursor = self._db.execute(
            f"INSERT INTO ledger_entries (customer, currency, {ENTRY_COLUMNS})"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            entry_row(customer_id, currency, entry_id, entry),
        )
        seq = cursor.lastrowid
        assert seq is not None
        spent = budget_spend(entry)
        if spent:
            self._budget_counters.count(
                customer_id,
                BudgetKind.CURRENCY,
                currency,
                entry.entity_path,
                to_epoch_micros(entry.at),
                spent,
            )
        return LedgerRecord(entry_id, seq, customer_id, currency, entry)

    def grant_exists(self, customer_id: str, currency: str, grant_id: str) -> bool:
        return grant_rows.exists(self._db, customer_id, currency, grant_id)

    def get_grant(self, customer_id: str, currency: str, grant_id: str) -> Grant | None:
        self.write_grants()
        return grant_rows.get(self._db, customer_id, currency, grant_id)

    def list_grants(
        self,
        customer_id: str,
        currency: str,
        after: str | None,
        limit: int,
        status: GrantStatus | None,
        now: datetime,
    ) -> Page[Grant]:
        self.write_grants()
        return grant_rows.page(self._db, customer_id, currency, after, limit, status, now)

    def list_entries(
        self, customer_id: str, currency: str, after: str | None, limit: int
    ) -> Page[LedgerRecord]:
        rows = page_rows(
            self._db,
            f"SELECT seq, {ENTRY_COLUMNS} FROM ledger_entries",
            "customer = ? AND currency = ?",
            (customer_id, currency),
            after,
            limit,
        )
        return paged(rows, limit, lambda row: ledger_record_of(customer_id, currency, row))
