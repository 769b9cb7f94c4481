"""Schema migrations, run with Alembic against SQLite (and, later, PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS_DIRECTORY = Path(__file__).parent / "migrations"


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIRECTORY))
    config.set_main_option("sqlalchemy.url", database_url)
    return config


def upgrade_to_latest(database_url: str) -> None:
    """Bring the schema at ``database_url`` to the newest revision; a no-op when it is there."""
    command.upgrade(alembic_config(database_url), "head")


def sqlite_url(path: Path | str) -> str:
    return f"sqlite:///{Path(path).resolve()}" if str(path) != ":memory:" else "sqlite://"
