"""The demo: PRODUCT.md's AI coding agent, its catalog and a few workspaces.

Loading it twice changes nothing: catalog objects and customers are created or replaced with the
same content, subscriptions and promotions are made only for a customer that has none, and
budgets keep their anchor.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from allotment.api.routes.catalog_document import decode_catalog
from allotment.api.services import Services
from allotment.catalog_files import read_catalog_file
from allotment.domain.catalog import Enforcement
from allotment.domain.periods import ResetPeriod
from allotment.domain.quantities import Micros, parse_quantity
from allotment.service.customers import AddonRequest, SubscriptionRequest

DEMO_CATALOG = Path(__file__).with_name("demo_catalog.yaml")
"""The demo's catalog as a catalog file, in the format ``allotment catalog export`` writes."""


def demo_catalog() -> dict[str, Any]:
    """The demo's catalog document: what ``allotment demo`` applies."""
    return read_catalog_file(DEMO_CATALOG)


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
    definitions, refused = decode_catalog(demo_catalog())
    applied = await services.catalog_document.apply(definitions, dry_run=False, refused=refused)
    actions = Counter(change.action for change in applied.changes)
    progress(
        f"catalog: {len(applied.changes)} objects ({actions['create']} created,"
        f" {actions['update']} changed, {actions['unchanged']} unchanged)"
    )

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
