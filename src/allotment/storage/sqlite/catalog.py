"""Catalog objects as stored documents."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from allotment.domain.catalog import Catalog
from allotment.domain.documents import add_document
from allotment.domain.timefmt import to_epoch_micros
from allotment.storage.sqlite.rows import decode_document

# Catalog objects load in dependency order: features and currencies before what uses them.
_CATALOG_LOAD_ORDER = ("feature", "currency", "product", "plan", "addon")


class SqliteCatalog:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def load(self) -> Catalog:
        rows = self._db.execute(
            "SELECT kind, id, document FROM catalog_objects ORDER BY seq"
        ).fetchall()
        by_kind: dict[str, list[tuple[str, Mapping[str, Any]]]] = {}
        for kind, object_id, document in rows:
            by_kind.setdefault(kind, []).append((object_id, decode_document(document)))
        plans_by_age = [plan_id for plan_id, _ in by_kind.get("plan", [])]
        by_kind["plan"] = _parents_first(by_kind.get("plan", []))
        catalog = Catalog()
        for kind in _CATALOG_LOAD_ORDER:
            for object_id, document in by_kind.get(kind, []):
                catalog = add_document(catalog, kind, object_id, document)
        # Lists show the oldest first, whatever order the parents forced on loading.
        return replace(catalog, plans={plan_id: catalog.plans[plan_id] for plan_id in plans_by_age})

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


def _parents_first(
    plans: list[tuple[str, Mapping[str, Any]]],
) -> list[tuple[str, Mapping[str, Any]]]:
    """Plans ordered so that each comes after its parent (a plan may be re-parented under a
    newer one), otherwise keeping creation order."""
    ordered: list[tuple[str, Mapping[str, Any]]] = []
    placed: set[str] = set()
    pending = plans
    while pending:
        waiting = []
        for object_id, document in pending:
            parent = document.get("parent")
            if parent is None or parent in placed:
                ordered.append((object_id, document))
                placed.add(object_id)
            else:
                waiting.append((object_id, document))
        if len(waiting) == len(pending):
            raise ValueError(f"stored plans have missing or cyclic parents: {waiting[0][0]}")
        pending = waiting
    return ordered
