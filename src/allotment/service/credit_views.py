"""What the credit routes read and void answer: grants, a pool's balance, its ledger, revenue.

Grants written through ``POST .../grants`` answer :class:`~allotment.service.outcomes.GrantOutcome`,
a :class:`GrantView` with ``replayed``; debits answer ``DebitOutcome`` (both in
``service/outcomes.py``).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal

import msgspec
from msgspec import Struct

from allotment.domain.catalog import CreditCategory
from allotment.domain.credits import EntryType, Grant, GrantStatus
from allotment.domain.quantities import to_json_number
from allotment.domain.timefmt import format_instant
from allotment.service.answers import InstantText, Number, Quantity
from allotment.service.ports import LedgerRecord


# Not tracked by the garbage collector (gc=False): its fields are text and numbers, which cannot
# form a cycle, and the views of a pool's grants are kept by the thousand (PoolGrantViews).
class GrantView(Struct, frozen=True, kw_only=True, gc=False):
    """``POST /v1/customers/{id}/credits/{currency}/grants/{grant}/void``, each of a pool's
    ``grants`` in ``GET /v1/customers/{id}/credits/{currency}`` (its live grants) and each
    grant of ``GET /v1/customers/{id}/credits/{currency}/grants``."""

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


class PoolGrantViews:
    """The views of the live grants of recently read pools, kept while their grants stay as
    they are: a pool read lists every live grant, and writing one out costs ten times finding
    it here. A grant is immutable (a change replaces it), so a view is kept for that very
    grant object, which the entry holds on to; only its status, which follows the clock, is
    checked on every read. At most ``limit`` views are kept, those of the pools read least
    recently going first. Used from store jobs only, which run one at a time."""

    def __init__(self, limit: int = 50_000) -> None:
        self._limit = limit
        self._held = 0
        self._pools: dict[tuple[str, str], dict[str, tuple[Grant, GrantView]]] = {}

    def views(
        self, pool: tuple[str, str], grants: Iterable[Grant], now: datetime
    ) -> list[GrantView]:
        # Changed in place, not rebuilt: a new entry for every grant on every read would make
        # the collector's oldest generation grow, and walk every object of the process, often.
        known = self._pools.pop(pool, None) or {}
        self._held -= len(known)
        views = []
        for grant in grants:
            found = known.get(grant.id)
            if found is None or found[0] is not grant:
                found = known[grant.id] = (grant, grant_view(grant, now))
            else:
                status = grant.status(now)
                if found[1].status is not status:
                    found = known[grant.id] = (
                        grant,
                        msgspec.structs.replace(found[1], status=status),
                    )
            views.append(found[1])
        if len(known) != len(views):  # grants left the pool
            known = {view.id: known[view.id] for view in views}
        if len(known) <= self._limit:
            self._pools[pool] = known
            self._held += len(known)
            while self._held > self._limit:
                oldest = next(iter(self._pools))
                self._held -= len(self._pools.pop(oldest))
        return views


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
