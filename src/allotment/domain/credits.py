"""Credits: grants (blocks), burn order, debits with overdraft, expiry, voids and revenue.

A :class:`Pool` is one (customer, currency): its grants, its overdraft, and the ledger entries
that each change appends. Everything is pure: methods take ``now`` and return or record entries;
the service stores them. The entries are the truth and :func:`replay` rebuilds every projection
(remaining per grant, overdraft, balance) from them, which the tests compare with what is stored.

Grants enter the ledger when they take effect and leave it when they expire, each at its own
instant on the clock: :meth:`Pool.settle` writes every such entry that is due, in time order,
before anything else touches the pool, so figures are right at any time whether or not anything
ran in between. Amounts are micro-credits.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal, localcontext
from enum import StrEnum

from allotment.domain.catalog import CreditCategory
from allotment.domain.quantities import MAX_ABS_MICROS, MAX_COUNTER, MICROS_PER_UNIT, Micros


class EntryType(StrEnum):
    """What wrote a ledger entry."""

    GRANT = "grant"
    DEBIT = "debit"
    EXPIRY = "expiry"
    VOID = "void"
    ADJUSTMENT = "adjustment"


class GrantStatus(StrEnum):
    """Where a grant stands at the time of the answer."""

    ACTIVE = "active"
    SCHEDULED = "scheduled"
    DEPLETED = "depleted"
    EXPIRED = "expired"
    VOIDED = "voided"


@dataclass(frozen=True, slots=True)
class Grant:
    id: str
    amount: Micros
    category: CreditCategory
    cost_basis: Micros  # money per credit, in micro-units
    priority: int
    effective_at: datetime
    expires_at: datetime | None
    created_at: datetime
    remaining: Micros = 0  # projection of its entries
    credited: bool = False  # its grant entry is written
    expired: bool = False  # its expiry entry is written
    voided_at: datetime | None = None
    reason: str | None = None

    def status(self, now: datetime) -> GrantStatus:
        if self.voided_at is not None:
            return GrantStatus.VOIDED
        if self.expired or (self.expires_at is not None and self.expires_at <= now):
            return GrantStatus.EXPIRED
        if self.effective_at > now:
            return GrantStatus.SCHEDULED
        if self.remaining <= 0:
            return GrantStatus.DEPLETED
        return GrantStatus.ACTIVE


@dataclass(frozen=True, slots=True)
class Entry:
    """A ledger entry as the pool writes it; the store adds its id, sequence and context."""

    type: EntryType
    grant: str | None
    amount: Micros  # signed: grants and adjustments positive, the rest negative
    balance_after: Micros
    at: datetime
    idempotency_key: str | None = None
    entity: str | None = None
    feature: str | None = None
    # Who a debit counts for: the entity and its ancestors when it was written, nearest first.
    entity_path: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class EntryContext:
    """What a request adds to the entries it writes."""

    idempotency_key: str | None = None
    entity: str | None = None
    feature: str | None = None
    entity_path: tuple[str, ...] = ()


NO_CONTEXT = EntryContext()

RECURRING_ROOM: Micros = MAX_ABS_MICROS
"""What the subscriptions of one customer may grant per period together, in one currency,
exclusive: a pool keeps this much room for the recurring blocks minted when it is first read in
a period, so that minting them never takes a figure past what a counter holds."""

MAX_GRANTED: Micros = MAX_COUNTER - RECURRING_ROOM
"""The most a pool's grants (live and scheduled) may hold together when a grant is made."""


_NEVER = datetime.min.replace(tzinfo=UTC)


def burn_key(grant: Grant, order: Sequence[str]) -> tuple[object, ...]:
    """The sort key of ``grant`` under a burn order; the grant id breaks the last tie."""
    parts: list[object] = []
    for key in order:
        if key == "priority":
            parts.append(grant.priority)
        elif key == "expiry":
            expires = grant.expires_at
            # Never-expiring grants come last and tie with each other: later keys decide.
            parts.append((1, _NEVER) if expires is None else (0, expires))
        elif key == "promotional_first":
            parts.append(0 if grant.category is CreditCategory.PROMOTIONAL else 1)
        elif key == "paid_first":
            parts.append(0 if grant.category is CreditCategory.PAID else 1)
        elif key == "created":
            parts.append(grant.created_at)
        elif key == "cheapest_first":
            parts.append(grant.cost_basis)
        elif key == "costliest_first":
            parts.append(-grant.cost_basis)
    parts.append(grant.id)
    return tuple(parts)


