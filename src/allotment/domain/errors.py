"""Typed errors raised by the core and the service layer; the HTTP shell maps them to statuses."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class AllotmentError(Exception):
    """Base class: a request the service refuses, with a stable code and a human message."""

    code = "error"

    def __init__(self, message: str, details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = dict(details or {})


class InvalidRequest(AllotmentError):
    """The request is malformed or names something that does not fit (HTTP 400)."""

    code = "invalid_request"


class NotFound(AllotmentError):
    """A resource named in the path does not exist (HTTP 404)."""

    code = "not_found"


class Conflict(AllotmentError):
    """The request clashes with the current state (HTTP 409)."""

    code = "conflict"


class IdempotencyConflict(AllotmentError):
    """An idempotency key was reused with a different payload (HTTP 409)."""

    code = "idempotency_conflict"


class Unauthenticated(AllotmentError):
    """Missing, unknown or revoked API key (HTTP 401)."""

    code = "unauthenticated"


class Forbidden(AllotmentError):
    """The key lacks the scope, or is bound to another customer (HTTP 403)."""

    code = "forbidden"


class ServiceBusy(AllotmentError):
    """The database stayed locked by another writer past the wait for its lock: the request
    changed nothing and may be sent again (HTTP 503 with Retry-After)."""

    code = "service_busy"
