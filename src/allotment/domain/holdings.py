"""What a customer holds: subscriptions (trials included), promotions and overrides.

Statuses are not stored: they follow from the instants on each holding and the ``now`` they are
read at, so a trial ends and a promotion lapses without any job running.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum

from allotment.domain.catalog import Catalog, RecurringCredits, Spec
from allotment.domain.quantities import Micros


class SubscriptionStatus(StrEnum):
    """Where a subscription stands at the time of the answer."""

    ACTIVE = "active"
    TRIALING = "trialing"
    CANCELED = "canceled"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class Move:
    """A migration waiting for its instant: from ``at`` on, the holding is on ``version``.

    Nothing runs at ``at``: a holding read at or after it is on the new version (statuses
    follow from instants, as trials' ends do)."""

    version: int
    at: datetime


@dataclass(frozen=True, slots=True)
class AddonQuantity:
    """An add-on entry of a subscription, on one version of the add-on."""

    id: str
    quantity: int
    version: int = 1
    pending: Move | None = None

    def version_at(self, instant: datetime) -> int:
        return _version_at(self.version, self.pending, instant)

    def settled(self, now: datetime) -> AddonQuantity:
        """The same entry with a move that ``now`` has reached made its version."""
        version = self.version_at(now)
        return AddonQuantity(self.id, self.quantity, version, _still_pending(self.pending, now))


def _version_at(version: int, pending: Move | None, instant: datetime) -> int:
    return pending.version if pending is not None and pending.at <= instant else version


def _still_pending(pending: Move | None, now: datetime) -> Move | None:
    return pending if pending is not None and pending.at > now else None


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
    plan_version: int = 1
    pending: Move | None = None  # a migration of the plan version, until its instant

    def plan_version_at(self, instant: datetime) -> int:
        """The plan version the subscription is on at ``instant``."""
        return _version_at(self.plan_version, self.pending, instant)

    def settled(self, now: datetime) -> Subscription:
        """The same subscription with every move ``now`` has reached made its version: what it
        is on, and what still waits, as of ``now``."""
        return replace(
            self,
            plan_version=self.plan_version_at(now),
            pending=_still_pending(self.pending, now),
            addons=tuple(addon.settled(now) for addon in self.addons),
        )

    def moves(self) -> list[datetime]:
        """The instants at which a migration moves this subscription or one of its add-ons."""
        instants = [self.pending.at] if self.pending is not None else []
        instants += [a.pending.at for a in self.addons if a.pending is not None]
        return instants

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
            instants += subscription.moves()
        for promotion in self.promotions:
            instants.append(promotion.starts_at)
            if promotion.end is not None:
                instants.append(promotion.end)
        future = [instant for instant in instants if instant > now]
        return min(future) if future else None


def credit_sources(
    catalog: Catalog, subscription: Subscription, at: datetime | None
) -> list[tuple[Mapping[str, RecurringCredits], int]]:
    """The recurring credits of the plan version and each add-on version the subscription is on
    at ``at``, each with the quantity it counts for; with ``at`` None, of every version it is on
    now or will move to (the most a pool may hold of them at once)."""
    sources: list[tuple[Mapping[str, RecurringCredits], int]] = []
    for version in _versions(subscription.plan_version, subscription.pending, at):
        plan = catalog.plan_at(subscription.plan, version)
        if plan is not None:
            sources.append((plan.credits, 1))
    for holding in subscription.addons:
        for version in _versions(holding.version, holding.pending, at):
            addon = catalog.addon_at(holding.id, version)
            if addon is not None:
                sources.append((addon.credits, holding.quantity))
    return sources


def _versions(version: int, pending: Move | None, at: datetime | None) -> list[int]:
    if at is not None:
        return [_version_at(version, pending, at)]
    return (
        [version] if pending is None or pending.version == version else [version, pending.version]
    )


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
        # A block of either version may be live while a move is waiting or has just happened.
        for credits, quantity in credit_sources(catalog, subscription, None):
            for currency, block in credits.items():
                totals[currency] = totals.get(currency, 0) + block.amount * quantity
    return totals
