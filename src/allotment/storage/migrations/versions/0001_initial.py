"""The first schema: catalog, customers, holdings, usage, idempotency and API keys.

Instants are INTEGER microseconds since the Unix epoch; quantities are INTEGER micro-units.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from allotment.storage.migrations.columns import sequence_column

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "catalog_objects",
        sequence_column(),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("id", sa.Text, nullable=False),
        sa.Column("document", sa.Text, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("kind", "id"),
    )
    op.create_table(
        "customers",
        sequence_column(),
        sa.Column("id", sa.Text, nullable=False, unique=True),
        sa.Column("name", sa.Text),
        sa.Column("metadata", sa.Text, nullable=False),
        sa.Column("billing_id", sa.Text),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.Column("archived_at", sa.BigInteger),
    )
    op.create_table(
        "subscriptions",
        sequence_column(),
        sa.Column("id", sa.Text, nullable=False, unique=True),
        sa.Column("customer", sa.Text, nullable=False, index=True),
        sa.Column("product", sa.Text, nullable=False),
        sa.Column("plan", sa.Text, nullable=False),
        sa.Column("addons", sa.Text, nullable=False),
        sa.Column("is_trial", sa.Boolean, nullable=False),
        sa.Column("starts_at", sa.BigInteger, nullable=False),
        sa.Column("trial_ends_at", sa.BigInteger),
        sa.Column("ends_at", sa.BigInteger),
        sa.Column("canceled_at", sa.BigInteger),
        sa.Column("anchor_at", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "promotions",
        sequence_column(),
        sa.Column("id", sa.Text, nullable=False, unique=True),
        sa.Column("customer", sa.Text, nullable=False, index=True),
        sa.Column("feature", sa.Text, nullable=False),
        sa.Column("spec", sa.Text, nullable=False),
        sa.Column("starts_at", sa.BigInteger, nullable=False),
        sa.Column("ends_at", sa.BigInteger),
        sa.Column("reason", sa.Text),
        sa.Column("revoked_at", sa.BigInteger),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "overrides",
        sa.Column("customer", sa.Text, primary_key=True),
        sa.Column("feature", sa.Text, primary_key=True),
        sa.Column("spec", sa.Text, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "usage_events",
        sequence_column(),
        sa.Column("customer", sa.Text, nullable=False),
        sa.Column("feature", sa.Text, nullable=False),
        sa.Column("entity", sa.Text),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("timestamp", sa.BigInteger, nullable=False),
        sa.Column("recorded_at", sa.BigInteger, nullable=False),
        sa.Column("idempotency_key", sa.Text),
    )
    op.create_index("usage_events_by_time", "usage_events", ["customer", "feature", "timestamp"])
    op.create_table(
        "usage_counters",
        sa.Column("customer", sa.Text, primary_key=True),
        sa.Column("feature", sa.Text, primary_key=True),
        sa.Column("period_start", sa.BigInteger, primary_key=True),
        sa.Column("period_end", sa.BigInteger, primary_key=True),
        sa.Column("used", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "idempotency_records",
        sa.Column("customer", sa.Text, primary_key=True),
        sa.Column("route", sa.Text, primary_key=True),
        sa.Column("key", sa.Text, primary_key=True),
        # The payload's fingerprint: 16 bytes (``service/idempotency.py``). SQLite databases
        # made before it was binary declare TEXT here and hold the hexadecimal text of earlier
        # records beside the bytes of later ones (SQLite keeps each value's own type).
        sa.Column("fingerprint", sa.LargeBinary, nullable=False),
        sa.Column("response", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "api_keys",
        sequence_column(),
        sa.Column("id", sa.Text, nullable=False, unique=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("scope", sa.Text, nullable=False),
        sa.Column("customer", sa.Text),
        sa.Column("key_hash", sa.Text, nullable=False, unique=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("revoked_at", sa.BigInteger),
    )


def downgrade() -> None:
    for table in (
        "api_keys",
        "idempotency_records",
        "usage_counters",
        "usage_events",
        "overrides",
        "promotions",
        "subscriptions",
        "customers",
        "catalog_objects",
    ):
        op.drop_table(table)
