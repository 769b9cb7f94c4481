"""Entities at scale: a tree read a path at a time, and budget usage read through an index.

``entities_by_parent`` lets an entity's children (and the height of its subtree, which moving
it must check) be read without reading the rest of the customer's tree.

``entity_consumption`` holds, for every entity, what the usage events (``kind`` feature) and the
debit entries (``kind`` currency) recorded along a path through it consumed, summed per whole
second: the same projection of the truth as the ``entity_path`` column of ``usage_events`` and
``ledger_entries``, kept in step by the transaction that appends them. Budget windows start and
end on whole seconds (budgets are anchored at one), so per-second sums add up to any window
exactly. Its key leads with the customer, the kind, the target and the entity, then the second
(in epoch microseconds), so that the usage of a budget window is a range of one entity's rows:
projecting a window (the first read of a budget, or after its reset changed) reads what that
entity consumed in it and nothing else, and a busy entity adds one row per second, not one per
event. This revision fills it from the truth.

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
_MICROS_PER_SECOND = 1_000_000


def upgrade() -> None:
    op.create_index("entities_by_parent", "entities", ["customer", "parent"])
    op.create_table(
        "entity_consumption",
        sa.Column("customer", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("target", sa.Text, nullable=False),
        sa.Column("entity", sa.Text, nullable=False),
        sa.Column("second", sa.BigInteger, nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("customer", "kind", "target", "entity", "second"),
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
    upsert = sa.text(
        "INSERT INTO entity_consumption (customer, kind, target, entity, second, amount)"
        " VALUES (:customer, :kind, :target, :entity, :second, :amount)"
        " ON CONFLICT (customer, kind, target, entity, second)"
        " DO UPDATE SET amount = entity_consumption.amount + excluded.amount"
    )
    after = 0
    while True:
        rows = bind.execute(sa.text(select), {"after": after, "limit": _CHUNK}).all()
        if not rows:
            return
        sums: dict[tuple[str, str, str, str, int], int] = {}
        for _, customer, kind, target, at, amount, path in rows:
            second = at - at % _MICROS_PER_SECOND
            for entity in path.strip("/").split("/"):
                key = (customer, kind, target, entity, second)
                sums[key] = sums.get(key, 0) + amount
        bind.execute(
            upsert,
            [
                {
                    "customer": customer,
                    "kind": kind,
                    "target": target,
                    "entity": entity,
                    "second": second,
                    "amount": amount,
                }
                for (customer, kind, target, entity, second), amount in sorted(sums.items())
            ],
        )
        after = rows[-1][0]


def downgrade() -> None:
    op.drop_table("entity_consumption")
    op.drop_index("entities_by_parent", "entities")
