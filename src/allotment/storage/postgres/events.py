"""Events, timers and webhooks on PostgreSQL: the shared statements
(``storage/event_tables.py``) with psycopg's placeholders, taking rows with ``SKIP LOCKED``."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

from allotment.storage.event_tables import Row
from allotment.storage.postgres.db import Db, changed_rows


@cache
def _psycopg(query: str) -> str:
    return query.replace("?", "%s")


class PostgresSql:
    take_locked = " FOR UPDATE SKIP LOCKED"

    def __init__(self, db: Db) -> None:
        self._db = db

    def rows(self, query: str, params: Sequence[Any] = ()) -> list[Row]:
        return self._db.execute(_psycopg(query), tuple(params)).fetchall()

    def run(self, query: str, params: Sequence[Any] = ()) -> None:
        self._db.execute(_psycopg(query), tuple(params))

    def run_many(self, query: str, rows: Sequence[Sequence[Any]]) -> None:
        with self._db.cursor() as cursor:
            cursor.executemany(_psycopg(query), [tuple(row) for row in rows])

    def changed(self, query: str, params: Sequence[Any] = ()) -> int:
        return changed_rows(self._db, _psycopg(query), tuple(params))
