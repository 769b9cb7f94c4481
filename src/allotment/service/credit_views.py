"""What the credit routes read and void answer: grants, a pool's balance, its ledger, revenue.

Grants written through ``POST .../grants`` answer :class:`~allotment.service.outcomes.GrantOutcome`,
a :class:`GrantView` with ``replayed``; debits answer ``DebitOutcome`` (both in
``service/outcomes.py``).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from msgspec import Struct

from allotment.domain.catalog import CreditCategory
from allotment.domain.credits import EntryType, Grant, GrantStatus
from allotment.domain.quantities import to_json_number
from allotment.domain.timefmt import format_instant
from allotment.service.answers import InstantText, Number, Quantity
from allotment.service.ports import LedgerRecord


class GrantView(Struct, frozen=True, kw_only=True):
    """``POST /v1/customers/{id}/credits/{currency}/grants/{grant}/void``, and each of a pool's
    ``grants`` in ``GET /v1/customers/{id}/credits/{currency}``."""

    id: str
    amount: Quantity
    remaining: Quantity
    category: CreditCategory
    cost_basis: Quantity
    priority: int
    effective_at: InstantText
    expires_at: InstantText | None
    status: GrantStatus
    reason: str | None
    created_at: InstantText
    voided_at: InstantText | None


class PoolBalance(Struct, frozen=True, kw_only=True):
    """``GET /v1/customers/{id}/credits/{currency}``: ``balance`` is what the grants hold less
    the ``overdraft``, ``available`` that less what live reservations hold; a null
    ``overdraft_limit`` is an overdraft without bound."""

    balance: Quantity
    reserved: Quantity
    available: Quantity
    overdraft: Quantity
    overdraft_limit: Number
    grants: list[GrantView]


class LedgerEntryView(Struct, frozen=True, kw_only=True):
    """Each item of ``GET /v1/customers/{id}/credits/{currency}/ledger``: ``amount`` is signed,
    ``balance_after`` the pool's balance after the entry."""

    id: str
    seq: int
    type: EntryType
    grant: str | None
    amount: Quantity
    balance_after: Quantity
    idempotency_key: str | None
    entity: str | None
    feature: str | None
    at: InstantText


class Revenue(Struct, frozen=True, kw_only=True):
    """``GET /v1/customers/{id}/credits/{currency}/revenue``: remaining, consumed and expired
    credits, each times their grant's cost basis."""

    deferred: Decimal
    recognized: Decimal
    breakage: Decimal


def grant_view(grant: Grant, now: datetime) -> GrantView:
    return GrantView(
        id=grant.id,
        amount=to_json_number(grant.amount),
        remaining=to_json_number(grant.remaining),
        category=grant.category,
        cost_basis=to_json_number(grant.cost_basis),
        priority=grant.priority,
        effective_at=format_instant(grant.effective_at),
        expires_at=_instant(grant.expires_at),
        status=grant.status(now),
        reason=grant.reason,
        created_at=format_instant(grant.created_at),
        voided_at=_instant(grant.voided_at),
    )


def ledger_entry_view(record: LedgerRecord) -> LedgerEntryView:
    entry = record.entry
    return LedgerEntryView(
        id=record.id,
        seq=record.seq,
        type=entry.type,
        grant=entry.grant,
        amount=to_json_number(entry.amount),
        balance_after=to_json_number(entry.balance_after),
        idempotency_key=entry.idempotency_key,
        entity=entry.entity,
        feature=entry.feature,
        at=format_instant(entry.at),
    )


def _instant(instant: datetime | None) -> str | None:
    return None if instant is None else format_instant(instant)
