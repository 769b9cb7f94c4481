"""The delivery loop on its own: leases, a receiver that hangs, a URL httpx refuses.

A runtime without the application (so no background loop) and httpx's mock transport stand in
for the network; every instant is the test clock's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from allotment.bootstrap import open_store
from allotment.config import Settings
from allotment.domain.events import EventType
from allotment.service.clock import TestClock
from allotment.service.events import emit
from allotment.service.runtime import Runtime
from allotment.service.webhook_delivery import LEASE, WebhookDelivery
from allotment.service.webhooks import WebhookService


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    store = open_store(Settings(database_path=tmp_path / "a.db"))
    yield Runtime(store=store, clock=TestClock())
    store.close()


def _event(runtime: Runtime, name: str) -> None:
    now = runtime.clock.now()
    runtime.store.run_blocking(
        lambda uow: emit(uow, EventType.CUSTOMER_UPDATED, "acme", {"name": name}, now)
    )


def _deliveries(runtime: Runtime, endpoint: str) -> list[tuple[str, int]]:
    page = runtime.store.run_blocking(
        lambda uow: uow.webhooks.list_deliveries(endpoint, None, None, 100)
    )
    return [(d.status.value, d.attempts) for d in page.items]


async def _until(condition: Callable[[], bool]) -> None:
    while not condition():
        await asyncio.sleep(0.01)


def test_an_outcome_that_comes_after_its_lease_changes_nothing(runtime: Runtime) -> None:
    sent: list[str] = []
    release = asyncio.Event()

    async def receive(request: httpx.Request) -> httpx.Response:
        sent.append(request.headers["webhook-id"])
        if len(sent) == 1:
            await release.wait()  # the first attempt hangs past its lease
            return httpx.Response(500)
        return httpx.Response(204)

    async def scenario() -> list[tuple[str, int]]:
        webhooks = WebhookService(runtime, allow_private=True)
        endpoint = await webhooks.create("http://receiver.test/", None, None)
        _event(runtime, "one")
        _event(runtime, "two")
        delivery = WebhookDelivery(
            runtime, allow_private=True, transport=httpx.MockTransport(receive)
        )
        assert await delivery.tick() == 1  # "one" only: "two" waits behind it
        await asyncio.sleep(0.05)
        assert isinstance(runtime.clock, TestClock)
        runtime.clock.advance(int(LEASE.total_seconds()) + 1)
        assert await delivery.tick() == 1  # the lease ran out: "one" again, and it succeeds
        await _until(lambda: _deliveries(runtime, endpoint.id)[0] == ("succeeded", 1))
        assert await delivery.tick() == 1  # "two" follows
        await _until(lambda: _deliveries(runtime, endpoint.id)[1] == ("succeeded", 1))
        release.set()  # the first attempt's failure comes last, and must not count
        await delivery.settle()
        await delivery.close()
        return _deliveries(runtime, endpoint.id)

    deliveries = asyncio.run(asyncio.wait_for(scenario(), 30))
    assert deliveries == [("succeeded", 1), ("succeeded", 1)]
    assert len(sent) == 3


def test_a_url_httpx_cannot_use_fails_its_attempt_and_is_retried(runtime: Runtime) -> None:
    async def scenario() -> list[tuple[str, int]]:
        webhooks = WebhookService(runtime, allow_private=True)
        endpoint = await webhooks.create("http://xn--zz.com/", None, None)
        _event(runtime, "one")
        delivery = WebhookDelivery(runtime, allow_private=True)
        await delivery.tick()
        await delivery.settle()
        await delivery.close()
        return _deliveries(runtime, endpoint.id)

    assert asyncio.run(scenario()) == [("pending", 1)]
