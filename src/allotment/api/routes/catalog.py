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
    label: str
    conflicts: tuple[int, ...] = ()  # a feature's kind cannot change; features and currencies
    example: Example | None = None  # share ids


_COLLECTIONS: dict[CatalogKind, _Collection] = {
    CatalogKind.FEATURE: _Collection(
        "features", FeatureIn, FeatureView, "feature", (409,), examples.FEATURE
    ),
    CatalogKind.CURRENCY: _Collection("currencies", CurrencyIn, CurrencyView, "currency", (409,)),
    CatalogKind.PRODUCT: _Collection("products", ProductIn, ProductView, "product"),
    CatalogKind.PLAN: _Collection("plans", PlanIn, PlanView, "plan", (), examples.PLAN),
    CatalogKind.ADDON: _Collection("addons", AddonIn, AddonView, "addon"),
}


def _routes_for(kind: CatalogKind, collection: _Collection) -> list[Route]:
    schema, label = collection.schema, collection.label

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
                f"List {collection.path}",
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
                f"Create or replace a {label}",
                Access.ADMIN,
                collection.answer,
                body=schema,
                replaces=True,
                errors=collection.conflicts,
                example=collection.example,
                operation_id=f"put_{label}",
            ),
        ),
        DescribedRoute(
            f"{path}/{{id}}",
            get_object,
            "GET",
            Doc(
                f"Read a {label}",
                Access.SERVER,
                collection.answer,
                errors=(404,),
                operation_id=f"get_{label}",
            ),
        ),
    ]


routes = [r for kind, collection in _COLLECTIONS.items() for r in _routes_for(kind, collection)]
