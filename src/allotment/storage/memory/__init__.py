"""The in-memory adapter: the reference implementation of the storage port, for tests.

Every figure is computed from the truth on each read, every job is its own transaction (undone
from a journal when it raises), several stores may share one database and follow each other
through its change log, and the holds a job takes are checked (``holds.py``).
"""

from allotment.storage.jobs import DEFAULT_LOG_RETENTION
from allotment.storage.memory.database import (
    ConstraintError,
    MemoryDatabase,
    forget_shared_databases,
    shared_database,
)
from allotment.storage.memory.holds import HoldOrderError, MissingHoldError
from allotment.storage.memory.store import MemoryStore

__all__ = [
    "DEFAULT_LOG_RETENTION",
    "ConstraintError",
    "HoldOrderError",
    "MemoryDatabase",
    "MemoryStore",
    "MissingHoldError",
    "forget_shared_databases",
    "shared_database",
]
