"""``/v1/customers/{id}/entities/{entity}``: the tree of departments, teams, seats and agents."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from allotment.api.http import Access, json_response, path_id, read, route
from allotment.api.schemas import EntityIn
from allotment.api.services import Services


@route(Access.ADMIN)
async def put_entity(request: Request, services: Services) -> Response:
    customer, entity = path_id(request, "customer"), path_id(request, "entity")
    body = await read(request, EntityIn)
    document, created = await services.entities.put(
        customer, entity, parent=body.parent, kind=body.kind, name=body.name
    )
    return json_response(document, 201 if created else 200)


@route(Access.SERVER)
async def get_entity(request: Request, services: Services) -> Response:
    customer, entity = path_id(request, "customer"), path_id(request, "entity")
    return json_response(await services.entities.get(customer, entity))


@route(Access.ADMIN)
async def delete_entity(request: Request, services: Services) -> Response:
    customer, entity = path_id(request, "customer"), path_id(request, "entity")
    return json_response(await services.entities.delete(customer, entity))


_ENTITY = "/v1/customers/{customer}/entities/{entity}"

routes = [
    Route(_ENTITY, put_entity, methods=["PUT"]),
    Route(_ENTITY, get_entity, methods=["GET"]),
    Route(_ENTITY, delete_entity, methods=["DELETE"]),
]
