"""The change log: every committed change, with a revision gap-free and in commit order.

``seq`` is assigned inside the writing transaction, under the database's write lock, so
revisions follow commit order across every process; AUTOINCREMENT keeps the highest revision
ever given even when old entries are pruned, so a revision is never given twice. ``written_at``
is the wall-clock instant of the write, which retention reads (not the service's clock, which a
test may move). The payload is the change's JSON record (``service/changelog.py``).

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from allotment.storage.migrations.columns import sequence_column

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "change_log",
        sequence_column(),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("customer", sa.Text),
        sa.Column("written_at", sa.BigInteger, nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sqlite_autoincrement=True,
    )


def downgrade() -> None:
    op.drop_table("change_log")
