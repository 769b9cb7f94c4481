"""Credit grants (blocks): what one holds, its status at an instant, and its place in a burn order.

Amounts are micro-credits; ``remaining`` is a projection of the grant's ledger entries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from allotment.domain.catalog import CreditCategory
from allotment.domain.quantities import Micros


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

    @property
    def ended(self) -> bool:
        """Voided, expired, or in the ledger and used up: nothing can enter it any more (debits
        only take, and a grant is credited once), so it leaves the pool; only a void can still
        mark a used-up one, which reads it back by id."""
        return self.voided_at is not None or self.expired or (self.credited and self.remaining <= 0)

    @property
    def spendable(self) -> bool:
        """Holds credits a debit may take, whatever the time (``status`` adds the instants)."""
        return self.voided_at is None and not self.expired and self.remaining > 0


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


def burn_fields(grant: Grant) -> tuple[object, ...]:
    """What ``burn_key`` reads under any order: a grant whose fields these are unchanged keeps
    its place."""
    return (grant.priority, grant.expires_at, grant.category, grant.created_at, grant.cost_basis)
