"""Credit pools and the append-only ledger on PostgreSQL.

The rows and figures are the SQLite adapter's (``storage/sqlite/ledger.py``), without its pool
cache and its deferred grant writes: several processes write the same pools, each under the
hold of its job (``uow.py``), so ``load_pool`` reads the pool's row and live grants from the
tables every time, and ``save_pool`` writes the entries, the changed grants, the pool's row and
the currency budget counters at once, in the job's own transaction.
"""

from __future__ import annotations

from datetime import datetime

from allotment.domain.budgets import BudgetKind
from allotment.domain.credits import Entry, Grant, GrantStatus, Pool
from allotment.domain.identifiers import new_id
from allotment.domain.projections import budget_spend, require_pool_within_counter
from allotment.domain.timefmt import to_epoch_micros
from allotment.service.ports import LedgerRecord, Page
from allotment.storage.postgres import grants as grant_rows
from allotment.storage.postgres.budget_counters import PostgresBudgetCounters
from allotment.storage.postgres.db import Db, page
from allotment.storage.records import (
    ENTRY_COLUMNS,
    POOL_COLUMNS,
    PoolRow,
    entry_row,
    ledger_record_of,
    pool_of,
    pool_row,
)


class PostgresLedger:
    def __init__(self, db: Db, counters: PostgresBudgetCounters) -> None:
        self._db = db
        self._counters = counters

    def load_pool(self, customer_id: str, currency: str) -> Pool:
        live = grant_rows.load_live(self._db, customer_id, currency)
        row = self._db.execute(
            f"SELECT {POOL_COLUMNS} FROM credit_pools WHERE customer = %s AND currency = %s",
            (customer_id, currency),
        ).fetchone()
        return Pool(grants=live) if row is None else pool_of(live, row)

    def save_pool(self, customer_id: str, currency: str, pool: Pool) -> list[LedgerRecord]:
        changed = pool.changed_grants()
        require_pool_within_counter(pool, changed)
        records = self._append(customer_id, currency, pool.entries)
        grant_rows.save(self._db, customer_id, currency, changed)
        self._save_row(customer_id, currency, pool_row(pool), replace=bool(pool.entries))
        for record in records:
            entry = record.entry
            spent = budget_spend(entry)
            if spent:
                self._counters.count(
                    customer_id,
                    BudgetKind.CURRENCY,
                    currency,
                    entry.entity_path,
                    to_epoch_micros(entry.at),
                    spent,
                )
        pool.stored()
        return records

    def _append(self, customer_id: str, currency: str, entries: list[Entry]) -> list[LedgerRecord]:
        """Insert the entries in order, each with a new id; their ``seq`` comes back with them."""
        if not entries:
            return []
        ids = [new_id("led") for _ in entries]
        rows = [
            entry_row(customer_id, currency, entry_id, entry)
            for entry_id, entry in zip(ids, entries, strict=True)
        ]
        seqs: list[int] = []
        with self._db.cursor() as cursor:
            # One statement per entry, run in order: each result holds its own row's seq, and
            # seqs increase in the order the pool wrote its entries.
            cursor.executemany(
                f"INSERT INTO ledger_entries (customer, currency, {ENTRY_COLUMNS})"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING seq",
                rows,
                returning=True,
            )
            for result in cursor.results():
                row = result.fetchone()
                assert row is not None
                seqs.append(int(row[0]))
        return [
            LedgerRecord(entry_id, seq, customer_id, currency, entry)
            for entry_id, seq, entry in zip(ids, seqs, entries, strict=True)
        ]

    def _save_row(self, customer_id: str, currency: str, row: PoolRow, *, replace: bool) -> None:
        """The pool's overdraft and revenue, which only entries change: a pool saved without
        entries makes its row if it has none and leaves one it has as it is (another process
        may have moved it since this pool was loaded)."""
        on_conflict = (
            "DO UPDATE SET overdraft = excluded.overdraft, deferred = excluded.deferred,"
            " recognized = excluded.recognized, breakage = excluded.breakage"
            if replace
            else "DO NOTHING"
        )
        self._db.execute(
            f"INSERT INTO credit_pools (customer, currency, {POOL_COLUMNS})"
            f" VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (customer, currency) {on_conflict}",
            (customer_id, currency, *row),
        )

    def grant_exists(self, customer_id: str, currency: str, grant_id: str) -> bool:
        return grant_rows.exists(self._db, customer_id, currency, grant_id)

    def get_grant(self, customer_id: str, currency: str, grant_id: str) -> Grant | None:
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
        return grant_rows.page(self._db, customer_id, currency, after, limit, status, now)

    def list_entries(
        self, customer_id: str, currency: str, after: str | None, limit: int
    ) -> Page[LedgerRecord]:
        return page(
            self._db,
            f"SELECT seq, {ENTRY_COLUMNS} FROM ledger_entries",
            "customer = %s AND currency = %s",
            (customer_id, currency),
            after,
            limit,
            lambda row: ledger_record_of(customer_id, currency, row),
        )
