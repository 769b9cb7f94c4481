"""The request path as bare ASGI handlers: ``POST /v1/check``, ``POST /v1/usage`` and
``POST /v1/customers/{id}/credits/{currency}/debits``.

These are the routes a product calls on every request. A check answered from memory costs a
header scan, a SHA-256 of the key, a msgspec decode, a walk through the customer's snapshot and
a msgspec encode; Starlette's request objects, middleware stack and regex routing would cost
more than all of that, so these handlers sit in front of the application and answer their paths
themselves. Authentication, scopes and the error table are the same as everywhere else.

Under ``allotment serve`` most of these requests do not even come as ASGI calls: the HTTP
protocol (``protocol.py``) offers each check to :meth:`HotPath.answer_inline` first, which answers
from memory with the same functions, and each usage report and debit to
:meth:`HotPath.answer_write`, which runs the same handler on the body the protocol has read; it
hands everything else here.

They also do for themselves what wrappers do for the other routes, in the one scan of the
headers they make anyway: the request id (``request_ids.py``), the request metrics, and the
sampled access log. A check is timed into a :class:`~allotment.service.stats.Distribution` and
its cache hit counted in a plain int, read when ``/metrics`` is scraped: about 0.4 µs in all,
the clock read included, where a Prometheus histogram would add 0.5 µs (``benchmarks.md``).
"""

from __future__ import annotations

import functools
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import NamedTuple

from starlette.types import ASGIApp, Receive, Scope, Send

from allotment.api.described import Doc, Operation
from allotment.api.errors import (
    MethodNotAllowed,
    PayloadTooLarge,
    error_body,
    error_headers,
    error_status_and_body,
)
from allotment.api.http import (
    CLIENT_CLOSED_REQUEST,
    Access,
    authorize,
    bearer_secret,
    decode,
)
from allotment.api.logs import log_access, sampled
from allotment.api.metrics import count_decision, count_request, observe_seconds
from allotment.api.openapi import examples
from allotment.api.presenters import check_json, usage_json, write_json
from allotment.api.request_ids import HEADER, REQUEST_ID, accepted, new_request_id
from allotment.api.schemas import CheckIn, DebitIn, UsageIn
from allotment.api.services import Services
from allotment.api.store_metrics import CheckFigures
from allotment.domain.customers import ApiKey
from allotment.domain.errors import AllotmentError, InvalidRequest, Unauthenticated
from allotment.domain.ids import is_client_id
from allotment.domain.quantities import Micros, parse_quantity
from allotment.service.answers import CheckAnswer
from allotment.service.credits import DebitRequest
from allotment.service.outcomes import DebitOutcome, UsageAnswer
from allotment.service.runtime import act_as
from allotment.service.stats import Distribution
from allotment.service.usage import UsageBehavior, UsageReport

log = logging.getLogger(__name__)
_JSON = (b"content-type", b"application/json")
_DEBITS = re.compile(r"/v1/customers/([^/]+)/credits/([^/]+)/debits")
# As the request line has it: no percent-escape or query, which the application's way decodes.
_RAW_DEBITS = re.compile(rb"/v1/customers/([^/%?#]+)/credits/([^/%?#]+)/debits")
Headers = tuple[tuple[bytes, bytes], ...]


