"""What every store shares: a queue of jobs for its one thread, answered to async or blocking
callers, and the way it follows the change log of the other stores on its database."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
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

Sink = Callable[[Sequence[Published]], None]


@dataclass(slots=True)
class Pending:
    job: Callable[[UnitOfWork], Any]
    settle: Callable[[Any, BaseException | None], None]


class JobQueue:
    """Jobs waiting for a store's thread; ``None`` in the queue tells the thread to stop."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Pending | None] = queue.SimpleQueue()
        self.closed = False

    async def run(self, job: Callable[[UnitOfWork], T]) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()

        def settle(result: Any, error: BaseException | None) -> None:
            loop.call_soon_threadsafe(_settle_async, future, result, error)

        self._submit(Pending(job, settle))
        return await future

    def run_blocking(self, job: Callable[[UnitOfWork], T]) -> T:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def settle(result: Any, error: BaseException | None) -> None:
            if error is None:
                future.set_result(result)
            else:
                future.set_exception(error)

        self._submit(Pending(job, settle))
        return future.result()

    def next(self, timeout: float) -> Pending | None:
        """The next job; ``queue.Empty`` after ``timeout`` seconds; None once closed."""
        return self._queue.get(timeout=timeout)

    def waiting(self, most: int) -> list[Pending]:
        """Up to ``most`` jobs already waiting, without blocking (a stop request stays queued)."""
        taken: list[Pending] = []
        while len(taken) < most:
            try:
                pending = self._queue.get_nowait()
            except queue.Empty:
                break
            if pending is None:
                self._queue.put(None)
                break
            taken.append(pending)
        return taken

    def close(self) -> None:
        self.closed = True
        self._queue.put(None)

    def _submit(self, pending: Pending) -> None:
        if self.closed:
            raise RuntimeError("the store is closed")
        self._queue.put(pending)


def _settle_async(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return
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
