"""The ledger's entries as a pool writes them, and the replay that rebuilds a pool from them.

The entries are the truth: a grant's remaining, the overdraft and the balance are projections
that :func:`replay` rebuilds, which the tests compare with what the store keeps.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from allotment.domain.quantities import Micros


class EntryType(StrEnum):
    """What wrote a ledger entry."""

    GRANT = "grant"
    DEBIT = "debit"
    EXPIRY = "expiry"
    VOID = "void"
    ADJUSTMENT = "adjustment"


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
