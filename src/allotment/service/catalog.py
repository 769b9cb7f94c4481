"""Catalog use cases: create or replace, read, list and archive features, currencies, products,
plans and add-ons; publish and read the versions of plans and add-ons.

The catalog lives in memory; each change is validated against all of it, stored as its document
and published when durable. A plan or add-on is stored with every version it has had
(``domain/documents.py``); a definition that differs from the latest publishes the next version,
and a plan's publication republishes every plan below it. Answers are typed
(``service/catalog_views.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import msgspec

from allotment.domain import documents
from allotment.domain.catalog import Addon, Catalog, Plan
from allotment.domain.changes import CatalogChanged
from allotment.domain.errors import Conflict, InvalidRequest, NotFound
from allotment.domain.events import EventType
from allotment.domain.ids import require_client_id
from allotment.service import catalog_views
from allotment.service.catalog_views import (
    AddonVersionView,
    CatalogView,
    PlanVersionView,
)
from allotment.service.events import emit
from allotment.service.ports import Page, UnitOfWork
from allotment.service.projector import CatalogLoaded
from allotment.service.runtime import Runtime

encode_document = msgspec.json.Encoder(decimal_format="number").encode


class CatalogKind(StrEnum):
    FEATURE = "feature"
    CURRENCY = "currency"
    PRODUCT = "product"
    PLAN = "plan"
    ADDON = "addon"


VERSIONED = (CatalogKind.PLAN, CatalogKind.ADDON)


@dataclass(frozen=True, slots=True)
class _KindRules:
    label: str
    objects: Callable[[Catalog], Mapping[str, Any]]
    to_view: Callable[[Catalog, Any], CatalogView]


_RULES = {
    CatalogKind.FEATURE: _KindRules(
        "feature", lambda c: c.features, lambda _, o: catalog_views.feature_view(o)
    ),
    CatalogKind.CURRENCY: _KindRules(
        "currency", lambda c: c.currencies, lambda _, o: catalog_views.currency_view(o)
    ),
    CatalogKind.PRODUCT: _KindRules(
        "product", lambda c: c.products, lambda _, o: catalog_views.product_view(o)
    ),
    CatalogKind.PLAN: _KindRules(
        "plan",
        lambda c: c.plans,
        lambda c, p: catalog_views.plan_view(p, c.is_archived("plan", p.id)),
    ),
    CatalogKind.ADDON: _KindRules(
        "add-on",
        lambda c: c.addons,
        lambda c, a: catalog_views.addon_view(a, c.is_archived("addon", a.id)),
    ),
}


def label(kind: CatalogKind) -> str:
    return _RULES[kind].label


def staged_object(
    catalog: Catalog, kind: CatalogKind, object_id: str, document: Mapping[str, Any], at: datetime
) -> tuple[Catalog, list[CatalogChanged]]:
    """``catalog`` with one object created, replaced or published from its definition, and the
    changes to store and log for it (none when a plan's or add-on's definition is the latest's).

    Raises the domain's refusal when the definition does not fit the catalog."""
    if kind is CatalogKind.FEATURE:
        feature = documents.feature_from_document(object_id, document)
        return catalog.with_feature(feature), [_plain(kind, object_id, feature)]
    if kind is CatalogKind.CURRENCY:
        currency = documents.currency_from_document(object_id, document)
        return catalog.with_currency(currency), [_plain(kind, object_id, currency)]
    if kind is CatalogKind.PRODUCT:
        product = documents.product_from_document(object_id, document)
        return catalog.with_product(product), [_plain(kind, object_id, product)]
    if kind is CatalogKind.PLAN:
        plan = documents.plan_from_document(object_id, document, catalog)
        return publish_plans(catalog, [plan], at)
    addon = documents.addon_from_document(object_id, document, catalog)
    staged, published = catalog.publish_addon(addon, at)
    return staged, [] if published is None else [history_change(staged, "addon", object_id)]


def publish_plans(
    catalog: Catalog, plans: Sequence[Plan], at: datetime
) -> tuple[Catalog, list[CatalogChanged]]:
    staged, published = catalog.publish_plans(plans, at)
    return staged, [history_change(staged, "plan", plan.id) for plan in published]


DEFINITIONS: dict[CatalogKind, Callable[[Any], dict[str, Any]]] = {
    CatalogKind.FEATURE: documents.feature_to_document,
    CatalogKind.CURRENCY: documents.currency_to_document,
    CatalogKind.PRODUCT: documents.product_to_document,
    CatalogKind.PLAN: documents.plan_to_document,
    CatalogKind.ADDON: documents.addon_to_document,
}
"""Each kind's definition: what its ``PUT`` takes, defaults filled in (a plan's or add-on's for
one version)."""


def objects(catalog: Catalog, kind: CatalogKind) -> Mapping[str, Any]:
    """The catalog's objects of ``kind`` (the latest version of each plan or add-on)."""
    return _RULES[kind].objects(catalog)


def stored_definition(catalog: Catalog, kind: CatalogKind, object_id: str) -> dict[str, Any] | None:
    """The object's definition (a plan's or add-on's latest version), if the catalog has it."""
    found = objects(catalog, kind).get(object_id)
    return None if found is None else DEFINITIONS[kind](found)


def _plain(kind: CatalogKind, object_id: str, value: Any) -> CatalogChanged:
    return CatalogChanged(kind.value, object_id, DEFINITIONS[kind](value))


def history_change(catalog: Catalog, kind: str, object_id: str) -> CatalogChanged:
    """The change that stores a plan or add-on as ``catalog`` holds it: every version, and its
    status."""
    archived = catalog.is_archived(kind, object_id)
    document = (
        documents.plan_history_document(catalog.plan_versions[object_id], archived)
        if kind == "plan"
        else documents.addon_history_document(catalog.addon_versions[object_id], archived)
    )
    return CatalogChanged(kind, object_id, document)


def store_changes(
    runtime: Runtime,
    uow: UnitOfWork,
    before: Catalog,
    staged: Catalog,
    changes: Sequence[CatalogChanged],
    at: datetime,
) -> None:
    """Write each change's object, log it, and make ``staged`` the catalog later jobs of the
    batch read.

    A plan's or add-on's stored document must still be the one ``before`` was read from: two
    processes publishing the same plan at once would otherwise both make version n+1, and one
    of them would be lost. So must every plan a published plan inherits from, or the version
    would fold a parent version that is no longer the latest. The store holds those rows from
    this read to the end of the job."""
    # Plans written here are checked as themselves, before their own write.
    checked = {change.object_id for change in changes if change.object_kind == "plan"}
    for change in changes:
        kind, object_id = change.object_kind, change.object_id
        if kind in VERSIONED:
            _require_unchanged(uow, before, kind, object_id)
        if kind == "plan":  # a version folds its parent chain as this process knows it
            for ancestor in _ancestors(staged, object_id):
                if ancestor not in checked and ancestor in before.plans:
                    checked.add(ancestor)
                    _require_unchanged(uow, before, "plan", ancestor)
        uow.catalog.save_object(kind, object_id, encode_document(change.document), at)
    runtime.stage_catalog(uow, staged, changes)
    for change in changes:  # each publication's event follows the changes it describes
        if change.object_kind in VERSIONED:
            _published(uow, before, staged, change.object_kind, change.object_id, at)


def _published(
    uow: UnitOfWork, before: Catalog, staged: Catalog, kind: str, object_id: str, at: datetime
) -> None:
    """``plan.published`` or ``addon.published`` when the write made a new version."""
    latest = staged.plans if kind == "plan" else staged.addons
    previous = before.plans if kind == "plan" else before.addons
    version = latest[object_id].version
    if object_id not in previous or previous[object_id].version != version:
        event = EventType.PLAN_PUBLISHED if kind == "plan" else EventType.ADDON_PUBLISHED
        emit(uow, event, None, {"id": object_id, "version": version}, at)


def _ancestors(catalog: Catalog, plan_id: str) -> list[str]:
    """The plans above ``plan_id``, nearest first (a catalog's chains are acyclic)."""
    chain = []
    parent = catalog.plans[plan_id].parent
    while parent is not None:
        chain.append(parent)
        parent = catalog.plans[parent].parent
    return chain


def _require_unchanged(uow: UnitOfWork, before: Catalog, kind: str, object_id: str) -> None:
    """Refuse to write an object another process published or archived since ``before``."""
    history = (
        before.plan_versions.get(object_id, ())
        if kind == "plan"
        else before.addon_versions.get(object_id, ())
    )
    known = (len(history), before.is_archived(kind, object_id))
    stored = uow.catalog.stored_document(kind, object_id)
    found = (0, False)
    if stored is not None:
        document = msgspec.json.decode(stored)
        found = (len(document["versions"]), documents.is_archived(document))
    if found != known:
        raise Conflict(
            f"{kind} {object_id!r} was published or archived by another process meanwhile;"
            " send the request again.",
            {"id": object_id},
        )


class CatalogService:
    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    def load(self) -> None:
        """Read the whole catalog from the store (at start-up)."""
        self._runtime.store.run_blocking(lambda uow: uow.fill(CatalogLoaded(uow.catalog.load())))

    async def put(
        self, kind: CatalogKind, object_id: str, document: Mapping[str, Any]
    ) -> tuple[CatalogView, bool]:
        """Create or replace one object (a plan or add-on: publish its next version, unless
        the definition is the latest's); returns it and whether it was created."""
        require_client_id(object_id, f"{kind.value} id")
        rules = _RULES[kind]
        runtime = self._runtime

        def job(uow: UnitOfWork) -> tuple[CatalogView, bool]:
            before = runtime.catalog_in(uow)
            now = runtime.clock.now()
            staged, changes = staged_object(before, kind, object_id, document, now)
            store_changes(runtime, uow, before, staged, changes, now)
            created = object_id not in rules.objects(before)
            return rules.to_view(staged, rules.objects(staged)[object_id]), created

        return await runtime.run(job)

    def get(self, kind: CatalogKind, object_id: str) -> CatalogView:
        catalog = self._runtime.catalog.current
        rules = _RULES[kind]
        return rules.to_view(catalog, _existing(catalog, kind, object_id))

    def list(self, kind: CatalogKind, after: str | None, limit: int) -> Page[CatalogView]:
        """Objects in creation order; the cursor is the id of the last one returned."""
        rules = _RULES[kind]
        catalog = self._runtime.catalog.current
        objects = rules.objects(catalog)
        ids = list(objects)
        if after is not None and after not in objects:
            raise InvalidRequest(f"after: no {rules.label} {after!r} to continue from.")
        start = ids.index(after) + 1 if after is not None else 0
        chosen = ids[start : start + limit]
        more = start + limit < len(ids)
        items = [rules.to_view(catalog, objects[i]) for i in chosen]
        return Page(items=items, next_cursor=chosen[-1] if more and chosen else None)

    async def archive(self, kind: CatalogKind, object_id: str) -> CatalogView:
        """Archive a plan or add-on: new subscriptions to it (or entries of it) are refused,
        existing ones keep working. Archiving an archived one changes nothing."""
        rules = _RULES[kind]
        runtime = self._runtime

        def job(uow: UnitOfWork) -> CatalogView:
            before = runtime.catalog_in(uow)
            _existing(before, kind, object_id)
            if before.is_archived(kind.value, object_id):
                return rules.to_view(before, rules.objects(before)[object_id])
            staged = before.with_archived(kind.value, object_id, archived=True)
            change = history_change(staged, kind.value, object_id)
            store_changes(runtime, uow, before, staged, [change], runtime.clock.now())
            return rules.to_view(staged, rules.objects(staged)[object_id])

        return await runtime.run(job)

    async def versions(
        self, kind: CatalogKind, object_id: str, after: str | None, limit: int
    ) -> Page[PlanVersionView | AddonVersionView]:
        """Every version, oldest first, each with its live subscriptions; the cursor is the
        last version number returned."""
        catalog = self._runtime.catalog.current
        history = _history(catalog, kind, object_id)
        start = 0
        if after is not None:
            is_number = after.isascii() and after.isdigit() and len(after) <= 10
            if not (is_number and 0 < int(after) <= len(history)):
                raise InvalidRequest("after is not a cursor this list returned.")
            start = int(after)
        chosen = history[start : start + limit]
        counts = await self._live_counts(kind, object_id)
        items = [_version_view(catalog, kind, v, counts.get(v.version, 0)) for v in chosen]
        more = start + limit < len(history)
        return Page(items, str(chosen[-1].version) if more and chosen else None)

    async def version(
        self, kind: CatalogKind, object_id: str, number: int
    ) -> PlanVersionView | AddonVersionView:
        catalog = self._runtime.catalog.current
        history = _history(catalog, kind, object_id)
        if not 0 < number <= len(history):
            raise NotFound(
                f"{label(kind)} {object_id!r} has no version {number}.",
                {"id": object_id, "version": number},
            )
        counts = await self._live_counts(kind, object_id)
        return _version_view(catalog, kind, history[number - 1], counts.get(number, 0))

    async def _live_counts(self, kind: CatalogKind, object_id: str) -> dict[int, int]:
        """How many live subscriptions are on each version now (holding it, for an add-on)."""
        runtime = self._runtime

        def job(uow: UnitOfWork) -> dict[int, int]:
            now = runtime.clock.now()
            catalog = runtime.catalog_in(uow)
            counts: dict[int, int] = {}
            if kind is CatalogKind.PLAN:
                for subscription in uow.holdings.live_on_plan(object_id, now):
                    version = subscription.plan_version_at(now)
                    counts[version] = counts.get(version, 0) + 1
                return counts
            product = catalog.addons[object_id].product
            for subscription in uow.holdings.live_in_product(product, now):
                for entry in subscription.addons:
                    if entry.id == object_id:
                        version = entry.version_at(now)
                        counts[version] = counts.get(version, 0) + 1
            return counts

        return await runtime.run(job)


def _existing(catalog: Catalog, kind: CatalogKind, object_id: str) -> Any:
    rules = _RULES[kind]
    found = rules.objects(catalog).get(object_id)
    if found is None:
        raise NotFound(f"no {rules.label} {object_id!r}.", {"id": object_id})
    return found


def _history(catalog: Catalog, kind: CatalogKind, object_id: str) -> Sequence[Plan | Addon]:
    _existing(catalog, kind, object_id)
    if kind is CatalogKind.PLAN:
        return catalog.plan_versions[object_id]
    return catalog.addon_versions[object_id]


def _version_view(
    catalog: Catalog, kind: CatalogKind, version: Plan | Addon, subscriptions: int
) -> PlanVersionView | AddonVersionView:
    archived = catalog.is_archived(kind.value, version.id)
    if isinstance(version, Plan):
        return catalog_views.plan_version_view(version, archived, subscriptions)
    return catalog_views.addon_version_view(version, archived, subscriptions)
