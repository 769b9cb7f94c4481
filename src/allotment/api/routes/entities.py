"""``/v1/customers/{id}/entities/{entity}``: the tree of departments, teams, seats and agents,
and the budgets on each (``.../budgets/{feature_or_currency}``)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from allotment.api.described import DescribedRoute, Doc
from allotment.api.http import Access, json_response, path_id, read, route
from allotment.api.openapi import examples
from allotment.api.schemas import BudgetIn, EntityIn
from allotment.api.services import Services
from allotment.domain.catalog import Enforcement
from allotment.domain.periods import ResetPeriod
from allotment.domain.quantities import parse_quantity
from allotment.service.entity_views import (
    DeletedBudget,
    DeletedEntity,
    EntityBudgetView,
    EntityView,
)

TAG = "Entities and budgets"


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
    DescribedRoute(
        _ENTITY,
        put_entity,
        "PUT",
        Doc(
            "Create or replace an entity of the customer's tree",
            Access.ADMIN,
            EntityView,
            body=EntityIn,
            replaces=True,
            errors=(404, 409),
            description="Moving it (a new `parent`) moves its subtree; a cycle, an unknown "
            "parent or a chain of more than 16 is 400. 409 for an archived customer.",
            example=examples.ENTITY,
        ),
    ),
    DescribedRoute(
        _ENTITY,
        get_entity,
        "GET",
        Doc("Read an entity, its children and budgets", Access.SERVER, EntityView, errors=(404,)),
    ),
    DescribedRoute(
        _ENTITY,
        delete_entity,
        "DELETE",
        Doc(
            "Remove a leaf entity",
            Access.ADMIN,
            DeletedEntity,
            errors=(404, 409),
            description="409 while it has children.",
        ),
    ),
    DescribedRoute(
        _BUDGET,
        put_budget,
        "PUT",
        Doc(
            "Create or replace an entity's budget on a metered feature or a currency",
            Access.ADMIN,
            EntityBudgetView,
            body=BudgetIn,
            replaces=True,
            errors=(404, 409),
            description="`target` names a metered feature (units) or a currency (credits); "
            "anything else is 400. Its periods are anchored at its creation. 409 for an "
            "archived customer.",
            example=examples.BUDGET,
        ),
    ),
    DescribedRoute(
        _BUDGET,
        delete_budget,
        "DELETE",
        Doc("Remove a budget", Access.ADMIN, DeletedBudget, errors=(404,)),
    ),
]
