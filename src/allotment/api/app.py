"""The ASGI application: the hot check path in front of Starlette's routes."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import ASGIApp

from allotment.api.background import Background
from allotment.api.cors import ClientCors
from allotment.api.errors import MethodNotAllowed, error_body
from allotment.api.hot import HotPath
from allotment.api.http import error_response, raw_json_response
from allotment.api.metrics import RequestMetrics
from allotment.api.openapi import serving
from allotment.api.request_ids import RequestIds
from allotment.api.routes import (
    catalog,
    catalog_document,
    credits,
    customers,
    entities,
    keys,
    operations,
    request_path,
    reservations,
    stream,
    webhooks,
)
from allotment.api.services import Services
from allotment.api.store_metrics import ServiceCollector
from allotment.config import Settings

log = logging.getLogger(__name__)

_CODES = {404: "not_found"}


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    if error.status_code == 405:
        allow = _allowed_methods(request)
        return error_response(MethodNotAllowed(f"Use {', '.join(allow)} for this path.", allow))
    code = _CODES.get(error.status_code, "invalid_request")
    message = "No such route." if error.status_code == 404 else str(error.detail)
    return raw_json_response(error_body(code, message), error.status_code)


def _allowed_methods(request: Request) -> set[str]:
    """Every method some route answers on this path. Starlette's own 405 names only the first
    route whose path matched, and each method here is a route of its own."""
    allowed: set[str] = set()
    for candidate in request.app.router.routes:
        if isinstance(candidate, Route) and candidate.methods:
            match, _ = candidate.matches(request.scope)
            if match is not Match.NONE:
                allowed |= candidate.methods
    return allowed


async def _unexpected_error(request: Request, error: Exception) -> Response:
    log.exception("unexpected error answering %s %s", request.method, request.url.path)
    return raw_json_response(error_body("internal_error", "Something went wrong on our side."), 500)


def create_app(settings: Settings, services: Services | None = None) -> ASGIApp:
    """Open the store and build the application; the store closes when the app shuts down."""
    opened = services or Services.open(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        background = Background(opened)
        background.start()
        try:
            yield
        finally:
            await background.stop()
            opened.close()

    routes = [
        *operations.routes,
        *catalog_document.routes,
        *catalog.routes,
        *customers.routes,
        *request_path.routes,
        *credits.routes,
        *reservations.routes,
        *entities.routes,
        *keys.routes,
        *stream.routes,
        *webhooks.routes,
        *serving.routes,
    ]
    if settings.test_clock:
        routes += operations.test_clock_routes
    starlette = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_error, Exception: _unexpected_error},
    )
    starlette.state.services = opened
    starlette.state.readiness = operations.Readiness(opened.runtime.store)
    # The hot path gives its own routes their request id, metrics and access log; RequestIds and
    # RequestMetrics do it for every other route.
    hot = HotPath(RequestIds(RequestMetrics(starlette, settings.access_log_sample)), opened)
    starlette.state.collector = ServiceCollector(opened, hot.checks)
    app: ASGIApp = hot
    if settings.cors_origins:  # without origins the hot path pays for no CORS layer at all
        app = ClientCors(app, settings.cors_origins)
    return app
