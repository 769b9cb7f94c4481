"""What the stores prune they find through an index by age, oldest first: a pass reads only what
it drops, never a walk over everything kept. Each query repeats its partial index's condition,
which SQLite needs to use the index."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from allotment.storage.sqlite import SqliteStore

FINDING = {
    # Usage reports' idempotency records (migration 0008, ``SqliteOutcomes.prune_usage``).
    "idempotency_records_usage_age": "SELECT rowid FROM idempotency_records"
    " WHERE route = 'usage' AND created_at < ? ORDER BY created_at LIMIT ?",
    # Finished webhook deliveries (migration 0014, ``SqlEvents.prune``).
    "deliveries_finished_by_age": "SELECT seq FROM webhook_deliveries"
    " WHERE status <> 'pending' AND created_at < ? ORDER BY created_at LIMIT ?",
}


@pytest.mark.sqlite_file
@pytest.mark.parametrize(("index", "query"), FINDING.items(), ids=list(FINDING))
def test_finding_what_to_drop_reads_only_that(tmp_path: Path, index: str, query: str) -> None:
    SqliteStore(tmp_path / "plan.db").close()
    with sqlite3.connect(tmp_path / "plan.db") as db:
        plan = db.execute(f"EXPLAIN QUERY PLAN {query}", (0, 10)).fetchall()
    details = " ".join(row[-1] for row in plan)
    assert f"USING INDEX {index}" in details, details
    assert "TEMP B-TREE" not in details, details  # read in the index's order, not sorted after
