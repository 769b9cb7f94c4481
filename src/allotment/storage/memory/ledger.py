"""The memory adapter's credit pools: grants, each pool's row and the append-only ledger.

As on SQLite, a pool loads its live grants only (``MemoryDatabase.live_grants``, the index of
the ones not ended) and saving it writes the grants it changed; ended grants stay in the grants
table and are read by id or a page at a time. Pools are loaded afresh for each job: nothing is
kept between jobs but the tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from allotment.domain.credits import Entry, EntryType, Grant, GrantStatus, Pool
from allotment.domain.identifiers import new_id
from allotment.domain.projections import require_pool_within_counter
from allotment.service.ports import LedgerRecord, Page
from allotment.storage.memory.database import GrantRow, MemoryDatabase, page
from allotment.storage.memory.figures import Figures
from allotment.storage.memory.holds import Holds
from allotment.storage.memory.records import stored


class MemoryLedger:
    def __init__(self, db: MemoryDatabase, figures: Figures, holds: Holds) -> None:
        self._db = db
        self._grants = db.grants
        self._figures = figures
        self._holds = holds

    def load_pool(self, customer_id: str, currency: str) -> Pool:
        key, rows = (customer_id, currency), self._grants
        live = {}
        for grant_id in self._db.live_grants.get(key, ()):
            row = rows.get(grant_id)
            assert row is not None
            live[grant_id] = row.grant
        return Pool(
            grants=live,
            overdraft=self._db.overdrafts.get(key, 0),
            revenue=self._db.revenues.get(key),
        )

    def save_pool(self, customer_id: str, currency: str, pool: Pool) -> list[LedgerRecord]:
        if pool.entries:
            self._require_holds(customer_id, currency, pool.entries)
        changed = pool.changed_grants()
        require_pool_within_counter(pool, changed)
        db, key = self._db, (customer_id, currency)
        for grant in changed:
            self._save_grant(customer_id, currency, stored(grant))
        # Only entries change the overdraft and revenue: a pool saved without any makes its row
        # if it has none, as SQLite does, and leaves one it has as it is.
        if pool.entries or key not in db.overdrafts:
            db.journal.put(db.overdrafts, key, pool.overdraft)
            db.journal.put(db.revenues, key, pool.revenue)
        entries = db.journal.child(db.entries, key, list)
        records = []
        for entry in pool.entries:
            record = LedgerRecord(
                new_id("led"), db.next_seq("ledger_entries"), customer_id, currency, entry
            )
            db.journal.append(entries, replace(record, entry=stored(entry)))
            self._figures.count_spend(customer_id, currency, entry)
            records.append(record)
        pool.stored()
        return records

    def _require_holds(self, customer_id: str, currency: str, entries: Sequence[Entry]) -> None:
        holds = self._holds
        holds.require_pool(customer_id, currency, "ledger.save_pool with entries")
        for entry in entries:
            if entry.type is EntryType.DEBIT and entry.entity_path:
                holds.require_budgets(customer_id, entry.entity_path, "a debit along a path")

    def _save_grant(self, customer_id: str, currency: str, grant: Grant) -> None:
        db, key = self._db, (customer_id, currency)
        existing = self._grants.get(grant.id)
        if existing is None:
            self._grants.insert(grant.id, GrantRow(customer_id, currency, grant), key)
        elif existing.grant != grant:
            grant = replace(
                existing.grant,
                remaining=grant.remaining,
                credited=grant.credited,
                expired=grant.expired,
                voided_at=grant.voided_at,
            )
            self._grants.update(grant.id, replace(existing, grant=grant))
        live = db.journal.child(db.live_grants, key, dict)
        if grant.ended:
            db.journal.delete(live, grant.id)
        elif grant.id not in live:
            db.journal.put(live, grant.id, None)

    def grant_exists(self, customer_id: str, currency: str, grant_id: str) -> bool:
        return self.get_grant(customer_id, currency, grant_id) is not None

    def get_grant(self, customer_id: str, currency: str, grant_id: str) -> Grant | None:
        row = self._grants.get(grant_id)
        if row is None or (row.customer, row.currency) != (customer_id, currency):
            return None
        return row.grant

    def list_grants(
        self,
        customer_id: str,
        currency: str,
        after: str | None,
        limit: int,
        status: GrantStatus | None,
        now: datetime,
    ) -> Page[Grant]:
        rows = self._grants.ordered((customer_id, currency))
        found = ((seq, row.grant) for seq, row in rows)
        if status is not None:
            found = ((seq, grant) for seq, grant in found if grant.status(now) is status)
        return page(found, after, limit, _same)

    def list_entries(
        self, customer_id: str, currency: str, after: str | None, limit: int
    ) -> Page[LedgerRecord]:
        entries = self._db.entries.get((customer_id, currency), [])
        return page(((record.seq, record) for record in entries), after, limit, _record)


def _record(record: LedgerRecord) -> LedgerRecord:
    return record


def _same(grant: Grant) -> Grant:
    return grant
