"""The error answers of the description: the contract's error shape, and which codes each status
carries, read from the one table that maps errors to statuses (``api/errors.py``)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from msgspec import Struct

from allotment.api.errors import STATUS_BY_ERROR

# Statuses answered outside the table: an unknown path, and the catch-all that should never run.
_OUTSIDE_THE_TABLE = {404: ("not_found",), 500: ("internal_error",)}
# Answered for a method the path does not have, never by an operation itself.
NOT_AN_OPERATION_STATUS = 405
# What every status a route's declaration or kind implies is about; statuses the table gains
# later (a busy database's 503, say) are described on every route that holds a key.
DECLARED_STATUSES = frozenset({400, 401, 403, 404, 409, 413})


class ErrorDetail(Struct, frozen=True):
    """``code`` is stable and snake_case; ``message`` a human sentence; ``details`` names what
    was wrong when it can (a ``field``, the ``id`` not found, the ``problems``)."""

    code: str
    message: str
    details: dict[str, Any]


class ErrorAnswer(Struct, frozen=True):
    """Every error, whatever the route: a rejected request changes nothing."""

    error: ErrorDetail


def codes_by_status() -> dict[int, tuple[str, ...]]:
    codes: dict[int, set[str]] = defaultdict(set)
    for error, status in STATUS_BY_ERROR.items():
        codes[status].add(error.code)
    for status, extra in _OUTSIDE_THE_TABLE.items():
        codes[status].update(extra)
    return {status: tuple(sorted(codes[status])) for status in sorted(codes)}


def every_code() -> list[str]:
    return sorted({code for codes in codes_by_status().values() for code in codes})


# Fixed here: the standard library's phrases change between Python versions (413's did).
_PHRASES = {
    200: "OK",
    201: "Created",
    400: "Bad request",
    401: "Unauthenticated",
    403: "Forbidden",
    404: "Not found",
    409: "Conflict",
    413: "Payload too large",
    422: "Unprocessable",
    429: "Too many requests",
    503: "Unavailable",
}


def status_phrase(status: int) -> str:
    return _PHRASES.get(status) or HTTPStatus(status).phrase


def error_response(
    status: int, codes: tuple[str, ...], schemas: Mapping[str, Any]
) -> dict[str, Any]:
    """A response for ``status``: the error shape, its ``code`` narrowed to ``codes``. Spelled
    out rather than refined with ``allOf``, so that tools show the codes this status has."""
    answer, detail = schemas[ErrorAnswer.__name__], schemas[ErrorDetail.__name__]
    code = {"type": "string", "enum": list(codes)}
    narrowed_detail = {**detail, "properties": {**detail["properties"], "code": code}}
    narrowed = {**answer, "properties": {"error": narrowed_detail}}
    for schema in (narrowed, narrowed_detail):
        schema.pop("title", None)
    return {
        "description": f"{status_phrase(status)}: `{'`, `'.join(codes)}`.",
        "content": {"application/json": {"schema": narrowed}},
    }