@dataclass(slots=True)
class Pool:
    grants: dict[str, Grant] = field(default_factory=dict)
    overdraft: Micros = 0
    entries: list[Entry] = field(default_factory=list)  # written since the pool was loaded
    burn_order: Sequence[str] = ()  # the currency's, for grants that enter at one instant
    # The request that made a grant, for its grant entry when it enters the ledger now.
    _contexts: dict[str, EntryContext] = field(default_factory=dict)

    @property
    def balance(self) -> Micros:
        """Σ remaining of the grants in the ledger, minus the overdraft."""
        live = sum(
            g.remaining
            for g in self.grants.values()
            if g.credited and not g.expired and not g.voided_at
        )
        return live - self.overdraft

    def horizon(self, now: datetime) -> datetime | None:
        """The first instant after ``now`` at which a grant enters or leaves by itself."""
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

    def changed_grants(self, before: Mapping[str, Grant]) -> list[Grant]:
        return [g for gid, g in self.grants.items() if before.get(gid) != g]

    def _write(
        self,
        kind: EntryType,
        grant: str | None,
        amount: Micros,
        at: datetime,
        context: EntryContext = NO_CONTEXT,
    ) -> None:
        if grant is None:
            self.overdraft -= amount
        else:
            self.grants[grant] = replace(
                self.grants[grant], remaining=self.grants[grant].remaining + amount
            )
        self.entries.append(
            Entry(
                kind,
                grant,
                amount,
                self.balance,
                at,
                context.idempotency_key,
                context.entity,
                context.feature,
                context.entity_path,
            )
        )

    def settle(self, now: datetime) -> None:
        """Write every grant entry and expiry entry that is due by ``now``, in time order."""
        due: list[tuple[datetime, int, tuple[object, ...], str]] = []
        for grant in self.grants.values():
            if grant.voided_at is not None:
                continue
            # Grants due at the same instant enter in burn order: the one that burns first
            # also pays back an overdraft first.
            rank = burn_key(grant, self.burn_order)
            if not grant.credited and grant.effective_at <= now:
                # A grant made with a past effective_at enters the ledger when it was made, so
                # that it never pays back an overdraft from before it existed.
                due.append((max(grant.effective_at, grant.created_at), 1, rank, grant.id))
            if not grant.expired and grant.expires_at is not None and grant.expires_at <= now:
                # At one instant, blocks that end leave before blocks that begin arrive.
                due.append((grant.expires_at, 0, rank, grant.id))
        for at, step, _, grant_id in sorted(due):
            grant = self.grants[grant_id]
            if grant.expired:
                continue  # expired before it could enter: it never does
            if step == 0:
                self._expire(grant_id, at)
            else:
                self._credit(grant_id, at)

    def _credit(self, grant_id: str, at: datetime) -> None:
        grant = self.grants[grant_id]
        self.grants[grant_id] = replace(grant, credited=True)
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
        self.grants[grant_id] = replace(grant, expired=True, credited=True)
        if remaining > 0:
            self._write(EntryType.EXPIRY, grant_id, -remaining, at)

    def include(self, grant: Grant, context: EntryContext = NO_CONTEXT) -> None:
        """Add a grant without settling: for many at once, then one :meth:`settle`."""
        self.grants[grant.id] = grant
        self._contexts[grant.id] = context

    def held_and_scheduled(self) -> Micros:
        """What the grants hold, with what the scheduled ones will hold once they take effect."""
        return sum(g.remaining if g.credited else g.amount for g in self.grants.values())

    def add_grant(self, grant: Grant, now: datetime, context: EntryContext = NO_CONTEXT) -> None:
        """Add a new grant; it enters the ledger now, or when it takes effect."""
        self.grants[grant.id] = grant
        self._contexts[grant.id] = context
        self.settle(now)

    def void(self, grant_id: str, now: datetime) -> None:
        """Take the grant's remaining out of the pool."""
        grant = self.grants[grant_id]
        remaining = grant.remaining if grant.credited else 0
        self.grants[grant_id] = replace(grant, voided_at=now, credited=True)
        if remaining > 0:
            self._write(EntryType.VOID, grant_id, -remaining, now)

    def spendable(self, order: Sequence[str], now: datetime) -> list[Grant]:
        live = (g for g in self.grants.values() if g.status(now) is GrantStatus.ACTIVE)
        return sorted(live, key=lambda g: burn_key(g, order))

    def available(self, reserved: Micros) -> Micros:
        return self.balance - reserved

    def allows(self, amount: Micros, reserved: Micros, overdraft_limit: Micros | None) -> bool:
        """Whether a hard decision lets ``amount`` go: available may fall to -limit, no further."""
        return overdraft_limit is None or self.available(reserved) - amount >= -overdraft_limit

    def debit(
        self,
        amount: Micros,
        order: Sequence[str],
        now: datetime,
        context: EntryContext = NO_CONTEXT,
    ) -> list[Entry]:
        """Draw ``amount`` across the grants in burn order, the rest from the overdraft."""
        start = len(self.entries)
        left = amount
        for grant in self.spendable(order, now):
            if left == 0:
                break
            taken = min(grant.remaining, left)
            self._write(EntryType.DEBIT, grant.id, -taken, now, context)
            left -= taken
        if left > 0:
            self._write(EntryType.DEBIT, None, -left, now, context)
        return self.entries[start:]


