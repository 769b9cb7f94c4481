"""The demo: PRODUCT.md's AI coding agent, its catalog and a few workspaces.

Loading it twice changes nothing: catalog objects and customers are created or replaced with the
same content, subscriptions and promotions are made only for a customer that has none, and
budgets keep their anchor.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from allotment.api.services import Services
from allotment.domain.catalog import Enforcement
from allotment.domain.periods import ResetPeriod
from allotment.domain.quantities import Micros, parse_quantity
from allotment.service.catalog import CatalogKind
from allotment.service.customers import AddonRequest, SubscriptionRequest

FEATURES: dict[str, dict[str, Any]] = {
    "sso": {"name": "Single sign-on", "kind": "boolean"},
    "priority-support": {"name": "Priority support", "kind": "boolean"},
    "seats": {"name": "Seats", "kind": "numeric", "unit": "seat"},
    "ai-requests": {"name": "Agent requests", "kind": "metered", "unit": "request"},
    "model-tokens": {"name": "Model tokens", "kind": "metered", "unit": "token"},
}
CURRENCIES: dict[str, dict[str, Any]] = {
    "ai-credits": {
        "name": "Model credits",
        "unit": "credit",
        "burn_order": ["promotional_first", "expiry", "priority", "created"],
    }
}
PRODUCTS: dict[str, dict[str, Any]] = {"coder": {"name": "Coding agent workspace"}}
_MODEL_TOKENS = {
    "limit": None,
    "reset": "month",
    "credit_cost": {"currency": "ai-credits", "per_unit": Decimal("0.001")},
}
_MONTHLY_CREDITS = {
    "ai-credits": {
        "amount": 1000,
        "every": "month",
        "category": "paid",
        "cost_basis": Decimal("0.01"),
        "overdraft_limit": 0,
    }
}
PLANS: dict[str, dict[str, Any]] = {
    "starter": {
        "product": "coder",
        "name": "Starter",
        "entitlements": {
            "seats": {"value": 3},
            "ai-requests": {"limit": 100, "reset": "day", "enforcement": "hard"},
        },
    },
    "team": {
        "product": "coder",
        "name": "Team",
        "parent": "starter",
        "entitlements": {
            "seats": {"value": 10},
            "ai-requests": {"limit": 1000, "reset": "month", "enforcement": "hard"},
            "model-tokens": _MODEL_TOKENS,
        },
        "credits": _MONTHLY_CREDITS,
    },
    "enterprise": {
        "product": "coder",
        "name": "Enterprise",
        "parent": "team",
        "trial_days": 14,
        "entitlements": {
            "sso": {},
            "priority-support": {},
            "seats": {"value": None},
            "ai-requests": {"limit": 20000, "reset": "month", "enforcement": "soft"},
        },
        "credits": _MONTHLY_CREDITS,
    },
}
ADDONS: dict[str, dict[str, Any]] = {
    "extra-requests": {
        "product": "coder",
        "name": "500 more agent requests a month",
        "entitlements": {"ai-requests": {"limit": 500, "mode": "increment"}},
    },
    "seat-pack": {
        "product": "coder",
        "name": "5 more seats",
        "entitlements": {"seats": {"value": 5, "mode": "increment"}},
    },
}


# Acme splits its monthly credits and requests across departments, teams and agents.
ACME_ENTITIES: dict[str, tuple[str | None, str, str]] = {
    "engineering": (None, "department", "Engineering"),
    "platform": ("engineering", "team", "Platform team"),
    "research": ("engineering", "team", "Research team"),
    "agent-7": ("platform", "agent", "Review agent"),
    "agent-9": ("research", "agent", "Experiment agent"),
}
_HARD, _SOFT = Enforcement.HARD, Enforcement.SOFT
ACME_BUDGETS: dict[tuple[str, str], tuple[Micros, ResetPeriod, Enforcement]] = {
    ("engineering", "ai-credits"): (parse_quantity(800, "limit"), ResetPeriod.MONTH, _HARD),
    ("platform", "ai-credits"): (parse_quantity(300, "limit"), ResetPeriod.MONTH, _HARD),
    ("research", "ai-requests"): (parse_quantity(400, "limit"), ResetPeriod.MONTH, _SOFT),
    ("agent-7", "ai-requests"): (parse_quantity(50, "limit"), ResetPeriod.DAY, _HARD),
}


async def load_demo(services: Services, progress: Callable[[str], None] = lambda _: None) -> str:
    """Create or refresh the demo data; returns a summary of what to try."""
    catalog = services.catalog
    for kind, objects in (
        (CatalogKind.FEATURE, FEATURES),
        (CatalogKind.CURRENCY, CURRENCIES),
        (CatalogKind.PRODUCT, PRODUCTS),
        (CatalogKind.PLAN, PLANS),
        (CatalogKind.ADDON, ADDONS),
    ):
        for object_id, document in objects.items():
            await catalog.put(kind, object_id, document)
        progress(f"catalog: {len(objects)} {kind.value} object(s)")

    customers = services.customers
    workspaces = {
        "acme": (
            "Acme Robotics (Team, trialing Enterprise)",
            [
                SubscriptionRequest(plan="team"),
                SubscriptionRequest(plan="enterprise", trial=True),
            ],
        ),
        "globex": ("Globex (Starter)", [SubscriptionRequest(plan="starter")]),
        "initech": (
            "Initech (Team with extra requests and a seat pack)",
            [
                SubscriptionRequest(
                    plan="team",
                    addons=[AddonRequest("extra-requests", 2), AddonRequest("seat-pack", 1)],
                ),
            ],
        ),
    }
    for customer_id, (name, subscriptions) in workspaces.items():
        await customers.put_customer(
            customer_id, name=name, metadata={"demo": True}, billing_id=None
        )
        existing = await customers.list_subscriptions(customer_id, None, 1)
        if not existing.items:
            for request in subscriptions:
                await customers.subscribe(customer_id, request)
        progress(f"customer: {customer_id} ({name})")
    for entity_id, (parent, entity_kind, entity_name) in ACME_ENTITIES.items():
        await services.entities.put(
            "acme", entity_id, parent=parent, kind=entity_kind, name=entity_name
        )
    for (entity_id, target), (limit, reset, enforcement) in ACME_BUDGETS.items():
        await services.budgets.put(
            "acme", entity_id, target, limit=limit, reset=reset, enforcement=enforcement
        )
    progress(f"acme: {len(ACME_ENTITIES)} entities, {len(ACME_BUDGETS)} budgets")
    return (
        "Demo loaded: plans starter < team < enterprise (product 'coder'), add-ons extra-requests "
        "and seat-pack, customers acme, globex and initech; acme splits its credits and requests "
        "across engineering > platform, research and their agents.\n"
        'Try:  curl -s localhost:8080/v1/check -H "Authorization: Bearer $ALLOTMENT_ADMIN_KEY" '
        '-d \'{"customer": "acme", "feature": "sso"}\''
    )
