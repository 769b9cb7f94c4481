"""``POST /v1/usage`` and ``GET /v1/customers/{id}/entitlements``.

``POST /v1/check`` does not pass through Starlette at all: see :mod:`allotment.api.hot`.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from allotment.api.http import (
    Access,
    json_response,
    path_id,
    raw_json_response,
    read,
    route,
)
from allotment.api.metrics import count_decision
from allotment.api.schemas import UsageIn
from allotment.api.services import Services
from allotment.domain.ids import require_client_id
from allotment.domain.quantities import parse_quantity
from allotment.service.answers import answer_document
from allotment.service.usage import UsageBehavior, UsageReport, usage_outcome


@route(Access.SERVER)
async def report_usage(request: Request, services: Services) -> Response:
    body = await read(request, UsageIn)
    report = UsageReport(
        customer=body.customer,
        feature=body.feature,
        amount=parse_quantity(body.amount, "amount"),
        idempotency_key=body.idempotency_key,
        entity=body.entity,
        enforce=body.enforce,
        behavior=UsageBehavior(body.behavior),
        timestamp=body.timestamp,
    )
    response = await services.usage.report(report)
    count_decision("usage", usage_outcome(response))
    return raw_json_response(response)


@route(Access.CLIENT, customer_param="customer")
async def list_entitlements(request: Request, services: Services) -> Response:
    customer_id = path_id(request, "customer")
    entity = request.query_params.get("entity") or None
    if entity is not None:
        require_client_id(entity, "entity")
    answers = await services.entitlements.entitlements(customer_id, entity)
    return json_response(
        {"customer": customer_id, "entitlements": [answer_document(a) for a in answers]}
    )


routes = [
    Route("/v1/usage", report_usage, methods=["POST"]),
    Route("/v1/customers/{customer}/entitlements", list_entitlements, methods=["GET"]),
]
