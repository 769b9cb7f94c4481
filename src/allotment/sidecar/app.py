"""The sidecar's HTTP API: the service's request path, answered by an SDK ``Client``.

Apps in any language call the sidecar on loopback as they would call the service, and get the
contract's JSON back. Checks and entitlement lists are answered from the client's cache, which
the change feed keeps current; usage reports go to the client's durable buffer and reach the
service in the background, with the app's idempotency key and payload; reservations need the
service's atomic decision, so they are passed through.

The sidecar has no authentication of its own: it acts with its ``--api-key`` for whoever can
reach it, which is why it listens on loopback by default. Request bodies are read and validated
with the service's own definitions and limits, so an app gets the same 400 (and 413) here as it
would from the service, and nothing invalid is ever buffered for later.

The client's methods block (a cache miss may read the service; a report is an SQLite commit),
so every handler runs them in the thread pool, except a check the cache can answer: that is
answered on the event loop, as the service answers its own checks from memory.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from decimal import Decimal
from typing import Any, TypeVar

import msgspec
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from allotment.api.errors import RETRY_AFTER_SECONDS, error_body
from allotment.api.http import decode, error_response, path_id, read_body
from allotment.api.schemas import CheckIn, CommitIn, Quantity, ReservationIn, UsageIn
from allotment.config import DEFAULT_MAX_BODY_BYTES
from allotment.domain.errors import AllotmentError, InvalidRequest
from allotment.domain.ids import is_client_id, require_client_id
from allotment.domain.quantities import parse_quantity
from allotment.domain.timefmt import format_instant
from allotment.sdk import ApiError, BufferFull, CheckResult, Client, ServiceUnavailable
from allotment.sdk.errors import InvalidReport
from allotment.sdk.results import UsageReport, UsageResult
from allotment.sidecar.metrics import registry_for, render

log = logging.getLogger("allotment.sidecar")

S = TypeVar("S")
Handler = Callable[[Request, Client], Awaitable[Response]]
_encode = msgspec.json.Encoder(decimal_format="number").encode
_JSON = "application/json"
# nginx's status for a client that left before its answer; nobody reads it.
_CLIENT_CLOSED_REQUEST = 499


def create_app(client: Client, *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> Starlette:
    """The sidecar's routes over ``client``. The app does not own the client: whoever made it
    closes it (``allotment sidecar`` does once the server has stopped)."""
    routes = [
        Route("/v1/check", _answering(check), methods=["POST"]),
        Route("/v1/usage", _answering(usage), methods=["POST"]),
        Route("/v1/reservations", _answering(reserve), methods=["POST"]),
        Route("/v1/reservations/{reservation}/commit", _answering(commit), methods=["POST"]),
        Route("/v1/reservations/{reservation}/release", _answering(release), methods=["POST"]),
        Route("/v1/customers/{customer}/entitlements", _answering(entitlements), methods=["GET"]),
        Route("/livez", livez, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: _http_error, Exception: _unexpected_error},
    )
    app.state.client = client
    app.state.max_body_bytes = max_body_bytes
    app.state.registry = registry_for(client)
    return app


# ---------------------------------------------------------------- the request path


async def check(request: Request, client: Client) -> Response:
    """``POST /v1/check``: the check result, ``is_fallback`` and ``data_age`` included.

    Answered on the event loop whenever the cache holds the customer (``Client.check_cached``);
    only a check that must read the service first goes to the thread pool."""
    body = await _read(request, CheckIn)
    requested = None if body.requested is None else _quantity(body.requested, "requested")
    result = client.check_cached(
        body.customer, body.feature, entity=body.entity, requested=requested
    )  # from memory on the event loop; only a read of the service goes to a thread
    if result is None:
        result = await run_in_threadpool(
            client.check, body.customer, body.feature, entity=body.entity, requested=requested
        )
    return _json(result)


async def usage(request: Request, client: Client) -> Response:
    """``POST /v1/usage``: buffered, or decided by the service when ``enforce`` is set (see
    :func:`_report`)."""
    body = await _read(request, UsageIn)
    amount = _quantity(body.amount, "amount")
    return _json(await run_in_threadpool(_report, client, body, amount))


def _report(client: Client, body: UsageIn, amount: int | Decimal) -> dict[str, Any]:
    """Report, then answer as the service does: ``recorded``, ``replayed``, the check result
    after it, plus ``buffered`` and ``decided_offline``.

    A report the service decided (an enforced one while it is reachable) answers the
    service's own result. A buffered one has no answer from the service yet: its check result
    is the cache's, which counts the report already, and ``replayed`` is false because only the
    service knows. A report the offline policy refused carries the refusal in ``has_access``
    and ``access_denied_reason``, which describe the request as the contract says."""
    report = client.report_usage(
        body.customer,
        body.feature,
        amount,
        entity=body.entity,
        idempotency_key=body.idempotency_key,
        enforce=body.enforce,
        behavior=body.behavior,
        timestamp=None if body.timestamp is None else format_instant(body.timestamp),
    )
    if report.result is not None:
        return _decided(report.result)
    after = client.check(body.customer, body.feature, entity=body.entity)
    return _undecided(report, after)


def _decided(result: UsageResult) -> dict[str, Any]:
    fields = {"recorded": result.recorded, "replayed": result.replayed}
    fields.update(msgspec.structs.asdict(result))
    return {**fields, "buffered": False, "decided_offline": False}


def _undecided(report: UsageReport, after: CheckResult) -> dict[str, Any]:
    fields: dict[str, Any] = {"recorded": report.recorded, "replayed": False}
    fields.update(msgspec.structs.asdict(after))
    if not report.recorded:
        fields["has_access"] = False
        fields["access_denied_reason"] = report.access_denied_reason
    return {**fields, "buffered": report.buffered, "decided_offline": report.decided_offline}


async def reserve(request: Request, client: Client) -> Response:
    """``POST /v1/reservations``: the service's decision, passed through."""
    body = await _read(request, ReservationIn)
    amount = _quantity(body.amount, "amount")
    reservation = await run_in_threadpool(
        client.reserve,
        body.customer,
        body.feature,
        amount,
        entity=body.entity,
        ttl_seconds=body.ttl_seconds,
        idempotency_key=body.idempotency_key,
    )
    return _json(reservation.outcome)


