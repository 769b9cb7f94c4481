"""``/v1/features``, ``/v1/currencies``, ``/v1/products``, ``/v1/plans``, ``/v1/addons``."""

from __future__ import annotations

from typing import Any

from msgspec import Struct
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from allotment.api.http import (
    Access,
    json_response,
    page_params,
    page_response,
    path_id,
    read,
    route,
)
from allotment.api.schemas import AddonIn, CurrencyIn, FeatureIn, PlanIn, ProductIn, to_document
from allotment.api.services import Services
from allotment.service.catalog import CatalogKind

_COLLECTIONS: dict[CatalogKind, tuple[str, type[Struct]]] = {
    CatalogKind.FEATURE: ("features", FeatureIn),
    CatalogKind.CURRENCY: ("currencies", CurrencyIn),
    CatalogKind.PRODUCT: ("products", ProductIn),
    CatalogKind.PLAN: ("plans", PlanIn),
    CatalogKind.ADDON: ("addons", AddonIn),
}


def _routes_for(kind: CatalogKind, collection: str, schema: type[Struct]) -> list[Route]:
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

    return [
        Route(f"/v1/{collection}", list_objects, methods=["GET"]),
        Route(f"/v1/{collection}/{{id}}", put_object, methods=["PUT"]),
        Route(f"/v1/{collection}/{{id}}", get_object, methods=["GET"]),
    ]


routes = [
    r
    for kind, (collection, schema) in _COLLECTIONS.items()
    for r in _routes_for(kind, collection, schema)
]
