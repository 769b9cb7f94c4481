"""What the request path's writes answer, as typed values.

Services return these; the API encodes them (``api/presenters.py``) and nothing else does. Each
is a msgspec struct in the contract's shape, with quantities as exact numbers and instants as
text, so the SDK, the sidecar and the API description can share them. An idempotent write keeps
its first outcome (``service/idempotency.py``) and answers every replay with it, typed again,
marked ``replayed``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Generic, TypeVar

import msgspec

from allotment.domain.resolution import DenialReason
from allotment.service.answers import CheckAnswer, Number

Outcome = TypeVar("Outcome")

_encode = msgspec.json.Encoder(decimal_format="number").encode


class UsageOutcome(msgspec.Struct, frozen=True):
    """``POST /v1/usage``: whether the report was recorded, and the check result after it."""

    recorded: bool
    replayed: bool
    answer: CheckAnswer


class DebitEntry(msgspec.Struct, frozen=True):
    grant: str | None
    amount: Number


class DebitOutcome(msgspec.Struct, frozen=True, kw_only=True):
    applied: bool
    replayed: bool
    access_denied_reason: DenialReason | None
    balance: Number
    entries: list[DebitEntry]


class ReservationOutcome(msgspec.Struct, frozen=True, kw_only=True):
    id: str | None
    granted: bool
    replayed: bool
    access_denied_reason: DenialReason | None
    expires_at: str | None
    customer: str
    feature: str
    entity: str | None
    amount: Number


class GrantOutcome(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    amount: Number
    remaining: Number
    category: str
    cost_basis: Number
    priority: int
    effective_at: str
    expires_at: str | None
    status: str
    reason: str | None
    created_at: str
    voided_at: str | None
    replayed: bool


@dataclass(frozen=True, slots=True)
class OutcomeRecord(Generic[Outcome]):
    """How an outcome is kept in an idempotency record, and read back as a replay."""

    store: Callable[[Outcome], bytes]
    replay: Callable[[bytes], Outcome]


def struct_record(kind: type[Outcome]) -> OutcomeRecord[Outcome]:
    """Kept as its JSON; read back with ``replayed`` set."""
    decoder = msgspec.json.Decoder(kind, float_hook=Decimal)

    def replay(stored: bytes) -> Outcome:
        return msgspec.structs.replace(decoder.decode(stored), replayed=True)  # type: ignore[type-var]

    return OutcomeRecord(_encode, replay)


class _StoredUsage(CheckAnswer, frozen=True, kw_only=True):
    recorded: bool
    replayed: bool


_CHECK_FIELDS = CheckAnswer.__struct_fields__
_decode_stored_usage = msgspec.json.Decoder(_StoredUsage, float_hook=Decimal).decode


def _store_usage(outcome: UsageOutcome) -> bytes:
    return flat_usage_json(outcome)


def _replay_usage(stored: bytes) -> UsageOutcome:
    flat = _decode_stored_usage(stored)
    answer = CheckAnswer(**{name: getattr(flat, name) for name in _CHECK_FIELDS})
    return UsageOutcome(flat.recorded, True, answer)


def flat_usage_json(outcome: UsageOutcome) -> bytes:
    """The contract's flat form, which the record keeps too (records made before outcomes were
    typed hold exactly this): ``recorded`` and ``replayed``, then the check result's fields."""
    head = b'{"recorded":%s,"replayed":%s,' % (
        b"true" if outcome.recorded else b"false",
        b"true" if outcome.replayed else b"false",
    )
    return head + _encode(outcome.answer)[1:]


USAGE_RECORD: OutcomeRecord[UsageOutcome] = OutcomeRecord(_store_usage, _replay_usage)
DEBIT_RECORD = struct_record(DebitOutcome)
RESERVATION_RECORD = struct_record(ReservationOutcome)
GRANT_RECORD = struct_record(GrantOutcome)
