"""Idempotent request-path writes: the first outcome is stored whatever it was, and replayed.

A key is scoped to the customer and the route. A replay with the same payload answers the
stored response byte for byte, with ``"replayed": true``, and applies nothing; the same key with
another payload is ``idempotency_conflict``. Responses are never decoded and re-encoded, so
exact numbers come back exactly as they went out.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime

import msgspec

from allotment.domain.errors import IdempotencyConflict
from allotment.service.ports import StoredOutcome, UnitOfWork

_FIRST = b'"replayed":false'
_REPLAY = b'"replayed":true'
_encode = msgspec.json.Encoder(decimal_format="number").encode


def fingerprint(*parts: object) -> str:
    """What must match for a reuse of a key to be a replay rather than a conflict."""
    return hashlib.sha256(_encode([str(part) for part in parts])).hexdigest()


def replay(uow: UnitOfWork, customer: str, route: str, key: str, payload: str) -> bytes | None:
    """The stored answer marked as a replay, None for a new key, or a conflict."""
    stored = uow.outcomes.find(customer, route, key)
    if stored is None:
        return None
    if stored.fingerprint != payload:
        raise IdempotencyConflict(
            "idempotency_key was already used with a different payload.",
            {"idempotency_key": key},
        )
    if _FIRST not in stored.response:
        raise AssertionError("a stored answer must say replayed: false")
    return stored.response.replace(_FIRST, _REPLAY, 1)


def once(
    uow: UnitOfWork,
    customer: str,
    route: str,
    key: str,
    payload: str,
    at: datetime,
    answer: Callable[[], bytes],
) -> bytes:
    """The stored answer to ``key`` marked as a replay, or ``answer()`` remembered as the first.

    ``answer`` runs only for a new key, inside the same job: its writes and the record of its
    answer commit together, or neither does.
    """
    replayed = replay(uow, customer, route, key, payload)
    if replayed is not None:
        return replayed
    response = answer()
    remember(uow, customer, route, key, payload, response, at)
    return response


def remember(
    uow: UnitOfWork,
    customer: str,
    route: str,
    key: str,
    payload: str,
    response: bytes,
    now: datetime,
) -> None:
    """Store the first answer to ``key``; it must contain ``"replayed":false``."""
    uow.outcomes.save(customer, route, key, StoredOutcome(payload, response), now)
