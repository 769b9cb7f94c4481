"""``/v1/customers/{id}/entities/{entity}``: the tree of departments, teams, seats and agents,
and the budgets on each (``.../budgets/{feature_or_currency}``)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from allotment.api.http import Access, json_response, path_id, read, route
from allotment.api.schemas import BudgetIn, EntityIn
from allotment.api.services import Services
from allotment.domain.catalog import Enforcement
from allotment.domain.periods import ResetPeriod
from allotment.domain.quantities import parse_quantity


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


@route(Access.ADMIN)
async def put_budget(request: Request, services: Services) -> Response:
    customer, entity = path_id(request, "customer"), path_id(request, "entity")
    target = path_id(request, "target")
    body = await read(request, BudgetIn)
    document, created = await services.budgets.put(
        customer,
        entity,
        target,
        limit=parse_quantity(body.limit.value, "limit"),
        reset=ResetPeriod(body.reset),
        enforcement=Enforcement(body.enforcement),
    )
    return json_response(document, 201 if created else 200)


@route(Access.ADMIN)
async def delete_budget(request: Request, services: Services) -> Response:
    customer, entity = path_id(request, "customer"), path_id(request, "entity")
    target = path_id(request, "target")
    return json_response(await services.budgets.delete(customer, entity, target))


_ENTITY = "/v1/customers/{customer}/entities/{entity}"
_BUDGET = _ENTITY + "/budgets/{target}"

routes = [
    Route(_ENTITY, put_entity, methods=["PUT"]),
    Route(_ENTITY, get_entity, methods=["GET"]),
    Route(_ENTITY, delete_entity, methods=["DELETE"]),
    Route(_BUDGET, put_budget, methods=["PUT"]),
    Route(_BUDGET, delete_budget, methods=["DELETE"]),
]
