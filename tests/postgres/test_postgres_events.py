"""Events and webhooks with two processes on one PostgreSQL database: what time brings is
stored once, and a delivery is claimed by one process at a time."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx

from allotment.bootstrap import open_store
from allotment.config import Settings
from allotment.domain.events import EventType
from allotment.service.clock import TestClock
from allotment.service.credits import CreditService
from allotment.service.events import emit, reservation_timer
from allotment.service.ports import Store, UnitOfWork
from allotment.service.runtime import Runtime
from allotment.service.time_events import TimeEvents
from allotment.service.webhook_delivery import WebhookDelivery
from allotment.service.webhooks import WebhookService

TIMERS = 300


def _runtimes(url: str, clock: TestClock) -> list[Runtime]:
    stores: list[Store] = [open_store(Settings(database_url=url)) for _ in range(2)]
    return [Runtime(store=store, clock=clock) for store in stores]


def test_two_processes_taking_timers_store_each_event_once(migrated_postgres_url: str) -> None:
    clock = TestClock()
    one, other = _runtimes(migrated_postgres_url, clock)
    try:
        # Reservations that were never made: their timers fire and find nothing to announce,
        # which is enough to count how often each timer was taken.
        def set_timers(uow: UnitOfWork) -> None:
            for n in range(TIMERS):
                reservation_timer(uow, "acme", f"res_{n}", clock.now() + timedelta(seconds=1))

        one.store.run_blocking(set_timers)
        clock.advance(2)
        taken: list[int] = []

        async def take(runtime: Runtime) -> None:
            events = TimeEvents(runtime, CreditService(runtime))
            taken.append(await events.fire_due())

        async def both() -> None:
            await asyncio.gather(take(one), take(other), take(one), take(other))

        asyncio.run(both())
        assert sum(taken) == TIMERS  # each timer taken by exactly one job of one process
        assert one.store.run_blocking(lambda uow: uow.timers.next_due()) is None
    finally:
        one.store.close()
        other.store.close()


def test_two_processes_deliver_each_event_once(migrated_postgres_url: str) -> None:
    clock = TestClock()
    one, other = _runtimes(migrated_postgres_url, clock)
    sent: list[str] = []

    def receive(request: httpx.Request) -> httpx.Response:
        sent.append(request.headers["webhook-id"])
        return httpx.Response(204)

    try:

        async def scenario() -> list[str]:
            await WebhookService(one, allow_private=True).create("http://r.test/", None, None)
            now = clock.now()
            made = []
            for n in range(40):  # forty customers: forty groups of one event each
                event = await one.store.run(
                    lambda uow, n=n: emit(uow, EventType.CUSTOMER_CREATED, f"c{n}", {}, now)
                )
                made.append(event.id)
            transport = httpx.MockTransport(receive)
            loops = [
                WebhookDelivery(r, allow_private=True, transport=transport) for r in (one, other)
            ]
            for _ in range(50):  # both processes fan out and claim side by side
                started = await asyncio.gather(*(loop.tick() for loop in loops))
                for loop in loops:
                    await loop.settle()
                if not any(started) and len(sent) >= len(made):
                    break
            for loop in loops:
                await loop.close()
            return made

        made = asyncio.run(scenario())
        assert sorted(sent) == sorted(made)  # every event once: fanned out once, claimed once
    finally:
        one.store.close()
        other.store.close()
