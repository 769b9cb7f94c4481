"""What every route shares: authentication, bounded body reading, decoding and JSON answers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from enum import IntEnum
from typing import Any, TypeVar

import msgspec
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from allotment.api.errors import (
    PayloadTooLarge,
    error_headers,
    error_status_and_body,
    invalid_body,
)
from allotment.api.schemas import decode_hook, exact_number
from allotment.api.services import Services
from allotment.domain.customers import ApiKey, Scope
from allotment.domain.errors import AllotmentError, Forbidden, InvalidRequest, Unauthenticated
from allotment.domain.ids import is_client_id
from allotment.service.ports import Page
from allotment.service.runtime import act_as

S = TypeVar("S")
_encoder = msgspec.json.Encoder(decimal_format="number")
MAX_PAGE_SIZE = 1000
# nginx's status for a client that closed the connection before it was answered; only the
# metrics see it.
CLIENT_CLOSED_REQUEST = 499
DEFAULT_PAGE_SIZE = 100


class Access(IntEnum):
    """Who may call a route; a key's scope grants every level up to its own."""

    CLIENT = 0  # check and entitlement reads for the key's own customer
    SERVER = 1  # the request path and reads
    ADMIN = 2  # everything


_SCOPE_LEVEL = {Scope.CLIENT: Access.CLIENT, Scope.SERVER: Access.SERVER, Scope.ADMIN: Access.ADMIN}


def json_response(document: Any, status: int = 200) -> Response:
    return Response(_encoder.encode(document), status, media_type="application/json")


def raw_json_response(body: bytes, status: int = 200) -> Response:
    return Response(body, status, media_type="application/json")


def error_response(error: AllotmentError) -> Response:
    """The contract's answer to ``error``: status and body from the one table, with headers."""
    status, body = error_status_and_body(error)
    return Response(body, status, error_headers(error), media_type="application/json")


def page_response(page: Page[Any]) -> Response:
    return json_response({"data": list(page.items), "next": page.next_cursor})


def bearer_secret(authorization: str | None) -> str:
    if not authorization:
        raise Unauthenticated("Missing API key: send Authorization: Bearer <api key>.")
    scheme, _, secret = authorization.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise Unauthenticated("Malformed Authorization header: expected Bearer <api key>.")
    return secret.strip()


def authorize(key: ApiKey | None, access: Access, customer: str | None = None) -> ApiKey:
    """Refuse a missing key (401), too small a scope or another customer's client key (403)."""
    if key is None:
        raise Unauthenticated("Unknown or revoked API key.")
    if _SCOPE_LEVEL[key.scope] < access:
        raise Forbidden(f"This {key.scope} key may not call this route.", {"scope": key.scope})
    if key.scope is Scope.CLIENT and customer != key.customer:
        raise Forbidden("This client key is bound to another customer.")
    return key


async def authenticate(services: Services, request: Request) -> ApiKey | None:
    return await services.keys.authenticate(bearer_secret(request.headers.get("authorization")))


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and _is_number(declared) and int(declared) > limit:
        raise PayloadTooLarge(f"The request body is larger than {limit} bytes.")
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"The request body is larger than {limit} bytes.")
        chunks.append(chunk)
    return b"".join(chunks)


def _is_number(text: str) -> bool:
    """ASCII digits only: ``str.isdigit`` also accepts characters such as "²" that int refuses."""
    return text.isascii() and text.isdigit() and len(text) <= 30


_decoders: dict[type[Any], msgspec.json.Decoder[Any]] = {}


def decode(body: bytes, schema: type[S]) -> S:
    decoder = _decoders.get(schema)
    if decoder is None:
        decoder = _decoders[schema] = msgspec.json.Decoder(
            schema, dec_hook=decode_hook, float_hook=exact_number
        )
    try:
        return decoder.decode(body)  # type: ignore[no-any-return]
    except msgspec.MsgspecError as error:
        raise invalid_body(error) from error
    except UnicodeDecodeError as error:  # msgspec lets bad UTF-8 in a string through as this
        raise InvalidRequest("The request body is not valid UTF-8.") from error
    except RecursionError as error:
        raise InvalidRequest("The request body is nested too deeply.") from error


async def read(request: Request, schema: type[S]) -> S:
    services: Services = request.app.state.services
    return decode(await read_body(request, services.settings.max_body_bytes), schema)


def path_id(request: Request, name: str) -> str:
    value: str = request.path_params[name]
    if not is_client_id(value):
        raise InvalidRequest(f"{value!r} is not a valid {name} id.", {"field": name})
    return value


def server_id(request: Request, name: str, prefix: str) -> str:
    """A path parameter naming an id the service made (``prefix`` then its digits)."""
    value: str = request.path_params[name]
    if not value.startswith(prefix) or len(value) > 100:
        raise InvalidRequest(f"{value!r} is not a valid {name} id.", {"field": name})
    return value


def page_params(request: Request) -> tuple[str | None, int]:
    after = request.query_params.get("after") or None
    raw_limit = request.query_params.get("limit")
    if raw_limit is None:
        return after, DEFAULT_PAGE_SIZE
    if not _is_number(raw_limit) or not 1 <= int(raw_limit) <= MAX_PAGE_SIZE:
        raise InvalidRequest(f"limit must be a whole number from 1 to {MAX_PAGE_SIZE}.")
    return after, int(raw_limit)


def seq_cursor(after: str | None) -> str | None:
    """A cursor over rows in creation order must be a sequence number."""
    if after is not None and not (_is_number(after) and len(after) <= 18):
        raise InvalidRequest("after is not a cursor this list returned.")
    return after


Endpoint = Callable[[Request, Services], Awaitable[Response]]


def route(
    access: Access, customer_param: str | None = None
) -> Callable[[Endpoint], Callable[[Request], Awaitable[Response]]]:
    """Wrap an endpoint: authenticate, authorize, and answer every domain error as the contract
    says. A client key is checked against the customer named in the path, if any."""

    def wrap(endpoint: Endpoint) -> Callable[[Request], Awaitable[Response]]:
        async def handle(request: Request) -> Response:
            services: Services = request.app.state.services
            try:
                key = await authenticate(services, request)
                customer = request.path_params.get(customer_param) if customer_param else None
                act_as(authorize(key, access, customer))
                return await endpoint(request, services)
            except AllotmentError as error:
                return error_response(error)
            except ClientDisconnect:
                # Nobody reads this answer: it only tells the metrics the client left.
                return Response(status_code=CLIENT_CLOSED_REQUEST)

        handle.__name__ = endpoint.__name__
        return handle

    return wrap
