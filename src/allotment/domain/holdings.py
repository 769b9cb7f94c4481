"""What a customer holds: subscriptions (trials included), promotions and overrides.

Statuses are not stored: they follow from the instants on each holding and the ``now`` they are
read at, so a trial ends and a promotion lapses without any job running.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from allotment.domain.catalog import Catalog, Spec
from allotment.domain.quantities import Micros


class SubscriptionStatus(StrEnum):
    """Where a subscription stands at the time of the answer."""

    ACTIVE = "active"
    TRIALING = "trialing"
    CANCELED = "canceled"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class AddonQuantity:
    id: str
    quantity: int


@dataclass(frozen=True, slots=True)
class Subscription:
    id: str
    customer: str
    product: str
    plan: str
    addons: tuple[AddonQuantity, ...]
    is_trial: bool
    starts_at: datetime
    trial_ends_at: datetime | None
    ends_at: datetime | None
    canceled_at: datetime | None
    # Reset periods and billing periods count from here; a replacement keeps its predecessor's.
    anchor_at: datetime
    created_at: datetime

    @property
    def end(self) -> datetime | None:
        """The instant from which the subscription no longer grants anything."""
        candidates = [t for t in (self.ends_at, self.trial_ends_at, self.canceled_at) if t]
        return min(candidates) if candidates else None

    def is_active(self, now: datetime) -> bool:
        end = self.end
        return self.starts_at <= now and (end is None or now < end)

    def status(self, now: datetime) -> SubscriptionStatus:
        if self.canceled_at is not None and self.canceled_at <= now:
            return SubscriptionStatus.CANCELED
        end = self.end
        if end is not None and end <= now:
            return SubscriptionStatus.EXPIRED
        return SubscriptionStatus.TRIALING if self.is_trial else SubscriptionStatus.ACTIVE


@dataclass(frozen=True, slots=True)
class Promotion:
    id: str
    customer: str
    feature: str
    spec: Spec
    starts_at: datetime
    ends_at: datetime | None
    reason: str | None
    revoked_at: datetime | None
    created_at: datetime

    @property
    def end(self) -> datetime | None:
        candidates = [t for t in (self.ends_at, self.revoked_at) if t]
        return min(candidates) if candidates else None

    def is_active(self, now: datetime) -> bool:
        end = self.end
        return self.starts_at <= now and (end is None or now < end)


@dataclass(frozen=True, slots=True)
class Override:
    customer: str
    feature: str
    spec: Spec
    # Its reset periods are anchored here; replacing an override keeps the anchor.
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Holdings:
    """Everything one customer holds that resolution reads."""

    subscriptions: Sequence[Subscription] = ()
    promotions: Sequence[Promotion] = ()
    overrides: Mapping[str, Override] = field(default_factory=dict)

    def next_change_after(self, now: datetime) -> datetime | None:
        """The first instant after ``now`` at which a holding starts or ends, if any.

        Resolution results computed at ``now`` stay true until then, which lets a cache keep
        them without re-resolving on every read.
        """
        instants: list[datetime] = []
        for subscription in self.subscriptions:
            instants.append(subscription.starts_at)
            if subscription.end is not None:
                instants.append(subscription.end)
        for promotion in self.promotions:
            instants.append(promotion.starts_at)
            if promotion.end is not None:
                instants.append(promotion.end)
        future = [instant for instant in instants if instant > now]
        return min(future) if future else None


def recurring_credits(
    catalog: Catalog, subscriptions: Iterable[Subscription], now: datetime
) -> dict[str, Micros]:
    """The most the subscriptions not over by ``now`` grant per period, by currency.

    Each plan's and each add-on's block (times its quantity) of a currency can be live at once,
    one period's each, so their sum bounds what recurring credits hold in a pool at any time."""
    totals: dict[str, Micros] = {}
    for subscription in subscriptions:
        end = subscription.end
        if end is not None and end <= now:
            continue
        plan = catalog.plans.get(subscription.plan)
        sources = [] if plan is None else [(plan.credits, 1)]
        for holding in subscription.addons:
            addon = catalog.addons.get(holding.id)
            if addon is not None:
                sources.append((addon.credits, holding.quantity))
        for credits, quantity in sources:
            for currency, block in credits.items():
                totals[currency] = totals.get(currency, 0) + block.amount * quantity
    return totals
