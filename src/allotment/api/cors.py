"""CORS for the routes a client key may call, so that a browser can call them with one.

Only ``POST /v1/check``, ``GET /v1/customers/{id}/entitlements`` and ``GET /v1/stream`` accept a
client key; every other route needs a server or admin key, which must never reach a browser, so
they answer no preflight. The layer exists only when origins are configured: without them the
check path is exactly what it was. With them, a request without an ``Origin`` header (any
server-to-server call) costs a path test and a scan of the headers.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from allotment.api.request_ids import RequestIds

_CLIENT_PATHS = frozenset({"/v1/check", "/v1/stream"})
_ENTITLEMENTS = re.compile(r"/v1/customers/[^/]+/entitlements")
PREFLIGHT_MAX_AGE_SECONDS = 600


def is_client_route(path: str) -> bool:
    return path in _CLIENT_PATHS or _ENTITLEMENTS.fullmatch(path) is not None


class ClientCors:
    """Starlette's CORS middleware in front of the client routes only, for ``origins``."""

    def __init__(self, app: ASGIApp, origins: Sequence[str]) -> None:
        self._app = app
        self._cors = CORSMiddleware(
            app,
            allow_origins=list(origins),
            allow_methods=["GET", "POST"],
            # A bearer key in Authorization is not a credential in CORS terms (no cookies).
            allow_headers=["authorization", "content-type", "last-event-id"],
            expose_headers=["retry-after", "x-request-id"],
            max_age=PREFLIGHT_MAX_AGE_SECONDS,
        )
        # A preflight is answered here, before the routes that give other answers their id.
        self._preflight = RequestIds(self._cors)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            # Only browsers send Origin: other callers need no CORS headers, and none of these
            # routes' answers may be kept by a shared cache (their requests carry Authorization).
            for name, _ in scope["headers"]:
                if name == b"origin":
                    if is_client_route(scope["path"]):
                        cors = self._preflight if _is_preflight(scope) else self._cors
                        await cors(scope, receive, send)
                        return
                    break
        await self._app(scope, receive, send)


def _is_preflight(scope: Scope) -> bool:
    """As CORSMiddleware tells a preflight, which it answers itself."""
    return scope["method"] == "OPTIONS" and any(
        name == b"access-control-request-method" for name, _ in scope["headers"]
    )
