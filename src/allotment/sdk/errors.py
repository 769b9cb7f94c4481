"""What the SDK raises: the service's refusals as :class:`ApiError`, an unreachable service as
:class:`ServiceUnavailable`. ``check`` raises neither for a transport problem: it answers from
the cache or the fallback instead."""

from __future__ import annotations

from typing import Any


class AllotmentClientError(Exception):
    """Base of everything the SDK raises."""


class ServiceUnavailable(AllotmentClientError):
    """The service could not be reached, or answered 5xx or 429, so nothing is known of the
    request's fate unless it carried an idempotency key (then send it again)."""


class ApiError(AllotmentClientError):
    """The service refused the request with the contract's error body."""

    def __init__(self, status: int, code: str, message: str, details: dict[str, Any]) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details


class InvalidReport(AllotmentClientError, ValueError):
    """A usage report the service would refuse (a bad id, a negative amount, ``set`` with an
    entity, a time without a zone): refused before it is buffered, since a buffered report is
    acknowledged and a refusal found at delivery could only drop it."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field
