"""Credits: grants, the append-only ledger, and each pool's overdraft.

``credit_grants.remaining`` and ``credit_pools.overdraft`` are projections of
``ledger_entries``, kept in step by the transaction that appends the entries.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from allotment.storage.migrations.columns import sequence_column

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "credit_grants",
        sequence_column(),
        sa.Column("id", sa.Text, nullable=False, unique=True),
        sa.Column("customer", sa.Text, nullable=False),
        sa.Column("currency", sa.Text, nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("category", sa.Text, nullable=False),
        sa.Column("cost_basis", sa.BigInteger, nullable=False),
        sa.Column("priority", sa.Integer, nullable=False),
        sa.Column("effective_at", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.BigInteger),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("remaining", sa.BigInteger, nullable=False),
        sa.Column("credited", sa.Boolean, nullable=False),
        sa.Column("expired", sa.Boolean, nullable=False),
        sa.Column("voided_at", sa.BigInteger),
        sa.Column("reason", sa.Text),
    )
    op.create_index("credit_grants_by_pool", "credit_grants", ["customer", "currency"])
    op.create_table(
        "ledger_entries",
        sequence_column(),
        sa.Column("id", sa.Text, nullable=False, unique=True),
        sa.Column("customer", sa.Text, nullable=False),
        sa.Column("currency", sa.Text, nullable=False),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("grant_id", sa.Text),  # "grant" is reserved in PostgreSQL
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("balance_after", sa.BigInteger, nullable=False),
        sa.Column("idempotency_key", sa.Text),
        sa.Column("entity", sa.Text),
        sa.Column("feature", sa.Text),
        sa.Column("at", sa.BigInteger, nullable=False),
    )
    op.create_index("ledger_entries_by_pool", "ledger_entries", ["customer", "currency", "seq"])
    op.create_table(
        "credit_pools",
        sa.Column("customer", sa.Text, primary_key=True),
        sa.Column("currency", sa.Text, primary_key=True),
        sa.Column("overdraft", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    for table in ("credit_pools", "ledger_entries", "credit_grants"):
        op.drop_table(table)
