"""Credit pools: grants, overdraft and the append-only ledger.

The store keeps each pool as the last committed batch left it (``PoolCache``), so a debit does
not read its pool back from SQLite; each batch keeps the pools it loaded or saved, to write only
what changed.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from allotment.domain.budgets import BudgetKind
from allotment.domain.catalog import CreditCategory
from allotment.domain.credits import Entry, EntryType, Grant, Pool
from allotment.domain.errors import InvalidRequest
from allotment.domain.identifiers import new_id
from allotment.domain.projections import budget_spend
from allotment.domain.quantities import MAX_COUNTER
from allotment.domain.timefmt import from_epoch_micros, to_epoch_micros
from allotment.service.ports import LedgerRecord, Page
from allotment.storage.sqlite.budget_counters import SqliteBudgetCounters
from allotment.storage.sqlite.rows import instant, micros, page_rows, paged, path_of, path_text

PoolKey = tuple[str, str]
StoredPool = tuple[dict[str, Grant], int | None]
PoolCache = dict[PoolKey, StoredPool]
"""(customer, currency) -> (grants by id, overdraft or None when the pool has no row yet)."""


class SqliteLedger:
    def __init__(
        self,
        db: sqlite3.Connection,
        committed_pools: PoolCache,
        budget_counters: SqliteBudgetCounters,
    ) -> None:
        self._db = db
        self._committed_pools = committed_pools
        self._budget_counters = budget_counters
        # Each pool as loaded or last saved in this batch, to store only what changed.
        # (None for the overdraft of a pool that has no row yet.)
        self.pools_as_stored: PoolCache = {}
        # What each change to ``pools_as_stored`` replaced, so that a failed job's changes are
        # undone in the time the job took, not in the size of the batch.
        self._replaced: list[tuple[PoolKey, StoredPool | None]] = []

    def mark(self) -> int:
        return len(self._replaced)

    def undo(self, mark: int) -> None:
        replaced, pools = self._replaced, self.pools_as_stored
        while len(replaced) > mark:
            key, previous = replaced.pop()
            if previous is None:
                del pools[key]
            else:
                pools[key] = previous

    def _remember(self, key: PoolKey, stored: StoredPool) -> None:
        self._replaced.append((key, self.pools_as_stored.get(key)))
        self.pools_as_stored[key] = stored

    def load_pool(self, customer_id: str, currency: str) -> Pool:
        key = (customer_id, currency)
        known = self.pools_as_stored.get(key)
        if known is None:
            known = self._committed_pools.get(key)
            if known is not None:
                self._remember(key, known)
        if known is not None:
            return Pool(grants=dict(known[0]), overdraft=known[1] or 0)
        grants = {
            row[0]: _grant(row)
            for row in self._db.execute(
                f"SELECT {_GRANT_COLUMNS} FROM credit_grants WHERE customer = ? AND currency = ?"
                " AND expired = 0 AND voided_at IS NULL ORDER BY seq",
                (customer_id, currency),
            )
        }
        row = self._db.execute(
            "SELECT overdraft FROM credit_pools WHERE customer = ? AND currency = ?",
            (customer_id, currency),
        ).fetchone()
        overdraft = int(row[0]) if row else None
        self._remember(key, (dict(grants), overdraft))
        return Pool(grants=grants, overdraft=overdraft or 0)

    def save_pool(self, customer_id: str, currency: str, pool: Pool) -> list[LedgerRecord]:
        figures = [pool.overdraft, *(e.balance_after for e in pool.entries)]
        figures += [g.remaining for g in pool.grants.values()]
        if any(abs(figure) > MAX_COUNTER for figure in figures):
            raise InvalidRequest(
                "a credit pool's balance, overdraft or grant may not pass 9.2 x 10^12 credits;"
                " this request would."
            )
        stored_grants, stored_overdraft = self.pools_as_stored.get(
            (customer_id, currency), ({}, None)
        )
        for grant in pool.grants.values():
            before = stored_grants.get(grant.id)
            if before is None:
                self._save_grant(customer_id, currency, grant)
            elif before != grant:
                self._db.execute(
                    "UPDATE credit_grants SET remaining = ?, credited = ?, expired = ?,"
                    " voided_at = ? WHERE id = ?",
                    (
                        grant.remaining,
                        grant.credited,
                        grant.expired,
                        micros(grant.voided_at),
                        grant.id,
                    ),
                )
        if pool.overdraft != stored_overdraft:
            self._db.execute(
                "INSERT INTO credit_pools (customer, currency, overdraft) VALUES (?, ?, ?)"
                " ON CONFLICT (customer, currency) DO UPDATE SET overdraft = excluded.overdraft",
                (customer_id, currency, pool.overdraft),
            )
        records = []
        for entry in pool.entries:
            entry_id = new_id("led")
            cursor = self._db.execute(
                "INSERT INTO ledger_entries (id, customer, currency, type, grant_id, amount,"
                " balance_after, idempotency_key, entity, feature, at, entity_path)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                ),
            )
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
            seq = cursor.lastrowid
            assert seq is not None
            records.append(LedgerRecord(entry_id, seq, customer_id, currency, entry))
        pool.entries.clear()
        # A pool holds live grants only: ended ones are in the ledger and in all_grants.
        live = {g.id: g for g in pool.grants.values() if not g.expired and g.voided_at is None}
        self._remember((customer_id, currency), (live, pool.overdraft))
        return records

    def grant_exists(self, customer_id: str, currency: str, grant_id: str) -> bool:
        row = self._db.execute(
            "SELECT 1 FROM credit_grants WHERE id = ? AND customer = ? AND currency = ?",
            (grant_id, customer_id, currency),
        ).fetchone()
        return row is not None

    def all_grants(self, customer_id: str, currency: str) -> dict[str, Grant]:
        return {
            row[0]: _grant(row)
            for row in self._db.execute(
                f"SELECT {_GRANT_COLUMNS} FROM credit_grants WHERE customer = ? AND currency = ?"
                " ORDER BY seq",
                (customer_id, currency),
            )
        }

    def list_entries(
        self, customer_id: str, currency: str, after: str | None, limit: int
    ) -> Page[LedgerRecord]:
        rows = page_rows(
            self._db,
            "SELECT seq, id, type, grant_id, amount, balance_after, idempotency_key, entity,"
            " feature, at, entity_path FROM ledger_entries",
            "customer = ? AND currency = ?",
            (customer_id, currency),
            after,
            limit,
        )

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

        return paged(rows, limit, record)

    def _save_grant(self, customer_id: str, currency: str, grant: Grant) -> None:
        self._db.execute(
            f"INSERT INTO credit_grants (customer, currency, {_GRANT_COLUMNS})"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (id) DO UPDATE SET remaining = excluded.remaining,"
            " credited = excluded.credited, expired = excluded.expired,"
            " voided_at = excluded.voided_at",
            (
                customer_id,
                currency,
                grant.id,
                grant.amount,
                grant.category.value,
                grant.cost_basis,
                grant.priority,
                to_epoch_micros(grant.effective_at),
                micros(grant.expires_at),
                to_epoch_micros(grant.created_at),
                grant.remaining,
                grant.credited,
                grant.expired,
                micros(grant.voided_at),
                grant.reason,
            ),
        )


_GRANT_COLUMNS = (
    "id, amount, category, cost_basis, priority, effective_at, expires_at, created_at,"
    " remaining, credited, expired, voided_at, reason"
)


def _grant(row: tuple[Any, ...]) -> Grant:
    return Grant(
        id=row[0],
        amount=row[1],
        category=CreditCategory(row[2]),
        cost_basis=row[3],
        priority=row[4],
        effective_at=from_epoch_micros(row[5]),
        expires_at=instant(row[6]),
        created_at=from_epoch_micros(row[7]),
        remaining=row[8],
        credited=bool(row[9]),
        expired=bool(row[10]),
        voided_at=instant(row[11]),
        reason=row[12],
    )
