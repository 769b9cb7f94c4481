"""``/v1/api-keys``."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from allotment.api.described import PAGE_BY_SEQ, DescribedRoute, Doc, ListPage
from allotment.api.http import (
    Access,
    json_response,
    page_params,
    page_response,
    read,
    route,
    seq_cursor,
)
from allotment.api.schemas import ApiKeyIn
from allotment.api.services import Services
from allotment.domain.customers import Scope
from allotment.domain.errors import InvalidRequest
from allotment.service.key_views import ApiKeyView, CreatedApiKey

TAG = "API keys"


@route(Access.ADMIN)
async def create_key(request: Request, services: Services) -> Response:
    body = await read(request, ApiKeyIn)
    return json_response(
        await services.keys.create(body.name, Scope(body.scope), body.customer), 201
    )


@route(Access.ADMIN)
async def list_keys(request: Request, services: Services) -> Response:
    after, limit = page_params(request)
    return page_response(await services.keys.list(seq_cursor(after), limit))


@route(Access.ADMIN)
async def revoke_key(request: Request, services: Services) -> Response:
    key_id: str = request.path_params["key"]
    if not key_id.startswith("key_") or len(key_id) > 100:
        raise InvalidRequest(f"{key_id!r} is not a valid API key id.", {"field": "key"})
    return json_response(await services.keys.revoke(key_id))


routes = [
    DescribedRoute(
        "/v1/api-keys",
        create_key,
        "POST",
        Doc(
            "Create an API key",
            Access.ADMIN,
            CreatedApiKey,
            body=ApiKeyIn,
            status=201,
            description="The secret `key` is in this answer only; it is stored as a digest.",
        ),
    ),
    DescribedRoute(
        "/v1/api-keys",
        list_keys,
        "GET",
        Doc("List API keys", Access.ADMIN, ListPage[ApiKeyView], params=PAGE_BY_SEQ),
    ),
    DescribedRoute(
        "/v1/api-keys/{key}",
        revoke_key,
        "DELETE",
        Doc(
            "Revoke an API key at once",
            Access.ADMIN,
            ApiKeyView,
            errors=(404,),
            description="Revoking a revoked key answers it unchanged.",
        ),
    ),
]
