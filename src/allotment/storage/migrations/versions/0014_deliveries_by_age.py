"""Finished webhook deliveries by age, so that pruning them reads only those it drops.

Pruning deletes finished deliveries older than the events' retention, a chunk at a time once a
minute. Without an index it walked the table in ``seq`` order testing each row's status and
age: with nothing due, every delivery of the last 30 days, in a job on the write path. This
partial index holds the finished deliveries only (the pending ones have theirs), by creation;
SQLite uses it for a query that repeats its condition, which ``SqlEvents.prune`` writes.

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

_FINISHED = "status <> 'pending'"


def upgrade() -> None:
    op.create_index(
        "deliveries_finished_by_age",
        "webhook_deliveries",
        ["created_at"],
        sqlite_where=sa.text(_FINISHED),
        postgresql_where=sa.text(_FINISHED),
    )


def downgrade() -> None:
    op.drop_index("deliveries_finished_by_age", table_name="webhook_deliveries")