async def commit(request: Request, client: Client) -> Response:
    """``POST /v1/reservations/{id}/commit``, passed through."""
    reservation = _reservation_id(request)
    amount = _quantity((await _read(request, CommitIn)).amount, "amount")
    return _json(await run_in_threadpool(client.commit_reservation, reservation, amount))


async def release(request: Request, client: Client) -> Response:
    """``POST /v1/reservations/{id}/release``, passed through; like the service, it takes no
    body or ``{}``."""
    reservation = _reservation_id(request)
    body = await read_body(request, request.app.state.max_body_bytes)
    if body.strip() not in (b"", b"{}"):
        raise InvalidRequest("release takes no body (or {}).")
    return _json(await run_in_threadpool(client.release_reservation, reservation))


async def entitlements(request: Request, client: Client) -> Response:
    """``GET /v1/customers/{id}/entitlements?entity=``, answered from the cache."""
    customer = path_id(request, "customer")
    entity = request.query_params.get("entity") or None
    if entity is not None:
        require_client_id(entity, "entity")
    return _json(await run_in_threadpool(client.entitlements, customer, entity=entity))


# ---------------------------------------------------------------- operations


async def livez(request: Request) -> Response:
    return _json({"status": "ok"})


async def readyz(request: Request) -> Response:
    """Ready once the change feed is live: before that a cached answer may lag the service
    by up to the poll interval, and an orchestrator should send traffic elsewhere."""
    client: Client = request.app.state.client
    if client.wait_until_ready(0):
        return _json({"status": "ok"})
    reason = f"the change feed is not live (it is {client.feed.state.value})"
    if client.feed.last_error:
        reason += f"; last error: {client.feed.last_error}"
    return _json({"status": "unavailable", "reason": reason}, 503)


async def metrics(request: Request) -> Response:
    body = await run_in_threadpool(render, request.app.state.registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


# ---------------------------------------------------------------- errors and helpers


def _answering(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Wrap a handler: hand it the client and answer every failure with the contract's error
    body. The service's refusals keep their status and body; an unreachable service, or a full
    buffer, is a 503 the app may retry."""

    @functools.wraps(handler)
    async def answer(request: Request) -> Response:
        try:
            return await handler(request, request.app.state.client)
        except AllotmentError as error:  # the request itself is invalid
            return error_response(error)
        except ApiError as error:
            return _error(error.status, error.code, error.message, error.details)
        except ServiceUnavailable as error:
            message = f"The service could not be reached: {error}"
            return _error(503, "upstream_unavailable", message, retry=True)
        except BufferFull as error:
            message = f"Usage cannot be kept until it is delivered: {error}."
            return _error(503, "buffer_full", message, retry=True)
        except InvalidReport as error:  # a rule of the service's the schema cannot say
            return _error(400, "invalid_request", str(error), {"field": error.field})
        except ClientDisconnect:
            return Response(status_code=_CLIENT_CLOSED_REQUEST)

    return answer


async def _http_error(request: Request, error: Exception) -> Response:
    """No such route (404), or not this method (405, with ``Allow``), in the error shape."""
    assert isinstance(error, HTTPException)
    if error.status_code == 404:
        return _error(404, "not_found", "No such route.")
    code = "method_not_allowed" if error.status_code == 405 else "invalid_request"
    return _error(error.status_code, code, str(error.detail), headers=error.headers)


async def _unexpected_error(request: Request, error: Exception) -> Response:
    log.exception("unexpected error answering %s %s", request.method, request.url.path)
    return _error(500, "internal_error", "Something went wrong in the sidecar.")


def _error(
    status: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    *,
    retry: bool = False,
    headers: Mapping[str, str] | None = None,
) -> Response:
    extra = dict(headers or {})
    if retry:
        extra["retry-after"] = str(RETRY_AFTER_SECONDS)
    return Response(error_body(code, message, details), status, extra, media_type=_JSON)


def _json(document: Any, status: int = 200) -> Response:
    return Response(_encode(document), status, media_type=_JSON)


async def _read(request: Request, schema: type[S]) -> S:
    """The body decoded as the service decodes it: at most ``max_body_bytes`` (else 413),
    unknown fields, wrong types and bad ids refused (400)."""
    return decode(await read_body(request, request.app.state.max_body_bytes), schema)


def _quantity(quantity: Quantity, field: str) -> int | Decimal:
    """A quantity within the contract's range and precision (the service's 400 otherwise),
    checked here so that nothing invalid waits in the buffer to be refused later."""
    parse_quantity(quantity.value, field)
    return quantity.value


def _reservation_id(request: Request) -> str:
    """A reservation id as the service accepts it, in characters that go into a URL path as
    they are (the client puts it there without quoting)."""
    value: str = request.path_params["reservation"]
    if not (value.startswith("res_") and len(value) <= 100 and is_client_id(value)):
        raise InvalidRequest(f"{value!r} is not a valid reservation id.", {"field": "reservation"})
    return value
