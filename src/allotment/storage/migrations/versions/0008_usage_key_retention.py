"""Usage reports' idempotency records, by age: what pruning them past their retention reads.

API.md keeps idempotency keys forever for ledger writes and at least 7 days for usage; the
store drops usage records older than ``ALLOTMENT_USAGE_KEY_RETENTION_DAYS`` a chunk at a time
(``SqliteOutcomes.prune_usage``). This partial index holds the usage records only, so finding
the oldest of them reads no other record, and writes on other routes do not maintain it. Its
condition is the one ``prune_usage`` writes: SQLite uses a partial index only for a query that
repeats its terms.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_USAGE = "route = 'usage'"


def upgrade() -> None:
    op.create_index(
        "idempotency_records_usage_age",
        "idempotency_records",
        ["created_at"],
        sqlite_where=sa.text(_USAGE),
        postgresql_where=sa.text(_USAGE),
    )


def downgrade() -> None:
    op.drop_index("idempotency_records_usage_age", "idempotency_records")
