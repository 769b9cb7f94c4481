"""The change feed's side of the log: what readers of ``GET /v1/stream`` wait on.

The store hands every committed change to :meth:`ChangeFeed.publish` on its thread, after the
commit, in revision order (this process's changes and those it follows from other processes).
The feed keeps the most recent ones in a ring of fixed size and wakes the readers waiting on
the event loop. Readers pull: each keeps its own cursor and takes a page at a time, from the
ring or, for older revisions, from the log itself, so a slow or stuck reader holds one page
and its socket's buffer, never a queue that grows, and publishing costs the same however many
readers there are and however far behind they are.

When the server shuts down it closes the feed: every reader is woken and ends its stream, so an
open stream never holds the shutdown up.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections import deque
from collections.abc import Sequence

from allotment.domain.changes import LoggedChange
from allotment.service.ports import Published, Store

DEFAULT_RING_SIZE = 10_000


class ChangeFeed:
    def __init__(self, store: Store, ring_size: int = DEFAULT_RING_SIZE) -> None:
        self._store = store
        self._recent: deque[LoggedChange] = deque(maxlen=ring_size)
        self._lock = threading.Lock()
        self._head = 0  # the newest revision published here
        self._loop: asyncio.AbstractEventLoop | None = None
        self._published = asyncio.Event()
        # Both changed on the event loop only: read by /metrics, and by every reader.
        self.readers = 0  # streams open now
        self.closed = False  # the server is shutting down: readers end their streams

    @property
    def head(self) -> int:
        return self._head

    def publish(self, published: Sequence[Published]) -> None:
        """The store's sink: remember the batch's logged changes and wake the readers."""
        if self._loop is None:
            return  # no reader has come yet: they read what came before them from the log
        logged = [item for item in published if isinstance(item, LoggedChange)]
        if not logged:
            return
        with self._lock:
            if self._recent and logged[0].seq != self._recent[-1].seq + 1:
                self._recent.clear()  # the ring holds consecutive revisions only
            self._recent.extend(logged)
            self._head = logged[-1].seq
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        published, self._published = self._published, asyncio.Event()
        published.set()

    def close(self) -> None:
        """Tell every reader to end its stream, and wake those waiting; on the event loop."""
        self.closed = True
        if self._loop is not None:
            self._wake()

    def waiter(self) -> asyncio.Event:
        """An event set at the next publication; take it before reading, then wait on it."""
        self._loop = asyncio.get_running_loop()
        return self._published

    async def bounds(self) -> tuple[int, int]:
        """(the oldest revision the log keeps, the newest committed), 0 for none."""
        oldest, newest = await self._store.log_bounds()
        return oldest, max(newest, self._head)

    async def after(self, seq: int, limit: int) -> list[LoggedChange]:
        """Up to ``limit`` changes past revision ``seq``, oldest first: from memory when the
        ring still holds the next one, else from the log."""
        with self._lock:
            if self._recent and self._recent[0].seq <= seq + 1:
                start = seq + 1 - self._recent[0].seq
                return list(itertools.islice(self._recent, start, start + limit))
        return await self._store.read_log(seq, limit)
