"""Budgets: caps per entity, and the attribution of consumption along the entity tree.

``entity_path`` records who an event, a debit entry or a reservation counts for when it was
written: "/entity/parent/.../root/", or NULL when it names no entity. Rows written before this
revision count for their own entity only (no budget existed to count them for more).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from allotment.storage.migrations.columns import on_sqlite, sequence_column

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_ATTRIBUTED = ("usage_events", "ledger_entries", "reservations")


def upgrade() -> None:
    op.create_table(
        "budgets",
        sequence_column(),
        sa.Column("customer", sa.Text, nullable=False),
        sa.Column("entity", sa.Text, nullable=False),
        sa.Column("target", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("limit_micros", sa.BigInteger, nullable=False),
        sa.Column("reset", sa.Text, nullable=False),
        sa.Column("enforcement", sa.Text, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("customer", "entity", "target"),
    )
    # A projection of the attributed events and debit entries, like usage_counters.
    op.create_table(
        "budget_counters",
        sa.Column("customer", sa.Text, primary_key=True),
        sa.Column("kind", sa.Text, primary_key=True),
        sa.Column("target", sa.Text, primary_key=True),
        sa.Column("entity", sa.Text, primary_key=True),
        sa.Column("period_start", sa.BigInteger, primary_key=True),
        sa.Column("period_end", sa.BigInteger, primary_key=True),
        sa.Column("used", sa.BigInteger, nullable=False),
        # SQLite turns an integer that passes 64 bits into a float: refuse the write instead.
        # (PostgreSQL refuses such a BIGINT itself.)
        *(
            [sa.CheckConstraint("typeof(used) = 'integer'", name="budget_counters_used_is_integer")]
            if on_sqlite()
            else []
        ),
    )
    for table in _ATTRIBUTED:
        op.add_column(table, sa.Column("entity_path", sa.Text))
        op.execute(
            f"UPDATE {table} SET entity_path = '/' || entity || '/' WHERE entity IS NOT NULL"
        )
    op.create_index("ledger_entries_by_time", "ledger_entries", ["customer", "currency", "at"])


def downgrade() -> None:
    op.drop_index("ledger_entries_by_time", "ledger_entries")
    for table in _ATTRIBUTED:
        op.drop_column(table, "entity_path")
    op.drop_table("budget_counters")
    op.drop_table("budgets")
