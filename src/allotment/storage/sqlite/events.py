"""Events, timers and webhooks on SQLite: the shared statements (``storage/event_tables.py``)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from allotment.storage.event_tables import Row


class SqliteSql:
    take_locked = ""  # the batch holds the database's write lock already

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def rows(self, query: str, params: Sequence[Any] = ()) -> list[Row]:
        return self._db.execute(query, params).fetchall()

    def run(self, query: str, params: Sequence[Any] = ()) -> None:
        self._db.execute(query, params)

    def run_many(self, query: str, rows: Sequence[Sequence[Any]]) -> None:
        self._db.executemany(query, rows)

    def changed(self, query: str, params: Sequence[Any] = ()) -> int:
        return self._db.execute(query, params).rowcount
