"""Catalog use cases: create or replace, read and list features, currencies, products, plans
and add-ons. The catalog lives in memory; each change is validated against all of it, stored as
its document and published when durable. Answers are typed (``service/catalog_views.py``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import msgspec

from allotment.domain import documents
from allotment.domain.catalog import Catalog
from allotment.domain.changes import CatalogChanged
from allotment.domain.errors import InvalidRequest, NotFound
from allotment.domain.ids import require_client_id
from allotment.service import catalog_views
from allotment.service.catalog_views import CatalogView
from allotment.service.ports import Page, UnitOfWork
from allotment.service.projector import CatalogLoaded
from allotment.service.runtime import Runtime

_encode = msgspec.json.Encoder(decimal_format="number").encode


class CatalogKind(StrEnum):
    FEATURE = "feature"
    CURRENCY = "currency"
    PRODUCT = "product"
    PLAN = "plan"
    ADDON = "addon"


@dataclass(frozen=True, slots=True)
class _KindRules:
    label: str
    objects: Callable[[Catalog], Mapping[str, Any]]
    add: Callable[[Catalog, str, Mapping[str, Any]], tuple[Catalog, Any]]
    to_document: Callable[[Any], dict[str, Any]]
    to_view: Callable[[Any], CatalogView]


def _add_feature(catalog: Catalog, object_id: str, doc: Mapping[str, Any]) -> tuple[Catalog, Any]:
    feature = documents.feature_from_document(object_id, doc)
    return catalog.with_feature(feature), feature


def _add_currency(catalog: Catalog, object_id: str, doc: Mapping[str, Any]) -> tuple[Catalog, Any]:
    currency = documents.currency_from_document(object_id, doc)
    return catalog.with_currency(currency), currency


def _add_product(catalog: Catalog, object_id: str, doc: Mapping[str, Any]) -> tuple[Catalog, Any]:
    product = documents.product_from_document(object_id, doc)
    return catalog.with_product(product), product


def _add_plan(catalog: Catalog, object_id: str, doc: Mapping[str, Any]) -> tuple[Catalog, Any]:
    plan = documents.plan_from_document(object_id, doc, catalog)
    return catalog.with_plan(plan), plan


def _add_addon(catalog: Catalog, object_id: str, doc: Mapping[str, Any]) -> tuple[Catalog, Any]:
    addon = documents.addon_from_document(object_id, doc, catalog)
    return catalog.with_addon(addon), addon


_RULES = {
    CatalogKind.FEATURE: _KindRules(
        "feature",
        lambda c: c.features,
        _add_feature,
        documents.feature_to_document,
        catalog_views.feature_view,
    ),
    CatalogKind.CURRENCY: _KindRules(
        "currency",
        lambda c: c.currencies,
        _add_currency,
        documents.currency_to_document,
        catalog_views.currency_view,
    ),
    CatalogKind.PRODUCT: _KindRules(
        "product",
        lambda c: c.products,
        _add_product,
        documents.product_to_document,
        catalog_views.product_view,
    ),
    CatalogKind.PLAN: _KindRules(
        "plan", lambda c: c.plans, _add_plan, documents.plan_to_document, catalog_views.plan_view
    ),
    CatalogKind.ADDON: _KindRules(
        "add-on",
        lambda c: c.addons,
        _add_addon,
        documents.addon_to_document,
        catalog_views.addon_view,
    ),
}


class CatalogService:
    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    def load(self) -> None:
        """Read the whole catalog from the store (at start-up)."""
        self._runtime.store.run_blocking(lambda uow: uow.fill(CatalogLoaded(uow.catalog.load())))

    async def put(
        self, kind: CatalogKind, object_id: str, document: Mapping[str, Any]
    ) -> tuple[CatalogView, bool]:
        """Create or replace one object; returns it and whether it was created."""
        require_client_id(object_id, f"{kind.value} id")
        rules = _RULES[kind]
        runtime = self._runtime

        def job(uow: UnitOfWork) -> tuple[CatalogView, bool]:
            catalog, added = rules.add(runtime.catalog_in(uow), object_id, document)
            stored = rules.to_document(added)
            now = runtime.clock.now()
            created = uow.catalog.save_object(kind.value, object_id, _encode(stored), now)
            runtime.stage_catalog(uow, catalog, CatalogChanged(kind.value, object_id, stored))
            return rules.to_view(added), created

        return await runtime.run(job)

    def get(self, kind: CatalogKind, object_id: str) -> CatalogView:
        rules = _RULES[kind]
        found = rules.objects(self._runtime.catalog.current).get(object_id)
        if found is None:
            raise NotFound(f"no {rules.label} {object_id!r}.", {"id": object_id})
        return rules.to_view(found)

    def list(self, kind: CatalogKind, after: str | None, limit: int) -> Page[CatalogView]:
        """Objects in creation order; the cursor is the id of the last one returned."""
        rules = _RULES[kind]
        objects = rules.objects(self._runtime.catalog.current)
        ids = list(objects)
        if after is not None and after not in objects:
            raise InvalidRequest(f"after: no {rules.label} {after!r} to continue from.")
        start = ids.index(after) + 1 if after is not None else 0
        chosen = ids[start : start + limit]
        more = start + limit < len(ids)
        items = [rules.to_view(objects[i]) for i in chosen]
        return Page(items=items, next_cursor=chosen[-1] if more and chosen else None)
