"""Credits: pools of grants, debits with overdraft, expiry, voids and revenue.

A :class:`Pool` is one (customer, currency): its grants, its overdraft, and the ledger entries
that each change appends. Everything is pure: methods take ``now`` and return or record entries;
the service stores them. The entries are the truth and :func:`replay` rebuilds every projection
(remaining per grant, overdraft, balance, revenue) from them, which the tests compare with what
is stored. Grants and burn order are in ``grants.py``, entries and their replay in
``entries.py``, revenue in ``revenue.py`` (all importable from here); the orders a pool keeps
so that its work follows what changes rather than its size, in ``pool_index.py``.

Grants enter the ledger when they take effect and leave it when they expire, each at its own
instant on the clock: :meth:`Pool.settle` writes every such entry that is due, in time order,
before anything else touches the pool, so figures are right at any time whether or not anything
ran in between. Amounts are micro-credits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime

from allotment.domain.entries import NO_CONTEXT, Entry, EntryContext, EntryType, Replayed, replay
from allotment.domain.grants import Grant, GrantStatus, burn_key
from allotment.domain.pool_index import LEAVES, BurnQueue, DueQueue
from allotment.domain.quantities import MAX_ABS_MICROS, MAX_COUNTER, Micros
from allotment.domain.revenue import (
    Revenue,
    RevenueTotals,
    money_per_credit,
    revenue,
    revenue_totals,
)

__all__ = [
    "MAX_GRANTED",
    "NO_CONTEXT",
    "RECURRING_ROOM",
    "Entry",
    "EntryContext",
    "EntryType",
    "Grant",
    "GrantBook",
    "GrantStatus",
    "Pool",
    "Replayed",
    "Revenue",
    "RevenueTotals",
    "burn_key",
    "money_per_credit",
    "replay",
    "revenue",
    "revenue_totals",
]


RECURRING_ROOM: Micros = MAX_ABS_MICROS
"""What the subscriptions of one customer may grant per period together, in one currency,
exclusive: a pool keeps this much room for the recurring blocks minted when it is first read in
a period, so that minting them never takes a figure past what a counter holds."""

MAX_GRANTED: Micros = MAX_COUNTER - RECURRING_ROOM
"""The most a pool's grants (live and scheduled) may hold together when a grant is made."""


class GrantBook(dict[str, Grant]):
    """A pool's grants by id, in the order they joined it. Writing one (``grants[id] = grant``)
    goes through the pool, which keeps its figures and indexes in step; read it as a dict."""

    __slots__ = ("_pool",)

    def __init__(self, pool: Pool) -> None:
        super().__init__()
        self._pool = pool

    def __setitem__(self, grant_id: str, grant: Grant) -> None:
        if grant_id != grant.id:
            raise ValueError(f"grant {grant.id} written under the id {grant_id}")
        self._pool._put(grant)

    def __delitem__(self, grant_id: str) -> None:
        self._pool._release(grant_id)


def _held(grant: Grant) -> Micros:
    """What ``grant`` adds to the balance: its remaining while it is in the ledger."""
    if grant.credited and not grant.expired and grant.voided_at is None:
        return grant.remaining
    return 0


def _promised(grant: Grant) -> Micros:
    """What ``grant`` adds to what the pool holds and will hold once scheduled grants enter."""
    return grant.remaining if grant.credited else grant.amount


