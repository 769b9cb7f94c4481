"""How the SQL adapters store each domain value: column lists, the parameters written for a
value, the value read back from a row.

SQLite and PostgreSQL hold the same columns with the same contents; only their statements
differ. ``X_COLUMNS`` are the columns ``x_of`` reads, in its order; ``x_row`` gives what is
written for a value in that order, after its table's customer (and currency) where the value
does not hold them itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import msgspec

from allotment.domain.budgets import Budget, BudgetKind
from allotment.domain.catalog import Catalog, CreditCategory, Enforcement
from allotment.domain.credits import Entry, EntryType, Grant, Pool, RevenueTotals
from allotment.domain.customers import ApiKey, Customer, Scope
from allotment.domain.documents import catalog_from_documents, spec_from_document
from allotment.domain.entities import Entity
from allotment.domain.holdings import (
    AddonQuantity,
    Move,
    Override,
    Promotion,
    Subscription,
    Versions,
)
from allotment.domain.periods import ResetPeriod
from allotment.domain.reservations import Reservation, ReservationStatus
from allotment.domain.timefmt import from_epoch_micros, to_epoch_micros
from allotment.service.ports import LedgerRecord, UsageEvent
from allotment.storage.rows import (
    decode_document,
    encode,
    instant,
    micros,
    path_of,
    path_text,
    spec_json,
)

Row = tuple[Any, ...]


def catalog_of(rows: Iterable[Row]) -> Catalog:
    """The catalog from its objects' ``(kind, id, document)`` rows, in the order stored."""
    return catalog_from_documents(
        (kind, object_id, decode_document(document)) for kind, object_id, document in rows
    )


CUSTOMER_COLUMNS = "id, name, metadata, billing_id, created_at, updated_at, archived_at"


def customer_row(customer: Customer) -> Row:
    return (
        customer.id,
        customer.name,
        encode(dict(customer.metadata)).decode(),
        customer.billing_id,
        micros(customer.created_at),
        micros(customer.updated_at),
        micros(customer.archived_at),
    )


def customer_of(row: Row) -> Customer:
    return Customer(
        id=row[0],
        name=row[1],
        metadata=msgspec.json.decode(row[2]),
        billing_id=row[3],
        created_at=instant(row[4]),
        updated_at=instant(row[5]),
        archived_at=instant(row[6]),
    )


SUBSCRIPTION_COLUMNS = (
    "id, customer, product, plan, addons, is_trial, starts_at, trial_ends_at, ends_at,"
    " canceled_at, anchor_at, created_at, plan_version, plan_moves"
)
SUBSCRIPTION_UPDATE = ", ".join(
    f"{column} = excluded.{column}"
    for column in (
        "addons",
        "ends_at",
        "canceled_at",
        "plan_version",
        "plan_moves",
    )
)
"""The ``SET`` of a saved subscription's upsert: what it may change (the rest is set when it is
made)."""

LIVE_SUBSCRIPTIONS = (
    "(ends_at IS NULL OR ends_at > {now}) AND (trial_ends_at IS NULL OR trial_ends_at > {now})"
    " AND (canceled_at IS NULL OR canceled_at > {now})"
)
"""Subscriptions not over at ``{now}`` (a placeholder, written once per use of it)."""


def subscription_row(subscription: Subscription) -> Row:
    addons = encode([_addon_entry(a) for a in subscription.addons])
    versions = subscription.plan_versions
    return (
        subscription.id,
        subscription.customer,
        subscription.product,
        subscription.plan,
        addons.decode(),
        bool(subscription.is_trial),
        micros(subscription.starts_at),
        micros(subscription.trial_ends_at),
        micros(subscription.ends_at),
        micros(subscription.canceled_at),
        micros(subscription.anchor_at),
        micros(subscription.created_at),
        versions.first,
        encode(_moves_of(versions)).decode() if versions.moves else None,
    )


def _moves_of(versions: Versions) -> list[list[int]]:
    """A history's moves as ``[[version, instant in epoch microseconds], ...]``, with a third
    item, 1, for a move made in the middle of a period."""
    return [
        [move.version, to_epoch_micros(move.at), *([1] if move.mid_period else [])]
        for move in versions.moves
    ]


