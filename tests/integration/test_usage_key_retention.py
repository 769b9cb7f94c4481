"""Usage reports' idempotency records are dropped past their retention, by the stores
themselves, reading only what they drop; every other route's records are kept."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from allotment.service.ports import StoredOutcome, UnitOfWork
from allotment.storage.memory import MemoryStore
from allotment.storage.sqlite import SqliteStore

OUTCOME = StoredOutcome(b"fp", b"{}")


def _save_aged(uow: UnitOfWork, now: datetime) -> None:
    uow.outcomes.save("acme", "usage", "eight-days", OUTCOME, now - timedelta(days=8))
    uow.outcomes.save("acme", "usage", "six-days", OUTCOME, now - timedelta(days=6))
    uow.outcomes.save("acme", "credits/tokens/debits", "a-year", OUTCOME, now - timedelta(days=365))


def _kept(uow: UnitOfWork) -> list[str]:
    keys = [("usage", "eight-days"), ("usage", "six-days"), ("credits/tokens/debits", "a-year")]
    return [key for route, key in keys if uow.outcomes.find("acme", route, key) is not None]


@pytest.mark.sqlite_file
def test_a_sqlite_store_drops_usage_keys_past_retention_on_its_own(tmp_path: Path) -> None:
    path = tmp_path / "keys.db"
    writer = SqliteStore(path)
    try:
        writer.run_blocking(lambda uow: _save_aged(uow, datetime.now(UTC)))
    finally:
        writer.close()
    store = SqliteStore(path)  # prunes between batches, first soon after it starts
    try:
        deadline = time.monotonic() + 10
        while store.run_blocking(_kept) != ["six-days", "a-year"]:
            assert time.monotonic() < deadline, store.run_blocking(_kept)
            time.sleep(0.02)
    finally:
        store.close()


def test_a_memory_store_drops_usage_keys_past_retention_when_it_prunes() -> None:
    store = MemoryStore(usage_key_retention=timedelta(days=7))
    try:
        now = datetime.now(UTC)
        store.run_blocking(lambda uow: _save_aged(uow, now))
        store.prune(now)
        assert store.run_blocking(_kept) == ["six-days", "a-year"]
        store.prune(now + timedelta(days=2))
        assert store.run_blocking(_kept) == ["a-year"]
    finally:
        store.close()


def test_a_retention_under_seven_days_is_refused() -> None:
    from allotment.config import Settings

    with pytest.raises(ValueError, match="at least 7 days"):
        Settings(usage_key_retention=timedelta(days=6))
