"""Column types that mean the same on SQLite and PostgreSQL, for every migration.

A row's ``seq`` is its creation order (lists are oldest first and page by it). On SQLite it is
``INTEGER PRIMARY KEY``, the 64-bit rowid itself (SQLite makes a rowid alias of no other
spelling); on PostgreSQL a ``BIGINT`` with an identity sequence (``BIGSERIAL``), 64 bits too, so
that a busy table never runs out of them.
"""

from __future__ import annotations

import sqlalchemy as sa

SEQUENCE = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def sequence_column() -> sa.Column[int]:
    return sa.Column("seq", SEQUENCE, primary_key=True, autoincrement=True)


def on_sqlite() -> bool:
    """Whether the migration runs against SQLite (for what only SQLite needs)."""
    from alembic import op

    return bool(op.get_bind().dialect.name == "sqlite")
