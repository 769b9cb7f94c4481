"""API keys, stored as SHA-256 digests, on PostgreSQL: as on SQLite."""

from __future__ import annotations

from typing import Any

from allotment.domain.customers import ApiKey, Scope
from allotment.domain.timefmt import from_epoch_micros
from allotment.service.ports import Page
from allotment.storage.postgres.db import Db, page
from allotment.storage.rows import instant, micros


class PostgresKeys:
    def __init__(self, db: Db) -> None:
        self._db = db

    def save(self, key: ApiKey) -> None:
        # A hash another key holds is refused by its unique index, as on SQLite.
        self._db.execute(
            f"INSERT INTO api_keys ({_KEY_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (id) DO UPDATE SET revoked_at = excluded.revoked_at,"
            " key_hash = excluded.key_hash, name = excluded.name, scope = excluded.scope",
            (
                key.id,
                key.name,
                key.scope.value,
                key.customer,
                key.key_hash,
                micros(key.created_at),
                micros(key.revoked_at),
            ),
        )

    def find_by_hash(self, key_hash: str) -> ApiKey | None:
        row = self._db.execute(
            f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE key_hash = %s", (key_hash,)
        ).fetchone()
        return None if row is None else _api_key(row)

    def get(self, key_id: str) -> ApiKey | None:
        row = self._db.execute(
            f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE id = %s", (key_id,)
        ).fetchone()
        return None if row is None else _api_key(row)

    def list(self, after: str | None, limit: int) -> Page[ApiKey]:
        return page(
            self._db,
            f"SELECT seq, {_KEY_COLUMNS} FROM api_keys",
            "",
            (),
            after,
            limit,
            lambda row: _api_key(row[1:]),
        )


_KEY_COLUMNS = "id, name, scope, customer, key_hash, created_at, revoked_at"


def _api_key(row: tuple[Any, ...]) -> ApiKey:
    return ApiKey(
        id=row[0],
        name=row[1],
        scope=Scope(row[2]),
        customer=row[3],
        key_hash=row[4],
        created_at=from_epoch_micros(row[5]),
        revoked_at=instant(row[6]),
    )
