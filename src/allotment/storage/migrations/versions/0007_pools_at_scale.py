"""Pools at scale: each pool's revenue kept with it, and an index of the live grants.

``credit_pools`` gains ``deferred``, ``recognized`` and ``breakage``: the pool's revenue in
micro-credits times micro-units of cost basis, a projection of ``ledger_entries`` kept in step
by the transaction that appends them, as ``overdraft`` is. They are exact integers past 64 bits
(a pool may hold 9.2 x 10^18 micro-credits at a cost basis up to 10^18 micro-units), so they
are stored as their decimal text (a PostgreSQL adapter would use NUMERIC). This revision
computes them once for the pools that exist, from their entries.

``credit_grants_live`` indexes the grants a pool loads, those not ended (voided, expired, or in
the ledger and used up), so that loading a pool reads its live grants and not its history. Its
condition is ``storage/sqlite/grants.py``'s ``LIVE`` word for word: SQLite uses a partial index
only for a query that repeats the index's terms.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_LIVE = "expired = 0 AND voided_at IS NULL AND (credited = 0 OR remaining > 0)"
# The same condition where booleans are not integers.
_LIVE_POSTGRESQL = "NOT expired AND voided_at IS NULL AND (NOT credited OR remaining > 0)"
_REVENUE = ("deferred", "recognized", "breakage")


def upgrade() -> None:
    for column in _REVENUE:
        op.add_column(
            "credit_pools", sa.Column(column, sa.Text, nullable=False, server_default="0")
        )
    _compute_revenue(op.get_bind())
    op.create_index(
        "credit_grants_live",
        "credit_grants",
        ["customer", "currency"],
        sqlite_where=sa.text(_LIVE),
        postgresql_where=sa.text(_LIVE_POSTGRESQL),
    )


def _compute_revenue(bind: sa.Connection) -> None:
    """Each pool's revenue from its entries: every entry on a grant moves what the grant
    holds (deferred) by its amount times the grant's cost basis; a debit's also counts as
    recognized, an expiry's as breakage (``domain.credits.Pool._write``)."""
    totals: dict[tuple[str, str], list[int]] = {}
    sums = bind.execute(
        sa.text(
            "SELECT e.customer, e.currency, e.type, SUM(e.amount), g.cost_basis"
            " FROM ledger_entries e JOIN credit_grants g ON g.id = e.grant_id"
            " GROUP BY e.customer, e.currency, e.grant_id, e.type, g.cost_basis"
        )
    )
    for customer, currency, kind, amount, basis in sums:
        money = int(basis) * int(amount)  # exact: Python integers have no bound
        pool = totals.setdefault((customer, currency), [0, 0, 0])
        pool[0] += money
        if kind == "debit":
            pool[1] -= money
        elif kind == "expiry":
            pool[2] -= money
    unpaid = bind.execute(
        sa.text(
            "SELECT customer, currency, SUM(amount) FROM ledger_entries"
            " WHERE grant_id IS NULL GROUP BY customer, currency"
        )
    )
    overdrafts = {(customer, currency): -int(total) for customer, currency, total in unpaid}
    for (customer, currency), (deferred, recognized, breakage) in totals.items():
        # Every pool with entries has its row; made from the entries should one be missing.
        bind.execute(
            sa.text(
                "INSERT INTO credit_pools (customer, currency, overdraft, deferred, recognized,"
                " breakage) VALUES (:customer, :currency, :overdraft, :deferred, :recognized,"
                " :breakage) ON CONFLICT (customer, currency) DO UPDATE SET"
                " deferred = excluded.deferred, recognized = excluded.recognized,"
                " breakage = excluded.breakage"
            ),
            {
                "customer": customer,
                "currency": currency,
                "overdraft": overdrafts.get((customer, currency), 0),
                "deferred": str(deferred),
                "recognized": str(recognized),
                "breakage": str(breakage),
            },
        )


def downgrade() -> None:
    op.drop_index("credit_grants_live", "credit_grants")
    with op.batch_alter_table("credit_pools") as batch:
        for column in _REVENUE:
            batch.drop_column(column)
