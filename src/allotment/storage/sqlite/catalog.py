"""Catalog objects as stored documents."""

from __future__ import annotations

import sqlite3
from datetime import datetime

from allotment.domain.catalog import Catalog
from allotment.domain.timefmt import to_epoch_micros
from allotment.storage.records import catalog_of

# Catalog objects load in dependency order: features and currencies before what uses them.
_CATALOG_LOAD_ORDER = ("feature", "currency", "product", "plan", "addon")


class SqliteCatalog:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def load(self) -> Catalog:
        rows = self._db.execute("SELECT kind, id, document FROM catalog_objects ORDER BY seq")
        return catalog_of(rows)

    def save_object(self, kind: str, object_id: str, document: bytes, at: datetime) -> bool:
        updated = self._db.execute(
            "UPDATE catalog_objects SET document = ?, updated_at = ? WHERE kind = ? AND id = ?",
            (document.decode(), to_epoch_micros(at), kind, object_id),
        ).rowcount
        if updated:
            return False
        self._db.execute(
            "INSERT INTO catalog_objects (kind, id, document, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (kind, object_id, document.decode(), to_epoch_micros(at), to_epoch_micros(at)),
        )
        return True

    def stored_document(self, kind: str, object_id: str) -> bytes | None:
        # The batch holds SQLite's one write lock: nobody else writes until it commits.
        row = self._db.execute(
            "SELECT document FROM catalog_objects WHERE kind = ? AND id = ?", (kind, object_id)
        ).fetchone()
        return None if row is None else str(row[0]).encode()
