"""Customers and what they hold: subscriptions, trials, promotions and overrides."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from allotment.domain.catalog import Catalog, Plan, parse_trial_days
from allotment.domain.credits import RECURRING_ROOM
from allotment.domain.customers import Customer
from allotment.domain.documents import spec_from_document
from allotment.domain.errors import Conflict, InvalidRequest, NotFound
from allotment.domain.events import EventType
from allotment.domain.holdings import (
    AddonQuantity,
    Override,
    Promotion,
    Subscription,
    Versions,
    recurring_credits,
)
from allotment.domain.identifiers import new_id
from allotment.domain.ids import require_client_id
from allotment.domain.quantities import MAX_ABS_MICROS
from allotment.domain.timefmt import whole_second
from allotment.service.customer_views import (
    CustomerView,
    DeletedOverride,
    OverrideView,
    PromotionView,
    SubscriptionView,
    customer_view,
    deleted_override,
    override_view,
    promotion_view,
    subscription_view,
)
from allotment.service.events import emit, subscription_timers
from allotment.service.ports import Page, UnitOfWork
from allotment.service.runtime import Runtime

MAX_ADDON_QUANTITY = 1_000_000
_UNCHANGED: Any = object()


@dataclass(frozen=True, slots=True)
class AddonRequest:
    """An add-on entry a subscription asks for; ``version`` None: the one the subscription
    holds already, else the latest."""

    id: str
    quantity: int = 1
    version: int | None = None


@dataclass(frozen=True, slots=True)
class SubscriptionRequest:
    plan: str
    addons: Sequence[AddonRequest] = ()
    trial: bool = False
    trial_days: int | None = None
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    plan_version: int | None = None  # None: the latest


class CustomerService:
    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    # ------------------------------------------------------------------ customers

    async def put_customer(
        self,
        customer_id: str,
        *,
        name: str | None,
        metadata: Mapping[str, Any] | None,
        billing_id: str | None,
    ) -> tuple[CustomerView, bool]:
        require_client_id(customer_id, "customer id")
        runtime = self._runtime

        def job(uow: UnitOfWork) -> tuple[CustomerView, bool]:
            now = runtime.clock.now()
            existing = uow.customers.get(customer_id)
            if existing is not None and existing.is_archived:
                raise Conflict(f"customer {customer_id!r} is archived.", {"customer": customer_id})
            customer = Customer(
                id=customer_id,
                name=name,
                metadata=dict(metadata or {}),
                billing_id=billing_id,
                created_at=existing.created_at if existing else now,
                updated_at=now,
            )
            uow.customers.save(customer)
            runtime.customer_changed(uow, customer_id)
            view = customer_view(customer)
            kind = EventType.CUSTOMER_CREATED if existing is None else EventType.CUSTOMER_UPDATED
            emit(uow, kind, customer_id, view, now)
            return view, existing is None

        return await runtime.run(job)

    async def get_customer(self, customer_id: str) -> CustomerView:
        customer = await self._runtime.run(lambda uow: _existing_customer(uow, customer_id))
        return customer_view(customer)

    async def archive_customer(self, customer_id: str) -> CustomerView:
        runtime = self._runtime

        def job(uow: UnitOfWork) -> CustomerView:
            customer = _existing_customer(uow, customer_id)
            if not customer.is_archived:
                now = runtime.clock.now()
                customer = replace(customer, archived_at=now)
                uow.customers.save(customer)
                runtime.customer_changed(uow, customer_id)
                emit(uow, EventType.CUSTOMER_ARCHIVED, customer_id, customer_view(customer), now)
            return customer_view(customer)

        return await runtime.run(job)

    async def list_customers(self, after: str | None, limit: int) -> Page[CustomerView]:
        page = await self._runtime.run(lambda s: s.customers.list(after, limit))
        return Page([customer_view(c) for c in page.items], page.next_cursor)

    # ------------------------------------------------------------------ subscriptions

    async def subscribe(self, customer_id: str, request: SubscriptionRequest) -> SubscriptionView:
        runtime = self._runtime

        def job(uow: UnitOfWork) -> SubscriptionView:
            _active_customer(uow, customer_id)
            catalog = runtime.catalog_in(uow)
            plan = _plan_to_subscribe(catalog, request.plan, request.plan_version)
            now = runtime.clock.now()
            addons = _addon_holdings(catalog, plan, request.addons, (), now)
            starts_at = request.starts_at or whole_second(now)
            # A paid subscription takes over from the current one when it starts, or now if it
            # is backdated; a trial conflicts with any other trial not over by its start.
            takes_over_at = starts_at if request.trial else max(starts_at, whole_second(now))
            holdings = uow.holdings.load(customer_id, catalog)
            same_product = [
                s
                for s in holdings.subscriptions
                if s.product == plan.product
                and s.is_trial == request.trial
                and (s.end is None or s.end > takes_over_at)
            ]
            anchor_at = starts_at
            trial_ends_at = None
            replaced: set[str] = set()
            if request.trial:
                days = parse_trial_days(request.trial_days)
                days = plan.trial_days if days is None else days
                if days is None:
                    raise InvalidRequest(
                        f"trial_days is required: plan {plan.id!r} sets no trial length.",
                        {"field": "trial_days"},
                    )
                if same_product:
                    raise Conflict(
                        f"customer {customer_id!r} already has a trial of product "
                        f"{plan.product!r} ({same_product[0].id}).",
                        {"subscription": same_product[0].id},
                    )
                trial_ends_at = starts_at + timedelta(days=days)
            else:
                # One paid subscription per product: the new one replaces the current at once
                # and keeps its period anchor, so usage in the current period carries over.
                replaced = {current.id for current in same_product}
                for current in same_product:
                    if current.starts_at <= takes_over_at:
                        anchor_at = current.anchor_at
                        ended = replace(current, canceled_at=takes_over_at)
                    else:  # scheduled to start later: it never will
                        ended = replace(current, canceled_at=whole_second(now))
                    uow.holdings.save_subscription(ended)
                    subscription_events(uow, ended, catalog, now, EventType.SUBSCRIPTION_CANCELED)
            _check_ends_after_start(request.ends_at, starts_at)
            subscription = Subscription(
                id=new_id("sub"),
                customer=customer_id,
                product=plan.product,
                plan=plan.id,
                plan_versions=Versions(plan.version),
                addons=addons,
                is_trial=request.trial,
                starts_at=starts_at,
                trial_ends_at=trial_ends_at,
                ends_at=request.ends_at,
                canceled_at=None,
                anchor_at=anchor_at,
                created_at=now,
            )
            others = [s for s in holdings.subscriptions if s.id not in replaced]
            _require_room_for_recurring_credits(catalog, [*others, subscription], now)
            uow.holdings.save_subscription(subscription)
            runtime.customer_changed(uow, customer_id)
            started: tuple[EventType, ...] = (EventType.SUBSCRIPTION_CREATED,)
            if subscription.is_trial:
                started += (EventType.TRIAL_STARTED,)
            return subscription_events(uow, subscription, catalog, now, *started)

        return await runtime.run(job)

    async def list_subscriptions(
        self, customer_id: str, after: str | None, limit: int
    ) -> Page[SubscriptionView]:
        runtime = self._runtime

        def job(uow: UnitOfWork) -> Page[SubscriptionView]:
            _existing_customer(uow, customer_id)
            page = uow.holdings.list_subscriptions(customer_id, after, limit)
            now, catalog = runtime.clock.now(), runtime.catalog_in(uow)
            items = [subscription_view(s, catalog, now) for s in page.items]
            return Page(items, page.next_cursor)

        return await runtime.run(job)

    async def update_subscription(
        self,
        customer_id: str,
        subscription_id: str,
        *,
        addons: Sequence[AddonRequest] | None = None,
        ends_at: datetime | None = _UNCHANGED,
    ) -> SubscriptionView:
        runtime = self._runtime

        def job(uow: UnitOfWork) -> SubscriptionView:
            _active_customer(uow, customer_id)
            subscription = _existing_subscription(uow, customer_id, subscription_id)
            now, catalog = runtime.clock.now(), runtime.catalog_in(uow)
            if subscription.end is not None and subscription.end <= now:
                raise Conflict(f"subscription {subscription_id} has ended.")
            changed = subscription
            if addons is not None:
                plan = catalog.plan_for(subscription.plan, subscription.plan_version_at(now))
                entries = _addon_holdings(catalog, plan, addons, subscription.addons, now)
                changed = replace(changed, addons=entries)
                held = uow.holdings.load(customer_id, catalog).subscriptions
                others = [s for s in held if s.id != subscription_id]
                _require_room_for_recurring_credits(catalog, [*others, changed], now)
            if ends_at is not _UNCHANGED:
                _check_ends_after_start(ends_at, subscription.starts_at)
                changed = replace(changed, ends_at=ends_at)
            uow.holdings.save_subscription(changed)
            runtime.customer_changed(uow, customer_id)
            return subscription_events(uow, changed, catalog, now, EventType.SUBSCRIPTION_UPDATED)

        return await runtime.run(job)

    async def cancel_subscription(self, customer_id: str, subscription_id: str) -> SubscriptionView:
        runtime = self._runtime

        def job(uow: UnitOfWork) -> SubscriptionView:
            _existing_customer(uow, customer_id)
            subscription = _existing_subscription(uow, customer_id, subscription_id)
            now, catalog = runtime.clock.now(), runtime.catalog_in(uow)
            if subscription.end is not None and subscription.end <= now:
                raise Conflict(f"subscription {subscription_id} has already ended.")
            canceled = replace(subscription, canceled_at=now)
            uow.holdings.save_subscription(canceled)
            runtime.customer_changed(uow, customer_id)
            return subscription_events(uow, canceled, catalog, now, EventType.SUBSCRIPTION_CANCELED)

        return await runtime.run(job)

    # ------------------------------------------------------------------ promotions

    async def grant_promotion(
        self,
        customer_id: str,
        feature_id: str,
        spec_fields: Mapping[str, Any],
        *,
        starts_at: datetime | None,
        ends_at: datetime | None,
        reason: str | None,
    ) -> PromotionView:
        runtime = self._runtime

        def job(uow: UnitOfWork) -> PromotionView:
            _active_customer(uow, customer_id)
            catalog = runtime.catalog_in(uow)
            feature = catalog.feature_for(feature_id, "feature")
            spec = spec_from_document(feature, spec_fields, "promotion")
            now = runtime.clock.now()
            start = starts_at or whole_second(now)
            _check_ends_after_start(ends_at, start)
            promotion = Promotion(
                id=new_id("promo"),
                customer=customer_id,
                feature=feature_id,
                spec=spec,
                starts_at=start,
                ends_at=ends_at,
                reason=reason,
                revoked_at=None,
                created_at=now,
            )
            uow.holdings.save_promotion(promotion)
            runtime.customer_changed(uow, customer_id)
            return promotion_view(promotion, now)

        return await runtime.run(job)

    async def revoke_promotion(self, customer_id: str, promotion_id: str) -> PromotionView:
        runtime = self._runtime

        def job(uow: UnitOfWork) -> PromotionView:
            _existing_customer(uow, customer_id)
            promotion = uow.holdings.get_promotion(
                customer_id, promotion_id, runtime.catalog_in(uow)
            )
            if promotion is None:
                raise NotFound(f"customer {customer_id!r} has no promotion {promotion_id}.")
            now = runtime.clock.now()
            if promotion.revoked_at is not None:
                raise Conflict(f"promotion {promotion_id} is already revoked.")
            revoked = replace(promotion, revoked_at=now)
            uow.holdings.save_promotion(revoked)
            runtime.customer_changed(uow, customer_id)
            return promotion_view(revoked, now)

        return await runtime.run(job)

    # ------------------------------------------------------------------ overrides

    async def put_override(
        self, customer_id: str, feature_id: str, spec_fields: Mapping[str, Any]
    ) -> tuple[OverrideView, bool]:
        runtime = self._runtime

        def job(uow: UnitOfWork) -> tuple[OverrideView, bool]:
            _active_customer(uow, customer_id)
            catalog = runtime.catalog_in(uow)
            feature = catalog.features.get(feature_id)
            if feature is None:
                raise NotFound(f"no feature {feature_id!r}.", {"feature": feature_id})
            spec = spec_from_document(feature, spec_fields, "override")
            now = runtime.clock.now()
            existing = uow.holdings.load(customer_id, catalog).overrides.get(feature_id)
            # Replacing an override keeps its anchor, so its usage periods do not restart.
            created_at = existing.created_at if existing else whole_second(now)
            override = Override(customer_id, feature_id, spec, created_at, now)
            uow.holdings.save_override(override)
            runtime.customer_changed(uow, customer_id)
            return override_view(override), existing is None

        return await runtime.run(job)

    async def delete_override(self, customer_id: str, feature_id: str) -> DeletedOverride:
        runtime = self._runtime

        def job(uow: UnitOfWork) -> DeletedOverride:
            _existing_customer(uow, customer_id)
            catalog = runtime.catalog_in(uow)
            existing = uow.holdings.load(customer_id, catalog).overrides.get(feature_id)
            if existing is None or not uow.holdings.delete_override(customer_id, feature_id):
                raise NotFound(f"customer {customer_id!r} has no override for {feature_id!r}.")
            runtime.customer_changed(uow, customer_id)
            return deleted_override(existing)

        return await runtime.run(job)


# ---------------------------------------------------------------------- helpers


def subscription_events(
    uow: UnitOfWork,
    subscription: Subscription,
    catalog: Catalog,
    now: datetime,
    *kinds: EventType,
) -> SubscriptionView:
    """Emit the subscription's events of this write, set the timers of those its instants will
    bring (emitting at once those already due), and answer its view."""
    view = subscription_view(subscription, catalog, now)
    due = subscription_timers(uow, subscription, now)
    for kind in (*kinds, *due):
        emit(uow, kind, subscription.customer, view, now)
    return view


def _existing_customer(uow: UnitOfWork, customer_id: str) -> Customer:
    customer = uow.customers.get(customer_id)
    if customer is None:
        raise NotFound(f"no customer {customer_id!r}.", {"customer": customer_id})
    return customer


def _active_customer(uow: UnitOfWork, customer_id: str) -> Customer:
    customer = _existing_customer(uow, customer_id)
    if customer.is_archived:
        raise Conflict(f"customer {customer_id!r} is archived.", {"customer": customer_id})
    return customer


def _existing_subscription(uow: UnitOfWork, customer_id: str, subscription_id: str) -> Subscription:
    subscription = uow.holdings.get_subscription(customer_id, subscription_id)
    if subscription is None:
        raise NotFound(f"customer {customer_id!r} has no subscription {subscription_id}.")
    return subscription


def _plan_to_subscribe(catalog: Catalog, plan_id: str, version: int | None) -> Plan:
    """The plan version a new subscription goes on: the latest, or the one named."""
    plan = catalog.plans.get(plan_id)
    if plan is None:
        raise InvalidRequest(f"plan: no plan {plan_id!r}.", {"field": "plan"})
    if catalog.is_archived("plan", plan_id):
        raise Conflict(
            f"plan {plan_id!r} is archived: it takes no new subscriptions.", {"plan": plan_id}
        )
    if version is None:
        return plan
    pinned = catalog.plan_at(plan_id, version)
    if pinned is None:
        raise InvalidRequest(
            f"plan_version: plan {plan_id!r} has no version {version} (its latest is"
            f" {plan.version}).",
            {"field": "plan_version"},
        )
    return pinned


def _addon_holdings(
    catalog: Catalog,
    plan: Plan,
    requested: Sequence[AddonRequest],
    held: Sequence[AddonQuantity],
    now: datetime,
) -> tuple[AddonQuantity, ...]:
    """The entries ``requested`` asks for. An add-on the subscription ``held`` already keeps
    its versions (and any migration waiting for it) unless the request names another version
    than the one it is on; a new entry takes the latest version, or the one named, and may not
    be of an archived add-on."""
    already = {entry.id: entry for entry in held}
    seen: set[str] = set()
    holdings = []
    for request in requested:
        addon_id, quantity = request.id, request.quantity
        latest = catalog.addons.get(addon_id)
        if latest is None:
            raise InvalidRequest(f"addons: no add-on {addon_id!r}.", {"field": "addons"})
        kept = already.get(addon_id)
        if kept is None and catalog.is_archived("addon", addon_id):
            raise Conflict(
                f"add-on {addon_id!r} is archived: it takes no new entries.", {"addon": addon_id}
            )
        current = None if kept is None else kept.version_at(now)
        version = request.version or current or latest.version
        addon = catalog.addon_at(addon_id, version)
        if addon is None:
            raise InvalidRequest(
                f"addons: add-on {addon_id!r} has no version {version} (its latest is"
                f" {latest.version}).",
                {"field": "addons"},
            )
        if addon.product != plan.product:
            raise InvalidRequest(
                f"addons: add-on {addon_id!r} is for product {addon.product!r}, "
                f"not {plan.product!r}.",
                {"field": "addons"},
            )
        if addon_id in seen:
            raise InvalidRequest(f"addons: {addon_id!r} is listed twice.", {"field": "addons"})
        if not 1 <= quantity <= MAX_ADDON_QUANTITY:
            raise InvalidRequest(
                f"addons: quantity must be between 1 and {MAX_ADDON_QUANTITY}.",
                {"field": "addons"},
            )
        for currency, credits in addon.credits.items():
            if credits.amount * quantity >= MAX_ABS_MICROS:
                raise InvalidRequest(
                    f"addons: {quantity} x {addon_id!r} would grant 10^12 {currency} or more"
                    " a period.",
                    {"field": "addons"},
                )
        seen.add(addon_id)
        if kept is None:
            versions = Versions(version)
        elif version == current:
            versions = kept.versions
        else:  # the entry moves to the version named, now: a migration of this entry alone
            versions = kept.versions.moved(version, now, now, mid_period=True)
        holdings.append(AddonQuantity(addon_id, quantity, versions))
    return tuple(holdings)


def _require_room_for_recurring_credits(
    catalog: Catalog, subscriptions: Sequence[Subscription], now: datetime
) -> None:
    """Refuse holdings whose recurring credits could not fit in a pool: each would be minted
    the first time the pool is read in its period, and every read after would fail."""
    for currency, total in recurring_credits(catalog, subscriptions, now).items():
        if total >= RECURRING_ROOM:
            raise InvalidRequest(
                f"addons: the customer's subscriptions would grant 10^12 {currency} or more a"
                " period together.",
                {"field": "addons"},
            )


def _check_ends_after_start(ends_at: datetime | None, starts_at: datetime) -> None:
    if ends_at is not None and ends_at <= starts_at:
        raise InvalidRequest("ends_at must be after starts_at.", {"field": "ends_at"})