TAG = "Request path"
_DECISION = "A decision is not an error: a denial answers 200 with `access_denied_reason`"
_ANY_CUSTOMER = f"{_DECISION}, also for an unknown customer."
# What the API description says of the paths answered here (see api/described.py).
OPERATIONS = (
    Operation(
        "POST",
        "/v1/check",
        "check",
        Doc(
            "May this customer use this feature now?",
            Access.CLIENT,
            CheckAnswer,
            body=CheckIn,
            description=f"{_ANY_CUSTOMER} With `requested`, a hard limit grants when usage, "
            "holds and the request fit; without it, when something is left. Budgets on the "
            "entity's path and a credit-priced feature's pool decide the same way. A client key "
            "may ask for its own customer only.",
            example=examples.CHECK,
        ),
    ),
    Operation(
        "POST",
        "/v1/usage",
        "report_usage",
        Doc(
            "Record usage, or check and consume it atomically",
            Access.SERVER,
            UsageAnswer,
            body=UsageIn,
            idempotent=True,
            description=f"{_ANY_CUSTOMER} With `enforce: true`, an amount that would pass a "
            "hard limit, a hard budget or the credits' overdraft limit is not recorded "
            "(`recorded: false`). A credit-priced feature debits its credits in the same step. "
            "A report's idempotency key is kept for 7 days (`ALLOTMENT_USAGE_KEY_RETENTION_DAYS`, "
            "at least 7); reused after that, it is a new report.",
            example=examples.USAGE,
        ),
    ),
    Operation(
        "POST",
        "/v1/customers/{customer}/credits/{currency}/debits",
        "debit_credits",
        Doc(
            "Debit credits from a customer's pool",
            Access.SERVER,
            DebitOutcome,
            body=DebitIn,
            errors=(404,),
            idempotent=True,
            description=f"{_DECISION}. The debit draws on the grants in the currency's burn "
            "order, one ledger entry per grant; with an `entity`, hard budgets on the currency "
            "along its path apply. 404 for an unknown customer or currency.",
            example=examples.DEBIT,
        ),
    ),
)


class _ClientGone(Exception):
    pass


class _Call(NamedTuple):
    """One request's context. A named tuple: a frozen dataclass's ``__init__`` sets each field
    through ``object.__setattr__``, which costs more than the rest of making it."""

    services: Services
    key: ApiKey
    read_body: Callable[[], Awaitable[bytes]]
    path_params: tuple[str, ...]
    checks: CheckFigures

    async def body(self) -> bytes:
        """Read only once the key is known to be allowed, so a refusal costs no upload."""
        return await self.read_body()


Handler = Callable[[_Call], Awaitable[bytes]]


class Route(NamedTuple):
    name: str  # as the metrics name it (the endpoint's name for Starlette's routes)
    handler: Handler
    template: str  # as the access log names it


