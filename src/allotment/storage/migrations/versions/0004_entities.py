"""Entities: a tree under each customer.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from allotment.storage.migrations.columns import sequence_column

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "entities",
        sequence_column(),
        sa.Column("customer", sa.Text, nullable=False),
        sa.Column("id", sa.Text, nullable=False),
        sa.Column("parent", sa.Text),
        sa.Column("kind", sa.Text),
        sa.Column("name", sa.Text),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("customer", "id"),
    )


def downgrade() -> None:
    op.drop_table("entities")
