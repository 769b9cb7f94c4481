"""Catalog objects as stored documents, on PostgreSQL.

As on SQLite, except that an object is inserted first and updated only when it exists: another
process creating the same object at the same time then makes this save a replacement rather
than a failed insert.
"""

from __future__ import annotations

from datetime import datetime

from allotment.domain.catalog import Catalog
from allotment.domain.timefmt import to_epoch_micros
from allotment.storage.postgres.db import Db
from allotment.storage.records import catalog_of


class PostgresCatalog:
    def __init__(self, db: Db) -> None:
        self._db = db

    def load(self) -> Catalog:
        rows = self._db.execute("SELECT kind, id, document FROM catalog_objects ORDER BY seq")
        return catalog_of(rows)

    def save_object(self, kind: str, object_id: str, document: bytes, at: datetime) -> bool:
        text, when = document.decode(), to_epoch_micros(at)
        # DO NOTHING waits for a concurrent insert of the same object to end, so that the
        # UPDATE below finds the row it committed.
        created = self._db.execute(
            "INSERT INTO catalog_objects (kind, id, document, created_at, updated_at)"
            " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (kind, id) DO NOTHING RETURNING seq",
            (kind, object_id, text, when, when),
        ).fetchone()
        if created is not None:
            return True
        self._db.execute(
            "UPDATE catalog_objects SET document = %s, updated_at = %s WHERE kind = %s AND id = %s",
            (text, when, kind, object_id),
        )
        return False

    def stored_document(self, kind: str, object_id: str) -> bytes | None:
        # FOR UPDATE: a process publishing the same object waits for this job to commit, and
        # then reads the document it wrote.
        row = self._db.execute(
            "SELECT document FROM catalog_objects WHERE kind = %s AND id = %s FOR UPDATE",
            (kind, object_id),
        ).fetchone()
        return None if row is None else str(row[0]).encode()
