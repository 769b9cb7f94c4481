"""What every store shares: a queue of jobs for its one thread, answered to async or blocking
callers, and the way it follows the change log of the other stores on its database."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from allotment.domain.catalog import Catalog
from allotment.domain.changes import CatalogChanged, LoggedChange
from allotment.service.ports import Published, UnitOfWork
from allotment.service.projector import CatalogLoaded, Forget

T = TypeVar("T")
log = logging.getLogger(__name__)

FOLLOW_INTERVAL_SECONDS = 0.01
FOLLOW_PAGE = 5_000
PRUNE_INTERVAL_SECONDS = 60.0
PRUNE_CHUNK = 10_000
DEFAULT_LOG_RETENTION = timedelta(days=7)
# Usage reports' idempotency records past their retention go this many per short transaction;
# while a whole chunk was due, the next one comes after the backlog pause, not a minute later.
USAGE_KEY_PRUNE_CHUNK = 1_000
PRUNE_BACKLOG_PAUSE_SECONDS = 0.1
DEFAULT_USAGE_KEY_RETENTION = timedelta(days=7)

Sink = Callable[[Sequence[Published]], None]


@dataclass(slots=True)
class Pending:
    """A job and the future its caller waits on: an asyncio one, answered on the caller's event
    loop, or a thread's one, for blocking callers. A *fill* reads what a cache lacks (a cold
    check) and may wait behind writes."""

    job: Callable[[UnitOfWork], Any]
    future: asyncio.Future[Any] | concurrent.futures.Future[Any]
    fill: bool = False


Finished = tuple[Pending, Any, BaseException | None]
"""A job that ran: its result, or the error it raised (or its batch failed with)."""


class JobQueue:
    """Jobs waiting for a store's thread, in two lanes: writes, and fills.

    A batch holds at most a given number of fills and fills the rest of its room with writes;
    what does not fit waits, in order, for the batches after it. So when a restart's warm-up
    sends thousands of cold checks at once, a write that arrives meanwhile waits for one
    batch's share of them, not for all, and the fills still move every batch, however many
    writes wait.
    ``None`` in the queue tells the thread to stop.
    """

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Pending | None] = queue.SimpleQueue()
        # Taken from the queue but not run yet, in order; touched by the store's thread only.
        self._writes: deque[Pending] = deque()
        self._fills: deque[Pending] = deque()
        self.closed = False

    async def run(self, job: Callable[[UnitOfWork], T], *, fill: bool = False) -> T:
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._submit(Pending(job, future, fill))
        return await future

    def run_blocking(self, job: Callable[[UnitOfWork], T]) -> T:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._submit(Pending(job, future))
        return future.result()

    def take(self, most: int, fills: int, timeout: float) -> list[Pending] | None:
        """The next batch: up to ``most`` jobs, at most ``fills`` (at least 1) of them fills,
        writes in the rest of the room. ``queue.Empty`` after ``timeout`` seconds with nothing
        to run; None once closed and every job taken is run."""
        if fills < 1:
            raise ValueError("a batch must take at least one fill, or fills would wait forever")
        writes, fills_waiting = self._writes, self._fills
        if not writes and not fills_waiting:
            first = self._queue.get(timeout=timeout)
            if first is None:
                return None
            (fills_waiting if first.fill else writes).append(first)
        while len(writes) < most:
            try:
                pending = self._queue.get_nowait()
            except queue.Empty:
                break
            if pending is None:  # stays queued: the thread stops once nothing else is left
                self._queue.put(None)
                break
            (fills_waiting if pending.fill else writes).append(pending)
        share = min(fills, len(fills_waiting))
        batch = [writes.popleft() for _ in range(min(len(writes), most - share))]
        batch += [fills_waiting.popleft() for _ in range(min(share, most - len(batch)))]
        return batch

    def depth(self) -> int:
        return self._queue.qsize() + len(self._writes) + len(self._fills)

    def serve(
        self,
        run_batch: Callable[[list[Pending]], None],
        between_batches: Callable[[], None],
        upkeep_due: Callable[[], bool],
        *,
        most: int,
        fills: int,
    ) -> None:
        """A store thread's life: run batches of at most ``most`` jobs (``fills`` of them fills,
        ``take``) until closed; between batches, whenever the queue stays empty for
        ``FOLLOW_INTERVAL_SECONDS``, and after a batch when ``upkeep_due()`` (under steady load
        the queue is never empty), call ``between_batches`` (following the log, pruning)."""
        while True:
            try:
                batch = self.take(most, fills, timeout=FOLLOW_INTERVAL_SECONDS)
            except queue.Empty:
                between_batches()
                continue
            if batch is None:
                return
            run_batch(batch)
            if upkeep_due():
                between_batches()

    def close(self) -> None:
        self.closed = True
        self._queue.put(None)

    def _submit(self, pending: Pending) -> None:
        if self.closed:
            raise RuntimeError("the store is closed")
        self._queue.put(pending)


def settle(finished: Sequence[Finished]) -> None:
    """Answer the callers of ``finished`` jobs, in job order, from the store's thread.

    Waking an event loop from another thread costs a system call; a batch wakes each loop
    once, however many of its jobs that loop's callers wait on.
    """
    by_loop: dict[asyncio.AbstractEventLoop, list[Finished]] = {}
    for item in finished:
        future = item[0].future
        if isinstance(future, asyncio.Future):
            by_loop.setdefault(future.get_loop(), []).append(item)
        elif item[2] is None:
            future.set_result(item[1])
        else:
            future.set_exception(item[2])
    for loop, answered in by_loop.items():
        try:
            loop.call_soon_threadsafe(_settle_on_loop, answered)
        except RuntimeError:  # the loop is closed: nobody is left to answer
            log.debug("dropped %d answers for a closed event loop", len(answered))


def _settle_on_loop(finished: Sequence[Finished]) -> None:
    for pending, result, error in finished:
        future = pending.future
        assert isinstance(future, asyncio.Future)
        if future.cancelled():
            continue
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)


def follow_log(
    last_seq: int,
    read: Callable[[int, int], list[LoggedChange]],
    load_catalog: Callable[[], Catalog],
    hand_over: Callable[[Sequence[Published]], None],
) -> int:
    """Hand over, page by page, every logged change past ``last_seq``; the newest handed over.

    When the log no longer holds the next revision (pruned past what this store handed over),
    everything cached is dropped first, the rest of the log is handed over but its catalog
    changes, and the catalog is installed whole at the end as the same read sees it: older
    changes applied one by one on top of it would not fit.
    """
    reloading = False
    while True:
        logged = read(last_seq, FOLLOW_PAGE)
        if not logged:
            break
        published: list[Published] = []
        if not reloading and logged[0].seq != last_seq + 1:
            log.warning("fell behind the change log at %d: reloading", last_seq)
            reloading = True
            published.append(Forget())
        published += [
            entry
            for entry in logged
            if not (reloading and isinstance(entry.change, CatalogChanged))
        ]
        last_seq = logged[-1].seq
        hand_over(published)
    if reloading:
        hand_over([CatalogLoaded(load_catalog())])
    return last_seq


def hand_over_to(sinks: Sequence[Sink], published: Sequence[Published]) -> None:
    for sink in sinks:
        try:
            sink(published)
        except Exception:
            log.exception("a change-log sink failed")
