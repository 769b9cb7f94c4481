"""Processes that migrate one SQLite file at once take turns (``storage/migrate.py``): each
finds the schema current after the first, and none fails on a table another one made."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory

from allotment.storage.migrate import alembic_config


@pytest.mark.sqlite_file
def test_processes_that_migrate_one_file_at_once_take_turns(tmp_path: Path) -> None:
    database = tmp_path / "fresh.db"
    migrate = [sys.executable, "-m", "allotment", "migrate", "--db", str(database)]
    processes = [
        subprocess.Popen(migrate, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        assert out.strip().endswith("schema is current.")
    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    with sqlite3.connect(database) as db:
        assert db.execute("SELECT version_num FROM alembic_version").fetchall() == [(head,)]
