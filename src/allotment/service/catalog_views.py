"""What the catalog's routes answer: features, currencies, products, plans and add-ons.

Each answer is ``{"id": ..., <the definition with defaults filled in>}`` (``docs/api-notes.md``),
field for field in the order the stored definition has. Entitlement specs take their fields
from the feature's kind, so :class:`EntitlementSpec` leaves out the fields a kind does not have
(``UNSET``) and writes ``null`` for an unlimited value or limit.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, cast

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
from allotment.service.answers import Number, Quantity

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


class ProductView(Struct, frozen=True, kw_only=True):
    """``PUT``/``GET /v1/products/{id}``, and each item of ``GET /v1/products``."""

    id: str
    name: str


class PlanView(Struct, frozen=True, kw_only=True):
    """``PUT``/``GET /v1/plans/{id}``, and each item of ``GET /v1/plans``."""

    id: str
    product: str
    name: str
    parent: str | None
    trial_days: int | None
    billing_period: BillingPeriod
    entitlements: dict[str, EntitlementSpec]
    credits: dict[str, RecurringCreditsView]


class AddonView(Struct, frozen=True, kw_only=True):
    """``PUT``/``GET /v1/addons/{id}``, and each item of ``GET /v1/addons``."""

    id: str
    product: str
    name: str
    entitlements: dict[str, AddonEntitlementView]
    credits: dict[str, RecurringCreditsView]


CatalogView = FeatureView | CurrencyView | ProductView | PlanView | AddonView


def feature_view(feature: Feature) -> FeatureView:
    return FeatureView(id=feature.id, name=feature.name, kind=feature.kind, unit=feature.unit)


def currency_view(currency: Currency) -> CurrencyView:
    return CurrencyView(
        id=currency.id,
        name=currency.name,
        unit=currency.unit,
        burn_order=[cast(BurnOrderKey, key) for key in currency.burn_order],
    )


def product_view(product: Product) -> ProductView:
    return ProductView(id=product.id, name=product.name)


def plan_view(plan: Plan) -> PlanView:
    return PlanView(
        id=plan.id,
        product=plan.product,
        name=plan.name,
        parent=plan.parent,
        trial_days=plan.trial_days,
        billing_period=cast(BillingPeriod, plan.billing_period.value),
        entitlements={f: entitlement_spec(s) for f, s in plan.entitlements.items()},
        credits=_credits_view(plan.credits),
    )


def addon_view(addon: Addon) -> AddonView:
    return AddonView(
        id=addon.id,
        product=addon.product,
        name=addon.name,
        entitlements={
            feature_id: AddonEntitlementView(
                **asdict(entitlement_spec(entitlement.spec)), mode=entitlement.mode
            )
            for feature_id, entitlement in addon.entitlements.items()
        },
        credits=_credits_view(addon.credits),
    )


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
