"""Background loops stop when cancelled, even as what they wait for arrives.

On Python 3.11 ``asyncio.wait_for`` returns normally when the awaited thing completes in the
same turn as the cancellation, and the cancellation is lost: a loop built on it would run on
and the server's shutdown would wait on it forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import cast

import pytest

from allotment.api import background
from allotment.api.services import Services
from allotment.service.runtime import Runtime
from allotment.service.webhook_delivery import WebhookDelivery


def test_the_delivery_loop_stops_when_cancelled_as_it_is_nudged() -> None:
    async def scenario() -> bool:
        delivery = WebhookDelivery(cast(Runtime, None), allow_private=True)
        rounds = 0

        async def tick() -> int:
            nonlocal rounds
            rounds += 1
            return 0

        delivery.tick = tick  # type: ignore[method-assign]
        task = asyncio.get_running_loop().create_task(delivery.run(interval=60))
        while rounds == 0:
            await asyncio.sleep(0)
        for _ in range(3):
            await asyncio.sleep(0)  # the loop is now waiting to be woken
        delivery.nudge()
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=5)
        if not done:
            task.cancel()
        return task in done and task.cancelled()

    assert asyncio.run(scenario()), "the loop ran on after it was cancelled"


def test_stopping_the_background_never_waits_on_a_loop_that_will_not_end(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(background, "STOP_SECONDS", 0.2)
    released = asyncio.Event()

    async def stubborn() -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(3600)
        await released.wait()  # as a loop that lost its cancellation would

    async def obliging() -> None:
        await asyncio.sleep(3600)

    async def scenario() -> None:
        work = background.Background(cast(Services, None))
        loop = asyncio.get_running_loop()
        work._tasks = [loop.create_task(stubborn(), name="stubborn"), loop.create_task(obliging())]
        await asyncio.sleep(0)
        await asyncio.wait_for(work.stop(), 5)
        released.set()

    with caplog.at_level(logging.ERROR):
        asyncio.run(scenario())
    # Only this module's lines: a client another test left running may log from its thread.
    logged = [r.getMessage() for r in caplog.records if r.name == background.log.name]
    assert logged == ["background task stubborn did not stop within 0.2 s"]
