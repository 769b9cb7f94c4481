"""``POST /v1/check`` as a bare ASGI handler: the hot path.

A check answered from memory costs a header scan, a SHA-256 of the key, a msgspec decode, a
dictionary walk through the customer's snapshot and a msgspec encode. Routing through Starlette
(request objects, regex routing, response classes) would cost more than all of that, so this
handler sits in front of the application and answers the one path itself.
"""

from __future__ import annotations

import logging

import msgspec
from starlette.types import ASGIApp, Receive, Scope, Send

from allotment.api.errors import (
    MethodNotAllowed,
    PayloadTooLarge,
    error_body,
    error_status_and_body,
)
from allotment.api.http import Access, authorize, bearer_secret, decode
from allotment.api.metrics import count_decision, count_request
from allotment.api.schemas import CheckIn
from allotment.api.services import Services
from allotment.domain.errors import AllotmentError, Unauthenticated
from allotment.domain.quantities import parse_quantity
from allotment.service.answers import CheckAnswer

log = logging.getLogger(__name__)
CHECK_PATH = "/v1/check"
_encode = msgspec.json.Encoder(decimal_format="number").encode
_JSON = (b"content-type", b"application/json")


class _ClientGone(Exception):
    pass


class HotPath:
    def __init__(self, app: ASGIApp, services: Services) -> None:
        self._app = app
        self._services = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == CHECK_PATH:
            try:
                status, payload = await self._check(scope, receive)
            except _ClientGone:
                return
            await send(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [_JSON, (b"content-length", str(len(payload)).encode())],
                }
            )
            await send({"type": "http.response.body", "body": payload})
            count_request("check", scope["method"], status)
            return
        await self._app(scope, receive, send)

    async def _check(self, scope: Scope, receive: Receive) -> tuple[int, bytes]:
        services = self._services
        try:
            if scope["method"] != "POST":
                raise MethodNotAllowed("Use POST for /v1/check.")
            authorization = None
            for name, value in scope["headers"]:
                if name == b"authorization":
                    authorization = value.decode("latin-1")
                    break
            secret = bearer_secret(authorization)
            key = services.keys.authenticate_cached(secret)
            if key is None:
                key = await services.keys.authenticate(secret)
            if key is None:
                raise Unauthenticated("Unknown or revoked API key.")
            body = await _read_body(receive, services.settings.max_body_bytes)
            request = decode(body, CheckIn)
            authorize(key, Access.CLIENT, request.customer)
            requested = (
                None
                if request.requested is None
                else parse_quantity(request.requested, "requested")
            )
            entitlements = services.entitlements
            answer = entitlements.check_cached(
                request.customer, request.feature, request.entity, requested
            )
            if not isinstance(answer, CheckAnswer):
                answer = await entitlements.check(
                    request.customer, request.feature, request.entity, requested
                )
        except AllotmentError as error:
            return error_status_and_body(error)
        except Exception:
            log.exception("unexpected error answering POST /v1/check")
            return 500, error_body("internal_error", "Something went wrong on our side.")
        count_decision("check", answer.access_denied_reason or "granted")
        payload: bytes = _encode(answer)
        return 200, payload


async def _read_body(receive: Receive, limit: int) -> bytes:
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone
        chunk: bytes = message.get("body", b"")
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(f"The request body is larger than {limit} bytes.")
        if not message.get("more_body", False):
            return body
