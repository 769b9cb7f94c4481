"""Entities at scale: a tree read a path at a time, and budget usage read through an index.

``entities_by_parent`` lets an entity's children (and the height of its subtree, which moving
it must check) be read without reading the rest of the customer's tree.

``entity_consumption`` holds, for every usage event and every debit entry recorded along an
entity path, one row per entity on that path: the same projection of the truth as the
``entity_path`` column of ``usage_events`` and ``ledger_entries``, kept in step by the
transaction that appends them. Its key leads with the customer, the kind of budget
(``feature`` or ``currency``), the target and the entity, then the instant, so that the usage
of a budget window is a range of one entity's rows: projecting a window (the first read of a
budget, or after its reset changed) reads what that entity consumed in it and nothing else.
``source`` is the ``seq`` of the event or entry. This revision fills it from the truth.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_CHUNK = 10_000


def upgrade() -> None:
    op.create_index("entities_by_parent", "entities", ["customer", "parent"])
    op.create_table(
        "entity_consumption",
        sa.Column("customer", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("target", sa.Text, nullable=False),
        sa.Column("entity", sa.Text, nullable=False),
        sa.Column("at", sa.BigInteger, nullable=False),
        sa.Column("source", sa.BigInteger, nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("customer", "kind", "target", "entity", "at", "source"),
        sqlite_with_rowid=False,
    )
    bind = op.get_bind()
    _fill(
        bind,
        "SELECT seq, customer, 'feature', feature, timestamp, amount, entity_path"
        " FROM usage_events WHERE entity_path IS NOT NULL AND seq > :after"
        " ORDER BY seq LIMIT :limit",
    )
    # A debit's amount is negative: a budget counts the credits it took.
    _fill(
        bind,
        "SELECT seq, customer, 'currency', currency, at, -amount, entity_path"
        " FROM ledger_entries WHERE type = 'debit' AND entity_path IS NOT NULL"
        " AND seq > :after ORDER BY seq LIMIT :limit",
    )


def _fill(bind: sa.Connection, select: str) -> None:
    insert = sa.text(
        "INSERT INTO entity_consumption (customer, kind, target, entity, at, source, amount)"
        " VALUES (:customer, :kind, :target, :entity, :at, :source, :amount)"
    )
    after = 0
    while True:
        rows = bind.execute(sa.text(select), {"after": after, "limit": _CHUNK}).all()
        if not rows:
            return
        bind.execute(
            insert,
            [
                {
                    "customer": customer,
                    "kind": kind,
                    "target": target,
                    "entity": entity,
                    "at": at,
                    "source": seq,
                    "amount": amount,
                }
                for seq, customer, kind, target, at, amount, path in rows
                for entity in path.strip("/").split("/")
            ],
        )
        after = rows[-1][0]


def downgrade() -> None:
    op.drop_table("entity_consumption")
    op.drop_index("entities_by_parent", "entities")
