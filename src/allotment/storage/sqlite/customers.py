"""Customers, and what they hold: subscriptions, promotions and overrides."""

from __future__ import annotations

import sqlite3
from datetime import datetime

from allotment.domain.catalog import Catalog
from allotment.domain.customers import Customer
from allotment.domain.holdings import Holdings, Override, Promotion, Subscription
from allotment.domain.timefmt import to_epoch_micros
from allotment.service.ports import Page
from allotment.storage.records import (
    CUSTOMER_COLUMNS,
    LIVE_SUBSCRIPTIONS,
    OVERRIDE_COLUMNS,
    PROMOTION_COLUMNS,
    SUBSCRIPTION_COLUMNS,
    SUBSCRIPTION_UPDATE,
    customer_of,
    customer_row,
    override_of,
    override_row,
    promotion_of,
    promotion_row,
    subscription_of,
    subscription_row,
)
from allotment.storage.rows import paged
from allotment.storage.sqlite.rows import page_rows


class SqliteCustomers:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def get(self, customer_id: str) -> Customer | None:
        row = self._db.execute(
            f"SELECT {CUSTOMER_COLUMNS} FROM customers WHERE id = ?", (customer_id,)
        ).fetchone()
        return None if row is None else customer_of(row)

    def save(self, customer: Customer) -> None:
        row = customer_row(customer)
        customer_id, name, metadata, billing_id, _, updated_at, archived_at = row
        updated = self._db.execute(
            "UPDATE customers SET name = ?, metadata = ?, billing_id = ?, updated_at = ?,"
            " archived_at = ? WHERE id = ?",
            (name, metadata, billing_id, updated_at, archived_at, customer_id),
        ).rowcount
        if not updated:
            self._db.execute(
                f"INSERT INTO customers ({CUSTOMER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)", row
            )

    def list(self, after: str | None, limit: int) -> Page[Customer]:
        rows = page_rows(
            self._db, f"SELECT seq, {CUSTOMER_COLUMNS} FROM customers", "", (), after, limit
        )
        return paged(rows, limit, lambda row: customer_of(row[1:]))


class SqliteHoldings:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def load(self, customer_id: str, catalog: Catalog) -> Holdings:
        subscriptions = [
            subscription_of(row)
            for row in self._db.execute(
                f"SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE customer = ? ORDER BY seq",
                (customer_id,),
            )
        ]
        promotions = [
            promotion_of(row, catalog)
            for row in self._db.execute(
                f"SELECT {PROMOTION_COLUMNS} FROM promotions WHERE customer = ?"
                " AND revoked_at IS NULL ORDER BY seq",
                (customer_id,),
            )
        ]
        overrides = {
            row[0]: override_of(customer_id, row, catalog)
            for row in self._db.execute(
                f"SELECT {OVERRIDE_COLUMNS} FROM overrides WHERE customer = ?", (customer_id,)
            )
        }
        return Holdings(subscriptions, promotions, overrides)

    def get_subscription(self, customer_id: str, subscription_id: str) -> Subscription | None:
        row = self._db.execute(
            f"SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE customer = ? AND id = ?",
            (customer_id, subscription_id),
        ).fetchone()
        return None if row is None else subscription_of(row)

    def save_subscription(self, subscription: Subscription) -> None:
        self._db.execute(
            f"INSERT INTO subscriptions ({SUBSCRIPTION_COLUMNS})"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            f" ON CONFLICT (id) DO UPDATE SET {SUBSCRIPTION_UPDATE}",
            subscription_row(subscription),
        )

    def live_on_plan(self, plan_id: str, now: datetime) -> list[Subscription]:
        return self._live("plan = ?", plan_id, now)

    def live_in_product(self, product_id: str, now: datetime) -> list[Subscription]:
        return self._live("product = ?", product_id, now)

    def _live(self, where: str, value: str, now: datetime) -> list[Subscription]:
        at = to_epoch_micros(now)
        rows = self._db.execute(
            f"SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE {where}"
            f" AND {LIVE_SUBSCRIPTIONS.format(now='?')} ORDER BY seq",
            (value, at, at, at),
        )
        return [subscription_of(row) for row in rows]

    def list_subscriptions(
        self, customer_id: str, after: str | None, limit: int
    ) -> Page[Subscription]:
        rows = page_rows(
            self._db,
            f"SELECT seq, {SUBSCRIPTION_COLUMNS} FROM subscriptions",
            "customer = ?",
            (customer_id,),
            after,
            limit,
        )
        return paged(rows, limit, lambda row: subscription_of(row[1:]))

    def get_promotion(
        self, customer_id: str, promotion_id: str, catalog: Catalog
    ) -> Promotion | None:
        row = self._db.execute(
            f"SELECT {PROMOTION_COLUMNS} FROM promotions WHERE customer = ? AND id = ?",
            (customer_id, promotion_id),
        ).fetchone()
        return None if row is None else promotion_of(row, catalog)

    def save_promotion(self, promotion: Promotion) -> None:
        self._db.execute(
            f"INSERT INTO promotions ({PROMOTION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (id) DO UPDATE SET revoked_at = excluded.revoked_at",
            promotion_row(promotion),
        )

    def save_override(self, override: Override) -> None:
        self._db.execute(
            f"INSERT INTO overrides (customer, {OVERRIDE_COLUMNS})"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (customer, feature) DO UPDATE"
            " SET spec = excluded.spec, updated_at = excluded.updated_at",
            override_row(override),
        )

    def delete_override(self, customer_id: str, feature_id: str) -> bool:
        deleted = self._db.execute(
            "DELETE FROM overrides WHERE customer = ? AND feature = ?", (customer_id, feature_id)
        ).rowcount
        return bool(deleted)
