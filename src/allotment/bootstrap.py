"""The composition root: the store the settings name, and the services built on it."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from allotment.config import Settings
from allotment.service.ports import Store


class UnsupportedDatabase(ValueError):
    """The database URL names a database this build cannot open."""


def open_store(settings: Settings) -> Store:
    """The adapter for ``settings.database_url`` (or the SQLite file ``database_path``)."""
    from allotment.storage.sqlite import SqliteStore

    url = settings.database_url
    if url is None or urlsplit(url).scheme.lower() == "sqlite":
        return SqliteStore(
            settings.database_path if url is None else sqlite_path(url),
            settings.change_log_retention,
            settings.usage_key_retention,
            cached_pools=settings.cache_pools,
            cached_counters=settings.cache_counters,
            page_cache_mib=settings.sqlite_cache_mib,
            wal_pages=settings.sqlite_wal_pages,
        )
    scheme = urlsplit(url).scheme.lower()
    if scheme == "memory":
        return memory_store(url, settings)
    if scheme in {"postgresql", "postgres"}:
        from allotment.storage.postgres import PostgresStore

        return PostgresStore(
            url,
            settings.change_log_retention,
            settings.usage_key_retention,
            prepared_statements=settings.postgres_prepared_statements,
        )
    raise UnsupportedDatabase(
        f"unknown database URL scheme {scheme!r}: use sqlite:///PATH, postgresql://... or memory:."
    )


def sqlite_path(url: str) -> Path:
    """``sqlite:///relative/file.db`` or ``sqlite:////absolute/file.db``, as SQLAlchemy."""
    parts = urlsplit(url)
    if parts.netloc or not parts.path.startswith("/") or len(parts.path) < 2:
        raise UnsupportedDatabase("a SQLite URL is sqlite:///PATH (three slashes, then the path).")
    return Path(unquote(parts.path[1:]))


def memory_store(url: str, settings: Settings) -> Store:
    """``memory:`` (a database of its own) or ``memory://NAME`` (the database of that name in
    this process, shared by every store opened on it and kept for the next one);
    every job's holds are checked unless the URL says ``?strict_holds=0``."""
    from allotment.storage.memory import MemoryDatabase, MemoryStore, shared_database

    parts = urlsplit(url)
    name = unquote(parts.netloc + parts.path)
    options = parse_qs(parts.query)
    unknown = set(options) - {"strict_holds"}
    if unknown:
        raise UnsupportedDatabase(f"unknown memory: URL options {sorted(unknown)}")
    strict = options.get("strict_holds", ["1"])[-1]
    if strict not in {"0", "1"}:
        raise UnsupportedDatabase("strict_holds is 0 or 1 in a memory: URL.")
    database = shared_database(name) if name else MemoryDatabase()
    return MemoryStore(
        settings.change_log_retention,
        database,
        strict_holds=strict == "1",
        usage_key_retention=settings.usage_key_retention,
    )