@dataclass(slots=True)
class Replayed:
    remaining: dict[str, Micros] = field(default_factory=dict)
    consumed: dict[str, Micros] = field(default_factory=dict)
    expired: dict[str, Micros] = field(default_factory=dict)
    overdraft: Micros = 0

    @property
    def balance(self) -> Micros:
        return sum(self.remaining.values()) - self.overdraft


def replay(entries: Iterable[tuple[EntryType, str | None, Micros]]) -> Replayed:
    """Rebuild every projection of a pool from its entries (type, grant, amount), in order.

    A grant's remaining is the sum of its entries, so a voided or expired grant sums to zero.
    Entries without a grant sum to minus the overdraft.
    """
    state = Replayed()
    for kind, grant, amount in entries:
        if grant is None:
            state.overdraft -= amount
            continue
        state.remaining[grant] = state.remaining.get(grant, 0) + amount
        if kind is EntryType.DEBIT:
            state.consumed[grant] = state.consumed.get(grant, 0) - amount
        elif kind is EntryType.EXPIRY:
            state.expired[grant] = state.expired.get(grant, 0) - amount
    return state


@dataclass(frozen=True, slots=True)
class Revenue:
    deferred: Decimal
    recognized: Decimal
    breakage: Decimal


def revenue(grants: Mapping[str, Grant], replayed: Replayed) -> Revenue:
    """Remaining, consumed and expired credits, each times their grant's cost basis.

    Credits paid back to the overdraft count as consumed: they pay for usage already made.
    """
    deferred = recognized = breakage = 0
    for grant_id, grant in grants.items():
        basis = grant.cost_basis
        deferred += basis * replayed.remaining.get(grant_id, 0)
        recognized += basis * replayed.consumed.get(grant_id, 0)
        breakage += basis * replayed.expired.get(grant_id, 0)
    return Revenue(_money(deferred), _money(recognized), _money(breakage))


def _money(micro_micros: int) -> Decimal:
    """Credits in micro-units times cost basis in micro-units, as an exact amount of money."""
    with localcontext() as context:
        context.prec = 80
        value = Decimal(micro_micros).scaleb(-12)
        return Decimal(format(value.normalize(), "f")) if value else Decimal(0)


def money_per_credit(cost_basis: Micros) -> Decimal:
    return Decimal(cost_basis) / MICROS_PER_UNIT
