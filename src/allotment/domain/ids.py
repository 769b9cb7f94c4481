"""Identifier rules shared by every client-chosen id."""

from __future__ import annotations

import re

from allotment.domain.errors import InvalidRequest

CLIENT_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
IDEMPOTENCY_KEY_MAX_LENGTH = 255


def is_client_id(value: str) -> bool:
    return CLIENT_ID_PATTERN.fullmatch(value) is not None


def require_client_id(value: str, field: str) -> str:
    if not is_client_id(value):
        raise InvalidRequest(
            f"{field} must match ^[A-Za-z0-9][A-Za-z0-9._:-]{{0,127}}$.",
            {"field": field},
        )
    return value


def require_idempotency_key(value: str) -> str:
    if not 0 < len(value) <= IDEMPOTENCY_KEY_MAX_LENGTH:
        raise InvalidRequest(
            f"idempotency_key must hold 1 to {IDEMPOTENCY_KEY_MAX_LENGTH} characters.",
            {"field": "idempotency_key"},
        )
    return value
