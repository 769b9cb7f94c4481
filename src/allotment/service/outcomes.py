"""What the request path's writes answer, as typed values.

Services return these (and the other services their own typed answers: ``catalog_views.py``,
``customer_views.py``, ``entity_views.py``, ``credit_views.py``, ``key_views.py``); the API
encodes them (``api/presenters.py``, ``api/http.py``) and nothing else does. Each is a msgspec
struct in the contract's shape, with quantities as exact numbers and instants as text, so the
SDK, the sidecar and the API description can share them. An idempotent write keeps its first
outcome (``service/idempotency.py``) and answers every replay with it, typed again, marked
``replayed``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Generic, TypeVar

import msgspec

from allotment.domain.quantities import to_json_number
from allotment.domain.reservations import Reservation, ReservationStatus
from allotment.domain.resolution import DenialReason
from allotment.domain.timefmt import format_instant
from allotment.service.answers import CheckAnswer, InstantText, Number, Quantity
from allotment.service.credit_views import GrantView

Outcome = TypeVar("Outcome")
Replayed = Annotated[
    bool,
    msgspec.Meta(
        description="True when this answer repeats the first outcome kept for its "
        "idempotency_key: nothing was applied this time."
    ),
]

_encode = msgspec.json.Encoder(decimal_format="number").encode


class UsageOutcome(msgspec.Struct, frozen=True):
    """``POST /v1/usage``: whether the report was recorded, and the check result after it.

    The contract's answer is flat (``recorded`` and ``replayed``, then the check result's
    fields): see :func:`flat_usage_json`."""

    recorded: bool
    replayed: bool
    answer: CheckAnswer


class DebitEntry(msgspec.Struct, frozen=True):
    """A ledger entry a debit wrote: ``amount`` is negative; ``grant`` null for overdraft."""

    grant: str | None
    amount: Quantity


class DebitOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """``POST /v1/customers/{id}/credits/{currency}/debits``: whether the debit was applied (or
    the reason it was refused), the pool's balance after it and the entries it wrote."""

    applied: bool
    replayed: Replayed
    access_denied_reason: DenialReason | None
    balance: Quantity
    entries: list[DebitEntry]


class ReservationOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """``POST /v1/reservations``: whether the reservation was granted (or the reason it was
    refused); a refused one has a null ``id`` and ``expires_at``."""

    id: str | None
    granted: bool
    replayed: Replayed
    access_denied_reason: DenialReason | None
    expires_at: InstantText | None
    customer: str
    feature: str
    entity: str | None
    amount: Quantity


class GrantOutcome(GrantView, frozen=True, kw_only=True):
    """``POST /v1/customers/{id}/credits/{currency}/grants`` (201): the grant, and whether this
    answer replays the first one for its ``idempotency_key``."""

    replayed: Replayed


class HeldCredits(msgspec.Struct, frozen=True):
    """The credits a reservation of a credit-priced feature holds in ``currency``."""

    currency: str
    held: Quantity


class ReservationView(msgspec.Struct, frozen=True, kw_only=True):
    """``POST /v1/reservations/{id}/commit`` and ``POST /v1/reservations/{id}/release``: the
    reservation once ended. ``committed_amount`` is null unless committed; ``credits`` null for
    a feature not priced in credits."""

    id: str
    customer: str
    feature: str
    entity: str | None
    amount: Quantity
    status: ReservationStatus
    committed_amount: Number
    credits: HeldCredits | None
    created_at: InstantText
    expires_at: InstantText
    ended_at: InstantText | None


def reservation_view(reservation: Reservation, now: datetime) -> ReservationView:
    committed = reservation.committed_amount
    currency = reservation.currency
    return ReservationView(
        id=reservation.id,
        customer=reservation.customer,
        feature=reservation.feature,
        entity=reservation.entity,
        amount=to_json_number(reservation.amount),
        status=reservation.status(now),
        committed_amount=None if committed is None else to_json_number(committed),
        credits=None
        if currency is None
        else HeldCredits(currency, to_json_number(reservation.credits)),
        created_at=format_instant(reservation.created_at),
        expires_at=format_instant(reservation.expires_at),
        ended_at=None if reservation.ended_at is None else format_instant(reservation.ended_at),
    )


@dataclass(frozen=True, slots=True)
class OutcomeRecord(Generic[Outcome]):
    """How an outcome is kept in an idempotency record, and read back as a replay."""

    store: Callable[[Outcome], bytes]
    replay: Callable[[bytes], Outcome]


# Also how a usage report's idempotency record is read back.
class UsageAnswer(CheckAnswer, frozen=True, kw_only=True):
    """``POST /v1/usage``: ``recorded`` and ``replayed``, then the check result after the write
    (``has_access`` and ``access_denied_reason`` describe this report, its ``amount`` being the
    ``requested``)."""

    recorded: bool
    replayed: Replayed


_CHECK_FIELDS = CheckAnswer.__struct_fields__
_decode_stored_usage = msgspec.json.Decoder(UsageAnswer, float_hook=Decimal).decode


RECORD_V1 = b"\x01"
"""The first byte of a record kept positionally: its outcome's fields in order, as MessagePack.
The contract's JSON, which records written earlier hold (they start with ``{``), spends most of
its bytes on field names, and every idempotent write keeps a record: usage reports for their
retention, ledger writes and reservations forever. Each layout is pinned (the ``..._FIELDS``
tuples, and a test): a change to an outcome's fields takes a new version, never a new meaning
for the positions that records already hold."""


