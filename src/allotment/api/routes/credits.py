"""``/v1/customers/{id}/credits/{currency}``: grants (made and listed), voids, balance, ledger and
revenue.

Debits are on the request path: see :mod:`allotment.api.hot`.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from allotment.api.described import PAGE_BY_SEQ, DescribedRoute, Doc, ListPage, Param
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
    server_id,
)
from allotment.api.openapi import examples
from allotment.api.presenters import write_json
from allotment.api.schemas import GrantIn
from allotment.api.services import Services
from allotment.domain.catalog import CreditCategory
from allotment.domain.credits import GrantStatus
from allotment.domain.errors import InvalidRequest
from allotment.domain.quantities import parse_quantity
from allotment.service.credit_views import GrantView, LedgerEntryView, PoolBalance, Revenue
from allotment.service.credits import GrantRequest
from allotment.service.outcomes import GrantOutcome

TAG = "Credits"


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
    grant_id = server_id(request, "grant", "grant_")
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
GRANT_STATUS = Param(
    "status",
    "Only the grants with this status now.",
    {"type": "string", "enum": [status.value for status in GrantStatus]},
)

routes = [
    DescribedRoute(
        _POOL,
        credit_balance,
        "GET",
        Doc(
            "Read a credit pool: balance, holds and live grants",
            Access.SERVER,
            PoolBalance,
            errors=(404,),
        ),
    ),
    DescribedRoute(
        f"{_POOL}/grants",
        grant_credits,
        "POST",
        Doc(
            "Grant credits",
            Access.ADMIN,
            GrantOutcome,
            body=GrantIn,
            status=201,
            errors=(404,),
            idempotent=True,
            description="A new grant first pays back any overdraft.",
            example=examples.GRANT,
        ),
    ),
    DescribedRoute(
        f"{_POOL}/grants",
        credit_grants,
        "GET",
        Doc(
            "List every grant of a pool, ended ones included",
            Access.SERVER,
            ListPage[GrantView],
            params=(*PAGE_BY_SEQ, GRANT_STATUS),
            errors=(404,),
            description="Oldest first. The pool's own answer lists its live grants (active "
            "and scheduled); ended ones (depleted, expired, voided) are listed here.",
        ),
    ),
    DescribedRoute(
        f"{_POOL}/grants/{{grant}}/void",
        void_grant,
        "POST",
        Doc(
            "Void a grant: its remaining leaves the pool",
            Access.ADMIN,
            GrantView,
            errors=(404, 409),
            description="409 when the grant has expired or was voided.",
        ),
    ),
    DescribedRoute(
        f"{_POOL}/ledger",
        credit_ledger,
        "GET",
        Doc(
            "List a pool's ledger entries in sequence order",
            Access.SERVER,
            ListPage[LedgerEntryView],
            params=PAGE_BY_SEQ,
            errors=(404,),
            description="Append-only. Debits, expiries and voids are negative; a debit past "
            "the grants (overdraft) has a null `grant`.",
        ),
    ),
    DescribedRoute(
        f"{_POOL}/revenue",
        credit_revenue,
        "GET",
        Doc(
            "Deferred, recognized and expired value of a pool",
            Access.SERVER,
            Revenue,
            errors=(404,),
        ),
    ),
]
