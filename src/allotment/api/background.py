"""The work a server process does besides answering: events time brings, webhook delivery,
and pruning events past their retention. Started and stopped with the application."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from functools import partial

from allotment.api.services import Services
from allotment.service.ports import UnitOfWork

log = logging.getLogger(__name__)

TIMER_INTERVAL_SECONDS = 1.0
"""How often due timers are taken: their events are stored within this of their instant, plus
the time a batch takes (the contract allows 5 s)."""

EVENT_RETENTION = timedelta(days=30)
PRUNE_EVERY_SECONDS = 60.0
PRUNE_CHUNK = 10_000
STOP_SECONDS = 15.0


class Background:
    def __init__(self, services: Services) -> None:
        self._services = services
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._timers(), name="timers"),
            loop.create_task(self._services.delivery.run(), name="webhook delivery"),
            loop.create_task(self._prune(), name="pruning events"),
        ]

    async def stop(self) -> None:
        """Cancel every loop and wait for them, but never longer than ``STOP_SECONDS``: a loop
        that does not end must not keep the process from stopping."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        if not tasks:
            return
        ended, running = await asyncio.wait(tasks, timeout=STOP_SECONDS)
        for task in ended:
            if not task.cancelled() and task.exception() is not None:
                log.error("background task %s failed", task.get_name(), exc_info=task.exception())
        for task in running:
            log.error("background task %s did not stop within %s s", task.get_name(), STOP_SECONDS)
            # Once more: a loop that lost one cancellation ends at the next. One that ignores
            # every cancellation is still running when the event loop closes, which cancels it
            # again and waits for it.
            task.cancel()

    async def _timers(self) -> None:
        time_events = self._services.time_events
        while True:
            try:
                if await time_events.fire_due():
                    self._services.delivery.nudge()
            except Exception:
                log.exception("taking due timers failed; trying again")
            await asyncio.sleep(TIMER_INTERVAL_SECONDS)

    async def _prune(self) -> None:
        runtime = self._services.runtime
        while True:
            await asyncio.sleep(PRUNE_EVERY_SECONDS)
            prune = partial(_prune_events, before=runtime.clock.now() - EVENT_RETENTION)
            try:
                while await runtime.store.run(prune) == PRUNE_CHUNK:
                    pass
            except Exception:
                log.exception("pruning events failed; trying again")


def _prune_events(uow: UnitOfWork, before: datetime) -> int:
    return uow.events.prune(before, PRUNE_CHUNK)
