"""What the customer routes answer: customers, subscriptions, promotions and overrides.

A promotion or an override carries its feature's spec in its own fields (``value``, or
``limit``, ``reset``, ``enforcement`` and ``credit_cost``), as the body that made it did: the
fields its feature's kind does not have are left out.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

from msgspec import UNSET, Struct, UnsetType
from msgspec.structs import asdict

from allotment.domain.catalog import Catalog, Enforcement
from allotment.domain.customers import Customer
from allotment.domain.holdings import (
    AddonQuantity,
    Override,
    Promotion,
    Subscription,
    SubscriptionStatus,
)
from allotment.domain.periods import ResetPeriod, period_containing
from allotment.domain.timefmt import format_instant
from allotment.service.answers import InstantText, Number
from allotment.service.catalog_views import CreditCostView, entitlement_spec

CustomerStatus = Literal["active", "archived"]
PromotionStatus = Literal["scheduled", "active", "expired", "revoked"]


class CustomerView(Struct, frozen=True, kw_only=True):
    """``PUT``/``GET``/``DELETE /v1/customers/{id}`` (``DELETE`` archives), and each item of
    ``GET /v1/customers``."""

    id: str
    name: str | None
    metadata: dict[str, Any]
    billing_id: str | None
    status: CustomerStatus
    created_at: InstantText
    updated_at: InstantText
    archived_at: InstantText | None


class AddonHoldingView(Struct, frozen=True, kw_only=True):
    """An add-on attached to a subscription, how many of it, and the version of the add-on it
    is on; while a migration waits, the version it moves to and when."""

    id: str
    quantity: int
    version: int
    pending_version: int | UnsetType = UNSET
    pending_at: InstantText | UnsetType = UNSET


class SubscriptionView(Struct, frozen=True, kw_only=True):
    """``POST /v1/customers/{id}/subscriptions``, ``PATCH`` and ``DELETE`` (cancel) of
    ``/v1/customers/{id}/subscriptions/{sub}``, and each item of
    ``GET /v1/customers/{id}/subscriptions``. ``ends_at`` is when it stops granting;
    ``plan_version`` is the version of the plan it is on now, and while a migration waits,
    ``pending_version`` and ``pending_at`` say where it moves and when."""

    id: str
    customer: str
    product: str
    plan: str
    plan_version: int
    addons: list[AddonHoldingView]
    pending_version: int | UnsetType = UNSET
    pending_at: InstantText | UnsetType = UNSET
    status: SubscriptionStatus
    trial: bool
    starts_at: InstantText
    trial_ends_at: InstantText | None
    ends_at: InstantText | None
    canceled_at: InstantText | None
    current_period_start: InstantText
    current_period_end: InstantText | None
    created_at: InstantText


class PromotionView(Struct, frozen=True, kw_only=True):
    """``POST /v1/customers/{id}/promotions`` and ``DELETE .../promotions/{promo}`` (revoke):
    the promotion, with its feature's spec fields."""

    id: str
    customer: str
    feature: str
    value: Number | UnsetType = UNSET
    limit: Number | UnsetType = UNSET
    reset: ResetPeriod | UnsetType = UNSET
    enforcement: Enforcement | UnsetType = UNSET
    credit_cost: CreditCostView | UnsetType = UNSET
    starts_at: InstantText
    ends_at: InstantText | None
    reason: str | None
    status: PromotionStatus
    revoked_at: InstantText | None
    created_at: InstantText


class OverrideView(Struct, frozen=True, kw_only=True):
    """``PUT /v1/customers/{id}/overrides/{feature}``: the override, with its feature's spec
    fields."""

    customer: str
    feature: str
    value: Number | UnsetType = UNSET
    limit: Number | UnsetType = UNSET
    reset: ResetPeriod | UnsetType = UNSET
    enforcement: Enforcement | UnsetType = UNSET
    credit_cost: CreditCostView | UnsetType = UNSET
    created_at: InstantText
    updated_at: InstantText


class DeletedOverride(OverrideView, frozen=True, kw_only=True):
    """``DELETE /v1/customers/{id}/overrides/{feature}``: the override removed."""

    deleted: Literal[True]


def customer_view(customer: Customer) -> CustomerView:
    # Both are set whenever a customer is saved (the columns are NOT NULL).
    assert customer.created_at is not None
    assert customer.updated_at is not None
    return CustomerView(
        id=customer.id,
        name=customer.name,
        metadata=dict(customer.metadata),
        billing_id=customer.billing_id,
        status="archived" if customer.is_archived else "active",
        created_at=format_instant(customer.created_at),
        updated_at=format_instant(customer.updated_at),
        archived_at=_instant(customer.archived_at),
    )


def subscription_view(
    subscription: Subscription, catalog: Catalog, now: datetime
) -> SubscriptionView:
    version = subscription.plan_version_at(now)
    plan = catalog.plan_for(subscription.plan, version)
    end = subscription.end
    at = max(
        subscription.starts_at, now if end is None else min(now, end - timedelta(microseconds=1))
    )
    period = period_containing(subscription.anchor_at, plan.billing_period, at)
    pending = subscription.plan_versions.waiting(now)
    return SubscriptionView(
        id=subscription.id,
        customer=subscription.customer,
        product=subscription.product,
        plan=subscription.plan,
        plan_version=version,
        addons=[addon_holding_view(a, now) for a in subscription.addons],
        pending_version=UNSET if pending is None else pending.version,
        pending_at=UNSET if pending is None else format_instant(pending.at),
        status=subscription.status(now),
        trial=subscription.is_trial,
        starts_at=format_instant(subscription.starts_at),
        trial_ends_at=_instant(subscription.trial_ends_at),
        ends_at=_instant(end),
        canceled_at=_instant(subscription.canceled_at),
        current_period_start=format_instant(period.start),
        current_period_end=_instant(period.end),
        created_at=format_instant(subscription.created_at),
    )


def addon_holding_view(addon: AddonQuantity, now: datetime) -> AddonHoldingView:
    """The entry as it stands at ``now``: the version it is on, and a move still waiting."""
    pending = addon.versions.waiting(now)
    return AddonHoldingView(
        id=addon.id,
        quantity=addon.quantity,
        version=addon.version_at(now),
        pending_version=UNSET if pending is None else pending.version,
        pending_at=UNSET if pending is None else format_instant(pending.at),
    )


def promotion_view(promotion: Promotion, now: datetime) -> PromotionView:
    status: PromotionStatus
    if promotion.revoked_at is not None:
        status = "revoked"
    elif promotion.starts_at > now:
        status = "scheduled"
    elif promotion.ends_at is not None and promotion.ends_at <= now:
        status = "expired"
    else:
        status = "active"
    return PromotionView(
        id=promotion.id,
        customer=promotion.customer,
        feature=promotion.feature,
        **asdict(entitlement_spec(promotion.spec)),
        starts_at=format_instant(promotion.starts_at),
        ends_at=_instant(promotion.ends_at),
        reason=promotion.reason,
        status=status,
        revoked_at=_instant(promotion.revoked_at),
        created_at=format_instant(promotion.created_at),
    )


def override_view(override: Override) -> OverrideView:
    return OverrideView(
        customer=override.customer,
        feature=override.feature,
        **asdict(entitlement_spec(override.spec)),
        created_at=format_instant(override.created_at),
        updated_at=format_instant(override.updated_at),
    )


def deleted_override(override: Override) -> DeletedOverride:
    return DeletedOverride(**asdict(override_view(override)), deleted=True)


def _instant(instant: datetime | None) -> str | None:
    return None if instant is None else format_instant(instant)