def _versions(first: int, moves: Iterable[list[int]] | None) -> Versions:
    return Versions(
        first,
        tuple(
            Move(move[0], from_epoch_micros(move[1]), mid_period=len(move) > 2 and bool(move[2]))
            for move in moves or ()
        ),
    )


def _addon_entry(addon: AddonQuantity) -> dict[str, Any]:
    versions = addon.versions
    entry: dict[str, Any] = {"id": addon.id, "quantity": addon.quantity, "version": versions.first}
    if versions.moves:
        entry["moves"] = _moves_of(versions)
    return entry


def _addon_of(entry: Mapping[str, Any]) -> AddonQuantity:
    # Entries stored before versions existed are on version 1.
    versions = _versions(entry.get("version", 1), entry.get("moves"))
    return AddonQuantity(id=entry["id"], quantity=entry["quantity"], versions=versions)


def subscription_of(row: Row) -> Subscription:
    return Subscription(
        id=row[0],
        customer=row[1],
        product=row[2],
        plan=row[3],
        addons=tuple(_addon_of(entry) for entry in msgspec.json.decode(row[4])),
        is_trial=bool(row[5]),  # SQLite gives back 0 or 1
        starts_at=from_epoch_micros(row[6]),
        trial_ends_at=instant(row[7]),
        ends_at=instant(row[8]),
        canceled_at=instant(row[9]),
        anchor_at=from_epoch_micros(row[10]),
        created_at=from_epoch_micros(row[11]),
        plan_versions=_versions(row[12], None if row[13] is None else msgspec.json.decode(row[13])),
    )


PROMOTION_COLUMNS = (
    "id, customer, feature, spec, starts_at, ends_at, reason, revoked_at, created_at"
)


def promotion_row(promotion: Promotion) -> Row:
    return (
        promotion.id,
        promotion.customer,
        promotion.feature,
        spec_json(promotion.spec),
        micros(promotion.starts_at),
        micros(promotion.ends_at),
        promotion.reason,
        micros(promotion.revoked_at),
        micros(promotion.created_at),
    )


def promotion_of(row: Row, catalog: Catalog) -> Promotion:
    feature = catalog.features[row[2]]
    return Promotion(
        id=row[0],
        customer=row[1],
        feature=row[2],
        spec=spec_from_document(feature, decode_document(row[3])),
        starts_at=from_epoch_micros(row[4]),
        ends_at=instant(row[5]),
        reason=row[6],
        revoked_at=instant(row[7]),
        created_at=from_epoch_micros(row[8]),
    )


OVERRIDE_COLUMNS = "feature, spec, created_at, updated_at"


def override_row(override: Override) -> Row:
    """In the order of ``customer, OVERRIDE_COLUMNS``."""
    return (
        override.customer,
        override.feature,
        spec_json(override.spec),
        micros(override.created_at),
        micros(override.updated_at),
    )


def override_of(customer_id: str, row: Row, catalog: Catalog) -> Override:
    feature = catalog.features[row[0]]
    return Override(
        customer=customer_id,
        feature=row[0],
        spec=spec_from_document(feature, decode_document(row[1])),
        created_at=from_epoch_micros(row[2]),
        updated_at=from_epoch_micros(row[3]),
    )


API_KEY_COLUMNS = "id, name, scope, customer, key_hash, created_at, revoked_at"


def api_key_row(key: ApiKey) -> Row:
    return (
        key.id,
        key.name,
        key.scope.value,
        key.customer,
        key.key_hash,
        micros(key.created_at),
        micros(key.revoked_at),
    )


def api_key_of(row: Row) -> ApiKey:
    return ApiKey(
        id=row[0],
        name=row[1],
        scope=Scope(row[2]),
        customer=row[3],
        key_hash=row[4],
        created_at=from_epoch_micros(row[5]),
        revoked_at=instant(row[6]),
    )


RESERVATION_COLUMNS = (
    "id, customer, feature, entity, amount, currency, credits, created_at, expires_at,"
    " ended_at, ended_as, committed_amount, entity_path"
)