class HotPath:
    def __init__(self, app: ASGIApp, services: Services) -> None:
        self._app = app
        self._services = services
        self._check = Route("check", _check, "/v1/check")
        self._usage = Route("report_usage", _usage, "/v1/usage")
        self._exact: dict[str, Route] = {"/v1/check": self._check, "/v1/usage": self._usage}
        self._debits = Route(
            "debit_credits", _debit, "/v1/customers/{customer}/credits/{currency}/debits"
        )
        self.checks = CheckFigures(Distribution())
        self._time_check = self.checks.seconds.observe
        # 0 (falsy) unless sampling: with it off, the request path tests this float alone.
        self._access_sample = services.settings.access_log_sample

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            route = self._exact.get(path)
            params: tuple[str, ...] = ()
            if route is None and path.endswith("/debits"):
                match = _DEBITS.fullmatch(path)
                if match is not None:
                    route, params = self._debits, match.groups()
            if route is not None:
                await self._answer(scope, receive, send, route, params)
                return
        await self._app(scope, receive, send)

    async def _answer(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        route: Route,
        params: tuple[str, ...],
    ) -> None:
        started = time.perf_counter()
        method: str = scope["method"]
        path: str = scope["path"]
        authorization, request_id, _ = _scan_headers(scope["headers"])
        REQUEST_ID.set(request_id)  # for log lines; never reset: each request is its own task
        limit = self._services.settings.max_body_bytes
        read_body = functools.partial(_read_body, receive, limit)
        answer = await self._outcome(route, method, path, params, authorization, read_body)
        if answer is None:  # nobody reads an answer: the metrics and the access log note it
            self._answered(route, method, path, CLIENT_CLOSED_REQUEST, started, request_id)
            return
        status, payload, extra = answer
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    _JSON,
                    (b"content-length", str(len(payload)).encode()),
                    (HEADER, request_id),
                    *extra,
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})
        self._answered(route, method, path, status, started, request_id)

    def write_route(self, url: bytes) -> tuple[Route, tuple[str, ...]] | None:
        """The route and path parameters of a usage report's or a debit's request target, for
        :meth:`answer_write`; None for anything else, and for a target the application's way
        would have to decode."""
        if url == b"/v1/usage":
            return self._usage, ()
        if url.endswith(b"/debits"):
            match = _RAW_DEBITS.fullmatch(url)
            if match is not None and url.isascii():
                customer, currency = match.groups()
                return self._debits, (customer.decode(), currency.decode())
        return None

    async def answer_write(
        self,
        route: Route,
        params: tuple[str, ...],
        url: bytes,
        headers: Sequence[tuple[bytes, bytes]],
        body: bytes,
    ) -> tuple[int, bytes, bytes, Headers]:
        """(status, answer, request id, extra headers) of a ``POST`` to a :meth:`write_route`
        whose whole body the HTTP protocol (``protocol.py``) has read, answered as the ASGI
        handler answers it, errors included, in a task of its own."""
        started = time.perf_counter()
        path = url.decode()
        authorization, request_id, _ = _scan_headers(headers)
        REQUEST_ID.set(request_id)  # for log lines; never reset: each request is its own task
        limit = self._services.settings.max_body_bytes
        read_body = functools.partial(_given_body, body, limit)
        answer = await self._outcome(route, "POST", path, params, authorization, read_body)
        assert answer is not None  # only reading a body from the client finds it gone
        status, payload, extra = answer
        self._answered(route, "POST", path, status, started, request_id)
        return status, payload, request_id, extra

    async def _outcome(
        self,
        route: Route,
        method: str,
        path: str,
        params: tuple[str, ...],
        authorization: bytes | None,
        read_body: Callable[[], Awaitable[bytes]],
    ) -> tuple[int, bytes, Headers] | None:
        """(status, answer, extra headers) of a request to ``route``, errors answered as the
        error table says; None when the client went away before its body was read."""
        try:
            call = await self._call(method, path, params, authorization, read_body)
            return 200, await route.handler(call), ()
        except _ClientGone:
            return None
        except AllotmentError as error:
            status, payload = error_status_and_body(error)
            extra = tuple((k.encode(), v.encode()) for k, v in error_headers(error).items())
            return status, payload, extra
        except Exception:
            log.exception("unexpected error answering %s %s", method, path)
            return 500, error_body("internal_error", "Something went wrong on our side."), ()

    def answer_inline(
        self, headers: Sequence[tuple[bytes, bytes]], body: bytes
    ) -> tuple[bytes, bytes] | None:
        """(request id, answer) for a check that memory alone answers with 200, called by the
        HTTP protocol (``protocol.py``) with the request's headers and body, before any ASGI
        task exists; None for everything else, which the protocol then hands to the
        application as usual: a key or a customer not in memory, any error, and a request from
        a browser (``Origin``), which CORS answers when it is on."""
        started = time.perf_counter()
        authorization, request_id, from_browser = _scan_headers(headers)
        if authorization is None or from_browser:
            return None
        services = self._services
        # Set and reset: this runs in the event loop's own context, not a request's task.
        token = REQUEST_ID.set(request_id)
        try:
            secret = bearer_secret(authorization.decode("latin-1"))
            key = services.keys.authenticate_cached(secret)
            if key is None:
                return None
            request, requested = _check_request(key, body)
            answer = services.entitlements.check_cached(
                request.customer, request.feature, request.entity, requested
            )
            if not isinstance(answer, CheckAnswer):
                return None
            self.checks.hits += 1
            payload = _check_json(answer)
        except AllotmentError:
            return None
        except Exception:  # the application answers it again, and says what went wrong
            log.exception("answering a check inline failed; handing it to the application")
            return None
        finally:
            REQUEST_ID.reset(token)
        self._answered(self._check, "POST", "/v1/check", 200, started, request_id)
        return request_id, payload

    def _answered(
        self, route: Route, method: str, path: str, status: int, started: float, request_id: bytes
    ) -> None:
        """Count the answer, time it (unless nobody read it), and write its access-log line
        when sampled."""
        name = route.name
        count_request(name, method, status)
        seconds = time.perf_counter() - started
        if status == CLIENT_CLOSED_REQUEST:
            pass
        elif name == "check":
            self._time_check(seconds)
        else:
            observe_seconds(name, seconds)
        if self._access_sample and sampled(self._access_sample):
            log_access(method, route.template, path, status, seconds, request_id)

    async def _call(
        self,
        method: str,
        path: str,
        params: tuple[str, ...],
        authorization: bytes | None,
        read_body: Callable[[], Awaitable[bytes]],
    ) -> _Call:
        services = self._services
        if method != "POST":
            raise MethodNotAllowed(f"Use POST for {path}.", allow=["POST"])
        secret = bearer_secret(None if authorization is None else authorization.decode("latin-1"))
        key = services.keys.authenticate_cached(secret)
        if key is None:
            key = await services.keys.authenticate(secret)
        if key is None:
            raise Unauthenticated("Unknown or revoked API key.")
        act_as(key)
        return _Call(services, key, read_body, params, self.checks)


