"""API keys, stored as SHA-256 digests, on PostgreSQL: as on SQLite."""

from __future__ import annotations

from allotment.domain.customers import ApiKey
from allotment.service.ports import Page
from allotment.storage.postgres.db import Db, page
from allotment.storage.records import API_KEY_COLUMNS, api_key_of, api_key_row


class PostgresKeys:
    def __init__(self, db: Db) -> None:
        self._db = db

    def save(self, key: ApiKey) -> None:
        # A hash another key holds is refused by its unique index, as on SQLite.
        self._db.execute(
            f"INSERT INTO api_keys ({API_KEY_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (id) DO UPDATE SET revoked_at = excluded.revoked_at,"
            " key_hash = excluded.key_hash, name = excluded.name, scope = excluded.scope",
            api_key_row(key),
        )

    def find_by_hash(self, key_hash: str) -> ApiKey | None:
        row = self._db.execute(
            f"SELECT {API_KEY_COLUMNS} FROM api_keys WHERE key_hash = %s", (key_hash,)
        ).fetchone()
        return None if row is None else api_key_of(row)

    def get(self, key_id: str) -> ApiKey | None:
        row = self._db.execute(
            f"SELECT {API_KEY_COLUMNS} FROM api_keys WHERE id = %s", (key_id,)
        ).fetchone()
        return None if row is None else api_key_of(row)

    def list(self, after: str | None, limit: int) -> Page[ApiKey]:
        return page(
            self._db,
            f"SELECT seq, {API_KEY_COLUMNS} FROM api_keys",
            "",
            (),
            after,
            limit,
            lambda row: api_key_of(row[1:]),
        )
