"""On PostgreSQL, every customer-owned table is keyed by its customer first.

A distributed PostgreSQL (Citus) spreads a table over nodes by one column, and needs that
column in the table's primary key and in every unique key, so that each key is checked on one
node. Every customer-owned table gets the customer there: the tables keyed by ``seq`` alone are
keyed by ``(customer, seq)``, ids unique alone become unique per customer, and ``customers``
is keyed by its ``id`` (the customer itself), with an index on ``seq`` for its list. Every
request-path query already names the customer, so each reads one customer's rows through these
keys. ``docs/postgresql.md`` has the whole distribution plan.

SQLite is one file on one machine: its keys stay as they are (a rowid table's ``seq`` is its
rowid), and nothing here runs there.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

from alembic import op

from allotment.storage.migrations.columns import on_sqlite

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

KEYED_BY_SEQ = (
    "subscriptions",
    "promotions",
    "usage_events",
    "credit_grants",
    "ledger_entries",
    "reservations",
    "entities",
    "budgets",
)
IDS_PER_CUSTOMER = (
    "subscriptions",
    "promotions",
    "credit_grants",
    "ledger_entries",
    "reservations",
)


def upgrade() -> None:
    if on_sqlite():
        return
    for table in KEYED_BY_SEQ:
        op.execute(f"ALTER TABLE {table} DROP CONSTRAINT {table}_pkey")
        op.execute(f"ALTER TABLE {table} ADD PRIMARY KEY (customer, seq)")
    for table in IDS_PER_CUSTOMER:
        op.execute(f"ALTER TABLE {table} DROP CONSTRAINT {table}_id_key")
        op.execute(f"ALTER TABLE {table} ADD CONSTRAINT {table}_id_key UNIQUE (customer, id)")
    op.execute("ALTER TABLE customers DROP CONSTRAINT customers_pkey")
    op.execute("ALTER TABLE customers DROP CONSTRAINT customers_id_key")
    op.execute("ALTER TABLE customers ADD PRIMARY KEY (id)")
    op.execute("CREATE INDEX customers_by_seq ON customers (seq)")
    # Committing or releasing a reservation names it by id alone (the API's routes do): an
    # index on the id finds it (on every node, once distributed).
    op.execute("CREATE INDEX reservations_by_id ON reservations (id)")


def downgrade() -> None:
    if on_sqlite():
        return
    op.execute("DROP INDEX reservations_by_id")
    op.execute("DROP INDEX customers_by_seq")
    op.execute("ALTER TABLE customers DROP CONSTRAINT customers_pkey")
    op.execute("ALTER TABLE customers ADD PRIMARY KEY (seq)")
    op.execute("ALTER TABLE customers ADD CONSTRAINT customers_id_key UNIQUE (id)")
    for table in IDS_PER_CUSTOMER:
        op.execute(f"ALTER TABLE {table} DROP CONSTRAINT {table}_id_key")
        op.execute(f"ALTER TABLE {table} ADD CONSTRAINT {table}_id_key UNIQUE (id)")
    for table in KEYED_BY_SEQ:
        op.execute(f"ALTER TABLE {table} DROP CONSTRAINT {table}_pkey")
        op.execute(f"ALTER TABLE {table} ADD PRIMARY KEY (seq)")
