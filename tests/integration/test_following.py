"""A SQLite store follows the other stores on its file: a follow that fails is tried again before
anything is skipped, and a store that fell behind what the log keeps reloads."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest

from allotment.domain.changes import CatalogChanged, CustomerChanged, LoggedChange
from allotment.service.ports import Published, UnitOfWork
from allotment.service.projector import CatalogLoaded
from allotment.storage.sqlite import store as sqlite_store
from allotment.storage.sqlite.store import SqliteStore

pytestmark = pytest.mark.sqlite_file
NOW = datetime(2026, 12, 6, tzinfo=UTC)


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.005)


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[tuple[SqliteStore, SqliteStore, list[Published]]]:
    writer, follower = SqliteStore(tmp_path / "shared.db"), SqliteStore(tmp_path / "shared.db")
    seen: list[Published] = []
    follower.subscribe(seen.extend)
    try:
        yield writer, follower, seen
    finally:
        follower.close()
        writer.close()


def record(store: SqliteStore, customer: str) -> None:
    store.run_blocking(lambda uow: uow.record(CustomerChanged(customer)))


def revisions(seen: list[Published]) -> list[int]:
    return [item.seq for item in seen if isinstance(item, LoggedChange)]


def test_a_failed_follow_is_tried_again_and_nothing_is_skipped(
    stores: tuple[SqliteStore, SqliteStore, list[Published]], monkeypatch: pytest.MonkeyPatch
) -> None:
    writer, follower, seen = stores
    read_log = sqlite_store._logged
    failures = [1]

    def failing_once(connection: sqlite3.Connection, after: int, limit: int) -> Any:
        if failures:
            failures.pop()
            raise sqlite3.OperationalError("disk I/O error")
        return read_log(connection, after, limit)

    monkeypatch.setattr(sqlite_store, "_logged", failing_once)
    record(writer, "acme")
    record(writer, "umbrella")
    wait_for(lambda: revisions(seen) == [1, 2], f"the follower saw {revisions(seen)}")
    record(follower, "globex")  # its own batch comes after both, never instead of them
    assert revisions(seen) == [1, 2, 3]
    assert not failures


def test_a_store_that_fell_behind_reloads_the_catalog_as_the_log_now_has_it(
    stores: tuple[SqliteStore, SqliteStore, list[Published]], monkeypatch: pytest.MonkeyPatch
) -> None:
    writer, follower, seen = stores
    monkeypatch.setattr(follower, "_others_committed", lambda: False)  # the follower sleeps

    def put(kind: str, object_id: str, document: dict[str, Any]) -> Callable[[UnitOfWork], None]:
        def job(uow: UnitOfWork) -> None:
            uow.catalog.save_object(kind, object_id, msgspec.json.encode(document), NOW)
            uow.record(CatalogChanged(kind, object_id, document))

        return job

    def versions(*definitions: tuple[str, str | None, int | None]) -> dict[str, Any]:
        """A plan's stored document: each version's (name, parent, parent's version)."""
        return {
            "status": "active",
            "versions": [
                {
                    "version": number,
                    "published_at": None,
                    "parent_version": parent_version,
                    "definition": {"product": "p", "name": name, "parent": parent},
                }
                for number, (name, parent, parent_version) in enumerate(definitions, 1)
            ],
        }

    writer.run_blocking(put("product", "p", {"name": "P"}))
    writer.run_blocking(put("plan", "y", versions(("Y", None, None))))
    writer.run_blocking(put("plan", "z", versions(("Z", "y", 1))))
    writer.run_blocking(put("plan", "z", versions(("Z", "y", 1), ("Z", None, None))))
    y_under_z = versions(("Y", None, None), ("Y", "z", 2))
    writer.run_blocking(put("plan", "y", y_under_z))
    with sqlite3.connect(writer.path) as db:  # the log kept only the last three
        db.execute("DELETE FROM change_log WHERE seq <= 2")
    monkeypatch.undo()

    wait_for(lambda: any(type(item).__name__ == "CatalogLoaded" for item in seen), "no reload")
    kinds = [type(item).__name__ for item in seen]
    assert kinds[0] == "Forget"
    assert kinds[-1] == "CatalogLoaded"
    assert "CatalogChanged" not in [
        type(item.change).__name__ for item in seen if isinstance(item, LoggedChange)
    ]
    reload = seen[-1]
    assert isinstance(reload, CatalogLoaded)
    loaded = reload.catalog
    assert loaded.plans["y"].parent == "z"
    assert loaded.plans["z"].parent is None
