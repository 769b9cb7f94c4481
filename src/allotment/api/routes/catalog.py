"""``/v1/features``, ``/v1/currencies``, ``/v1/products``, ``/v1/plans``, ``/v1/addons``, and
the versions, archiving and migrations of plans and add-ons."""

from __future__ import annotations

from typing import Any, NamedTuple

from msgspec import Struct
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from allotment.api.described import (
    LIMIT,
    PAGE_BY_ID,
    DescribedRoute,
    Doc,
    Example,
    Param,
    page_of,
)
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
from allotment.api.schemas import (
    MAX_VERSION,
    AddonIn,
    CurrencyIn,
    FeatureIn,
    MigrationIn,
    PlanIn,
    ProductIn,
    to_document,
)
from allotment.api.services import Services
from allotment.domain.errors import InvalidRequest
from allotment.service.catalog import VERSIONED, CatalogKind
from allotment.service.catalog_views import (
    AddonVersionView,
    AddonView,
    CurrencyView,
    FeatureView,
    MigrationView,
    PlanVersionView,
    PlanView,
    ProductView,
)
from allotment.service.migrations import MigrationRequest

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
    # A plan's or add-on's product cannot change, and two processes may publish one at once.
    CatalogKind.PLAN: _Collection(
        "plans", PlanIn, PlanView, "a plan", "plans", (409,), examples.PLAN
    ),
    CatalogKind.ADDON: _Collection("addons", AddonIn, AddonView, "an add-on", "add-ons", (409,)),
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


VERSION = Param(
    "version",
    "A version number, from 1.",
    {"type": "integer", "minimum": 1, "maximum": MAX_VERSION},
    location="path",
)
AFTER_VERSION = Param(
    "after",
    "The `next` of the previous page: the last version number it listed.",
    {"type": "string", "pattern": "^[0-9]{1,10}$"},
)


def _version_number(request: Request) -> int:
    text: str = request.path_params["version"]
    if not (text.isascii() and text.isdigit() and 0 < len(text) <= 10):
        raise InvalidRequest(f"{text!r} is not a version number.", {"field": "version"})
    number = int(text)
    if not 0 < number <= MAX_VERSION:
        raise InvalidRequest(f"{text!r} is not a version number.", {"field": "version"})
    return number


def _version_routes(kind: CatalogKind, collection: _Collection) -> list[Route]:
    """Archiving, versions and migrations of plans and add-ons."""
    one, answer = collection.one, collection.answer
    version_answer = PlanVersionView if kind is CatalogKind.PLAN else AddonVersionView

    @route(Access.ADMIN)
    async def archive_object(request: Request, services: Services) -> Response:
        return json_response(await services.catalog.archive(kind, path_id(request, "id")))

    @route(Access.SERVER)
    async def list_versions(request: Request, services: Services) -> Response:
        after, limit = page_params(request)
        page = await services.catalog.versions(kind, path_id(request, "id"), after, limit)
        return page_response(page)

    @route(Access.SERVER)
    async def get_version(request: Request, services: Services) -> Response:
        object_id, number = path_id(request, "id"), _version_number(request)
        return json_response(await services.catalog.version(kind, object_id, number))

    @route(Access.ADMIN)
    async def migrate(request: Request, services: Services) -> Response:
        object_id = path_id(request, "id")
        body = await read(request, MigrationIn)
        migration = MigrationRequest(body.at, body.from_versions, body.to_version)
        return json_response(await services.migrations.migrate(kind, object_id, migration), 201)

    path = f"/v1/{collection.path}/{{id}}"
    holders = "subscriptions" if kind is CatalogKind.PLAN else "subscriptions' add-on entries"
    return [
        DescribedRoute(
            path,
            archive_object,
            "DELETE",
            Doc(
                f"Archive {one}",
                Access.ADMIN,
                answer,
                errors=(404, 409),
                description=f"New {holders} of it are refused with 409; existing ones keep "
                "working. A `PUT` that publishes a new version makes it active again.",
                operation_id=f"archive_{kind.value}",
            ),
        ),
        DescribedRoute(
            f"{path}/versions",
            list_versions,
            "GET",
            Doc(
                f"List the versions of {one}",
                Access.SERVER,
                page_of(version_answer),
                params=(AFTER_VERSION, LIMIT),
                errors=(404,),
                description=f"Oldest first, each with how many live {holders} are on it now.",
                operation_id=f"list_{kind.value}_versions",
            ),
        ),
        DescribedRoute(
            f"{path}/versions/{{version}}",
            get_version,
            "GET",
            Doc(
                f"Read one version of {one}",
                Access.SERVER,
                version_answer,
                params=(VERSION,),
                errors=(404,),
                operation_id=f"get_{kind.value}_version",
            ),
        ),
        DescribedRoute(
            f"{path}/migrations",
            migrate,
            "POST",
            Doc(
                f"Move live {holders} of {one} to another version",
                Access.ADMIN,
                MigrationView,
                body=MigrationIn,
                status=201,
                errors=(404,),
                description="`now` moves each live one (trials included) on `from_versions` "
                "at once; `period_end` at the end of its current billing period, shown on it "
                "as `pending_version` and `pending_at` until then. The period anchor and the "
                "usage so far are kept; recurring credits follow the new version from the next "
                "period that grants them.",
                operation_id=f"migrate_{kind.value}",
            ),
        ),
    ]


routes = [r for kind, collection in _COLLECTIONS.items() for r in _routes_for(kind, collection)]
routes += [r for kind in VERSIONED for r in _version_routes(kind, _COLLECTIONS[kind])]
