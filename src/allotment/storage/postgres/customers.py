"""Customers, and what they hold: subscriptions, promotions and overrides, on PostgreSQL.

As on SQLite, except that saving a customer is one upsert rather than an update followed by an
insert when it updated nothing (two processes creating one customer would otherwise both
insert), and that overrides load in feature order, codepoint by codepoint, whatever the
database's collation.
"""

from __future__ import annotations

from datetime import datetime

from allotment.domain.catalog import Catalog
from allotment.domain.customers import Customer
from allotment.domain.holdings import Holdings, Override, Promotion, Subscription
from allotment.domain.timefmt import to_epoch_micros
from allotment.service.ports import Page
from allotment.storage.postgres.db import Db, changed_rows, page
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


class PostgresCustomers:
    def __init__(self, db: Db) -> None:
        self._db = db

    def get(self, customer_id: str) -> Customer | None:
        row = self._db.execute(
            f"SELECT {CUSTOMER_COLUMNS} FROM customers WHERE id = %s", (customer_id,)
        ).fetchone()
        return None if row is None else customer_of(row)

    def save(self, customer: Customer) -> None:
        # An update keeps the customer's creation (and its seq: its place in the list).
        self._db.execute(
            f"INSERT INTO customers ({CUSTOMER_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (id) DO UPDATE SET name = excluded.name,"
            " metadata = excluded.metadata, billing_id = excluded.billing_id,"
            " updated_at = excluded.updated_at, archived_at = excluded.archived_at",
            customer_row(customer),
        )

    def list(self, after: str | None, limit: int) -> Page[Customer]:
        return page(
            self._db,
            f"SELECT seq, {CUSTOMER_COLUMNS} FROM customers",
            "",
            (),
            after,
            limit,
            lambda row: customer_of(row[1:]),
        )


class PostgresHoldings:
    def __init__(self, db: Db) -> None:
        self._db = db

    def load(self, customer_id: str, catalog: Catalog) -> Holdings:
        subscriptions = [
            subscription_of(row)
            for row in self._db.execute(
                f"SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE customer = %s"
                " ORDER BY seq",
                (customer_id,),
            )
        ]
        promotions = [
            promotion_of(row, catalog)
            for row in self._db.execute(
                f"SELECT {PROMOTION_COLUMNS} FROM promotions WHERE customer = %s"
                " AND revoked_at IS NULL ORDER BY seq",
                (customer_id,),
            )
        ]
        overrides = {
            row[0]: override_of(customer_id, row, catalog)
            for row in self._db.execute(
                f"SELECT {OVERRIDE_COLUMNS} FROM overrides WHERE customer = %s"
                ' ORDER BY feature COLLATE "C"',
                (customer_id,),
            )
        }
        return Holdings(subscriptions, promotions, overrides)

    def get_subscription(self, customer_id: str, subscription_id: str) -> Subscription | None:
        row = self._db.execute(
            f"SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE customer = %s AND id = %s",
            (customer_id, subscription_id),
        ).fetchone()
        return None if row is None else subscription_of(row)

    def save_subscription(self, subscription: Subscription) -> None:
        self._db.execute(
            f"INSERT INTO subscriptions ({SUBSCRIPTION_COLUMNS})"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            f" ON CONFLICT (customer, id) DO UPDATE SET {SUBSCRIPTION_UPDATE}",
            subscription_row(subscription),
        )

    def live_on_plan(self, plan_id: str, now: datetime) -> list[Subscription]:
        return self._live("plan = %(value)s", plan_id, now)

    def live_in_product(self, product_id: str, now: datetime) -> list[Subscription]:
        return self._live("product = %(value)s", product_id, now)

    def _live(self, where: str, value: str, now: datetime) -> list[Subscription]:
        rows = self._db.execute(
            f"SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE {where}"
            f" AND {LIVE_SUBSCRIPTIONS.format(now='%(now)s')} ORDER BY seq",
            {"value": value, "now": to_epoch_micros(now)},
        )
        return [subscription_of(row) for row in rows]

    def list_subscriptions(
        self, customer_id: str, after: str | None, limit: int
    ) -> Page[Subscription]:
        return page(
            self._db,
            f"SELECT seq, {SUBSCRIPTION_COLUMNS} FROM subscriptions",
            "customer = %s",
            (customer_id,),
            after,
            limit,
            lambda row: subscription_of(row[1:]),
        )

    def get_promotion(
        self, customer_id: str, promotion_id: str, catalog: Catalog
    ) -> Promotion | None:
        row = self._db.execute(
            f"SELECT {PROMOTION_COLUMNS} FROM promotions WHERE customer = %s AND id = %s",
            (customer_id, promotion_id),
        ).fetchone()
        return None if row is None else promotion_of(row, catalog)

    def save_promotion(self, promotion: Promotion) -> None:
        self._db.execute(
            f"INSERT INTO promotions ({PROMOTION_COLUMNS})"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (customer, id) DO UPDATE SET revoked_at = excluded.revoked_at",
            promotion_row(promotion),
        )

    def save_override(self, override: Override) -> None:
        self._db.execute(
            f"INSERT INTO overrides (customer, {OVERRIDE_COLUMNS})"
            " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (customer, feature) DO UPDATE"
            " SET spec = excluded.spec, updated_at = excluded.updated_at",
            override_row(override),
        )

    def delete_override(self, customer_id: str, feature_id: str) -> bool:
        deleted = changed_rows(
            self._db,
            "DELETE FROM overrides WHERE customer = %s AND feature = %s",
            (customer_id, feature_id),
        )
        return deleted > 0
