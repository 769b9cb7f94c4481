"""What a customer holds: subscriptions (trials included), promotions and overrides.

Statuses are not stored: they follow from the instants on each holding and the ``now`` they are
read at, so a trial ends and a promotion lapses without any job running.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from allotment.domain.catalog import Catalog, RecurringCredits, Spec
from allotment.domain.quantities import Micros


class SubscriptionStatus(StrEnum):
    """Where a subscription stands at the time of the answer."""

    ACTIVE = "active"
    TRIALING = "trialing"
    CANCELED = "canceled"
    EXPIRED = "expired"


MOVES_KEPT_FOR = timedelta(days=366)
"""How long a move that has happened stays in a holding's history. Recurring credits follow the
version a holding was on when each of their periods began, and the longest period (a year)
began at most this long ago; older moves are folded into the first version."""


@dataclass(frozen=True, slots=True)
class Move:
    """A migration: from ``at`` on, the holding is on ``version``.

    Nothing runs at ``at``: a holding read at or after it is on the new version (statuses
    follow from instants, as trials' ends do)."""

    version: int
    at: datetime
    # Made in the middle of a period (a migration "now"): a period that began at this very
    # instant was still sold on the version before, and its recurring credits stay that one's.
    mid_period: bool = False


@dataclass(frozen=True, slots=True)
class Versions:
    """The versions of a plan (or add-on) a holding is on over time: ``first``, then each move's
    version from its instant on. Moves are in the order of their instants; at most the last one
    is still waiting at any moment, since a new migration replaces a waiting one."""

    first: int = 1
    moves: tuple[Move, ...] = ()

    def at(self, instant: datetime) -> int:
        """The version at ``instant``."""
        version = self.first
        for move in self.moves:
            if move.at > instant:
                break
            version = move.version
        return version

    def at_period_start(self, began: datetime) -> int:
        """The version a period beginning at ``began`` was sold on: as ``at``, except that a
        move made in the middle of a period at that very instant counts from the next one."""
        version = self.first
        for move in self.moves:
            if move.at > began or (move.at == began and move.mid_period):
                break
            version = move.version
        return version

    def waiting(self, now: datetime) -> Move | None:
        """The move ``now`` has not reached yet, if any."""
        last = self.moves[-1] if self.moves else None
        return last if last is not None and last.at > now else None

    def held(self) -> list[int]:
        """Every version in the history, without repeats."""
        return list(dict.fromkeys([self.first, *(move.version for move in self.moves)]))

    def moved(
        self, version: int, at: datetime, now: datetime, *, mid_period: bool = False
    ) -> Versions:
        """The history with a move to ``version`` at ``at`` (``now`` or later): a move still
        waiting is replaced, and moves older than ``MOVES_KEPT_FOR`` are folded into the first
        version, so the history stays short however often a holding migrates."""
        horizon = now - MOVES_KEPT_FOR
        first, kept = self.first, []
        for move in self.moves:
            if move.at <= horizon:
                first = move.version
            elif move.at <= now:
                kept.append(move)
        return Versions(first, (*kept, Move(version, at, mid_period)))


@dataclass(frozen=True, slots=True)
class AddonQuantity:
    """An add-on entry of a subscription, on one version of the add-on at a time."""

    id: str
    quantity: int
    versions: Versions = Versions()

    def version_at(self, instant: datetime) -> int:
        return self.versions.at(instant)


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
    plan_versions: Versions = Versions()  # the plan's versions it is on, over time

    def plan_version_at(self, instant: datetime) -> int:
        """The plan version the subscription is on at ``instant``."""
        return self.plan_versions.at(instant)

    def move_instants(self) -> list[datetime]:
        """The instants at which a migration moves this subscription or one of its add-ons."""
        instants = [move.at for move in self.plan_versions.moves]
        for addon in self.addons:
            instants += [move.at for move in addon.versions.moves]
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
            instants += subscription.move_instants()
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
    at ``at``, each with the quantity it counts for; with ``at`` None, of every version in its
    history (blocks of each may be live at once around a move)."""
    sources: list[tuple[Mapping[str, RecurringCredits], int]] = []
    for version in _versions(subscription.plan_versions, at):
        plan = catalog.plan_at(subscription.plan, version)
        if plan is not None:
            sources.append((plan.credits, 1))
    for holding in subscription.addons:
        for version in _versions(holding.versions, at):
            addon = catalog.addon_at(holding.id, version)
            if addon is not None:
                sources.append((addon.credits, holding.quantity))
    return sources


def _versions(versions: Versions, at: datetime | None) -> list[int]:
    return versions.held() if at is None else [versions.at(at)]


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
        # A block of each version may be live around a move.
        for credits, quantity in credit_sources(catalog, subscription, None):
            for currency, block in credits.items():
                totals[currency] = totals.get(currency, 0) + block.amount * quantity
    return totals
