"""The memory adapter's repositories of records: catalog, customers, holdings, idempotency
records, API keys, reservations and entities. Each mirrors its SQLite module: the same upserts
(and the same columns an update may change), the same order, the same paging."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from allotment.domain.catalog import Catalog, Spec, spec_to_document
from allotment.domain.customers import ApiKey, Customer
from allotment.domain.documents import catalog_from_documents, spec_from_document
from allotment.domain.entities import MAX_ENTITY_DEPTH, Entity
from allotment.domain.holdings import Holdings, Override, Promotion, Subscription
from allotment.domain.reservations import Reservation
from allotment.domain.timefmt import from_epoch_micros, to_epoch_micros
from allotment.service.ports import USAGE_ROUTE, Page, StoredOutcome
from allotment.storage.memory.database import (
    CatalogRow,
    ConstraintError,
    CustomerRow,
    MemoryDatabase,
    OutcomeRow,
    OverrideRow,
    PromotionRow,
    page,
)
from allotment.storage.memory.holds import Holds

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

D = TypeVar("D", bound="DataclassInstance")

decode_document = msgspec.json.Decoder(float_hook=Decimal).decode
encode = msgspec.json.Encoder(decimal_format="number").encode

# Catalog objects load in dependency order: features and currencies before what uses them.
_CATALOG_LOAD_ORDER = ("feature", "currency", "product", "plan", "addon")


def stored(value: D) -> D:
    """``value`` as SQLite gives it back: instants in UTC (whole microseconds, as stored; a
    naive instant is refused as SQLite's adapter refuses it), entity paths as tuples."""
    changes: dict[str, Any] = {}
    for field in fields(value):
        item = getattr(value, field.name)
        if isinstance(item, datetime):
            if item.tzinfo is not UTC:
                changes[field.name] = from_epoch_micros(to_epoch_micros(item))
        elif field.name == "entity_path" and not isinstance(item, tuple):
            changes[field.name] = tuple(item)
    return replace(value, **changes) if changes else value


def _spec_json(spec: Spec) -> str:
    return encode(spec_to_document(spec)).decode()


def _spec(catalog: Catalog, feature_id: str, text: str) -> Spec:
    return spec_from_document(catalog.features[feature_id], decode_document(text))


class MemoryCatalog:
    def __init__(self, db: MemoryDatabase) -> None:
        self._table = db.catalog

    def load(self) -> Catalog:
        return catalog_from_documents(
            (row.kind, row.id, decode_document(row.document))
            for _, row in self._table.ordered(everyone=True)
        )

    def save_object(self, kind: str, object_id: str, document: bytes, at: datetime) -> bool:
        key, text, when = (kind, object_id), document.decode(), to_epoch_micros(at)
        row = self._table.get(key)
        if row is not None:
            self._table.update(key, replace(row, document=text, updated_at=when))
            return False
        self._table.insert(key, CatalogRow(kind, object_id, text, when, when))
        return True

    def stored_document(self, kind: str, object_id: str) -> bytes | None:
        row = self._table.get((kind, object_id))
        return None if row is None else row.document.encode()


class MemoryCustomers:
    def __init__(self, db: MemoryDatabase) -> None:
        self._table = db.customers

    def get(self, customer_id: str) -> Customer | None:
        row = self._table.get(customer_id)
        return None if row is None else _customer(row)

    def save(self, customer: Customer) -> None:
        customer = stored(customer)
        if customer.updated_at is None:
            raise ConstraintError("customers.updated_at may not be NULL")
        metadata = encode(dict(customer.metadata))
        existing = self._table.get(customer.id)
        if existing is not None:  # an update keeps the creation instant
            kept = replace(customer, metadata={}, created_at=existing.customer.created_at)
            self._table.update(customer.id, CustomerRow(kept, metadata))
            return
        if customer.created_at is None:
            raise ConstraintError("customers.created_at may not be NULL")
        self._table.insert(customer.id, CustomerRow(replace(customer, metadata={}), metadata))

    def list(self, after: str | None, limit: int) -> Page[Customer]:
        return page(self._table.ordered(everyone=True), after, limit, _customer)


def _customer(row: CustomerRow) -> Customer:
    return replace(row.customer, metadata=msgspec.json.decode(row.metadata))


class MemoryHoldings:
    def __init__(self, db: MemoryDatabase) -> None:
        self._subscriptions = db.subscriptions
        self._promotions = db.promotions
        self._overrides = db.overrides

    def load(self, customer_id: str, catalog: Catalog) -> Holdings:
        subscriptions = self._subscriptions.values(customer_id)
        promotions = [
            _promotion(row, catalog)
            for row in self._promotions.values(customer_id)
            if row.promotion.revoked_at is None
        ]
        rows = sorted(self._overrides.values(customer_id), key=lambda row: row.override.feature)
        overrides = {
            row.override.feature: replace(
                row.override, spec=_spec(catalog, row.override.feature, row.spec)
            )
            for row in rows
        }
        return Holdings(subscriptions, promotions, overrides)

    def get_subscription(self, customer_id: str, subscription_id: str) -> Subscription | None:
        found = self._subscriptions.get(subscription_id)
        return found if found is not None and found.customer == customer_id else None

    def save_subscription(self, subscription: Subscription) -> None:
        subscription = stored(subscription)
        existing = self._subscriptions.get(subscription.id)
        if existing is None:
            self._subscriptions.insert(subscription.id, subscription, subscription.customer)
            return
        changed = replace(
            existing,
            addons=subscription.addons,
            ends_at=subscription.ends_at,
            canceled_at=subscription.canceled_at,
            plan_versions=subscription.plan_versions,
        )
        self._subscriptions.update(subscription.id, changed)

    def live_on_plan(self, plan_id: str, now: datetime) -> list[Subscription]:
        return self._live(lambda s: s.plan == plan_id, now)

    def live_in_product(self, product_id: str, now: datetime) -> list[Subscription]:
        return self._live(lambda s: s.product == product_id, now)

    def _live(self, chosen: Callable[[Subscription], bool], now: datetime) -> list[Subscription]:
        # The SQL adapters read these through an index on the plan (or product); the reference
        # adapter has every customer's rows at hand.
        return [
            s
            for _, s in self._subscriptions.ordered(everyone=True)
            if chosen(s) and (s.end is None or s.end > now)
        ]

    def list_subscriptions(
        self, customer_id: str, after: str | None, limit: int
    ) -> Page[Subscription]:
        return page(self._subscriptions.ordered(customer_id), after, limit, _same)

    def get_promotion(
        self, customer_id: str, promotion_id: str, catalog: Catalog
    ) -> Promotion | None:
        row = self._promotions.get(promotion_id)
        if row is None or row.promotion.customer != customer_id:
            return None
        return _promotion(row, catalog)

    def save_promotion(self, promotion: Promotion) -> None:
        promotion = stored(promotion)
        existing = self._promotions.get(promotion.id)
        if existing is None:
            row = PromotionRow(promotion, _spec_json(promotion.spec))
            self._promotions.insert(promotion.id, row, promotion.customer)
            return
        revoked = replace(existing.promotion, revoked_at=promotion.revoked_at)
        self._promotions.update(promotion.id, replace(existing, promotion=revoked))

    def save_override(self, override: Override) -> None:
        override = stored(override)
        key = (override.customer, override.feature)
        existing = self._overrides.get(key)
        if existing is None:
            row = OverrideRow(override, _spec_json(override.spec))
            self._overrides.insert(key, row, override.customer)
            return
        changed = replace(existing.override, updated_at=override.updated_at)
        self._overrides.update(key, OverrideRow(changed, _spec_json(override.spec)))

    def delete_override(self, customer_id: str, feature_id: str) -> bool:
        return self._overrides.delete((customer_id, feature_id))


def _promotion(row: PromotionRow, catalog: Catalog) -> Promotion:
    promotion = row.promotion
    return replace(promotion, spec=_spec(catalog, promotion.feature, row.spec))


def _same(value: Any) -> Any:
    return value


class MemoryOutcomes:
    def __init__(self, db: MemoryDatabase) -> None:
        self._table = db.outcomes

    def find(self, customer_id: str, route: str, key: str) -> StoredOutcome | None:
        row = self._table.get((customer_id, route, key))
        return None if row is None else row.outcome

    def save(
        self, customer_id: str, route: str, key: str, outcome: StoredOutcome, at: datetime
    ) -> None:
        primary = (customer_id, route, key)
        if primary in self._table:
            raise ConstraintError(f"an idempotency record for {primary} exists")
        kept = StoredOutcome(fingerprint=outcome.fingerprint, response=bytes(outcome.response))
        self._table.insert(primary, OutcomeRow(kept, to_epoch_micros(at)), customer_id)

    def prune_usage(self, before: datetime, limit: int) -> int:
        # The reference adapter scans: what it promises is which records go, not the cost.
        cutoff = to_epoch_micros(before)
        old = sorted(
            (row.created_at, primary)
            for primary, (_, _, row) in self._table.rows.items()
            if primary[1] == USAGE_ROUTE and row.created_at < cutoff
        )
        for _, primary in old[:limit]:
            self._table.delete(primary)
        return min(len(old), limit)


class MemoryKeys:
    def __init__(self, db: MemoryDatabase) -> None:
        self._db = db
        self._table = db.keys

    def save(self, key: ApiKey) -> None:
        key = stored(key)
        hashes, journal = self._db.key_hashes, self._db.journal
        holder = hashes.get(key.key_hash)
        if holder is not None and holder != key.id:
            raise ConstraintError("api_keys.key_hash is unique")
        existing = self._table.get(key.id)
        if existing is None:
            self._table.insert(key.id, key)
        else:
            changed = replace(
                existing,
                revoked_at=key.revoked_at,
                key_hash=key.key_hash,
                name=key.name,
                scope=key.scope,
            )
            self._table.update(key.id, changed)
            if existing.key_hash != key.key_hash:
                journal.delete(hashes, existing.key_hash)
        journal.put(hashes, key.key_hash, key.id)

    def find_by_hash(self, key_hash: str) -> ApiKey | None:
        key_id = self._db.key_hashes.get(key_hash)
        return None if key_id is None else self._table.get(key_id)

    def get(self, key_id: str) -> ApiKey | None:
        return self._table.get(key_id)

    def list(self, after: str | None, limit: int) -> Page[ApiKey]:
        return page(self._table.ordered(everyone=True), after, limit, _same)


class MemoryReservations:
    def __init__(self, db: MemoryDatabase, holds: Holds) -> None:
        self._table = db.reservations
        self._holds = holds

    def save(self, reservation: Reservation) -> None:
        if reservation.ended_at is None:  # it holds (until it expires): it changes usage
            self._holds.require_usage(reservation.customer, "reservations.save of a live hold")
        reservation = stored(reservation)
        existing = self._table.get(reservation.id)
        if existing is None:
            self._table.insert(reservation.id, reservation, reservation.customer)
            return
        changed = replace(
            existing,
            ended_at=reservation.ended_at,
            ended_as=reservation.ended_as,
            committed_amount=reservation.committed_amount,
        )
        self._table.update(reservation.id, changed)

    def get(self, reservation_id: str) -> Reservation | None:
        return self._table.get(reservation_id)

    def live(self, customer_id: str, now: datetime) -> list[Reservation]:
        at = to_epoch_micros(now)
        return [
            reservation
            for reservation in self._table.values(customer_id)
            if reservation.ended_at is None and to_epoch_micros(reservation.expires_at) > at
        ]


class MemoryEntities:
    def __init__(self, db: MemoryDatabase) -> None:
        self._db = db
        self._table = db.entities

    def get(self, customer_id: str, entity_id: str) -> Entity | None:
        return self._table.get((customer_id, entity_id))

    def path(self, customer_id: str, entity_id: str) -> list[Entity]:
        path: list[Entity] = []
        found = self._table.get((customer_id, entity_id))
        while found is not None and len(path) <= MAX_ENTITY_DEPTH:
            path.append(found)
            found = None if found.parent is None else self._table.get((customer_id, found.parent))
        return path

    def children(self, customer_id: str, entity_id: str) -> list[str]:
        return [e.id for e in self._table.values(customer_id) if e.parent == entity_id]

    def height(self, customer_id: str, entity_id: str) -> int:
        level, height = [entity_id], 0
        while level and height <= MAX_ENTITY_DEPTH:
            height += 1
            level = [e.id for e in self._table.values(customer_id) if e.parent in level]
        return height

    def save(self, customer_id: str, entity: Entity) -> None:
        entity = stored(entity)
        key = (customer_id, entity.id)
        existing = self._table.get(key)
        if existing is None:
            self._table.insert(key, entity, customer_id)
            return
        changed = replace(existing, parent=entity.parent, kind=entity.kind, name=entity.name)
        self._table.update(key, changed)

    def delete(self, customer_id: str, entity_id: str) -> None:
        self._table.delete((customer_id, entity_id))
        budgets = self._db.budgets
        for budget in budgets.values(customer_id):
            if budget.entity == entity_id:
                budgets.delete((customer_id, entity_id, budget.target))
