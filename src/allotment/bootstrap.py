"""The composition root: the store the settings name, and the services built on it."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from allotment.config import Settings
from allotment.service.ports import Store


class UnsupportedDatabase(ValueError):
    """The database URL names a database this build cannot open."""


def open_store(settings: Settings) -> Store:
    """The adapter for ``settings.database_url`` (or the SQLite file ``database_path``)."""
    from allotment.storage.sqlite import SqliteStore

    url = settings.database_url
    if url is None:
        return SqliteStore(settings.database_path, settings.change_log_retention)
    scheme = urlsplit(url).scheme.lower()
    if scheme == "sqlite":
        return SqliteStore(sqlite_path(url), settings.change_log_retention)
    if scheme in {"postgresql", "postgres"}:
        raise UnsupportedDatabase(
            "PostgreSQL is not supported yet; use sqlite:///PATH or --db PATH."
        )
    raise UnsupportedDatabase(f"unknown database URL scheme {scheme!r}: use sqlite:///PATH.")


def sqlite_path(url: str) -> Path:
    """``sqlite:///relative/file.db`` or ``sqlite:////absolute/file.db``, as SQLAlchemy."""
    parts = urlsplit(url)
    if parts.netloc or not parts.path.startswith("/") or len(parts.path) < 2:
        raise UnsupportedDatabase("a SQLite URL is sqlite:///PATH (three slashes, then the path).")
    return Path(unquote(parts.path[1:]))
