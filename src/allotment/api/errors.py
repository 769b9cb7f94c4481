"""The one table that turns errors into HTTP responses."""

from __future__ import annotations

from typing import Any

import msgspec

from allotment.domain.errors import (
    AllotmentError,
    Conflict,
    Forbidden,
    IdempotencyConflict,
    InvalidRequest,
    NotFound,
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


STATUS_BY_ERROR[PayloadTooLarge] = 413
STATUS_BY_ERROR[MethodNotAllowed] = 405

_encode = msgspec.json.Encoder(decimal_format="number").encode


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> bytes:
    return _encode({"error": {"code": code, "message": message, "details": details or {}}})


def error_status_and_body(error: AllotmentError) -> tuple[int, bytes]:
    status = STATUS_BY_ERROR.get(type(error), 400)
    return status, error_body(error.code, error.message, error.details)


def invalid_body(error: msgspec.MsgspecError) -> InvalidRequest:
    """A body that is not JSON, or not the right shape, as the contract's 400."""
    if isinstance(error, msgspec.ValidationError):
        return InvalidRequest(f"Invalid request body: {error}.")
    return InvalidRequest("The request body is not valid JSON.")
