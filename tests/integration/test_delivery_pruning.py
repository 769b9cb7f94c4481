"""Pruning finished webhook deliveries reads only those it drops: through their index by age,
never a walk over every delivery kept (which, with nothing due, was all of the last 30 days)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from allotment.storage.sqlite import SqliteStore


@pytest.mark.sqlite_file
def test_finding_the_finished_deliveries_to_drop_reads_only_those(tmp_path: Path) -> None:
    SqliteStore(tmp_path / "plan.db").close()
    with sqlite3.connect(tmp_path / "plan.db") as db:
        plan = db.execute(
            "EXPLAIN QUERY PLAN SELECT seq FROM webhook_deliveries"
            " WHERE status <> 'pending' AND created_at < ? ORDER BY created_at LIMIT ?",
            (0, 10),
        ).fetchall()
    details = " ".join(row[-1] for row in plan)
    assert "USING INDEX deliveries_finished_by_age" in details, details
    assert "TEMP B-TREE" not in details, details  # read in the index's order, not sorted after
