"""Garbage-collection pauses that do not grow with the cache.

Every cached customer is a snapshot of some tens of Python objects, and CPython's full
collection walks every object its collector tracks: at 100,000 customers one full collection
paused the process for about a second. The snapshots live long and hold no reference cycles
(a snapshot leaves the cache and is freed by reference counting alone), so the collector has
nothing to find among them.

``gc.freeze()`` moves every object tracked so far to a permanent generation that collections
skip. The server freezes once the snapshot cache has taken in a tenth of its size in new
customers since the last freeze (warm-up, then churn when it is full), after one collection of
what is not frozen yet, so that the garbage of the moment is not kept. That collection walks only
what came since the last freeze. What it cannot help: an object alive at the freeze that later
becomes garbage inside a reference cycle is kept until the process ends (objects freed by
reference counting, as snapshots are, are freed as usual). A request in flight at the moment of
a freeze holds a few such objects at most.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time

from allotment.service.snapshots import SnapshotCache

log = logging.getLogger(__name__)

FREEZE_SHARE = 0.1  # of the cache's size, taken in as new customers since the last freeze
FREEZE_AT_LEAST = 1_000  # new customers: below this a freeze is not worth its collection
FREEZE_CHECK_SECONDS = 5.0


def freeze_cached() -> None:
    """Collect what is not frozen yet, then freeze everything left."""
    gc.collect()
    gc.freeze()


class CacheFreezer:
    """Freezes when the snapshot cache has taken in enough new customers."""

    def __init__(self, snapshots: SnapshotCache) -> None:
        self._snapshots = snapshots
        self._installs_at_freeze = 0
        self.freezes = 0

    def due(self) -> bool:
        taken_in = self._snapshots.installs - self._installs_at_freeze
        return taken_in >= max(FREEZE_AT_LEAST, FREEZE_SHARE * len(self._snapshots))

    def freeze_if_due(self) -> bool:
        if not self.due():
            return False
        self._installs_at_freeze = self._snapshots.installs
        started = time.perf_counter()
        freeze_cached()
        self.freezes += 1
        log.debug(
            "froze %d objects with %d customers cached in %.1f ms",
            gc.get_freeze_count(),
            len(self._snapshots),
            1000 * (time.perf_counter() - started),
        )
        return True

    async def run(self, interval: float = FREEZE_CHECK_SECONDS) -> None:
        """Check every ``interval`` seconds, until cancelled."""
        while True:
            await asyncio.sleep(interval)
            self.freeze_if_due()
