"""Resolution: one value per (customer, feature) from every source, with the winner named.

The rules, in the order they apply (see docs/resolution.md):

1. Each active subscription, trials included, offers the plan's spec with inheritance; the most
   generous override add-on replaces it; every increment add-on adds amount x quantity.
2. The most generous of those offers and of the active promotions wins: unlimited beats a number,
   a larger number beats a smaller one, then soft beats hard, then the earlier source wins.
3. An override for the feature replaces the result.
4. The winner's start anchors the reset periods.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from allotment.domain.catalog import (
    AddonMode,
    BooleanSpec,
    Catalog,
    Enforcement,
    Feature,
    MeteredSpec,
    NumericSpec,
    Spec,
)
from allotment.domain.holdings import Holdings, Subscription
from allotment.domain.quantities import Micros


class SourceType(StrEnum):
    """What kind of source won a resolution."""

    PLAN = "plan"
    TRIAL = "trial"
    PROMOTION = "promotion"
    OVERRIDE = "override"


class DenialReason(StrEnum):
    """Why a check, usage report, reservation or debit was refused: the customer is unknown
    or archived, the feature or entity is unknown, the customer holds nothing (no active
    subscription, promotion or override) or nothing that grants the feature, or the request
    would pass the customer's limit, a budget on the entity's path or the credit pool."""

    CUSTOMER_NOT_FOUND = "customer_not_found"
    CUSTOMER_ARCHIVED = "customer_archived"
    FEATURE_NOT_FOUND = "feature_not_found"
    ENTITY_NOT_FOUND = "entity_not_found"
    NO_ACTIVE_SUBSCRIPTION = "no_active_subscription"
    NOT_ENTITLED = "not_entitled"
    USAGE_LIMIT_EXCEEDED = "usage_limit_exceeded"
    BUDGET_EXCEEDED = "budget_exceeded"
    INSUFFICIENT_CREDITS = "insufficient_credits"


_TYPE_RANK = {SourceType.PLAN: 0, SourceType.TRIAL: 1, SourceType.PROMOTION: 2}


@dataclass(frozen=True, slots=True)
class Source:
    type: SourceType
    id: str


@dataclass(frozen=True, slots=True)
class Offer:
    """What one source offers for a feature."""

    spec: Spec
    source: Source
    anchor: datetime  # reset periods count from here
    started_at: datetime  # the earlier source wins a tie


@dataclass(frozen=True, slots=True)
class Resolution:
    """The winning offer, or why there is none."""

    offer: Offer | None
    denial: DenialReason | None


def resolve(catalog: Catalog, holdings: Holdings, feature: Feature, now: datetime) -> Resolution:
    override = holdings.overrides.get(feature.id)
    if override is not None:
        source = Source(SourceType.OVERRIDE, feature.id)
        offer = Offer(override.spec, source, override.created_at, override.created_at)
        return Resolution(offer, None)
    active = [s for s in holdings.subscriptions if s.is_active(now)]
    offers = [
        o for s in active if (o := subscription_offer(catalog, s, feature.id, now)) is not None
    ]
    for promotion in holdings.promotions:
        if promotion.feature == feature.id and promotion.is_active(now):
            source = Source(SourceType.PROMOTION, promotion.id)
            offers.append(Offer(promotion.spec, source, promotion.starts_at, promotion.starts_at))
    if offers:
        return Resolution(most_generous(offers), None)
    if active:
        return Resolution(None, DenialReason.NOT_ENTITLED)
    return Resolution(None, DenialReason.NO_ACTIVE_SUBSCRIPTION)


def subscription_offer(
    catalog: Catalog, subscription: Subscription, feature_id: str, now: datetime
) -> Offer | None:
    """The spec of the plan version the subscription is on at ``now`` for the feature, with
    the add-on versions it holds then applied, if any."""
    version = subscription.plan_version_at(now)
    spec: Spec | None = catalog.plan_entitlements(subscription.plan, version).get(feature_id)
    overriding: list[Spec] = []
    increments: list[tuple[Spec, int]] = []
    for holding in subscription.addons:
        addon = catalog.addon_for(holding.id, holding.version_at(now))
        entitlement = addon.entitlements.get(feature_id) if addon else None
        if entitlement is None:
            continue
        if entitlement.mode is AddonMode.OVERRIDE:
            overriding.append(entitlement.spec)
        else:
            increments.append((entitlement.spec, holding.quantity))
    if overriding:
        spec = min(overriding, key=_generosity_rank)
    for increment, quantity in increments:
        spec = add_increment(spec, increment, quantity)
    if spec is None:
        return None
    kind = SourceType.TRIAL if subscription.is_trial else SourceType.PLAN
    source = Source(kind, subscription.plan)
    return Offer(spec, source, subscription.anchor_at, subscription.starts_at)


def add_increment(base: Spec | None, increment: Spec, quantity: int) -> Spec:
    """``base`` raised by ``quantity`` times ``increment``; unlimited absorbs any addition."""
    if isinstance(increment, BooleanSpec):
        return increment
    if isinstance(increment, NumericSpec):
        base_value = base.value if isinstance(base, NumericSpec) else 0
        return NumericSpec(_sum(base_value, increment.value, quantity))
    if isinstance(base, MeteredSpec):
        return replace(base, limit=_sum(base.limit, increment.limit, quantity))
    return replace(increment, limit=_sum(0, increment.limit, quantity))


def most_generous(offers: Iterable[Offer]) -> Offer:
    """The winning offer; the order of ``offers`` never changes the answer."""
    return min(offers, key=_offer_rank)


def _sum(base: Micros | None, added: Micros | None, quantity: int) -> Micros | None:
    if base is None or added is None:
        return None
    return base + added * quantity


def _generosity_rank(spec: Spec) -> tuple[int, int, int]:
    """Smaller is more generous: unlimited first, then larger amounts, then soft before hard."""
    if isinstance(spec, BooleanSpec):
        return (0, 0, 0)
    amount = spec.value if isinstance(spec, NumericSpec) else spec.limit
    soft = isinstance(spec, MeteredSpec) and spec.enforcement is Enforcement.SOFT
    if amount is None:
        return (0, 0, 0 if soft else 1)
    return (1, -amount, 0 if soft else 1)


def _offer_rank(offer: Offer) -> tuple[tuple[int, int, int], datetime, int, str]:
    return (
        _generosity_rank(offer.spec),
        offer.started_at,
        _TYPE_RANK.get(offer.source.type, 3),
        offer.source.id,
    )
