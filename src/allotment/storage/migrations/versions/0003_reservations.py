"""Reservations: holds on usage and credits until committed, released or expired.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from allotment.storage.migrations.columns import sequence_column

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reservations",
        sequence_column(),
        sa.Column("id", sa.Text, nullable=False, unique=True),
        sa.Column("customer", sa.Text, nullable=False),
        sa.Column("feature", sa.Text, nullable=False),
        sa.Column("entity", sa.Text),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("currency", sa.Text),
        sa.Column("credits", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
        sa.Column("ended_at", sa.BigInteger),
        sa.Column("ended_as", sa.Text),
        sa.Column("committed_amount", sa.BigInteger),
    )
    # Live holds of a customer are read on every usage decision.
    op.create_index("reservations_live", "reservations", ["customer", "ended_at", "expires_at"])


def downgrade() -> None:
    op.drop_table("reservations")
