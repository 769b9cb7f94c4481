"""``GET /v1/catalog`` and ``PUT /v1/catalog``: the catalog as one document."""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from allotment.api.described import DescribedRoute, Doc, Param
from allotment.api.http import Access, json_response, read, route
from allotment.api.schemas import CATALOG_SECTIONS, Body, CatalogIn, decode_hook, to_document
from allotment.api.services import Services
from allotment.domain.errors import InvalidRequest
from allotment.domain.ids import is_client_id
from allotment.service.catalog import CatalogKind
from allotment.service.catalog_document import Definitions, Problem
from allotment.service.catalog_views import CatalogApplied, CatalogDocument

TAG = "Catalog"

_KINDS = {
    "features": CatalogKind.FEATURE,
    "currencies": CatalogKind.CURRENCY,
    "products": CatalogKind.PRODUCT,
    "plans": CatalogKind.PLAN,
    "addons": CatalogKind.ADDON,
}


class _Sections(Body):
    """The document's sections as plain JSON, each object checked against its own body on
    its own, so that a 400 names every object that does not decode, not only the first."""

    features: dict[str, Any] = msgspec.field(default_factory=dict)
    currencies: dict[str, Any] = msgspec.field(default_factory=dict)
    products: dict[str, Any] = msgspec.field(default_factory=dict)
    plans: dict[str, Any] = msgspec.field(default_factory=dict)
    addons: dict[str, Any] = msgspec.field(default_factory=dict)


DRY_RUN = Param(
    "dry_run",
    "`true`: validate the document and answer what it would change, changing nothing.",
    {"type": "boolean", "default": False},
)


def _dry_run(request: Request) -> bool:
    text = request.query_params.get("dry_run")
    if text is None or text == "false":
        return False
    if text == "true":
        return True
    raise InvalidRequest("dry_run must be 'true' or 'false'.", {"field": "dry_run"})


def decode_catalog(document: Any) -> tuple[Definitions, list[Problem]]:
    """A catalog document already read (from a file: numbers as ``int`` or ``Decimal``) as the
    definitions ``PUT /v1/catalog`` applies, and the objects refused on the way."""
    try:
        sections = msgspec.convert(document, _Sections)
    except msgspec.ValidationError as error:
        raise InvalidRequest(f"The catalog document is not valid: {error}.") from error
    return _definitions(sections)


def _definitions(sections: _Sections) -> tuple[Definitions, list[Problem]]:
    definitions: dict[CatalogKind, dict[str, dict[str, Any]]] = {}
    refused: list[Problem] = []
    for section, schema in CATALOG_SECTIONS.items():
        kind = _KINDS[section]
        chosen = definitions.setdefault(kind, {})
        for object_id, value in getattr(sections, section).items():
            if not is_client_id(object_id):
                refused.append(Problem(kind.value, object_id, f"{object_id!r} is not a valid id."))
                continue
            try:
                body = msgspec.convert(value, schema, dec_hook=decode_hook)
            except msgspec.ValidationError as error:
                refused.append(Problem(kind.value, object_id, str(error)))
                continue
            chosen[object_id] = to_document(body)
    return definitions, refused


@route(Access.SERVER)
async def get_catalog(request: Request, services: Services) -> Response:
    return json_response(services.catalog_document.document())


@route(Access.ADMIN)
async def put_catalog(request: Request, services: Services) -> Response:
    dry_run = _dry_run(request)
    definitions, refused = _definitions(await read(request, _Sections))
    applied = await services.catalog_document.apply(definitions, dry_run=dry_run, refused=refused)
    return json_response(applied)


routes = [
    DescribedRoute(
        "/v1/catalog",
        get_catalog,
        "GET",
        Doc(
            "Read the whole catalog as one document",
            Access.SERVER,
            CatalogDocument,
            description="The latest version of every object, without server-made fields: "
            "what `PUT /v1/catalog` accepts (`allotment catalog export` writes it as YAML).",
            operation_id="get_catalog",
        ),
    ),
    DescribedRoute(
        "/v1/catalog",
        put_catalog,
        "PUT",
        Doc(
            "Apply a catalog document in one transaction",
            Access.ADMIN,
            CatalogApplied,
            body=CatalogIn,
            params=(DRY_RUN,),
            errors=(409,),  # another process published or archived one of its plans meanwhile
            description="Each object the document names is created, changed (a plan or "
            "add-on by publishing its next version) or left as it is; objects it does not name "
            "are left alone. A document with any problem is 400 with every problem in "
            "`details.problems` (`kind`, `id`, `message`), and changes nothing.",
            operation_id="put_catalog",
        ),
    ),
]
