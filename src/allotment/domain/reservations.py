"""Reservations: holds on usage (and on credits) for work whose cost is known only afterwards.

A granted reservation counts as usage of its feature, and holds its credits, from the moment it
is made until it ends: committed (the actual amount is recorded), released, or expired at
``expires_at`` by the clock, with no job needed. It ends exactly once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from allotment.domain.quantities import Micros


class ReservationStatus(StrEnum):
    """Where a reservation stands: held, or ended by a commit, a release or its expiry."""

    HELD = "held"
    COMMITTED = "committed"
    RELEASED = "released"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class Reservation:
    id: str
    customer: str
    feature: str
    entity: str | None
    amount: Micros
    currency: str | None  # the pool its credits are held in, for a credit-priced feature
    credits: Micros  # credits held
    created_at: datetime
    expires_at: datetime
    ended_at: datetime | None = None
    ended_as: ReservationStatus | None = None  # committed or released
    committed_amount: Micros | None = None
    # The entity and its ancestors when it was made, nearest first: the budgets it holds against.
    entity_path: tuple[str, ...] = ()

    def status(self, now: datetime) -> ReservationStatus:
        if self.ended_as is not None:
            return self.ended_as
        if self.expires_at <= now:
            return ReservationStatus.EXPIRED
        return ReservationStatus.HELD

    def holds(self, now: datetime) -> bool:
        return self.status(now) is ReservationStatus.HELD


def reserved_usage(reservations: Iterable[Reservation], feature: str, now: datetime) -> Micros:
    """What the live reservations of ``feature`` hold against its limit."""
    return sum(r.amount for r in reservations if r.feature == feature and r.holds(now))


def reserved_credits(reservations: Iterable[Reservation], currency: str, now: datetime) -> Micros:
    """What the live reservations hold in the pool of ``currency``."""
    return sum(r.credits for r in reservations if r.currency == currency and r.holds(now))
