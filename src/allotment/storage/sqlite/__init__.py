"""The embedded SQLite adapter: a store with one writer thread and group commit, and one
repository module per aggregate."""

from allotment.storage.sqlite.store import SqliteStore

__all__ = ["SqliteStore"]
