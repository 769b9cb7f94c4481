"""``/v1/customers/{id}/credits/{currency}``: grants (made and listed), voids, balance, ledger and
revenue.

Debits are on the request path: see :mod:`allotment.api.hot`.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from allotment.api.http import (
    Access,
    json_response,
    page_params,
    page_response,
    path_id,
    raw_json_response,
    read,
    route,
    seq_cursor,
)
from allotment.api.presenters import write_json
from allotment.api.schemas import GrantIn
from allotment.api.services import Services
from allotment.domain.catalog import CreditCategory
from allotment.domain.credits import GrantStatus
from allotment.domain.errors import InvalidRequest
from allotment.domain.quantities import parse_quantity
from allotment.service.credits import GrantRequest


def _pool(request: Request) -> tuple[str, str]:
    return path_id(request, "customer"), path_id(request, "currency")


@route(Access.ADMIN)
async def grant_credits(request: Request, services: Services) -> Response:
    customer, currency = _pool(request)
    body = await read(request, GrantIn)
    grant = GrantRequest(
        amount=parse_quantity(body.amount.value, "amount"),
        category=CreditCategory(body.category),
        idempotency_key=body.idempotency_key,
        cost_basis=parse_quantity(body.cost_basis.value, "cost_basis"),
        priority=body.priority,
        effective_at=body.effective_at,
        expires_at=body.expires_at,
        reason=body.reason,
    )
    return raw_json_response(
        write_json(await services.credits.grant(customer, currency, grant)), 201
    )


@route(Access.ADMIN)
async def void_grant(request: Request, services: Services) -> Response:
    customer, currency = _pool(request)
    grant_id: str = request.path_params["grant"]
    if not grant_id.startswith("grant_") or len(grant_id) > 100:
        raise InvalidRequest(f"{grant_id!r} is not a valid grant id.", {"field": "grant"})
    return json_response(await services.credits.void(customer, currency, grant_id))


@route(Access.SERVER)
async def credit_balance(request: Request, services: Services) -> Response:
    return json_response(await services.credits.balance(*_pool(request)))


@route(Access.SERVER)
async def credit_grants(request: Request, services: Services) -> Response:
    """Every grant of the pool, ended ones included (the pool's own answer lists the live
    ones), oldest first; ``?status=`` keeps those with that status now."""
    after, limit = page_params(request)
    customer, currency = _pool(request)
    status = _grant_status(request.query_params.get("status") or None)
    return page_response(
        await services.credits.grants(customer, currency, seq_cursor(after), limit, status)
    )


def _grant_status(text: str | None) -> GrantStatus | None:
    if text is None:
        return None
    try:
        return GrantStatus(text)
    except ValueError:
        known = ", ".join(status.value for status in GrantStatus)
        raise InvalidRequest(f"status must be one of {known}.", {"field": "status"}) from None


@route(Access.SERVER)
async def credit_ledger(request: Request, services: Services) -> Response:
    after, limit = page_params(request)
    customer, currency = _pool(request)
    return page_response(
        await services.credits.ledger(customer, currency, seq_cursor(after), limit)
    )


@route(Access.SERVER)
async def credit_revenue(request: Request, services: Services) -> Response:
    return json_response(await services.credits.revenue(*_pool(request)))


_POOL = "/v1/customers/{customer}/credits/{currency}"

routes = [
    Route(_POOL, credit_balance, methods=["GET"]),
    Route(f"{_POOL}/grants", grant_credits, methods=["POST"]),
    Route(f"{_POOL}/grants", credit_grants, methods=["GET"]),
    Route(f"{_POOL}/grants/{{grant}}/void", void_grant, methods=["POST"]),
    Route(f"{_POOL}/ledger", credit_ledger, methods=["GET"]),
    Route(f"{_POOL}/revenue", credit_revenue, methods=["GET"]),
]