class Pool:
    """One (customer, currency): its grants, overdraft and revenue, and the entries written
    since it was loaded or last stored.

    Every figure is kept in step as entries are written (the balance, what the grants hold and
    will hold, revenue), and so are the two orders of ``pool_index``: a debit, a settle and a
    store cost what they touch, not the size of the pool. An adapter may keep a pool from one
    job to the next: :meth:`stored` tells it what was stored and lets the ended grants go.
    """

    __slots__ = (
        "_breakage",
        "_burn",
        "_changed",
        "_contexts",
        "_deferred",
        "_due",
        "_held",
        "_promised",
        "_recognized",
        "burn_order",
        "entries",
        "grants",
        "overdraft",
    )

    def __init__(
        self,
        grants: Mapping[str, Grant] | None = None,
        overdraft: Micros = 0,
        entries: list[Entry] | None = None,
        burn_order: Sequence[str] = (),
        revenue: RevenueTotals | None = None,
    ) -> None:
        self.grants = GrantBook(self)
        self.overdraft = overdraft
        self.entries: list[Entry] = [] if entries is None else entries
        self.burn_order = burn_order  # the currency's, for grants that enter at one instant
        # The request that made a grant, for its grant entry when it enters the ledger in the
        # same job (a grant that enters later, in another job, enters without one).
        self._contexts: dict[str, EntryContext] = {}
        self._changed: dict[str, None] = {}  # grants written since the pool was stored
        self._held = self._promised = 0
        for grant in (grants or {}).values():
            dict.__setitem__(self.grants, grant.id, grant)
            self._held += _held(grant)
            self._promised += _promised(grant)
        self._due = DueQueue(self.grants.values())
        self._burn: BurnQueue | None = None  # built by the first debit, for its burn order
        totals = revenue or RevenueTotals()
        self._deferred = totals.deferred
        self._recognized = totals.recognized
        self._breakage = totals.breakage

    # ---------------------------------------------------------------- figures

    @property
    def balance(self) -> Micros:
        """Σ remaining of the grants in the ledger, minus the overdraft."""
        return self._held - self.overdraft

    @property
    def revenue(self) -> RevenueTotals:
        return RevenueTotals(self._deferred, self._recognized, self._breakage)

    def held_and_scheduled(self) -> Micros:
        """What the grants hold, with what the scheduled ones will hold once they take effect."""
        return self._promised

    def available(self, reserved: Micros) -> Micros:
        return self.balance - reserved

    def allows(self, amount: Micros, reserved: Micros, overdraft_limit: Micros | None) -> bool:
        """Whether a hard decision lets ``amount`` go: available may fall to -limit, no further."""
        return overdraft_limit is None or self.available(reserved) - amount >= -overdraft_limit

    def horizon(self, now: datetime) -> datetime | None:
        """The first instant after ``now`` at which a grant enters or leaves by itself."""
        first = self._due.first(self.grants)
        if first is None:
            return None
        instant, step, grant_id = first
        # Settled by now, every item left is later than now, and a grant enters when it takes
        # effect (it was made before): the first item is the answer.
        if instant > now and (step == LEAVES or self.grants[grant_id].created_at <= instant):
            return instant
        return self._horizon_of_every_grant(now)

    def _horizon_of_every_grant(self, now: datetime) -> datetime | None:
        """``horizon`` for a pool not settled by ``now``, from every grant."""
        instants = []
        for grant in self.grants.values():
            if grant.voided_at is not None or grant.expired:
                continue
            if not grant.credited:
                instants.append(max(grant.effective_at, grant.created_at))
            if grant.expires_at is not None:
                instants.append(grant.expires_at)
        future = [instant for instant in instants if instant > now]
        return min(future) if future else None

    # ---------------------------------------------------------------- what an adapter stores

    @property
    def pending(self) -> bool:
        """Whether the pool holds entries or grant changes not yet stored."""
        return bool(self.entries or self._changed)

    def changed_grants(self) -> list[Grant]:
        """The grants written since the pool was loaded or last stored, new ones included, in
        the order they were first written."""
        grants = self.grants
        return [grants[grant_id] for grant_id in self._changed if grant_id in grants]

    def stored(self) -> None:
        """The adapter stored the entries and the changed grants: forget them, and let the
        grants that ended leave the pool (they stay in the ledger and the adapter's table)."""
        grants = self.grants
        for grant_id in self._changed:
            grant = grants.get(grant_id)
            if grant is not None and grant.ended:
                self._release(grant_id)
        self._changed.clear()
        self.entries.clear()
        self._contexts.clear()
        self._due.compact(grants)

    # ---------------------------------------------------------------- keeping it in step

    def _put(self, grant: Grant) -> None:
        grants = self.grants
        old = grants.get(grant.id)
        dict.__setitem__(grants, grant.id, grant)
        self._changed[grant.id] = None
        if old is not None:
            self._held -= _held(old)
            self._promised -= _promised(old)
        self._held += _held(grant)
        self._promised += _promised(grant)
        self._due.update(old, grant)
        if self._burn is not None:
            self._burn.update(old, grant)

    def _release(self, grant_id: str) -> None:
        grant = dict.pop(self.grants, grant_id)
        self._held -= _held(grant)
        self._promised -= _promised(grant)
        self._contexts.pop(grant_id, None)
        if self._burn is not None:
            self._burn.forget(grant_id)

    def _write(
        self,
        kind: EntryType,
        grant_id: str | None,
        amount: Micros,
        at: datetime,
        context: EntryContext = NO_CONTEXT,
    ) -> None:
        if grant_id is None:
            self.overdraft -= amount
        else:
            grant = self.grants[grant_id]
            self._put(replace(grant, remaining=grant.remaining + amount))
            # Revenue follows each entry on a grant: what it holds is deferred, what a debit
            # takes is recognized, what expires is breakage (a void takes it out of all three).
            money = grant.cost_basis * amount
            self._deferred += money
            if kind is EntryType.DEBIT:
                self._recognized -= money
            elif kind is EntryType.EXPIRY:
                self._breakage -= money
        self.entries.append(
            Entry(
                kind,
                grant_id,
                amount,
                self.balance,
                at,
                context.idempotency_key,
                context.entity,
                context.feature,
                context.entity_path,
            )
        )

    # ---------------------------------------------------------------- time

    def settle(self, now: datetime) -> None:
        """Write every grant entry and expiry entry that is due by ``now``, in time order."""
        grants, order = self.grants, self.burn_order
        due: dict[tuple[int, str], tuple[datetime, int, tuple[object, ...], str]] = {}
        for instant, step, grant_id in self._due.due(now, grants):
            grant = grants[grant_id]
            # A grant made with a past effective_at enters the ledger when it was made, so that
            # it never pays back an overdraft from before it existed.
            at = instant if step == LEAVES else max(grant.effective_at, grant.created_at)
            # Grants due at the same instant enter in burn order: the one that burns first
            # also pays back an overdraft first.
            due[step, grant_id] = (at, step, burn_key(grant, order), grant_id)
        for at, step, _, grant_id in sorted(due.values()):
            grant = grants[grant_id]
            if grant.expired:
                continue  # expired before it could enter: it never does
            if step == LEAVES:
                self._expire(grant_id, at)
            elif not grant.credited:
                self._credit(grant_id, at)

    def _credit(self, grant_id: str, at: datetime) -> None:
        grant = self.grants[grant_id]
        self._put(replace(grant, credited=True))
        self._write(
            EntryType.GRANT, grant_id, grant.amount, at, self._contexts.get(grant_id, NO_CONTEXT)
        )
        # A new grant first pays back the overdraft: a debit on the grant and an adjustment
        # without one, which leave the pool's balance as it was.
        payback = min(self.overdraft, grant.amount)
        if payback > 0:
            self._write(EntryType.DEBIT, grant_id, -payback, at)
            self._write(EntryType.ADJUSTMENT, None, payback, at)

    def _expire(self, grant_id: str, at: datetime) -> None:
        grant = self.grants[grant_id]
        remaining = grant.remaining if grant.credited else 0
        self._put(replace(grant, expired=True, credited=True))
        if remaining > 0:
            self._write(EntryType.EXPIRY, grant_id, -remaining, at)

    # ---------------------------------------------------------------- changes

    def include(self, grant: Grant, context: EntryContext = NO_CONTEXT) -> None:
        """Add a grant without settling: for many at once, then one :meth:`settle`; or one
        that ended, read back to be voided."""
        self._put(grant)
        self._contexts[grant.id] = context

    def add_grant(self, grant: Grant, now: datetime, context: EntryContext = NO_CONTEXT) -> None:
        """Add a new grant; it enters the ledger now, or when it takes effect."""
        self.include(grant, context)
        self.settle(now)

    def void(self, grant_id: str, now: datetime) -> None:
        """Take the grant's remaining out of the pool."""
        grant = self.grants[grant_id]
        remaining = grant.remaining if grant.credited else 0
        self._put(replace(grant, voided_at=now, credited=True))
        if remaining > 0:
            self._write(EntryType.VOID, grant_id, -remaining, now)

    def spendable(self, order: Sequence[str], now: datetime) -> list[Grant]:
        """Every grant a debit may draw from at ``now``, in burn order (what :meth:`debit`
        follows, one grant at a time)."""
        live = (g for g in self.grants.values() if g.status(now) is GrantStatus.ACTIVE)
        return sorted(live, key=lambda g: burn_key(g, order))

    def debit(
        self,
        amount: Micros,
        order: Sequence[str],
        now: datetime,
        context: EntryContext = NO_CONTEXT,
    ) -> list[Entry]:
        """Draw ``amount`` across the grants in burn order, the rest from the overdraft."""
        start = len(self.entries)
        burn = self._burn_queue(order)
        left = amount
        try:
            while left > 0:
                grant_id = burn.first()
                if grant_id is None:
                    break
                grant = self.grants[grant_id]
                if grant.effective_at > now or (
                    grant.expires_at is not None and grant.expires_at <= now
                ):
                    burn.set_aside()  # not spendable at this instant
                    continue
                taken = min(grant.remaining, left)
                # A grant drained here stops being spendable: the queue drops it.
                self._write(EntryType.DEBIT, grant_id, -taken, now, context)
                left -= taken
        finally:
            burn.restore()
        if left > 0:
            self._write(EntryType.DEBIT, None, -left, now, context)
        return self.entries[start:]

    def _burn_queue(self, order: Sequence[str]) -> BurnQueue:
        key = tuple(order)
        if self._burn is None or self._burn.order != key:
            self._burn = BurnQueue(key, self.grants.values())
        return self._burn
