"""Garbage-collection pauses that do not grow with the cache.

Every cached customer is a snapshot of some tens of Python objects, and CPython's collector walks
the objects it tracks: at 100,000 customers a full collection during warm-up paused the process for
0.8 s (``bench/gc_pauses.py``). In steady state it is worse hidden: a snapshot loaded again after a
write replaces one that is freed, the collector's count of new objects stays near zero, and the new
objects pile up in the youngest generation until one collection walks them all at once. The
snapshots live long and hold no reference cycles (one leaving the cache is freed by reference
counting alone), so the collector has nothing to find among them.

``gc.freeze()`` moves every object tracked so far to a permanent generation that collections skip.
The server freezes each time the snapshot cache has taken in 1,000 customers (or a hundredth of its
size, if more) since the last freeze, looking after every batch the store hands over, after
collecting the young generations so that the garbage of the moment is not kept: each freeze walks
about 1,000 customers' worth of objects. What it cannot help: an object alive at a freeze that later
becomes garbage inside a reference cycle is kept until the process ends (objects freed by reference
counting, as snapshots are, are freed as usual). ``/metrics`` counts the freezes
(``allotment_gc_freezes_total``).
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Sequence

from allotment.service.ports import Published
from allotment.service.snapshots import SnapshotCache

log = logging.getLogger(__name__)

FREEZE_SHARE = 0.01  # of the cache's size, taken in as new customers since the last freeze
FREEZE_AT_LEAST = 1_000  # new customers: below this a freeze is not worth its collection


def freeze_cached() -> None:
    """Collect the young generations, then freeze everything left."""
    gc.collect(1)
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
        # Not gc.get_freeze_count(): it walks every frozen object, millions of them.
        log.debug(
            "froze with %d customers cached in %.1f ms",
            len(self._snapshots),
            1000 * (time.perf_counter() - started),
        )
        return True

    def after_batch(self, published: Sequence[Published]) -> None:
        """The store's sink: look once the projector has installed what a batch loaded."""
        self.freeze_if_due()
