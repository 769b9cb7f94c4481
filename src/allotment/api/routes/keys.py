"""``/v1/api-keys``."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

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
    Route("/v1/api-keys", create_key, methods=["POST"]),
    Route("/v1/api-keys", list_keys, methods=["GET"]),
    Route("/v1/api-keys/{key}", revoke_key, methods=["DELETE"]),
]