def _scan_headers(
    headers: Iterable[tuple[bytes, bytes]],
) -> tuple[bytes | None, bytes, bool]:
    """In one pass: the ``Authorization`` value, the request's id (its first sane
    ``X-Request-Id``, as :class:`RequestIds` takes it, else a new one), and whether it came
    from a browser (``Origin``)."""
    authorization = request_id = None
    from_browser = False
    for header, value in headers:
        if header == b"authorization":
            authorization = value
        elif header == HEADER and request_id is None:
            request_id = accepted(value)
        elif header == b"origin":
            from_browser = True
    return authorization, request_id or new_request_id(), from_browser


def _check_request(key: ApiKey, body: bytes) -> tuple[CheckIn, Micros | None]:
    """The check asked for, once ``key`` may ask it: a client key's customer is in the body."""
    request = decode(body, CheckIn)
    authorize(key, Access.CLIENT, request.customer)
    requested = (
        None if request.requested is None else parse_quantity(request.requested.value, "requested")
    )
    return request, requested


def _check_json(answer: CheckAnswer) -> bytes:
    count_decision("check", answer.access_denied_reason or "granted")
    return check_json(answer)


async def _check(call: _Call) -> bytes:
    request, requested = _check_request(call.key, await call.body())
    entitlements = call.services.entitlements
    answer = entitlements.check_cached(request.customer, request.feature, request.entity, requested)
    if isinstance(answer, CheckAnswer):
        call.checks.hits += 1
    else:
        call.checks.misses += 1
        answer = await entitlements.check(
            request.customer, request.feature, request.entity, requested
        )
    return _check_json(answer)


async def _usage(call: _Call) -> bytes:
    authorize(call.key, Access.SERVER)
    body = decode(await call.body(), UsageIn)
    report = UsageReport(
        customer=body.customer,
        feature=body.feature,
        amount=parse_quantity(body.amount.value, "amount"),
        idempotency_key=body.idempotency_key,
        entity=body.entity,
        enforce=body.enforce,
        behavior=UsageBehavior(body.behavior),
        timestamp=body.timestamp,
    )
    outcome = await call.services.usage.report(report)
    count_decision("usage", "recorded" if outcome.recorded else "refused")
    return usage_json(outcome)


async def _debit(call: _Call) -> bytes:
    authorize(call.key, Access.SERVER)
    customer, currency = call.path_params
    for value, name in ((customer, "customer"), (currency, "currency")):
        if not is_client_id(value):
            raise InvalidRequest(f"{value!r} is not a valid {name} id.", {"field": name})
    body = decode(await call.body(), DebitIn)
    debit = DebitRequest(
        amount=parse_quantity(body.amount.value, "amount"),
        idempotency_key=body.idempotency_key,
        entity=body.entity,
        feature=body.feature,
        enforce=body.enforce,
    )
    return write_json(await call.services.credits.debit(customer, currency, debit))


async def _given_body(body: bytes, limit: int) -> bytes:
    """A body the HTTP protocol read before the request reached its handler."""
    if len(body) > limit:
        raise PayloadTooLarge(f"The request body is larger than {limit} bytes.")
    return body


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
