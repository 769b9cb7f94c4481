"""What the catalog's routes answer: features, currencies, products, plans and add-ons.

Each answer is ``{"id": ..., <the definition with defaults filled in>}`` (``docs/api-notes.md``),
field for field in the order the stored definition has. Entitlement specs take their fields
from the feature's kind, so :class:`EntitlementSpec` leaves out the fields a kind does not have
(``UNSET``) and writes ``null`` for an unlimited value or limit.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal, cast

import msgspec
from msgspec import UNSET, Struct, UnsetType
from msgspec.structs import asdict

from allotment.domain.catalog import (
    Addon,
    AddonMode,
    BooleanSpec,
    CreditCategory,
    Currency,
    Enforcement,
    Feature,
    FeatureKind,
    NumericSpec,
    Plan,
    Product,
    RecurringCredits,
    Spec,
)
from allotment.domain.periods import ResetPeriod
from allotment.domain.quantities import Micros, to_json_number
from allotment.domain.timefmt import format_instant
from allotment.service.answers import InstantText, Number, Quantity

BurnOrderKey = Literal[
    "priority",
    "expiry",
    "promotional_first",
    "paid_first",
    "created",
    "cheapest_first",
    "costliest_first",
]
BillingPeriod = Literal["month", "year"]
RecurringPeriod = Literal["hour", "day", "week", "month", "year"]


class CreditCostView(Struct, frozen=True):
    """A metered feature's price: ``per_unit`` credits of ``currency`` for each unit used."""

    currency: str
    per_unit: Quantity


class EntitlementSpec(Struct, frozen=True, kw_only=True):
    """A feature's spec in a plan, promotion or override. Its fields follow the feature's kind:
    none for ``boolean``; ``value`` for ``numeric``; ``limit``, ``reset``, ``enforcement`` and,
    when the feature is priced in credits, ``credit_cost`` for ``metered``. A null ``value`` or
    ``limit`` is unlimited."""

    value: Number | UnsetType = UNSET
    limit: Number | UnsetType = UNSET
    reset: ResetPeriod | UnsetType = UNSET
    enforcement: Enforcement | UnsetType = UNSET
    credit_cost: CreditCostView | UnsetType = UNSET


class AddonEntitlementView(EntitlementSpec, frozen=True, kw_only=True):
    """An add-on's spec for a feature, and whether it replaces or adds to the plan's."""

    mode: AddonMode


class RecurringCreditsView(Struct, frozen=True, kw_only=True):
    """Credits a plan or add-on grants at subscription start and every ``every`` after it."""

    amount: Quantity
    every: RecurringPeriod
    category: CreditCategory
    cost_basis: Quantity
    overdraft_limit: Number


class FeatureView(Struct, frozen=True, kw_only=True):
    """``PUT``/``GET /v1/features/{id}``, and each item of ``GET /v1/features``."""

    id: str
    name: str
    kind: FeatureKind
    unit: str | None


class CurrencyView(Struct, frozen=True, kw_only=True):
    """``PUT``/``GET /v1/currencies/{id}``, and each item of ``GET /v1/currencies``."""

    id: str
    name: str
    unit: str | None
    burn_order: list[BurnOrderKey]
    # Present when set, as in the stored definition (``credits.low``, ``events.md``).
    low_balance_threshold: Quantity | UnsetType = UNSET


class ProductView(Struct, frozen=True, kw_only=True):
    """``PUT``/``GET /v1/products/{id}``, and each item of ``GET /v1/products``."""

    id: str
    name: str


CatalogStatus = Literal["active", "archived"]


class PlanView(Struct, frozen=True, kw_only=True):
    """``PUT``/``GET``/``DELETE`` (archive) ``/v1/plans/{id}`` (the latest version), and each
    item of ``GET /v1/plans``. ``entitlements`` are the version's own; it inherits the rest
    from version ``parent_version`` of ``parent``, as that stood when this one was published."""

    id: str
    version: int
    status: CatalogStatus
    published_at: InstantText | None
    product: str
    name: str
    parent: str | None
    parent_version: int | None
    trial_days: int | None
    billing_period: BillingPeriod
    entitlements: dict[str, EntitlementSpec]
    credits: dict[str, RecurringCreditsView]


class PlanVersionView(PlanView, frozen=True, kw_only=True):
    """``GET /v1/plans/{id}/versions/{n}``, and each item of ``GET /v1/plans/{id}/versions``:
    a version, and how many live subscriptions are on it now."""

    subscriptions: int


class AddonView(Struct, frozen=True, kw_only=True):
    """``PUT``/``GET``/``DELETE`` (archive) ``/v1/addons/{id}`` (the latest version), and each
    item of ``GET /v1/addons``."""

    id: str
    version: int
    status: CatalogStatus
    published_at: InstantText | None
    product: str
    name: str
    entitlements: dict[str, AddonEntitlementView]
    credits: dict[str, RecurringCreditsView]


class AddonVersionView(AddonView, frozen=True, kw_only=True):
    """``GET /v1/addons/{id}/versions/{n}``, and each item of ``GET /v1/addons/{id}/versions``:
    a version, and how many live subscriptions hold it now."""

    subscriptions: int


class MigrationView(Struct, frozen=True, kw_only=True):
    """``POST /v1/plans/{id}/migrations`` and ``POST /v1/addons/{id}/migrations``: the
    migration, with how many live subscriptions it moves (or will, at their period's end).
    A plan's migration names ``plan``; an add-on's names ``addon``."""

    id: str
    plan: str | UnsetType = UNSET
    addon: str | UnsetType = UNSET
    from_versions: list[int]
    to_version: int
    at: Literal["now", "period_end"]
    subscriptions: int
    created_at: InstantText


