"""Customers, and what they hold: subscriptions, promotions and overrides, on PostgreSQL.

As on SQLite, except that saving a customer is one upsert rather than an update followed by an
insert when it updated nothing (two processes creating one customer would otherwise both
insert), and that overrides load in feature order, codepoint by codepoint, whatever the
database's collation.
"""

from __future__ import annotations

from typing import Any

import msgspec

from allotment.domain.catalog import Catalog
from allotment.domain.customers import Customer
from allotment.domain.documents import spec_from_document
from allotment.domain.holdings import AddonQuantity, Holdings, Override, Promotion, Subscription
from allotment.domain.timefmt import from_epoch_micros
from allotment.service.ports import Page
from allotment.storage.postgres.db import Db, changed_rows, page
from allotment.storage.rows import decode_document, encode, instant, micros, spec_json


class PostgresCustomers:
    def __init__(self, db: Db) -> None:
        self._db = db

    def get(self, customer_id: str) -> Customer | None:
        row = self._db.execute(
            f"SELECT {_CUSTOMER_COLUMNS} FROM customers WHERE id = %s", (customer_id,)
        ).fetchone()
        return None if row is None else _customer(row)

    def save(self, customer: Customer) -> None:
        # An update keeps the customer's creation (and its seq: its place in the list).
        self._db.execute(
            f"INSERT INTO customers ({_CUSTOMER_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (id) DO UPDATE SET name = excluded.name,"
            " metadata = excluded.metadata, billing_id = excluded.billing_id,"
            " updated_at = excluded.updated_at, archived_at = excluded.archived_at",
            (
                customer.id,
                customer.name,
                encode(dict(customer.metadata)).decode(),
                customer.billing_id,
                micros(customer.created_at),
                micros(customer.updated_at),
                micros(customer.archived_at),
            ),
        )

    def list(self, after: str | None, limit: int) -> Page[Customer]:
        return page(
            self._db,
            f"SELECT seq, {_CUSTOMER_COLUMNS} FROM customers",
            "",
            (),
            after,
            limit,
            lambda row: _customer(row[1:]),
        )


class PostgresHoldings:
    def __init__(self, db: Db) -> None:
        self._db = db

    def load(self, customer_id: str, catalog: Catalog) -> Holdings:
        subscriptions = [
            _subscription(row)
            for row in self._db.execute(
                f"SELECT {_SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE customer = %s"
                " ORDER BY seq",
                (customer_id,),
            )
        ]
        promotions = [
            _promotion(row, catalog)
            for row in self._db.execute(
                f"SELECT {_PROMOTION_COLUMNS} FROM promotions WHERE customer = %s"
                " AND revoked_at IS NULL ORDER BY seq",
                (customer_id,),
            )
        ]
        overrides = {}
        for feature_id, spec, created_at, updated_at in self._db.execute(
            "SELECT feature, spec, created_at, updated_at FROM overrides WHERE customer = %s"
            ' ORDER BY feature COLLATE "C"',
            (customer_id,),
        ):
            feature = catalog.features[feature_id]
            overrides[feature_id] = Override(
                customer=customer_id,
                feature=feature_id,
                spec=spec_from_document(feature, decode_document(spec)),
                created_at=from_epoch_micros(created_at),
                updated_at=from_epoch_micros(updated_at),
            )
        return Holdings(subscriptions, promotions, overrides)

    def get_subscription(self, customer_id: str, subscription_id: str) -> Subscription | None:
        row = self._db.execute(
            f"SELECT {_SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE customer = %s AND id = %s",
            (customer_id, subscription_id),
        ).fetchone()
        return None if row is None else _subscription(row)

    def save_subscription(self, subscription: Subscription) -> None:
        addons = encode([{"id": a.id, "quantity": a.quantity} for a in subscription.addons])
        self._db.execute(
            f"INSERT INTO subscriptions ({_SUBSCRIPTION_COLUMNS})"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (customer, id) DO UPDATE SET addons = excluded.addons,"
            " ends_at = excluded.ends_at, canceled_at = excluded.canceled_at",
            (
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
            ),
        )

    def list_subscriptions(
        self, customer_id: str, after: str | None, limit: int
    ) -> Page[Subscription]:
        return page(
            self._db,
            f"SELECT seq, {_SUBSCRIPTION_COLUMNS} FROM subscriptions",
            "customer = %s",
            (customer_id,),
            after,
            limit,
            lambda row: _subscription(row[1:]),
        )

    def get_promotion(
        self, customer_id: str, promotion_id: str, catalog: Catalog
    ) -> Promotion | None:
        row = self._db.execute(
            f"SELECT {_PROMOTION_COLUMNS} FROM promotions WHERE customer = %s AND id = %s",
            (customer_id, promotion_id),
        ).fetchone()
        return None if row is None else _promotion(row, catalog)

    def save_promotion(self, promotion: Promotion) -> None:
        self._db.execute(
            f"INSERT INTO promotions ({_PROMOTION_COLUMNS})"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (customer, id) DO UPDATE SET revoked_at = excluded.revoked_at",
            (
                promotion.id,
                promotion.customer,
                promotion.feature,
                spec_json(promotion.spec),
                micros(promotion.starts_at),
                micros(promotion.ends_at),
                promotion.reason,
                micros(promotion.revoked_at),
                micros(promotion.created_at),
            ),
        )

    def save_override(self, override: Override) -> None:
        self._db.execute(
            "INSERT INTO overrides (customer, feature, spec, created_at, updated_at)"
            " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (customer, feature) DO UPDATE"
            " SET spec = excluded.spec, updated_at = excluded.updated_at",
            (
                override.customer,
                override.feature,
                spec_json(override.spec),
                micros(override.created_at),
                micros(override.updated_at),
            ),
        )

    def delete_override(self, customer_id: str, feature_id: str) -> bool:
        deleted = changed_rows(
            self._db,
            "DELETE FROM overrides WHERE customer = %s AND feature = %s",
            (customer_id, feature_id),
        )
        return deleted > 0


_CUSTOMER_COLUMNS = "id, name, metadata, billing_id, created_at, updated_at, archived_at"
_SUBSCRIPTION_COLUMNS = (
    "id, customer, product, plan, addons, is_trial, starts_at, trial_ends_at, ends_at,"
    " canceled_at, anchor_at, created_at"
)
_PROMOTION_COLUMNS = (
    "id, customer, feature, spec, starts_at, ends_at, reason, revoked_at, created_at"
)


def _customer(row: tuple[Any, ...]) -> Customer:
    return Customer(
        id=row[0],
        name=row[1],
        metadata=msgspec.json.decode(row[2]),
        billing_id=row[3],
        created_at=instant(row[4]),
        updated_at=instant(row[5]),
        archived_at=instant(row[6]),
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
        is_trial=row[5],
        starts_at=from_epoch_micros(row[6]),
        trial_ends_at=instant(row[7]),
        ends_at=instant(row[8]),
        canceled_at=instant(row[9]),
        anchor_at=from_epoch_micros(row[10]),
        created_at=from_epoch_micros(row[11]),
    )


def _promotion(row: tuple[Any, ...], catalog: Catalog) -> Promotion:
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
