"""What PostgreSQL needs besides the shared schema: the change log's head, and sums of
consumption that may pass 64 bits.

**The change log's head**, the newest revision given, in a row of its own. A PostgreSQL
sequence hands out numbers that commit out of order and leave gaps when a transaction rolls
back, so revisions come from this one row instead: a writing transaction's last statement before
``COMMIT`` adds its number of changes to ``seq`` (``UPDATE ... RETURNING``), which holds the
row's lock only across the commit itself. The next writer waits for that commit before it takes
its own revisions, so revisions are gap-free and in commit order across every process. SQLite
needs no such row: a batch holds the database's write lock from its first statement, and
``sqlite_sequence`` keeps the newest revision.

**``entity_consumption.amount`` is NUMERIC.** An entity's consumption in one second may pass 64
bits (two reports of half the counter's range); what must be refused is a budget window that
would hold it, when it is read (``budget_counters.used`` stays BIGINT). SQLite keeps such a sum
as a float, which projecting a window refuses; PostgreSQL would refuse the report itself.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from allotment.storage.migrations.columns import on_sqlite

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if on_sqlite():
        return
    op.create_table(
        "change_log_head",
        sa.Column("id", sa.SmallInteger, primary_key=True),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.CheckConstraint("id = 1", name="change_log_head_is_one_row"),
    )
    op.execute(
        "INSERT INTO change_log_head (id, seq) SELECT 1, COALESCE(MAX(seq), 0) FROM change_log"
    )
    op.alter_column("entity_consumption", "amount", type_=sa.Numeric(), existing_nullable=False)


def downgrade() -> None:
    if on_sqlite():
        return
    op.alter_column(
        "entity_consumption",
        "amount",
        type_=sa.BigInteger(),
        existing_nullable=False,
        postgresql_using="amount::bigint",
    )
    op.drop_table("change_log_head")
