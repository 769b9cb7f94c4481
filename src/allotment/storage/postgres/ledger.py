"""Credit pools and the append-only ledger on PostgreSQL.

The rows and figures are the SQLite adapter's (``storage/sqlite/ledger.py``), without its pool
cache and its deferred grant writes: several processes write the same pools, each under the
hold of its job (``uow.py``), so ``load_pool`` reads the pool's row and live grants from the
tables every time, and ``save_pool`` writes the entries, the changed grants, the pool's row and
the currency budget counters at once, in the job's own transaction.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from allotment.domain.budgets import BudgetKind
from allotment.domain.credits import Entry, EntryType, Grant, GrantStatus, Pool, RevenueTotals
from allotment.domain.errors import InvalidRequest
from allotment.domain.identifiers import new_id
from allotment.domain.projections import budget_spend
from allotment.domain.quantities import MAX_COUNTER
from allotment.domain.timefmt import from_epoch_micros, to_epoch_micros
from allotment.service.ports import LedgerRecord, Page
from allotment.storage.postgres import grants as grant_rows
from allotment.storage.postgres.budget_counters import PostgresBudgetCounters
from allotment.storage.postgres.db import Db, page
from allotment.storage.rows import path_of, path_text

PoolRow = tuple[int, str, str, str]
"""A pool's row as stored: overdraft, then deferred, recognized and breakage revenue (text)."""

_ENTRY_COLUMNS = (
    "id, type, grant_id, amount, balance_after, idempotency_key, entity, feature, at, entity_path"
)


class PostgresLedger:
    def __init__(self, db: Db, counters: PostgresBudgetCounters) -> None:
        self._db = db
        self._counters = counters

    def load_pool(self, customer_id: str, currency: str) -> Pool:
        live = grant_rows.load_live(self._db, customer_id, currency)
        row = self._db.execute(
            "SELECT overdraft, deferred, recognized, breakage FROM credit_pools"
            " WHERE customer = %s AND currency = %s",
            (customer_id, currency),
        ).fetchone()
        if row is None:
            return Pool(grants=live)
        # Revenue is stored as the text of exact integers: they pass 64 bits.
        revenue = RevenueTotals(int(row[1]), int(row[2]), int(row[3]))
        return Pool(grants=live, overdraft=int(row[0]), revenue=revenue)

    def save_pool(self, customer_id: str, currency: str, pool: Pool) -> list[LedgerRecord]:
        changed = pool.changed_grants()
        figures = [pool.overdraft, *(e.balance_after for e in pool.entries)]
        figures += [g.remaining for g in changed]
        if any(abs(figure) > MAX_COUNTER for figure in figures):
            raise InvalidRequest(
                "a credit pool's balance, overdraft or grant may not pass 9.2 x 10^12 credits;"
                " this request would."
            )
        records = self._append(customer_id, currency, pool.entries)
        grant_rows.save(self._db, customer_id, currency, changed)
        self._save_row(customer_id, currency, _row_of(pool), replace=bool(pool.entries))
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
            (
                entry_id,
                customer_id,
                currency,
                entry.type.value,
                entry.grant,
                entry.amount,
                entry.balance_after,
                entry.idempotency_key,
                entry.entity,
                entry.feature,
                to_epoch_micros(entry.at),
                path_text(entry.entity_path),
            )
            for entry_id, entry in zip(ids, entries, strict=True)
        ]
        seqs: list[int] = []
        with self._db.cursor() as cursor:
            # One statement per entry, run in order: each result holds its own row's seq, and
            # seqs increase in the order the pool wrote its entries.
            cursor.executemany(
                "INSERT INTO ledger_entries (id, customer, currency, type, grant_id, amount,"
                " balance_after, idempotency_key, entity, feature, at, entity_path)"
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
            "INSERT INTO credit_pools (customer, currency, overdraft, deferred, recognized,"
            " breakage) VALUES (%s, %s, %s, %s, %s, %s)"
            f" ON CONFLICT (customer, currency) {on_conflict}",
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
        def record(row: tuple[Any, ...]) -> LedgerRecord:
            entry = Entry(
                type=EntryType(row[2]),
                grant=row[3],
                amount=row[4],
                balance_after=row[5],
                at=from_epoch_micros(row[9]),
                idempotency_key=row[6],
                entity=row[7],
                feature=row[8],
                entity_path=path_of(row[10]),
            )
            return LedgerRecord(row[1], row[0], customer_id, currency, entry)

        return page(
            self._db,
            f"SELECT seq, {_ENTRY_COLUMNS} FROM ledger_entries",
            "customer = %s AND currency = %s",
            (customer_id, currency),
            after,
            limit,
            record,
        )


def _row_of(pool: Pool) -> PoolRow:
    revenue = pool.revenue
    return (pool.overdraft, str(revenue.deferred), str(revenue.recognized), str(revenue.breakage))
