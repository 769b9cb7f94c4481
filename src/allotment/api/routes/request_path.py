"""``GET /v1/customers/{id}/entitlements`` and ``GET /v1/customers/{id}/state``.

``POST /v1/check`` and ``POST /v1/usage`` do not pass through Starlette: see
:mod:`allotment.api.hot`.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from allotment.api.described import ENTITY, DescribedRoute, Doc
from allotment.api.http import (
    Access,
    json_response,
    path_id,
    route,
)
from allotment.api.services import Services
from allotment.domain.ids import require_client_id
from allotment.service.answers import CustomerState, Entitlements

TAG = "Request path"


@route(Access.CLIENT, customer_param="customer")
async def list_entitlements(request: Request, services: Services) -> Response:
    customer_id = path_id(request, "customer")
    entity = request.query_params.get("entity") or None
    if entity is not None:
        require_client_id(entity, "entity")
    return json_response(await services.entitlements.entitlements(customer_id, entity))


@route(Access.CLIENT, customer_param="customer")
async def customer_state(request: Request, services: Services) -> Response:
    customer_id = path_id(request, "customer")
    entity = request.query_params.get("entity") or None
    if entity is not None:
        require_client_id(entity, "entity")
    return json_response(await services.entitlements.state(customer_id, entity))


routes = [
    DescribedRoute(
        "/v1/customers/{customer}/entitlements",
        list_entitlements,
        "GET",
        Doc(
            "A check result for every feature the customer is granted",
            Access.CLIENT,
            Entitlements,
            params=(ENTITY,),
            errors=(404,),
            description="Features nothing grants are left out. A client key may read its own "
            "customer only.",
        ),
    ),
    DescribedRoute(
        "/v1/customers/{customer}/state",
        customer_state,
        "GET",
        Doc(
            "What a local cache needs to answer the customer's checks itself",
            Access.CLIENT,
            CustomerState,
            params=(ENTITY,),
            description="A check result without a request for every feature of the catalog "
            "(denials included: an unknown customer or entity answers 200 with its reason), "
            "the credit pools they draw on, and the change log's `revision` they are exact "
            "at: a cache applies the events of `GET /v1/stream` after that revision and "
            "none before. The SDK and the sidecar load customers with it. A client key may "
            "read its own customer only.",
        ),
    ),
]
