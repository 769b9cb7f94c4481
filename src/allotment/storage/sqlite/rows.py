"""Paging rows of a SQLite table (the rest of what repositories share: ``storage/rows.py``)."""

from __future__ import annotations

import sqlite3
from typing import Any


def page_rows(
    db: sqlite3.Connection,
    select: str,
    where: str,
    params: tuple[Any, ...],
    after: str | None,
    limit: int,
) -> list[tuple[Any, ...]]:
    """Rows after the cursor (a ``seq``), oldest first, one more than asked to see if more."""
    conditions = [where] if where else []
    values = list(params)
    if after is not None:
        conditions.append("seq > ?")
        values.append(int(after))
    clause = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    return db.execute(f"{select}{clause} ORDER BY seq LIMIT ?", (*values, limit + 1)).fetchall()
