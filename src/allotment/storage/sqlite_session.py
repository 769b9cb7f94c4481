"""SQL for every operation of :class:`~allotment.service.ports.Session`, on SQLite."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

import msgspec

from allotment.domain.budgets import NO_PATH, Budget, BudgetKind, EntityPath
from allotment.domain.catalog import (
    Catalog,
    CreditCategory,
    Enforcement,
    Spec,
    spec_to_document,
)
from allotment.domain.changes import Change, LoggedChange
from allotment.domain.credits import Entry, EntryType, Grant, Pool
from allotment.domain.customers import ApiKey, Customer, Scope
from allotment.domain.documents import add_document, spec_from_document
from allotment.domain.entities import Entity
from allotment.domain.errors import InvalidRequest
from allotment.domain.holdings import AddonQuantity, Holdings, Override, Promotion, Subscription
from allotment.domain.identifiers import new_id
from allotment.domain.periods import ResetPeriod
from allotment.domain.quantities import Micros
from allotment.domain.reservations import Reservation, ReservationStatus
from allotment.domain.timefmt import from_epoch_micros, to_epoch_micros
from allotment.service.changelog import encode_change
from allotment.service.ports import LedgerRecord, Page, Published, StoredOutcome, UsageEvent
from allotment.service.projector import Fill
from allotment.storage.counter_cache import BatchCounters, CommittedCounters, Series, Window

_R = TypeVar("_R")
PoolCache = dict[tuple[str, str], tuple[dict[str, Grant], int | None]]
"""(customer, currency) -> (grants by id, overdraft or None when the pool has no row yet)."""

MAX_COUNTER = 2**63 - 1


def _counter_overflow() -> InvalidRequest:
    return InvalidRequest(
        "usage in one period may not exceed 9.2 x 10^12 units; this report would pass it."
    )


# A window that never ends is stored with this end, so that the counters' key has no NULL.
NEVER_ENDS = 2**62

_decode_document = msgspec.json.Decoder(float_hook=Decimal).decode
_encoder = msgspec.json.Encoder(decimal_format="number")
_encode = _encoder.encode

# Catalog objects load in dependency order: features and currencies before what uses them.
_CATALOG_LOAD_ORDER = ("feature", "currency", "product", "plan", "addon")


def _instant(micros: int | None) -> datetime | None:
    return None if micros is None else from_epoch_micros(micros)


def _micros(instant: datetime | None) -> int | None:
    return None if instant is None else to_epoch_micros(instant)


def _spec_json(spec: Spec) -> str:
    return _encode(spec_to_document(spec)).decode()


class SqliteSession:
    """One batch's view of the database. Not thread-safe: it lives on the store's thread."""

    def __init__(
        self,
        connection: sqlite3.Connection,
        committed_pools: PoolCache | None = None,
        committed_counters: CommittedCounters | None = None,
    ) -> None:
        self._db = connection
        # Pools as the last committed batch left them, kept by the store: this thread is the
        # only writer, so a pool read once need not be read from SQLite again.
        self._committed_pools: PoolCache = {} if committed_pools is None else committed_pools
        # What the batch's jobs recorded and filled, in job order, for the projector.
        self.published: list[Published] = []
        self.scratch: dict[str, Any] = {}
        # One wall-clock instant for every change the batch logs: what retention reads.
        self._written_at = datetime.now(UTC)
        self._written_at_micros = to_epoch_micros(self._written_at)
        # Each pool as loaded or last saved in this batch, to store only what changed.
        # (None for the overdraft of a pool that has no row yet.)
        self.pools_as_stored: PoolCache = {}
        # Budget counters as this batch knows them, on top of the committed ones.
        self.budget_counters = BatchCounters(
            {} if committed_counters is None else committed_counters, MAX_COUNTER
        )

    def record(self, change: Change) -> None:
        cursor = self._db.execute(
            "INSERT INTO change_log (kind, customer, written_at, payload) VALUES (?, ?, ?, ?)",
            (
                change.kind.value,
                change.customer,
                self._written_at_micros,
                encode_change(change).decode(),
            ),
        )
        seq = cursor.lastrowid
        assert seq is not None
        self.published.append(LoggedChange(seq, self._written_at, change))

    def fill(self, fill: Fill) -> None:
        self.published.append(fill)

    # ---------------------------------------------------------------- catalog

    def load_catalog(self) -> Catalog:
        rows = self._db.execute(
            "SELECT kind, id, document FROM catalog_objects ORDER BY seq"
        ).fetchall()
        by_kind: dict[str, list[tuple[str, Mapping[str, Any]]]] = {}
        for kind, object_id, document in rows:
            by_kind.setdefault(kind, []).append((object_id, _decode_document(document)))
        plans_by_age = [plan_id for plan_id, _ in by_kind.get("plan", [])]
        by_kind["plan"] = _parents_first(by_kind.get("plan", []))
        catalog = Catalog()
        for kind in _CATALOG_LOAD_ORDER:
            for object_id, document in by_kind.get(kind, []):
                catalog = add_document(catalog, kind, object_id, document)
        # Lists show the oldest first, whatever order the parents forced on loading.
        return replace(catalog, plans={plan_id: catalog.plans[plan_id] for plan_id in plans_by_age})

    def save_catalog_object(self, kind: str, object_id: str, document: bytes, at: datetime) -> bool:
        updated = self._db.execute(
            "UPDATE catalog_objects SET document = ?, updated_at = ? WHERE kind = ? AND id = ?",
            (document.decode(), to_epoch_micros(at), kind, object_id),
        ).rowcount
        if updated:
            return False
        self._db.execute(
            "INSERT INTO catalog_objects (kind, id, document, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (kind, object_id, document.decode(), to_epoch_micros(at), to_epoch_micros(at)),
        )
        return True

    # ---------------------------------------------------------------- customers

    def get_customer(self, customer_id: str) -> Customer | None:
        row = self._db.execute(
            "SELECT id, name, metadata, billing_id, created_at, updated_at, archived_at"
            " FROM customers WHERE id = ?",
            (customer_id,),
        ).fetchone()
        return None if row is None else _customer(row)

    def save_customer(self, customer: Customer) -> None:
        values = (
            customer.name,
            _encode(dict(customer.metadata)).decode(),
            customer.billing_id,
            _micros(customer.updated_at),
            _micros(customer.archived_at),
            customer.id,
        )
        updated = self._db.execute(
            "UPDATE customers SET name = ?, metadata = ?, billing_id = ?, updated_at = ?,"
            " archived_at = ? WHERE id = ?",
            values,
        ).rowcount
        if not updated:
            self._db.execute(
                "INSERT INTO customers (name, metadata, billing_id, updated_at, archived_at, id,"
                " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (*values, _micros(customer.created_at)),
            )

    def list_customers(self, after: str | None, limit: int) -> Page[Customer]:
        rows = self._page(
            "SELECT seq, id, name, metadata, billing_id, created_at, updated_at, archived_at"
            " FROM customers",
            "",
            (),
            after,
            limit,
        )
        return _paged(rows, limit, lambda row: _customer(row[1:]))

    # ---------------------------------------------------------------- holdings

    def load_holdings(self, customer_id: str, catalog: Catalog) -> Holdings:
        subscriptions = [
            _subscription(row)
            for row in self._db.execute(
                f"SELECT {_SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE customer = ?"
                " ORDER BY seq",
                (customer_id,),
            )
        ]
        promotions = [
            _promotion(row, catalog)
            for row in self._db.execute(
                f"SELECT {_PROMOTION_COLUMNS} FROM promotions WHERE customer = ?"
                " AND revoked_at IS NULL ORDER BY seq",
                (customer_id,),
            )
        ]
        overrides = {}
        for feature_id, spec, created_at, updated_at in self._db.execute(
            "SELECT feature, spec, created_at, updated_at FROM overrides WHERE customer = ?",
            (customer_id,),
        ):
            feature = catalog.features[feature_id]
            overrides[feature_id] = Override(
                customer=customer_id,
                feature=feature_id,
                spec=spec_from_document(feature, _decode_document(spec)),
                created_at=from_epoch_micros(created_at),
                updated_at=from_epoch_micros(updated_at),
            )
        return Holdings(subscriptions, promotions, overrides)

    def get_subscription(self, customer_id: str, subscription_id: str) -> Subscription | None:
        row = self._db.execute(
            f"SELECT {_SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE customer = ? AND id = ?",
            (customer_id, subscription_id),
        ).fetchone()
        return None if row is None else _subscription(row)

    def save_subscription(self, subscription: Subscription) -> None:
        addons = _encode([{"id": a.id, "quantity": a.quantity} for a in subscription.addons])
        self._db.execute(
            f"INSERT INTO subscriptions ({_SUBSCRIPTION_COLUMNS})"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (id) DO UPDATE SET addons = excluded.addons,"
            " ends_at = excluded.ends_at, canceled_at = excluded.canceled_at",
            (
                subscription.id,
                subscription.customer,
                subscription.product,
                subscription.plan,
                addons.decode(),
                subscription.is_trial,
                _micros(subscription.starts_at),
                _micros(subscription.trial_ends_at),
                _micros(subscription.ends_at),
                _micros(subscription.canceled_at),
                _micros(subscription.anchor_at),
                _micros(subscription.created_at),
            ),
        )

    def list_subscriptions(
        self, customer_id: str, after: str | None, limit: int
    ) -> Page[Subscription]:
        rows = self._page(
            f"SELECT seq, {_SUBSCRIPTION_COLUMNS} FROM subscriptions",
            "customer = ?",
            (customer_id,),
            after,
            limit,
        )
        return _paged(rows, limit, lambda row: _subscription(row[1:]))

    def get_promotion(
        self, customer_id: str, promotion_id: str, catalog: Catalog
    ) -> Promotion | None:
        row = self._db.execute(
            f"SELECT {_PROMOTION_COLUMNS} FROM promotions WHERE customer = ? AND id = ?",
            (customer_id, promotion_id),
        ).fetchone()
        return None if row is None else _promotion(row, catalog)

    def save_promotion(self, promotion: Promotion) -> None:
        self._db.execute(
            f"INSERT INTO promotions ({_PROMOTION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (id) DO UPDATE SET revoked_at = excluded.revoked_at",
            (
                promotion.id,
                promotion.customer,
                promotion.feature,
                _spec_json(promotion.spec),
                _micros(promotion.starts_at),
                _micros(promotion.ends_at),
                promotion.reason,
                _micros(promotion.revoked_at),
                _micros(promotion.created_at),
            ),
        )

    def save_override(self, override: Override) -> None:
        self._db.execute(
            "INSERT INTO overrides (customer, feature, spec, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (customer, feature) DO UPDATE"
            " SET spec = excluded.spec, updated_at = excluded.updated_at",
            (
                override.customer,
                override.feature,
                _spec_json(override.spec),
                _micros(override.created_at),
                _micros(override.updated_at),
            ),
        )

    def delete_override(self, customer_id: str, feature_id: str) -> bool:
        deleted = self._db.execute(
            "DELETE FROM overrides WHERE customer = ? AND feature = ?", (customer_id, feature_id)
        ).rowcount
        return bool(deleted)

    # ---------------------------------------------------------------- usage

    def window_usage(
        self, customer_id: str, feature_id: str, start: datetime, end: datetime | None
    ) -> Micros:
        key = (customer_id, feature_id, to_epoch_micros(start), _window_end(end))
        row = self._db.execute(
            "SELECT used FROM usage_counters WHERE customer = ? AND feature = ?"
            " AND period_start = ? AND period_end = ?",
            key,
        ).fetchone()
        if row is not None:
            return int(row[0])
        # First use of this window: project it from the events once, then keep it in step.
        try:
            (used,) = self._db.execute(
                "SELECT COALESCE(SUM(amount), 0) FROM usage_events WHERE customer = ?"
                " AND feature = ? AND timestamp >= ? AND timestamp < ?",
                key,
            ).fetchone()
        except sqlite3.OperationalError as error:  # SUM past 64 bits
            raise _counter_overflow() from error
        # Windows that ended before this one starts are no longer read but by a backdated
        # report, which projects them again: drop them, so the range update of append_usage
        # stays a few rows long.
        self._db.execute(
            "DELETE FROM usage_counters WHERE customer = ? AND feature = ? AND period_end <= ?",
            (customer_id, feature_id, key[2]),
        )
        self._db.execute(
            "INSERT INTO usage_counters (customer, feature, period_start, period_end, used)"
            " VALUES (?, ?, ?, ?, ?)",
            (*key, used),
        )
        return int(used)

    def append_usage(self, event: UsageEvent) -> None:
        timestamp = to_epoch_micros(event.timestamp)
        low, high = self._db.execute(
            "SELECT MIN(used), MAX(used) FROM usage_counters WHERE customer = ? AND feature = ?"
            " AND period_start <= ? AND period_end > ?",
            (event.customer, event.feature, timestamp, timestamp),
        ).fetchone()
        # SQLite would silently turn a counter past 64 bits into a float: refuse instead.
        if (high is not None and high + event.amount > MAX_COUNTER) or (
            low is not None and low + event.amount < -MAX_COUNTER
        ):
            raise _counter_overflow()
        self._db.execute(
            "INSERT INTO usage_events (customer, feature, entity, amount, timestamp,"
            " recorded_at, idempotency_key, entity_path) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                event.customer,
                event.feature,
                event.entity,
                event.amount,
                timestamp,
                to_epoch_micros(event.recorded_at),
                event.idempotency_key,
                _path_text(event.entity_path),
            ),
        )
        self._db.execute(
            "UPDATE usage_counters SET used = used + ? WHERE customer = ? AND feature = ?"
            " AND period_start <= ? AND period_end > ?",
            (event.amount, event.customer, event.feature, timestamp, timestamp),
        )
        if event.entity_path:
            self._count_for_budgets(
                event.customer,
                BudgetKind.FEATURE,
                event.feature,
                event.entity_path,
                timestamp,
                event.amount,
            )

    def _count_for_budgets(
        self,
        customer_id: str,
        kind: BudgetKind,
        target: str,
        path: EntityPath,
        instant: int,
        amount: Micros,
    ) -> None:
        """Add ``amount`` to the counters of every budget window along ``path`` that holds
        ``instant``; windows not projected yet are built from the truth when first read.

        The figures change in memory; the batch writes each changed window once before it
        commits (:meth:`write_budget_counters`)."""
        counters = self.budget_counters
        for entity in path:
            series = (customer_id, kind.value, target, entity)
            if not counters.knows(series):
                self._load_series(series)
            try:
                counters.add(series, instant, amount)
            except OverflowError as error:  # SQLite would turn the counter into a float
                raise _counter_overflow() from error

    def _load_series(self, series: Series) -> None:
        rows = self._db.execute(
            "SELECT period_start, period_end, used FROM budget_counters WHERE customer = ?"
            " AND kind = ? AND target = ? AND entity = ?",
            series,
        ).fetchall()
        self.budget_counters.load(series, {(start, end): used for start, end, used in rows})

    def write_budget_counters(self) -> None:
        """Store the last figure of every window the batch changed (called before commit)."""
        counters = self.budget_counters
        updates = []
        for series, window in counters.dirty:
            used = counters.get(series, window)
            if used is not None:  # None: the window was dropped, or made by a failed job
                updates.append((used, *series, *window))
        counters.dirty.clear()
        self._db.executemany(
            "UPDATE budget_counters SET used = ? WHERE customer = ? AND kind = ? AND target = ?"
            " AND entity = ? AND period_start = ? AND period_end = ?",
            updates,
        )

    # ---------------------------------------------------------------- idempotency

    def find_outcome(self, customer_id: str, route: str, key: str) -> StoredOutcome | None:
        row = self._db.execute(
            "SELECT fingerprint, response FROM idempotency_records"
            " WHERE customer = ? AND route = ? AND key = ?",
            (customer_id, route, key),
        ).fetchone()
        return None if row is None else StoredOutcome(fingerprint=row[0], response=bytes(row[1]))

    def save_outcome(
        self, customer_id: str, route: str, key: str, outcome: StoredOutcome, at: datetime
    ) -> None:
        self._db.execute(
            "INSERT INTO idempotency_records (customer, route, key, fingerprint, response,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?)",
            (customer_id, route, key, outcome.fingerprint, outcome.response, to_epoch_micros(at)),
        )

    # ---------------------------------------------------------------- credits

    def load_pool(self, customer_id: str, currency: str) -> Pool:
        key = (customer_id, currency)
        known = self.pools_as_stored.get(key) or self._committed_pools.get(key)
        if known is not None:
            self.pools_as_stored[key] = known
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
        self.pools_as_stored[(customer_id, currency)] = (dict(grants), overdraft)
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
                        _micros(grant.voided_at),
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
                    _path_text(entry.entity_path),
                ),
            )
            if entry.entity_path and entry.type is EntryType.DEBIT:
                self._count_for_budgets(
                    customer_id,
                    BudgetKind.CURRENCY,
                    currency,
                    entry.entity_path,
                    to_epoch_micros(entry.at),
                    -entry.amount,
                )
            seq = cursor.lastrowid
            assert seq is not None
            records.append(LedgerRecord(entry_id, seq, customer_id, currency, entry))
        pool.entries.clear()
        # A pool holds live grants only: ended ones are in the ledger and in all_grants.
        live = {g.id: g for g in pool.grants.values() if not g.expired and g.voided_at is None}
        self.pools_as_stored[(customer_id, currency)] = (live, pool.overdraft)
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

    def list_ledger(
        self, customer_id: str, currency: str, after: str | None, limit: int
    ) -> Page[LedgerRecord]:
        rows = self._page(
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
                entity_path=_path_of(row[10]),
            )
            return LedgerRecord(row[1], row[0], customer_id, currency, entry)

        return _paged(rows, limit, record)

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
                _micros(grant.expires_at),
                to_epoch_micros(grant.created_at),
                grant.remaining,
                grant.credited,
                grant.expired,
                _micros(grant.voided_at),
                grant.reason,
            ),
        )

    # ---------------------------------------------------------------- entities

    def load_entities(self, customer_id: str) -> dict[str, Entity]:
        return {
            row[0]: Entity(row[0], row[1], row[2], row[3], from_epoch_micros(row[4]))
            for row in self._db.execute(
                "SELECT id, parent, kind, name, created_at FROM entities WHERE customer = ?"
                " ORDER BY seq",
                (customer_id,),
            )
        }

    def save_entity(self, customer_id: str, entity: Entity) -> None:
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

    def delete_entity(self, customer_id: str, entity_id: str) -> None:
        key = (customer_id, entity_id)
        self._db.execute("DELETE FROM entities WHERE customer = ? AND id = ?", key)
        self._db.execute("DELETE FROM budgets WHERE customer = ? AND entity = ?", key)

    # ---------------------------------------------------------------- budgets

    def load_budgets(self, customer_id: str) -> list[Budget]:
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

    def save_budget(self, customer_id: str, budget: Budget) -> None:
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

    def delete_budget(self, customer_id: str, entity_id: str, target: str) -> bool:
        deleted = self._db.execute(
            "DELETE FROM budgets WHERE customer = ? AND entity = ? AND target = ?",
            (customer_id, entity_id, target),
        ).rowcount
        return bool(deleted)

    def budget_usages(
        self, customer_id: str, windows: Sequence[tuple[Budget, int, int | None]]
    ) -> list[Micros]:
        return [
            self._budget_usage(customer_id, budget, (start, NEVER_ENDS if end is None else end))
            for budget, start, end in windows
        ]

    def budget_usage(
        self, customer_id: str, budget: Budget, start: datetime, end: datetime | None
    ) -> Micros:
        return self._budget_usage(customer_id, budget, (to_epoch_micros(start), _window_end(end)))

    def _budget_usage(self, customer_id: str, budget: Budget, window: Window) -> Micros:
        kind, target, entity = budget.kind.value, budget.target, budget.entity
        series = (customer_id, kind, target, entity)
        if not self.budget_counters.knows(series):
            self._load_series(series)
        known = self.budget_counters.get(series, window)
        if known is not None:
            return known
        # First read of this window: project it from the truth, then keep it in step.
        mark = f"/{entity}/"  # instr, not LIKE: ids are case-sensitive
        try:
            if budget.kind is BudgetKind.FEATURE:
                (used,) = self._db.execute(
                    "SELECT COALESCE(SUM(amount), 0) FROM usage_events WHERE customer = ?"
                    " AND feature = ? AND timestamp >= ? AND timestamp < ?"
                    " AND instr(entity_path, ?) > 0",
                    (customer_id, target, *window, mark),
                ).fetchone()
            else:
                (used,) = self._db.execute(
                    "SELECT COALESCE(-SUM(amount), 0) FROM ledger_entries WHERE customer = ?"
                    " AND currency = ? AND at >= ? AND at < ? AND type = 'debit'"
                    " AND instr(entity_path, ?) > 0",
                    (customer_id, target, *window, mark),
                ).fetchone()
        except sqlite3.OperationalError as error:  # SUM past 64 bits
            raise _counter_overflow() from error
        # As for usage_counters: windows that ended before this one are projected again if
        # ever read.
        self._db.execute(
            "DELETE FROM budget_counters WHERE customer = ? AND kind = ? AND target = ?"
            " AND entity = ? AND period_end <= ?",
            (customer_id, kind, target, entity, window[0]),
        )
        self._db.execute(
            "INSERT INTO budget_counters (customer, kind, target, entity, period_start,"
            " period_end, used) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (customer_id, kind, target, entity, *window, used),
        )
        self.budget_counters.drop_ended(series, window[0])
        self.budget_counters.put(series, window, int(used))
        return int(used)

    # ---------------------------------------------------------------- reservations

    def save_reservation(self, reservation: Reservation) -> None:
        self._db.execute(
            f"INSERT INTO reservations ({_RESERVATION_COLUMNS})"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (id) DO UPDATE SET ended_at = excluded.ended_at,"
            " ended_as = excluded.ended_as, committed_amount = excluded.committed_amount",
            (
                reservation.id,
                reservation.customer,
                reservation.feature,
                reservation.entity,
                reservation.amount,
                reservation.currency,
                reservation.credits,
                to_epoch_micros(reservation.created_at),
                to_epoch_micros(reservation.expires_at),
                _micros(reservation.ended_at),
                None if reservation.ended_as is None else reservation.ended_as.value,
                reservation.committed_amount,
                _path_text(reservation.entity_path),
            ),
        )

    def get_reservation(self, reservation_id: str) -> Reservation | None:
        row = self._db.execute(
            f"SELECT {_RESERVATION_COLUMNS} FROM reservations WHERE id = ?", (reservation_id,)
        ).fetchone()
        return None if row is None else _reservation(row)

    def live_reservations(self, customer_id: str, now: datetime) -> list[Reservation]:
        return [
            _reservation(row)
            for row in self._db.execute(
                f"SELECT {_RESERVATION_COLUMNS} FROM reservations WHERE customer = ?"
                " AND ended_at IS NULL AND expires_at > ? ORDER BY seq",
                (customer_id, to_epoch_micros(now)),
            )
        ]

    # ---------------------------------------------------------------- API keys

    def save_api_key(self, key: ApiKey) -> None:
        self._db.execute(
            f"INSERT INTO api_keys ({_KEY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (id) DO UPDATE SET revoked_at = excluded.revoked_at,"
            " key_hash = excluded.key_hash, name = excluded.name, scope = excluded.scope",
            (
                key.id,
                key.name,
                key.scope.value,
                key.customer,
                key.key_hash,
                _micros(key.created_at),
                _micros(key.revoked_at),
            ),
        )

    def find_api_key(self, key_hash: str) -> ApiKey | None:
        row = self._db.execute(
            f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE key_hash = ?", (key_hash,)
        ).fetchone()
        return None if row is None else _api_key(row)

    def get_api_key(self, key_id: str) -> ApiKey | None:
        row = self._db.execute(
            f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE id = ?", (key_id,)
        ).fetchone()
        return None if row is None else _api_key(row)

    def list_api_keys(self, after: str | None, limit: int) -> Page[ApiKey]:
        rows = self._page(f"SELECT seq, {_KEY_COLUMNS} FROM api_keys", "", (), after, limit)
        return _paged(rows, limit, lambda row: _api_key(row[1:]))

    # ---------------------------------------------------------------- paging

    def _page(
        self, select: str, where: str, params: tuple[Any, ...], after: str | None, limit: int
    ) -> list[tuple[Any, ...]]:
        """Rows after the cursor (a ``seq``), oldest first, one more than asked to see if more."""
        conditions = [where] if where else []
        values = list(params)
        if after is not None:
            conditions.append("seq > ?")
            values.append(int(after))
        clause = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        return self._db.execute(
            f"{select}{clause} ORDER BY seq LIMIT ?", (*values, limit + 1)
        ).fetchall()


def _paged(
    rows: list[tuple[Any, ...]], limit: int, build: Callable[[tuple[Any, ...]], _R]
) -> Page[_R]:
    items = rows[:limit]
    next_cursor = str(items[-1][0]) if len(rows) > limit else None
    return Page(items=[build(row) for row in items], next_cursor=next_cursor)


def _path_text(path: EntityPath) -> str | None:
    """ "/agent/team/department/": every id between slashes, which ids cannot contain."""
    return "/" + "/".join(path) + "/" if path else None


def _path_of(text: str | None) -> EntityPath:
    return tuple(text.strip("/").split("/")) if text else NO_PATH


def _window_end(end: datetime | None) -> int:
    return NEVER_ENDS if end is None else to_epoch_micros(end)


def _parents_first(
    plans: list[tuple[str, Mapping[str, Any]]],
) -> list[tuple[str, Mapping[str, Any]]]:
    """Plans ordered so that each comes after its parent (a plan may be re-parented under a
    newer one), otherwise keeping creation order."""
    ordered: list[tuple[str, Mapping[str, Any]]] = []
    placed: set[str] = set()
    pending = plans
    while pending:
        waiting = []
        for object_id, document in pending:
            parent = document.get("parent")
            if parent is None or parent in placed:
                ordered.append((object_id, document))
                placed.add(object_id)
            else:
                waiting.append((object_id, document))
        if len(waiting) == len(pending):
            raise ValueError(f"stored plans have missing or cyclic parents: {waiting[0][0]}")
        pending = waiting
    return ordered


_SUBSCRIPTION_COLUMNS = (
    "id, customer, product, plan, addons, is_trial, starts_at, trial_ends_at, ends_at,"
    " canceled_at, anchor_at, created_at"
)
_PROMOTION_COLUMNS = (
    "id, customer, feature, spec, starts_at, ends_at, reason, revoked_at, created_at"
)
_KEY_COLUMNS = "id, name, scope, customer, key_hash, created_at, revoked_at"
_RESERVATION_COLUMNS = (
    "id, customer, feature, entity, amount, currency, credits, created_at, expires_at,"
    " ended_at, ended_as, committed_amount, entity_path"
)


def _reservation(row: tuple[Any, ...]) -> Reservation:
    return Reservation(
        id=row[0],
        customer=row[1],
        feature=row[2],
        entity=row[3],
        amount=row[4],
        currency=row[5],
        credits=row[6],
        created_at=from_epoch_micros(row[7]),
        expires_at=from_epoch_micros(row[8]),
        ended_at=_instant(row[9]),
        ended_as=None if row[10] is None else ReservationStatus(row[10]),
        committed_amount=row[11],
        entity_path=_path_of(row[12]),
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
        expires_at=_instant(row[6]),
        created_at=from_epoch_micros(row[7]),
        remaining=row[8],
        credited=bool(row[9]),
        expired=bool(row[10]),
        voided_at=_instant(row[11]),
        reason=row[12],
    )


def _customer(row: tuple[Any, ...]) -> Customer:
    return Customer(
        id=row[0],
        name=row[1],
        metadata=msgspec.json.decode(row[2]),
        billing_id=row[3],
        created_at=_instant(row[4]),
        updated_at=_instant(row[5]),
        archived_at=_instant(row[6]),
    )


def _subscription(row: tuple[Any, ...]) -> Subscription:
    return Subscription(
        id=row[0],
        customer=row[1],
        product=row[2],
        plan=row[3],
        addons=tuple(
            AddonQuantity(id=a["id"], quantity=a["quantity"]) for a in msgspec.json.decode(row[4])
        ),
        is_trial=bool(row[5]),
        starts_at=from_epoch_micros(row[6]),
        trial_ends_at=_instant(row[7]),
        ends_at=_instant(row[8]),
        canceled_at=_instant(row[9]),
        anchor_at=from_epoch_micros(row[10]),
        created_at=from_epoch_micros(row[11]),
    )


def _promotion(row: tuple[Any, ...], catalog: Catalog) -> Promotion:
    feature = catalog.features[row[2]]
    return Promotion(
        id=row[0],
        customer=row[1],
        feature=row[2],
        spec=spec_from_document(feature, _decode_document(row[3])),
        starts_at=from_epoch_micros(row[4]),
        ends_at=_instant(row[5]),
        reason=row[6],
        revoked_at=_instant(row[7]),
        created_at=from_epoch_micros(row[8]),
    )


def _api_key(row: tuple[Any, ...]) -> ApiKey:
    return ApiKey(
        id=row[0],
        name=row[1],
        scope=Scope(row[2]),
        customer=row[3],
        key_hash=row[4],
        created_at=from_epoch_micros(row[5]),
        revoked_at=_instant(row[6]),
    )
