"""The change log's record format: each change as the JSON payload an adapter stores.

Adapters store ``(seq, kind, customer, written_at, payload)`` rows and never look inside the
payload; this module is the one place that turns a change into its payload and back, so every
adapter, and every process reading another's changes, agrees on it. Instants are epoch
microseconds and quantities micro-units: integers, exact both ways.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

import msgspec

from allotment.domain.changes import (
    ApiKeyChanged,
    CatalogChanged,
    Change,
    ChangeKind,
    CreditsChanged,
    CustomerChanged,
    EventRecorded,
    HoldEnded,
    HoldPlaced,
    Spend,
    UsageRecorded,
)
from allotment.domain.customers import ApiKey, Scope
from allotment.domain.events import Event, EventType
from allotment.domain.reservations import Reservation, ReservationStatus
from allotment.domain.timefmt import from_epoch_micros, to_epoch_micros

_encode = msgspec.json.Encoder(decimal_format="number").encode
_decode = msgspec.json.Decoder(float_hook=Decimal).decode


def encode_change(change: Change) -> bytes:
    """The payload stored for ``change``."""
    return _encode(_fields(change))


def decode_change(kind: str, payload: bytes | str) -> Change:
    """The change a stored row holds; ``ValueError`` for a kind this version does not know."""
    try:
        build = _DECODERS[ChangeKind(kind)]
    except ValueError as error:
        raise ValueError(f"unknown change kind {kind!r} in the change log") from error
    return build(_decode(payload))


def _instant(micros: int | None) -> datetime | None:
    return None if micros is None else from_epoch_micros(micros)


def _micros(instant: datetime | None) -> int | None:
    return None if instant is None else to_epoch_micros(instant)


def _reservation_fields(r: Reservation) -> dict[str, Any]:
    return {
        "id": r.id,
        "customer": r.customer,
        "feature": r.feature,
        "entity": r.entity,
        "amount": r.amount,
        "currency": r.currency,
        "credits": r.credits,
        "created_at": _micros(r.created_at),
        "expires_at": _micros(r.expires_at),
        "ended_at": _micros(r.ended_at),
        "ended_as": None if r.ended_as is None else r.ended_as.value,
        "committed_amount": r.committed_amount,
        "entity_path": list(r.entity_path),
    }


def _reservation(d: Mapping[str, Any]) -> Reservation:
    return Reservation(
        id=d["id"],
        customer=d["customer"],
        feature=d["feature"],
        entity=d["entity"],
        amount=d["amount"],
        currency=d["currency"],
        credits=d["credits"],
        created_at=from_epoch_micros(d["created_at"]),
        expires_at=from_epoch_micros(d["expires_at"]),
        ended_at=_instant(d["ended_at"]),
        ended_as=None if d["ended_as"] is None else ReservationStatus(d["ended_as"]),
        committed_amount=d["committed_amount"],
        entity_path=tuple(d["entity_path"]),
    )


def _fields(change: Change) -> dict[str, Any]:
    match change:
        case CatalogChanged(object_kind, object_id, document):
            return {"object_kind": object_kind, "id": object_id, "document": document}
        case CustomerChanged(customer, None):
            return {"customer": customer}
        case CustomerChanged(customer, entity):
            return {"customer": customer, "entity": entity}
        case UsageRecorded(customer, feature, entity, amount, timestamp, path):
            return {
                "customer": customer,
                "feature": feature,
                "entity": entity,
                "amount": amount,
                "timestamp": to_epoch_micros(timestamp),
                "entity_path": list(path),
            }
        case CreditsChanged(customer, currency, balance, overdraft_limit, valid_until, spends):
            return {
                "customer": customer,
                "currency": currency,
                "balance": balance,
                "overdraft_limit": overdraft_limit,
                "valid_until": _micros(valid_until),
                "spends": [[list(s.entity_path), to_epoch_micros(s.at), s.credits] for s in spends],
            }
        case HoldPlaced(reservation):
            return {"reservation": _reservation_fields(reservation)}
        case HoldEnded(customer, reservation_id):
            return {"customer": customer, "reservation": reservation_id}
        case ApiKeyChanged(key):
            return {
                "id": key.id,
                "name": key.name,
                "scope": key.scope.value,
                "customer": key.customer,
                "key_hash": key.key_hash,
                "created_at": to_epoch_micros(key.created_at),
                "revoked_at": _micros(key.revoked_at),
            }
        case EventRecorded(event):
            return {
                "id": event.id,
                "type": event.type.value,
                "customer": event.customer,
                "created_at": to_epoch_micros(event.created_at),
                "data": msgspec.Raw(event.data),
            }
    raise AssertionError(f"no record format for {change!r}")


_DECODERS: dict[ChangeKind, Callable[[dict[str, Any]], Change]] = {
    ChangeKind.CATALOG: lambda d: CatalogChanged(d["object_kind"], d["id"], d["document"]),
    ChangeKind.CUSTOMER: lambda d: CustomerChanged(d["customer"], d.get("entity")),
    ChangeKind.USAGE: lambda d: UsageRecorded(
        d["customer"],
        d["feature"],
        d["entity"],
        d["amount"],
        from_epoch_micros(d["timestamp"]),
        tuple(d["entity_path"]),
    ),
    ChangeKind.CREDITS: lambda d: CreditsChanged(
        d["customer"],
        d["currency"],
        d["balance"],
        d["overdraft_limit"],
        _instant(d["valid_until"]),
        tuple(Spend(tuple(path), from_epoch_micros(at), n) for path, at, n in d["spends"]),
    ),
    ChangeKind.HOLD_PLACED: lambda d: HoldPlaced(_reservation(d["reservation"])),
    ChangeKind.HOLD_ENDED: lambda d: HoldEnded(d["customer"], d["reservation"]),
    ChangeKind.EVENT: lambda d: EventRecorded(
        Event(
            id=d["id"],
            type=EventType(d["type"]),
            customer=d["customer"],
            created_at=from_epoch_micros(d["created_at"]),
            data=_encode(d["data"]),
        )
    ),
    ChangeKind.API_KEY: lambda d: ApiKeyChanged(
        ApiKey(
            id=d["id"],
            name=d["name"],
            scope=Scope(d["scope"]),
            customer=d["customer"],
            key_hash=d["key_hash"],
            created_at=from_epoch_micros(d["created_at"]),
            revoked_at=_instant(d["revoked_at"]),
        )
    ),
}
