"""API keys, stored as SHA-256 digests."""

from __future__ import annotations

import sqlite3

from allotment.domain.customers import ApiKey
from allotment.service.ports import Page
from allotment.storage.records import API_KEY_COLUMNS, api_key_of, api_key_row
from allotment.storage.rows import paged
from allotment.storage.sqlite.rows import page_rows


class SqliteKeys:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def save(self, key: ApiKey) -> None:
        self._db.execute(
            f"INSERT INTO api_keys ({API_KEY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (id) DO UPDATE SET revoked_at = excluded.revoked_at,"
            " key_hash = excluded.key_hash, name = excluded.name, scope = excluded.scope",
            api_key_row(key),
        )

    def find_by_hash(self, key_hash: str) -> ApiKey | None:
        row = self._db.execute(
            f"SELECT {API_KEY_COLUMNS} FROM api_keys WHERE key_hash = ?", (key_hash,)
        ).fetchone()
        return None if row is None else api_key_of(row)

    def get(self, key_id: str) -> ApiKey | None:
        row = self._db.execute(
            f"SELECT {API_KEY_COLUMNS} FROM api_keys WHERE id = ?", (key_id,)
        ).fetchone()
        return None if row is None else api_key_of(row)

    def list(self, after: str | None, limit: int) -> Page[ApiKey]:
        rows = page_rows(
            self._db, f"SELECT seq, {API_KEY_COLUMNS} FROM api_keys", "", (), after, limit
        )
        return paged(rows, limit, lambda row: api_key_of(row[1:]))
