"""The PostgreSQL adapter of the storage port (``service/ports.py``)."""

from allotment.storage.postgres.store import PostgresStore

__all__ = ["PostgresStore"]
