"""Customers and the API keys that act for them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


@dataclass(frozen=True, slots=True)
class Customer:
    id: str
    name: str | None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    billing_id: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    archived_at: datetime | None = None

    @property
    def is_archived(self) -> bool:
        return self.archived_at is not None


class Scope(StrEnum):
    """What an API key may call: everything, the request path and reads, or one customer's
    checks."""

    ADMIN = "admin"
    SERVER = "server"
    CLIENT = "client"


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A key as stored: its secret appears only as a SHA-256 digest."""

    id: str
    name: str
    scope: Scope
    customer: str | None
    key_hash: str
    created_at: datetime
    revoked_at: datetime | None = None
