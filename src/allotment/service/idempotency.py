"""Idempotent request-path writes: the first outcome is stored whatever it was, and replayed.

A key is scoped to the customer and the route. A replay with the same payload answers the
stored outcome, typed again and marked ``replayed``, and applies nothing; the same key with
another payload is ``idempotency_conflict``. Outcomes carry exact numbers, which their record
keeps exactly (``service/outcomes.py``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

import msgspec

from allotment.domain.errors import IdempotencyConflict
from allotment.service.outcomes import OutcomeRecord
from allotment.service.ports import FINGERPRINT_BYTES, StoredOutcome, UnitOfWork

Outcome = TypeVar("Outcome")
_encode = msgspec.json.Encoder(decimal_format="number").encode


def fingerprint(*parts: object) -> bytes:
    """What must match for a reuse of a key to be a replay rather than a conflict: the first
    16 bytes of the SHA-256 of the payload's parts. A record keeps it for as long as its key,
    forever for ledger writes, and 128 bits tell one payload from another as surely as 256
    (records written as 64 hexadecimal characters are read as their first 16 bytes)."""
    digest = hashlib.sha256(_encode([str(part) for part in parts])).digest()
    return digest[:FINGERPRINT_BYTES]


def once(
    uow: UnitOfWork,
    customer: str,
    route: str,
    key: str,
    payload: bytes,
    at: datetime,
    answer: Callable[[], Outcome],
    record: OutcomeRecord[Outcome],
) -> Outcome:
    """The first outcome for ``key`` replayed, or ``answer()`` remembered as the first.

    ``answer`` runs only for a new key, inside the same job: its writes and the record of its
    outcome commit together, or neither does.
    """
    stored = uow.outcomes.find(customer, route, key)
    if stored is not None:
        if stored.fingerprint != payload:
            raise IdempotencyConflict(
                "idempotency_key was already used with a different payload.",
                {"idempotency_key": key},
            )
        return record.replay(stored.response)
    outcome = answer()
    uow.outcomes.save(customer, route, key, StoredOutcome(payload, record.store(outcome)), at)
    return outcome