class CatalogDocument(Struct, frozen=True, kw_only=True):
    """``GET /v1/catalog``: the latest version of every object as its definition, without
    server-made fields: what ``PUT /v1/catalog`` accepts."""

    features: dict[str, dict[str, Any]]
    currencies: dict[str, dict[str, Any]]
    products: dict[str, dict[str, Any]]
    plans: dict[str, dict[str, Any]]
    addons: dict[str, dict[str, Any]]


ChangeAction = Literal["create", "update", "unchanged"]


class FieldDiff(Struct, frozen=True):
    """A field's stored value and the document's (``null`` where the field is absent)."""

    from_: Any = msgspec.field(name="from")
    to: Any = None


class CatalogChange(Struct, frozen=True, kw_only=True):
    """What ``PUT /v1/catalog`` does (or would do) to one object: ``fields`` names what differs
    from the stored definition (``entitlements.sso`` for a spec added or removed,
    ``entitlements.seats.value`` for one field of one), ``diff`` gives each one's old and new
    value; ``version`` is the version a plan or add-on is (or would be) on after it. A plan
    republished because a plan it inherits from changed is an ``update`` with no ``fields``."""

    kind: Literal["feature", "currency", "product", "plan", "addon"]
    id: str
    action: ChangeAction
    version: int | UnsetType = UNSET
    fields: list[str]
    diff: dict[str, FieldDiff]


class CatalogApplied(Struct, frozen=True, kw_only=True):
    """``PUT /v1/catalog``: every object the document names (and every plan republished for a
    parent), in the order applied."""

    dry_run: bool
    changes: list[CatalogChange]


CatalogView = FeatureView | CurrencyView | ProductView | PlanView | AddonView


def feature_view(feature: Feature) -> FeatureView:
    return FeatureView(id=feature.id, name=feature.name, kind=feature.kind, unit=feature.unit)


def currency_view(currency: Currency) -> CurrencyView:
    return CurrencyView(
        id=currency.id,
        name=currency.name,
        unit=currency.unit,
        burn_order=[cast(BurnOrderKey, key) for key in currency.burn_order],
        low_balance_threshold=UNSET
        if currency.low_balance_threshold is None
        else to_json_number(currency.low_balance_threshold),
    )


def product_view(product: Product) -> ProductView:
    return ProductView(id=product.id, name=product.name)


def plan_view(plan: Plan, archived: bool) -> PlanView:
    return PlanView(**_plan_fields(plan, archived))


def plan_version_view(plan: Plan, archived: bool, subscriptions: int) -> PlanVersionView:
    return PlanVersionView(**_plan_fields(plan, archived), subscriptions=subscriptions)


def _plan_fields(plan: Plan, archived: bool) -> dict[str, Any]:
    return {
        "id": plan.id,
        "version": plan.version,
        "status": _status(archived),
        "published_at": _published(plan.published_at),
        "product": plan.product,
        "name": plan.name,
        "parent": plan.parent,
        "parent_version": plan.parent_version,
        "trial_days": plan.trial_days,
        "billing_period": cast(BillingPeriod, plan.billing_period.value),
        "entitlements": {f: entitlement_spec(s) for f, s in plan.entitlements.items()},
        "credits": _credits_view(plan.credits),
    }


def addon_view(addon: Addon, archived: bool) -> AddonView:
    return AddonView(**_addon_fields(addon, archived))


def addon_version_view(addon: Addon, archived: bool, subscriptions: int) -> AddonVersionView:
    return AddonVersionView(**_addon_fields(addon, archived), subscriptions=subscriptions)


def _status(archived: bool) -> CatalogStatus:
    return "archived" if archived else "active"


def _published(at: datetime | None) -> str | None:
    return None if at is None else format_instant(at)


def _addon_fields(addon: Addon, archived: bool) -> dict[str, Any]:
    return {
        "id": addon.id,
        "version": addon.version,
        "status": _status(archived),
        "published_at": _published(addon.published_at),
        "product": addon.product,
        "name": addon.name,
        "entitlements": {
            feature_id: AddonEntitlementView(
                **asdict(entitlement_spec(entitlement.spec)), mode=entitlement.mode
            )
            for feature_id, entitlement in addon.entitlements.items()
        },
        "credits": _credits_view(addon.credits),
    }


def entitlement_spec(spec: Spec) -> EntitlementSpec:
    """A spec in its contract form, with exactly the fields of its kind."""
    if isinstance(spec, BooleanSpec):
        return EntitlementSpec()
    if isinstance(spec, NumericSpec):
        return EntitlementSpec(value=_optional_number(spec.value))
    price = spec.credit_cost
    return EntitlementSpec(
        limit=_optional_number(spec.limit),
        reset=spec.reset,
        enforcement=spec.enforcement,
        credit_cost=UNSET
        if price is None
        else CreditCostView(price.currency, to_json_number(price.per_unit)),
    )


def _credits_view(credits: Mapping[str, RecurringCredits]) -> dict[str, RecurringCreditsView]:
    return {
        currency: RecurringCreditsView(
            amount=to_json_number(c.amount),
            every=cast(RecurringPeriod, c.every.value),
            category=c.category,
            cost_basis=to_json_number(c.cost_basis),
            overdraft_limit=_optional_number(c.overdraft_limit),
        )
        for currency, c in credits.items()
    }


def _optional_number(micros: Micros | None) -> Number:
    return None if micros is None else to_json_number(micros)
