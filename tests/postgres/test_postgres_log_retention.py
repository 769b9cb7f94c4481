"""A PostgreSQL store prunes a log that is chunks behind its retention within seconds: a chunk
per pass, the next pass after a short pause rather than a minute."""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest

import allotment.storage.postgres.store
from allotment.storage.postgres import PostgresStore
from tests.integration.test_change_log_retention import CHUNK, WRITTEN, wait_for_bounds, write_log


def test_a_postgres_log_chunks_behind_is_pruned_within_seconds(
    migrated_postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(allotment.storage.postgres.store, "PRUNE_CHUNK", CHUNK)
    writer = PostgresStore(migrated_postgres_url)
    try:
        write_log(writer, WRITTEN)
    finally:
        writer.close()
    with psycopg.connect(migrated_postgres_url) as db:
        row = db.execute("SELECT MIN(seq), MAX(seq), COUNT(*) FROM change_log").fetchone()
    assert row is not None
    oldest, newest, count = row
    assert count >= WRITTEN, (oldest, newest, count)
    # Every entry written before now is past a retention of 0: the store prunes soon after it
    # starts, a chunk per pass, down to the newest entry.
    store = PostgresStore(migrated_postgres_url, log_retention=timedelta(0))
    try:
        wait_for_bounds(store, (newest, newest))
    finally:
        store.close()
