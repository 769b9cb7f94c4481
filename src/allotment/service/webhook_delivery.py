"""Delivering events to webhook endpoints, in the background.

Three short store jobs bracket every attempt, and no request is sent inside one: *fan out*
(each enabled endpoint's cursor follows the events, making a delivery of each event it asked
for), *claim* (the first pending delivery of each (endpoint, customer) group whose attempt is
due is leased by moving its next attempt ``LEASE`` ahead, so no other process takes it), then
the attempt itself, with a 10 s timeout on a pooled connection, and *record* (succeeded;
retried later by the schedule of ``domain/webhook_rules.py``; or failed). An endpoint failing
for ``DISABLE_AFTER`` is disabled, with a log line, a metric and a
``webhook_endpoint.disabled`` event. Every instant is the service's clock, the test clock
included, but ``webhook-timestamp``, which receivers compare with their own clocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import httpx
import msgspec

from allotment.domain.events import EventType, LoggedEvent
from allotment.domain.webhook_rules import (
    ATTEMPT_TIMEOUT_SECONDS,
    address_allowed,
    retry_at,
    should_disable,
)
from allotment.domain.webhooks import Delivery, DeliveryStatus, Endpoint
from allotment.service.events import emit
from allotment.service.ports import UnitOfWork
from allotment.service.runtime import Runtime
from allotment.service.webhook_signing import delivery_headers
from allotment.service.webhook_views import endpoint_view, event_view
from allotment.service.webhooks import deliveries_for

log = logging.getLogger(__name__)

LEASE = timedelta(seconds=60)
"""How long a claimed attempt is kept from other processes (an attempt takes at most 10 s)."""

IN_FLIGHT = 16
"""Attempts under way at once in one process."""

PER_ENDPOINT = 4
"""Attempts under way at once to one endpoint: a slow receiver holds these, not the rest."""

EVENTS_PER_FAN_OUT = 500
MAX_ERROR_LENGTH = 500

_encode = msgspec.json.Encoder(decimal_format="number").encode


@dataclass(frozen=True, slots=True)
class Attempt:
    delivery: Delivery
    endpoint: Endpoint
    event: LoggedEvent
    leased_until: datetime  # the lease's mark: an outcome counts only while it is still there


@dataclass(frozen=True, slots=True)
class Outcome:
    status_code: int | None
    error: str | None

    @property
    def succeeded(self) -> bool:
        return self.error is None


@dataclass(slots=True)
class DeliveryStats:
    """What ``/metrics`` reports of deliveries (kept as plain counters, read when scraped)."""

    succeeded: int = 0
    failed_attempts: int = 0
    failed: int = 0
    endpoints_disabled: int = 0


class WebhookDelivery:
    def __init__(
        self,
        runtime: Runtime,
        *,
        allow_private: bool,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._runtime = runtime
        self._allow_private = allow_private
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._in_flight: dict[asyncio.Task[None], str] = {}
        self._wake = asyncio.Event()
        self.stats = DeliveryStats()

    def nudge(self) -> None:
        """Look again now (the test clock moved, or an endpoint was pinged)."""
        self._wake.set()

    async def run(self, interval: float = 0.5) -> None:
        """Deliver until cancelled."""
        try:
            while True:
                self._wake.clear()  # before the round: a nudge during it brings another
                try:
                    await self.tick()
                except Exception:
                    log.exception("webhook delivery round failed; trying again")
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for returns normally when
                # the wait ends as the task is cancelled, losing the cancellation, and shutdown
                # would wait on this loop forever.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(interval):
                        await self._wake.wait()
        finally:
            await self.close()

    async def tick(self) -> int:
        """Fan out new events and start every attempt that is due; how many were started."""
        store = self._runtime.store
        await store.run(self._fan_out)
        room = IN_FLIGHT - len(self._in_flight)
        if room <= 0:
            return 0
        in_flight = Counter(self._in_flight.values())
        busy = sorted(e for e, n in in_flight.items() if n >= PER_ENDPOINT)
        attempts = await store.run(lambda uow: self._claim(uow, room, busy, in_flight))
        for attempt in attempts:
            task = asyncio.get_running_loop().create_task(self._deliver(attempt))
            self._in_flight[task] = attempt.endpoint.id
            task.add_done_callback(self._done)
        return len(attempts)

    async def settle(self) -> None:
        """Wait for the attempts under way (for tests and shutdown)."""
        while self._in_flight:
            await asyncio.gather(*self._in_flight, return_exceptions=True)

    async def close(self) -> None:
        for task in list(self._in_flight):
            task.cancel()
        await asyncio.gather(*self._in_flight, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _done(self, task: asyncio.Task[None]) -> None:
        self._in_flight.pop(task, None)
        if not task.cancelled() and task.exception() is not None:
            log.error("webhook attempt failed unexpectedly", exc_info=task.exception())
        self._wake.set()  # the group's next delivery may go now

    # ------------------------------------------------------------------ jobs

    def _fan_out(self, uow: UnitOfWork) -> None:
        now = self._runtime.clock.now()
        for enabled in uow.webhooks.enabled_endpoints():
            found = uow.events.list(None, None, enabled.cursor, EVENTS_PER_FAN_OUT)
            if not found:
                continue
            # Read again, held: another process may be fanning out the same endpoint.
            endpoint = uow.webhooks.get_endpoint(enabled.id)
            if endpoint is None or endpoint.cursor != enabled.cursor:
                continue
            made = [deliveries_for(endpoint, e.seq, e.event, now) for e in found]
            uow.webhooks.add_deliveries([d for d in made if d is not None])
            uow.webhooks.save_endpoint(replace(endpoint, cursor=found[-1].seq))

    def _claim(
        self, uow: UnitOfWork, room: int, busy: list[str], in_flight: Counter[str]
    ) -> list[Attempt]:
        """Lease up to ``room`` due deliveries, at most ``PER_ENDPOINT`` under way per endpoint
        (disabled endpoints' wait in the store until they are enabled again)."""
        now = self._runtime.clock.now()
        attempts: list[Attempt] = []
        endpoints: dict[str, Endpoint | None] = {}
        for delivery in uow.webhooks.due_deliveries(now, room, busy):
            if delivery.endpoint not in endpoints:  # read, not held: the claim holds deliveries
                endpoints[delivery.endpoint] = uow.webhooks.get_endpoint(
                    delivery.endpoint, held=False
                )
            endpoint = endpoints[delivery.endpoint]
            if endpoint is None or in_flight[endpoint.id] >= PER_ENDPOINT:
                continue
            event = uow.events.get(delivery.event_id)
            if event is None:
                gone = delivery.attempt_failed(None, "the event is no longer kept", None)
                uow.webhooks.save_delivery(replace(gone, attempts=delivery.attempts))
                continue
            leased_until = now + LEASE
            uow.webhooks.save_delivery(replace(delivery, next_attempt_at=leased_until))
            in_flight[endpoint.id] += 1
            attempts.append(Attempt(delivery, endpoint, event, leased_until))
        return attempts

    def _record(self, uow: UnitOfWork, attempt: Attempt, outcome: Outcome) -> None:
        now = self._runtime.clock.now()
        endpoint = uow.webhooks.get_endpoint(attempt.endpoint.id)
        delivery = uow.webhooks.get_delivery(attempt.delivery.id)
        if (
            delivery is None
            or endpoint is None  # deleted meanwhile
            or delivery.status is not DeliveryStatus.PENDING
            or delivery.next_attempt_at != attempt.leased_until
        ):
            # The lease ran out and another attempt took the delivery: its outcome counts,
            # this one's would undo it (or send the group's next event out of order).
            return
        if outcome.succeeded:
            assert outcome.status_code is not None
            uow.webhooks.save_delivery(delivery.succeeded(outcome.status_code))
            self.stats.succeeded += 1
            if endpoint.failing_since is not None:
                uow.webhooks.save_endpoint(replace(endpoint, failing_since=None))
            return
        assert outcome.error is not None
        retry = retry_at(delivery.attempts + 1, now, random.random())
        uow.webhooks.save_delivery(
            delivery.attempt_failed(outcome.status_code, outcome.error, retry)
        )
        self.stats.failed_attempts += 1
        if retry is None:
            self.stats.failed += 1
        failing_since = endpoint.failing_since or now
        if should_disable(failing_since, now) and not endpoint.disabled:
            disabled = replace(endpoint, disabled=True, failing_since=failing_since)
            uow.webhooks.save_endpoint(disabled)
            self.stats.endpoints_disabled += 1
            log.warning(
                "webhook endpoint %s disabled: every attempt since %s failed",
                endpoint.id,
                failing_since.isoformat(),
            )
            emit(uow, EventType.WEBHOOK_ENDPOINT_DISABLED, None, endpoint_view(disabled), now)
        elif endpoint.failing_since is None:
            uow.webhooks.save_endpoint(replace(endpoint, failing_since=now))

    # ------------------------------------------------------------------ the attempt

    async def _deliver(self, attempt: Attempt) -> None:
        outcome = await self._attempt(attempt)
        await self._runtime.store.run(lambda uow: self._record(uow, attempt, outcome))

    async def _attempt(self, attempt: Attempt) -> Outcome:
        """One attempt, the address check included, within ``ATTEMPT_TIMEOUT_SECONDS`` in all
        (httpx's timeout bounds each phase, not a receiver trickling its answer)."""
        try:
            async with asyncio.timeout(ATTEMPT_TIMEOUT_SECONDS):
                return await self._send(attempt)
        except TimeoutError:
            return Outcome(None, f"no answer within {ATTEMPT_TIMEOUT_SECONDS} seconds")
        except Exception as error:  # a URL httpx cannot use, an encoding it refuses, ...
            return Outcome(None, _short(f"{type(error).__name__}: {error}"))

    async def _send(self, attempt: Attempt) -> Outcome:
        body = _encode(event_view(attempt.event))
        now = self._runtime.clock.now()
        headers = delivery_headers(
            attempt.endpoint.signing_secrets(now),
            attempt.event.event.id,
            int(time.time()),  # the receiver's tolerance is about its wall clock
            body,
        )
        refused = await self._refused_address(attempt.endpoint.url)
        if refused is not None:
            return Outcome(None, refused)
        try:
            answer = await self._http().post(attempt.endpoint.url, content=body, headers=headers)
        except httpx.TimeoutException:
            return Outcome(None, f"no answer within {ATTEMPT_TIMEOUT_SECONDS} seconds")
        except httpx.HTTPError as error:
            return Outcome(None, _short(f"{type(error).__name__}: {error}"))
        if 200 <= answer.status_code < 300:
            return Outcome(answer.status_code, None)
        return Outcome(answer.status_code, f"answered {answer.status_code}")

    async def _refused_address(self, url: str) -> str | None:
        """Unless private addresses are allowed, every address the host resolves to must be
        public (checked at each attempt, since DNS answers change)."""
        if self._allow_private or self._transport is not None:
            return None
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
        try:
            found = await asyncio.get_running_loop().getaddrinfo(host, port)
        except OSError as error:
            return _short(f"cannot resolve {host}: {error}")
        for *_, address in found:
            if not address_allowed(str(address[0]), False):
                return f"{host} resolves to {address[0]}, a private address"
        return None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=ATTEMPT_TIMEOUT_SECONDS,
                follow_redirects=False,
                transport=self._transport,
                limits=httpx.Limits(max_connections=IN_FLIGHT, max_keepalive_connections=IN_FLIGHT),
            )
        return self._client


def _short(text: str) -> str:
    return text if len(text) <= MAX_ERROR_LENGTH else text[: MAX_ERROR_LENGTH - 1] + "…"
