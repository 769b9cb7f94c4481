"""``/v1/features``, ``/v1/currencies``, ``/v1/products``, ``/v1/plans``, ``/v1/addons``."""

from __future__ import annotations

from typing import Any, NamedTuple

from msgspec import Struct
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from allotment.api.described import PAGE_BY_ID, DescribedRoute, Doc, Example, page_of
from allotment.api.http import (
    Access,
    json_response,
    page_params,
    page_response,
    path_id,
    read,
    route,
)
from allotment.api.openapi import examples
from allotment.api.schemas import AddonIn, CurrencyIn, FeatureIn, PlanIn, ProductIn, to_document
from allotment.api.services import Services
from allotment.service.catalog import CatalogKind
from allotment.service.catalog_views import (
    AddonView,
    CurrencyView,
    FeatureView,
    PlanView,
    ProductView,
)

TAG = "Catalog"


class _Collection(NamedTuple):
    path: str
    schema: type[Struct]
    answer: type[Struct]
    one: str  # "a feature", as the description says it
    many: str
    # A feature's kind cannot change, and features and currencies share ids: 409.
    conflicts: tuple[int, ...] = ()
    example: Example | None = None


_COLLECTIONS: dict[CatalogKind, _Collection] = {
    CatalogKind.FEATURE: _Collection(
        "features", FeatureIn, FeatureView, "a feature", "features", (409,), examples.FEATURE
    ),
    CatalogKind.CURRENCY: _Collection(
        "currencies", CurrencyIn, CurrencyView, "a currency", "currencies", (409,)
    ),
    CatalogKind.PRODUCT: _Collection("products", ProductIn, ProductView, "a product", "products"),
    CatalogKind.PLAN: _Collection("plans", PlanIn, PlanView, "a plan", "plans", (), examples.PLAN),
    CatalogKind.ADDON: _Collection("addons", AddonIn, AddonView, "an add-on", "add-ons"),
}


def _routes_for(kind: CatalogKind, collection: _Collection) -> list[Route]:
    schema, one = collection.schema, collection.one

    @route(Access.ADMIN)
    async def put_object(request: Request, services: Services) -> Response:
        object_id = path_id(request, "id")
        body = await read(request, schema)
        document: dict[str, Any] = to_document(body)
        stored, created = await services.catalog.put(kind, object_id, document)
        return json_response(stored, 201 if created else 200)

    @route(Access.SERVER)
    async def get_object(request: Request, services: Services) -> Response:
        return json_response(services.catalog.get(kind, path_id(request, "id")))

    @route(Access.SERVER)
    async def list_objects(request: Request, services: Services) -> Response:
        after, limit = page_params(request)
        return page_response(services.catalog.list(kind, after, limit))

    path = f"/v1/{collection.path}"
    return [
        DescribedRoute(
            path,
            list_objects,
            "GET",
            Doc(
                f"List {collection.many}",
                Access.SERVER,
                page_of(collection.answer),
                params=PAGE_BY_ID,
                operation_id=f"list_{collection.path}",
            ),
        ),
        DescribedRoute(
            f"{path}/{{id}}",
            put_object,
            "PUT",
            Doc(
                f"Create or replace {one}",
                Access.ADMIN,
                collection.answer,
                body=schema,
                replaces=True,
                errors=collection.conflicts,
                example=collection.example,
                operation_id=f"put_{kind.value}",
            ),
        ),
        DescribedRoute(
            f"{path}/{{id}}",
            get_object,
            "GET",
            Doc(
                f"Read {one}",
                Access.SERVER,
                collection.answer,
                errors=(404,),
                operation_id=f"get_{kind.value}",
            ),
        ),
    ]


routes = [r for kind, collection in _COLLECTIONS.items() for r in _routes_for(kind, collection)]