def reservation_row(reservation: Reservation) -> Row:
    return (
        reservation.id,
        reservation.customer,
        reservation.feature,
        reservation.entity,
        reservation.amount,
        reservation.currency,
        reservation.credits,
        to_epoch_micros(reservation.created_at),
        to_epoch_micros(reservation.expires_at),
        micros(reservation.ended_at),
        None if reservation.ended_as is None else reservation.ended_as.value,
        reservation.committed_amount,
        path_text(reservation.entity_path),
    )


def reservation_of(row: Row) -> Reservation:
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
        ended_at=instant(row[9]),
        ended_as=None if row[10] is None else ReservationStatus(row[10]),
        committed_amount=row[11],
        entity_path=path_of(row[12]),
    )


ENTITY_COLUMNS = "id, parent, kind, name, created_at"


def entity_row(customer_id: str, entity: Entity) -> Row:
    """In the order of ``customer, ENTITY_COLUMNS``."""
    return (
        customer_id,
        entity.id,
        entity.parent,
        entity.kind,
        entity.name,
        to_epoch_micros(entity.created_at),
    )


def entity_of(row: Row) -> Entity:
    return Entity(row[0], row[1], row[2], row[3], from_epoch_micros(row[4]))


BUDGET_COLUMNS = "entity, target, kind, limit_micros, reset, enforcement, created_at"


def budget_row(customer_id: str, budget: Budget) -> Row:
    """In the order of ``customer, BUDGET_COLUMNS``."""
    return (
        customer_id,
        budget.entity,
        budget.target,
        budget.kind.value,
        budget.limit,
        budget.reset.value,
        budget.enforcement.value,
        to_epoch_micros(budget.created_at),
    )


def budget_of(row: Row) -> Budget:
    return Budget(
        entity=row[0],
        target=row[1],
        kind=BudgetKind(row[2]),
        limit=row[3],
        reset=ResetPeriod(row[4]),
        enforcement=Enforcement(row[5]),
        created_at=from_epoch_micros(row[6]),
    )


GRANT_COLUMNS = (
    "id, amount, category, cost_basis, priority, effective_at, expires_at, created_at,"
    " remaining, credited, expired, voided_at, reason"
)


def grant_row(customer_id: str, currency: str, grant: Grant) -> Row:
    """In the order of ``customer, currency, GRANT_COLUMNS``."""
    return (
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
    )


def grant_of(row: Row) -> Grant:
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


POOL_COLUMNS = "overdraft, deferred, recognized, breakage"

PoolRow = tuple[int, str, str, str]
"""A pool's row as stored: overdraft, then deferred, recognized and breakage revenue (text)."""


def pool_row(pool: Pool) -> PoolRow:
    """In the order of ``POOL_COLUMNS``, after the pool's customer and currency."""
    revenue = pool.revenue
    # Revenue is stored as the text of exact integers: they pass 64 bits.
    return (pool.overdraft, str(revenue.deferred), str(revenue.recognized), str(revenue.breakage))


def pool_of(grants: Mapping[str, Grant], row: Row) -> Pool:
    """The pool of ``grants`` (its live ones) and its stored row."""
    revenue = RevenueTotals(int(row[1]), int(row[2]), int(row[3]))
    return Pool(grants=grants, overdraft=int(row[0]), revenue=revenue)


ENTRY_COLUMNS = (
    "id, type, grant_id, amount, balance_after, idempotency_key, entity, feature, at, entity_path"
)


def entry_row(customer_id: str, currency: str, entry_id: str, entry: Entry) -> Row:
    """In the order of ``customer, currency, ENTRY_COLUMNS``."""
    return (
        customer_id,
        currency,
        entry_id,
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


def ledger_record_of(customer_id: str, currency: str, row: Row) -> LedgerRecord:
    """The record of a ``seq, ENTRY_COLUMNS`` row of the pool's entries."""
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


USAGE_EVENT_COLUMNS = (
    "customer, feature, entity, amount, timestamp, recorded_at, idempotency_key, entity_path"
)


def usage_event_row(event: UsageEvent, timestamp: int) -> Row:
    """``timestamp`` is the event's, in epoch micros: the caller has it already."""
    return (
        event.customer,
        event.feature,
        event.entity,
        event.amount,
        timestamp,
        to_epoch_micros(event.recorded_at),
        event.idempotency_key,
        path_text(event.entity_path),
    )
