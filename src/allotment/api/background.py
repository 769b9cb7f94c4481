"""The work a server process does besides answering: events time brings, webhook delivery,
and pruning events past their retention. Started and stopped with the application."""

from __future__ import annotations

import asyncio
import contextlib
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


class Background:
    def __init__(self, services: Services) -> None:
        self._services = services
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._timers()),
            loop.create_task(self._services.delivery.run()),
            loop.create_task(self._prune()),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

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
