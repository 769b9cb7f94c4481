"""A PostgreSQL store prunes a log that is chunks behind its retention within seconds: a chunk
per pass, the next pass after a short pause rather than a minute, and only what is due."""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest

import allotment.storage.postgres.store
from allotment.storage.postgres import PostgresStore
from tests.integration.test_change_log_retention import (
    AGED,
    CHUNK,
    WRITTEN,
    log_and_close,
    prunes_to,
    two_hours_ago,
)


def test_a_postgres_log_chunks_behind_is_pruned_within_seconds(
    migrated_postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(allotment.storage.postgres.store, "PRUNE_CHUNK", CHUNK)
    log_and_close(PostgresStore(migrated_postgres_url))
    with psycopg.connect(migrated_postgres_url) as db:
        row = db.execute("SELECT MIN(seq), MAX(seq), COUNT(*) FROM change_log").fetchone()
    assert row is not None
    oldest, newest, count = row
    assert count >= WRITTEN, (oldest, newest, count)
    # Every entry written before now is past a retention of 0: the store prunes soon after it
    # starts, a chunk per pass, down to the newest entry.
    prunes_to(PostgresStore(migrated_postgres_url, log_retention=timedelta(0)), (newest, newest))


def test_a_postgres_log_prunes_what_is_due_and_keeps_the_rest(
    migrated_postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(allotment.storage.postgres.store, "PRUNE_CHUNK", CHUNK)
    log_and_close(PostgresStore(migrated_postgres_url))
    with psycopg.connect(migrated_postgres_url) as db:
        row = db.execute("SELECT MIN(seq), MAX(seq) FROM change_log").fetchone()
        assert row is not None
        oldest, newest = row
        db.execute(
            "UPDATE change_log SET written_at = %s WHERE seq < %s",
            (two_hours_ago(), oldest + AGED),
        )
    prunes_to(
        PostgresStore(migrated_postgres_url, log_retention=timedelta(hours=1)),
        (oldest + AGED, newest),
    )
