"""Schema migrations, run with Alembic against SQLite or PostgreSQL.

One set of migrations serves both databases (``migrations/columns.py`` has the types that mean
the same on both). Processes that migrate one database at once run one after the other: the
first brings the schema up, the others find it current and change nothing. On PostgreSQL a
migration holds a transaction-scoped advisory lock (``MIGRATION_LOCK``) from before it reads the
schema's version until it commits; on SQLite an exclusive ``flock`` on the database file
itself (SQLite's own locks are ``fcntl`` byte ranges, which it does not touch).
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import make_url

MIGRATIONS_DIRECTORY = Path(__file__).parent / "migrations"

MIGRATION_LOCK = 0x616C6C6F746D6E74  # "allotmnt": the advisory lock key migrations hold
POSTGRESQL_SCHEMES = frozenset({"postgresql", "postgres"})


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIRECTORY))
    # Alembic reads the option through configparser, where "%" starts an interpolation.
    config.set_main_option("sqlalchemy.url", sqlalchemy_url(database_url).replace("%", "%%"))
    return config


def upgrade_to_latest(database_url: str) -> None:
    """Bring the schema at ``database_url`` to the newest revision; a no-op when it is there."""
    with _one_migration_at_a_time(database_url):
        command.upgrade(alembic_config(database_url), "head")


@contextlib.contextmanager
def _one_migration_at_a_time(database_url: str) -> Iterator[None]:
    """On a SQLite file, hold its exclusive ``flock`` while migrating (PostgreSQL takes its own
    lock in ``migrations/env.py``)."""
    url = make_url(sqlalchemy_url(database_url))
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        yield
        return
    with open(url.database, "ab") as database:  # makes the file if it is new, as SQLite would
        fcntl.flock(database, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(database, fcntl.LOCK_UN)


def sqlite_url(path: Path | str) -> str:
    return f"sqlite:///{Path(path).resolve()}" if str(path) != ":memory:" else "sqlite://"


def is_postgresql(database_url: str) -> bool:
    return urlsplit(database_url).scheme.lower().split("+")[0] in POSTGRESQL_SCHEMES


def sqlalchemy_url(database_url: str) -> str:
    """The URL as SQLAlchemy needs it: ``postgresql://`` and ``postgres://`` (what libpq and
    most hosting providers write) name the psycopg 3 driver; others are used as given."""
    scheme, separator, rest = database_url.partition("://")
    if separator and scheme.lower() in POSTGRESQL_SCHEMES:
        return f"postgresql+psycopg://{rest}"
    return database_url
