"""Health probes, Prometheus metrics and the test clock."""

from __future__ import annotations

import asyncio
from typing import Literal

from msgspec import UNSET, Struct, UnsetType
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response

from allotment.api.described import DescribedRoute, Doc
from allotment.api.http import Access, json_response, read, route
from allotment.api.metrics import REGISTRY
from allotment.api.schemas import ClockIn
from allotment.api.services import Services
from allotment.api.store_metrics import ServiceCollector
from allotment.domain.errors import InvalidRequest, NotFound
from allotment.domain.timefmt import format_instant
from allotment.service.answers import InstantText
from allotment.service.clock import TestClock
from allotment.service.ports import Store

TAG = "Operations"


class Health(Struct, frozen=True):
    """``GET /livez`` and ``GET /readyz``: ``ok``, or ``unavailable`` with the ``reason`` the
    database gave (``/readyz`` only, with 503)."""

    status: Literal["ok", "unavailable"]
    reason: str | UnsetType = UNSET


class ClockReading(Struct, frozen=True):
    """``GET`` and ``POST /v1/test/clock``: the service's clock."""

    now: InstantText


async def livez(request: Request) -> Response:
    return json_response(Health("ok"))


READY_TIMEOUT_SECONDS = 2.0


class Readiness:
    """Whether the database answers a read, asked beside the writer and never more than once at
    a time.

    The read is the change log's bounds on the store's reader (``Store.log_bounds``): a job on
    the write queue would wait behind every batch ahead of it, and a flood of probes would slow
    the writes. Probes that arrive while a read is in flight wait for that read."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._read: asyncio.Future[tuple[int, int]] | None = None

    async def check(self) -> tuple[int, int]:
        """The change log's bounds once the database answered them; raise what it raised, or
        ``TimeoutError``."""
        read = self._read
        if read is None or read.done() or read.get_loop() is not asyncio.get_running_loop():
            read = self._read = asyncio.ensure_future(self._store.log_bounds())
            # Retrieved here too, so a read every waiter gave up on logs no "never retrieved".
            read.add_done_callback(lambda done: done.cancelled() or done.exception())
        async with asyncio.timeout(READY_TIMEOUT_SECONDS):
            return await asyncio.shield(read)


async def readyz(request: Request) -> Response:
    readiness: Readiness = request.app.state.readiness
    try:
        await readiness.check()
    except TimeoutError:
        reason = f"the database did not answer within {READY_TIMEOUT_SECONDS:g} s"
        return json_response(Health("unavailable", reason), 503)
    except Exception as error:  # the probe must answer, whatever the store says
        return json_response(Health("unavailable", str(error)), 503)
    return json_response(Health("ok"))


async def metrics(request: Request) -> Response:
    """The process's metrics and the application's. The change log's newest revision is read
    now, through the readiness probe's single read (a flood of scrapes costs one read at a
    time); when the database does not answer, this scrape goes without it and the lag."""
    collector: ServiceCollector = request.app.state.collector
    readiness: Readiness = request.app.state.readiness
    try:
        collector.log_head = (await readiness.check())[1]
    except Exception:  # the metrics must answer, whatever the store says
        collector.log_head = None
    body = generate_latest(REGISTRY) + generate_latest(collector.registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


def _test_clock(services: Services) -> TestClock:
    if services.test_clock is None:
        raise NotFound("The test clock is off: start the server with ALLOTMENT_TEST_CLOCK=1.")
    return services.test_clock


@route(Access.SERVER)
async def get_clock(request: Request, services: Services) -> Response:
    return json_response(ClockReading(format_instant(_test_clock(services).now())))


@route(Access.ADMIN)
async def move_clock(request: Request, services: Services) -> Response:
    clock = _test_clock(services)
    body = await read(request, ClockIn)
    if (body.advance_seconds is UNSET) == (body.now is UNSET):
        raise InvalidRequest("Send exactly one of advance_seconds and now.")
    if body.now is not UNSET:
        moved = clock.set(body.now)
    else:
        assert body.advance_seconds is not UNSET
        moved = clock.advance(body.advance_seconds)
    # What the move brings is stored before it is answered; deliveries due by it go now.
    await services.time_events.fire_due()
    services.delivery.nudge()
    return json_response(ClockReading(format_instant(moved)))


routes = [
    DescribedRoute("/livez", livez, "GET", Doc("Is the process alive?", None, Health)),
    DescribedRoute(
        "/readyz",
        readyz,
        "GET",
        Doc(
            "Can the service answer from its database?",
            None,
            Health,
            extra_answers={503: ("The database cannot be read.", Health)},
        ),
    ),
    DescribedRoute(
        "/metrics",
        metrics,
        "GET",
        Doc(
            "Prometheus metrics",
            None,
            str,
            description="The Prometheus text format.",
            media_types=(CONTENT_TYPE_LATEST,),
        ),
    ),
]

# Mounted only when the server runs with ALLOTMENT_TEST_CLOCK=1; otherwise these paths are 404.
test_clock_routes = [
    DescribedRoute(
        "/v1/test/clock",
        get_clock,
        "GET",
        Doc("Read the test clock", Access.SERVER, ClockReading, errors=(404,), test_clock=True),
    ),
    DescribedRoute(
        "/v1/test/clock",
        move_clock,
        "POST",
        Doc(
            "Move the test clock forward",
            Access.ADMIN,
            ClockReading,
            body=ClockIn,
            errors=(404,),
            test_clock=True,
            description="Every time rule follows it: period resets, trial ends, grant and "
            "reservation expiry. Never backwards (400).",
        ),
    ),
]
