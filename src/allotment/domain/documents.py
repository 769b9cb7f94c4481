"""Catalog objects to and from their JSON documents (the bodies of the catalog's ``PUT``s).

Documents are mappings of decoded JSON whose numbers are ``Decimal`` or ``int``. The same
functions read a request body and a stored document, so what is stored is exactly what was
accepted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from allotment.domain.catalog import (
    Addon,
    AddonEntitlement,
    AddonMode,
    Catalog,
    Currency,
    Feature,
    FeatureKind,
    Plan,
    Product,
    RecurringCredits,
    Spec,
    optional_number,
    optional_quantity,
    parse_billing_period,
    parse_burn_order,
    parse_enum,
    parse_recurring_credits,
    parse_spec,
    parse_trial_days,
    recurring_credits_to_document,
    spec_to_document,
)
from allotment.domain.errors import InvalidRequest
from allotment.domain.ids import require_client_id
from allotment.domain.timefmt import from_epoch_micros, to_epoch_micros

Document = Mapping[str, Any]


def feature_from_document(feature_id: str, document: Document) -> Feature:
    return Feature(
        id=feature_id,
        name=document["name"],
        kind=parse_enum(FeatureKind, document["kind"], "kind"),
        unit=document.get("unit"),
    )


def feature_to_document(feature: Feature) -> dict[str, Any]:
    return {"name": feature.name, "kind": feature.kind.value, "unit": feature.unit}


def currency_from_document(currency_id: str, document: Document) -> Currency:
    return Currency(
        id=currency_id,
        name=document["name"],
        unit=document.get("unit"),
        burn_order=parse_burn_order(document.get("burn_order")),
        low_balance_threshold=optional_quantity(
            document.get("low_balance_threshold"), "low_balance_threshold"
        ),
    )


def currency_to_document(currency: Currency) -> dict[str, Any]:
    document: dict[str, Any] = {
        "name": currency.name,
        "unit": currency.unit,
        "burn_order": list(currency.burn_order),
    }
    if currency.low_balance_threshold is not None:  # absent, as before the field existed
        document["low_balance_threshold"] = optional_number(currency.low_balance_threshold)
    return document


def product_from_document(product_id: str, document: Document) -> Product:
    return Product(id=product_id, name=document["name"])


def product_to_document(product: Product) -> dict[str, Any]:
    return {"name": product.name}


def plan_from_document(plan_id: str, document: Document, catalog: Catalog) -> Plan:
    parent = document.get("parent")
    return Plan(
        id=plan_id,
        product=require_client_id(document["product"], "product"),
        name=document["name"],
        parent=None if parent is None else require_client_id(parent, "parent"),
        trial_days=parse_trial_days(document.get("trial_days")),
        billing_period=parse_billing_period(document.get("billing_period", "month")),
        entitlements={
            feature_id: parse_spec(
                catalog.feature_for(feature_id, f"entitlements.{feature_id}"),
                fields,
                f"entitlements.{feature_id}",
            )
            for feature_id, fields in document.get("entitlements", {}).items()
        },
        credits=_credits_from_document(document.get("credits") or {}),
    )


def plan_to_document(plan: Plan) -> dict[str, Any]:
    return {
        "product": plan.product,
        "name": plan.name,
        "parent": plan.parent,
        "trial_days": plan.trial_days,
        "billing_period": plan.billing_period.value,
        "entitlements": {f: spec_to_document(s) for f, s in plan.entitlements.items()},
        "credits": _credits_to_document(plan.credits),
    }


def addon_from_document(addon_id: str, document: Document, catalog: Catalog) -> Addon:
    entitlements: dict[str, AddonEntitlement] = {}
    for feature_id, fields in document.get("entitlements", {}).items():
        where = f"entitlements.{feature_id}"
        feature = catalog.feature_for(feature_id, where)
        if "mode" not in fields:
            raise InvalidRequest(f"{where}.mode is required ('increment' or 'override').")
        spec_fields = {name: value for name, value in fields.items() if name != "mode"}
        entitlements[feature_id] = AddonEntitlement(
            spec=parse_spec(feature, spec_fields, where),
            mode=parse_enum(AddonMode, fields["mode"], f"{where}.mode"),
        )
    return Addon(
        id=addon_id,
        product=require_client_id(document["product"], "product"),
        name=document["name"],
        entitlements=entitlements,
        credits=_credits_from_document(document.get("credits") or {}),
    )


def addon_to_document(addon: Addon) -> dict[str, Any]:
    return {
        "product": addon.product,
        "name": addon.name,
        "entitlements": {
            feature_id: {**spec_to_document(entitlement.spec), "mode": entitlement.mode.value}
            for feature_id, entitlement in addon.entitlements.items()
        },
        "credits": _credits_to_document(addon.credits),
    }


def spec_from_document(feature: Feature, document: Document, where: str = "spec") -> Spec:
    return parse_spec(feature, document, where)


def _credits_from_document(document: Document) -> dict[str, RecurringCredits]:
    return {
        require_client_id(currency, "credits"): parse_recurring_credits(
            fields, f"credits.{currency}"
        )
        for currency, fields in document.items()
    }


def _credits_to_document(credits: Mapping[str, RecurringCredits]) -> dict[str, Any]:
    return {currency: recurring_credits_to_document(c) for currency, c in credits.items()}


# --------------------------------------------------------------------------------------------
# Plans and add-ons are stored with every version: {"status", "versions": [{"version",
# "published_at" (epoch microseconds), "parent_version" (plans), "definition"}, ...]}.

ACTIVE, ARCHIVED = "active", "archived"


def plan_history_document(history: Iterable[Plan], archived: bool) -> dict[str, Any]:
    return _history_document(
        (
            plan.version,
            plan.published_at,
            {"parent_version": plan.parent_version},
            plan_to_document(plan),
        )
        for plan in history
    ) | {"status": ARCHIVED if archived else ACTIVE}


def addon_history_document(history: Iterable[Addon], archived: bool) -> dict[str, Any]:
    return _history_document(
        (addon.version, addon.published_at, {}, addon_to_document(addon)) for addon in history
    ) | {"status": ARCHIVED if archived else ACTIVE}


def _history_document(
    versions: Iterable[tuple[int, datetime | None, dict[str, Any], dict[str, Any]]],
) -> dict[str, Any]:
    return {
        "versions": [
            {
                "version": version,
                "published_at": None if at is None else to_epoch_micros(at),
                **extra,
                "definition": definition,
            }
            for version, at, extra, definition in versions
        ]
    }


def plan_history_from_document(
    plan_id: str, document: Document, catalog: Catalog
) -> tuple[Plan, ...]:
    return tuple(
        replace(
            plan_from_document(plan_id, entry["definition"], catalog),
            version=entry["version"],
            parent_version=entry["parent_version"],
            published_at=_published_at(entry),
        )
        for entry in document["versions"]
    )


def addon_history_from_document(
    addon_id: str, document: Document, catalog: Catalog
) -> tuple[Addon, ...]:
    return tuple(
        replace(
            addon_from_document(addon_id, entry["definition"], catalog),
            version=entry["version"],
            published_at=_published_at(entry),
        )
        for entry in document["versions"]
    )


def _published_at(entry: Document) -> datetime | None:
    at = entry["published_at"]
    return None if at is None else from_epoch_micros(at)


def is_archived(document: Document) -> bool:
    return bool(document["status"] == ARCHIVED)


def add_document(catalog: Catalog, kind: str, object_id: str, document: Document) -> Catalog:
    """``catalog`` with the object of ``kind`` created or replaced by its stored document."""
    if kind == "feature":
        return catalog.with_feature(feature_from_document(object_id, document))
    if kind == "currency":
        return catalog.with_currency(currency_from_document(object_id, document))
    if kind == "product":
        return catalog.with_product(product_from_document(object_id, document))
    if kind == "plan":
        history = plan_history_from_document(object_id, document, catalog)
        archived = [object_id] if is_archived(document) else []
        return catalog.with_plan_histories({object_id: history}, archived)
    if kind == "addon":
        addons = addon_history_from_document(object_id, document, catalog)
        return catalog.with_addon_history(object_id, addons, is_archived(document))
    raise ValueError(f"unknown catalog kind {kind!r}")


# Catalog objects load in dependency order: features and currencies before what uses them.
_LOAD_ORDER = ("feature", "currency", "product", "addon")


def catalog_from_documents(objects: Iterable[tuple[str, str, Document]]) -> Catalog:
    """The catalog of the stored ``(kind, id, document)`` objects, given oldest first."""
    by_kind: dict[str, list[tuple[str, Document]]] = {}
    for kind, object_id, document in objects:
        by_kind.setdefault(kind, []).append((object_id, document))
    catalog = Catalog()
    for kind in _LOAD_ORDER:
        for object_id, document in by_kind.get(kind, []):
            catalog = add_document(catalog, kind, object_id, document)
    # Plans go in together: a version folds the parent version it names, whatever their order.
    stored = by_kind.get("plan", [])
    histories = {
        plan_id: plan_history_from_document(plan_id, document, catalog)
        for plan_id, document in stored
    }
    archived = [plan_id for plan_id, document in stored if is_archived(document)]
    return catalog.with_plan_histories(histories, archived)