class _PositionalUsage(CheckAnswer, frozen=True, kw_only=True, array_like=True):
    """A usage report's record, version 1: the check result's fields, then ``recorded``."""

    recorded: bool = False


USAGE_RECORD_V1_FIELDS = (
    *("customer", "feature", "entity", "has_access", "access_denied_reason", "kind"),
    *("is_unlimited", "value", "usage_limit", "current_usage", "reserved", "remaining"),
    *("requested", "enforcement", "reset_period", "usage_period_start", "usage_period_end"),
    *("source", "budgets", "credits", "is_fallback", "recorded"),
)
_encode_positional = msgspec.msgpack.Encoder(decimal_format="string").encode
_decode_positional = msgspec.msgpack.Decoder(_PositionalUsage).decode


def _store_usage(outcome: UsageOutcome) -> bytes:
    fields = (*msgspec.structs.astuple(outcome.answer), outcome.recorded)
    return RECORD_V1 + _encode_positional(fields)


def _replay_usage(stored: bytes) -> UsageOutcome:
    kept: _PositionalUsage | UsageAnswer
    if stored[:1] == RECORD_V1:
        kept = _decode_positional(stored[1:])
    else:  # made before version 1: the contract's JSON (``flat_usage_json``)
        kept = _decode_stored_usage(stored)
    answer = CheckAnswer(**{name: getattr(kept, name) for name in _CHECK_FIELDS})
    return UsageOutcome(kept.recorded, True, answer)


def flat_usage_json(outcome: UsageOutcome) -> bytes:
    """The contract's flat form, which the record keeps too (records made before outcomes were
    typed hold exactly this): ``recorded`` and ``replayed``, then the check result's fields."""
    head = b'{"recorded":%s,"replayed":%s,' % (
        b"true" if outcome.recorded else b"false",
        b"true" if outcome.replayed else b"false",
    )
    return head + _encode(outcome.answer)[1:]


USAGE_RECORD: OutcomeRecord[UsageOutcome] = OutcomeRecord(_store_usage, _replay_usage)


class _PositionalEntry(msgspec.Struct, frozen=True, array_like=True):
    grant: str | None
    amount: Quantity


class _PositionalDebit(msgspec.Struct, frozen=True, array_like=True):
    """A debit's record, version 1: ``DebitOutcome``'s fields, each entry by position too."""

    applied: bool
    replayed: bool
    access_denied_reason: DenialReason | None
    balance: Quantity
    entries: list[_PositionalEntry]


DEBIT_RECORD_V1_FIELDS = ("applied", "replayed", "access_denied_reason", "balance", "entries")
_decode_debit_json = msgspec.json.Decoder(DebitOutcome, float_hook=Decimal).decode
_decode_debit = msgspec.msgpack.Decoder(_PositionalDebit).decode


def _store_debit(outcome: DebitOutcome) -> bytes:
    entries = [(entry.grant, entry.amount) for entry in outcome.entries]
    fields = (*msgspec.structs.astuple(outcome)[:-1], entries)
    return RECORD_V1 + _encode_positional(fields)


def _replay_debit(stored: bytes) -> DebitOutcome:
    if stored[:1] != RECORD_V1:  # made before version 1: the contract's JSON
        return msgspec.structs.replace(_decode_debit_json(stored), replayed=True)
    kept = _decode_debit(stored[1:])
    return DebitOutcome(
        applied=kept.applied,
        replayed=True,
        access_denied_reason=kept.access_denied_reason,
        balance=kept.balance,
        entries=[DebitEntry(entry.grant, entry.amount) for entry in kept.entries],
    )


class _PositionalGrant(GrantOutcome, frozen=True, kw_only=True, array_like=True):
    """A grant's record, version 1: ``GrantOutcome``'s fields by position."""


class _PositionalReservation(ReservationOutcome, frozen=True, kw_only=True, array_like=True):
    """A reservation's record, version 1: ``ReservationOutcome``'s fields by position."""


GRANT_RECORD_V1_FIELDS = (
    *("id", "amount", "remaining", "category", "cost_basis", "priority", "effective_at"),
    *("expires_at", "status", "reason", "created_at", "voided_at", "replayed"),
)
RESERVATION_RECORD_V1_FIELDS = (
    *("id", "granted", "replayed", "access_denied_reason", "expires_at", "customer"),
    *("feature", "entity", "amount"),
)
Flat = TypeVar("Flat", GrantOutcome, ReservationOutcome)


def _flat_record(kind: type[Flat], positional: type[Flat]) -> OutcomeRecord[Flat]:
    """The record of an outcome whose fields are all plain values: kept by position."""
    decode_json = msgspec.json.Decoder(kind, float_hook=Decimal).decode
    decode_positional = msgspec.msgpack.Decoder(positional).decode
    names = kind.__struct_fields__

    def store(outcome: Flat) -> bytes:
        return RECORD_V1 + _encode_positional(msgspec.structs.astuple(outcome))

    def replay(stored: bytes) -> Flat:
        if stored[:1] != RECORD_V1:  # made before version 1: the contract's JSON
            return msgspec.structs.replace(decode_json(stored), replayed=True)
        kept = decode_positional(stored[1:])
        fields = {name: getattr(kept, name) for name in names}
        return kind(**{**fields, "replayed": True})

    return OutcomeRecord(store, replay)


DEBIT_RECORD: OutcomeRecord[DebitOutcome] = OutcomeRecord(_store_debit, _replay_debit)
GRANT_RECORD = _flat_record(GrantOutcome, _PositionalGrant)
RESERVATION_RECORD = _flat_record(ReservationOutcome, _PositionalReservation)
