"""The one table that turns errors into HTTP responses."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import msgspec

from allotment.api.schemas import FieldError
from allotment.domain.errors import (
    AllotmentError,
    Conflict,
    Forbidden,
    IdempotencyConflict,
    InvalidRequest,
    NotFound,
    ServiceBusy,
    Unauthenticated,
)

STATUS_BY_ERROR: dict[type[AllotmentError], int] = {
    InvalidRequest: 400,
    Unauthenticated: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    IdempotencyConflict: 409,
}


class PayloadTooLarge(AllotmentError):
    code = "payload_too_large"


class MethodNotAllowed(AllotmentError):
    code = "method_not_allowed"

    def __init__(self, message: str, allow: Iterable[str]) -> None:
        super().__init__(message)
        self.allow = sorted(allow)


STATUS_BY_ERROR[PayloadTooLarge] = 413
STATUS_BY_ERROR[MethodNotAllowed] = 405
STATUS_BY_ERROR[ServiceBusy] = 503

RETRY_AFTER_SECONDS = 1

_encode = msgspec.json.Encoder(decimal_format="number").encode


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> bytes:
    return _encode({"error": {"code": code, "message": message, "details": details or {}}})


def error_status_and_body(error: AllotmentError) -> tuple[int, bytes]:
    status = STATUS_BY_ERROR.get(type(error), 400)
    return status, error_body(error.code, error.message, error.details)


def error_headers(error: AllotmentError) -> dict[str, str]:
    """The headers the answer to ``error`` carries besides its body."""
    if isinstance(error, ServiceBusy):
        return {"retry-after": str(RETRY_AFTER_SECONDS)}
    if isinstance(error, MethodNotAllowed):
        return {"allow": ", ".join(error.allow)}
    return {}


def invalid_body(error: msgspec.MsgspecError) -> InvalidRequest:
    """A body that is not JSON, or not the right shape, as the contract's 400; the field at
    fault in ``details`` when the decoder names one, as other 400s name theirs."""
    if isinstance(error, msgspec.ValidationError):
        field = _field_of(error)
        details = {"field": field} if field else None
        return InvalidRequest(f"Invalid request body: {error}.", details)
    return InvalidRequest("The request body is not valid JSON.")


# msgspec writes where a value failed as `$.path` after its message (`key` in `$.path` for a
# dict's key), and names a missing or unknown field in the message itself.
_AT = re.compile(r" - at (?:`key` in )?`\$([^`]*)`$")
_NAMED = re.compile(r"^Object (?:missing required|contains unknown) field `(.*?)`(?: - at `|$)")


def _field_of(error: msgspec.ValidationError) -> str | None:
    """The path of the field at fault without the leading ``$.``: ``feature``,
    ``addons[0].quantity``, ``entitlements[...].limit`` (msgspec hides dict keys)."""
    message = str(error)
    at = _AT.search(message)
    path = at.group(1) if at else ""
    named = _NAMED.match(message)
    if named:
        path += "." + named.group(1)
    elif isinstance(error.__cause__, FieldError):  # raised by a struct's own checks
        path += "." + error.__cause__.field
    return path.lstrip(".") or None
