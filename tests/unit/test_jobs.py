"""A store's jobs: taken in batches, writes first and fills in their own lane; their callers
answered in job order, one wake-up per event loop."""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import threading
from typing import Any

import pytest

from allotment.service.ports import UnitOfWork
from allotment.storage.jobs import Finished, JobQueue, Pending, settle


def _job(uow: UnitOfWork) -> None:
    raise AssertionError("never run here")


def test_a_batch_wakes_each_event_loop_once_and_answers_in_job_order() -> None:
    async def scenario() -> tuple[list[Any], int]:
        loop = asyncio.get_running_loop()
        wake_ups = 0
        call_soon_threadsafe = loop.call_soon_threadsafe

        def counting(*args: Any) -> asyncio.Handle:
            nonlocal wake_ups
            wake_ups += 1
            return call_soon_threadsafe(*args)

        loop.call_soon_threadsafe = counting  # type: ignore[method-assign]
        futures = [loop.create_future() for _ in range(5)]
        finished: list[Finished] = [
            (Pending(_job, future), index, None) for index, future in enumerate(futures)
        ]
        finished[3] = (finished[3][0], None, ValueError("refused"))
        answered: list[Any] = []
        for future in futures:
            future.add_done_callback(lambda f: answered.append(f.exception() or f.result()))
        thread = threading.Thread(target=settle, args=(finished,))
        thread.start()
        await asyncio.gather(*futures, return_exceptions=True)
        thread.join()
        return answered, wake_ups

    answered, wake_ups = asyncio.run(scenario())

    assert wake_ups == 1
    assert answered[:3] == [0, 1, 2]
    assert answered[4] == 4
    assert isinstance(answered[3], ValueError)


def test_blocking_callers_are_answered_directly() -> None:
    done: concurrent.futures.Future[Any] = concurrent.futures.Future()
    failed: concurrent.futures.Future[Any] = concurrent.futures.Future()

    settle([(Pending(_job, done), "ok", None), (Pending(_job, failed), None, KeyError("x"))])

    assert done.result(timeout=0) == "ok"
    with pytest.raises(KeyError):
        failed.result(timeout=0)


def test_answers_for_a_closed_event_loop_are_dropped_without_failing_the_store() -> None:
    loop = asyncio.new_event_loop()
    future = loop.create_future()
    loop.close()
    blocking: concurrent.futures.Future[Any] = concurrent.futures.Future()

    settle([(Pending(_job, future), 1, None), (Pending(_job, blocking), 2, None)])

    assert blocking.result(timeout=0) == 2
    assert not future.done()


# ---------------------------------------------------------------- the two lanes


def _queued(jobs: JobQueue, *lanes: str) -> dict[str, Pending]:
    """Submit one job per lane name ("w1", "f1", ...), as callers do; by name."""
    pending = {}
    for name in lanes:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        pending[name] = Pending(_job, future, fill=name.startswith("f"))
        jobs._submit(pending[name])
    return pending


def _names(batch: list[Pending] | None, pending: dict[str, Pending]) -> list[str]:
    assert batch is not None
    by_identity = {id(p): name for name, p in pending.items()}
    return [by_identity[id(p)] for p in batch]


def test_a_batch_takes_every_waiting_write_first_and_a_bounded_share_of_fills() -> None:
    jobs = JobQueue()
    pending = _queued(jobs, "f1", "f2", "w1", "f3", "f4", "w2", "f5")
    assert _names(jobs.take(100, 2, timeout=0), pending) == ["w1", "w2", "f1", "f2"]
    assert jobs.depth() == 3
    pending |= _queued(jobs, "w3")
    # The fills left behind keep their order, after the writes that came since.
    assert _names(jobs.take(100, 2, timeout=0), pending) == ["w3", "f3", "f4"]
    assert _names(jobs.take(100, 2, timeout=0), pending) == ["f5"]
    with pytest.raises(queue.Empty):
        jobs.take(100, 2, timeout=0.001)


def test_a_batch_of_fills_alone_takes_its_share() -> None:
    jobs = JobQueue()
    pending = _queued(jobs, "f1", "f2", "f3", "f4")
    assert _names(jobs.take(100, 3, timeout=0), pending) == ["f1", "f2", "f3"]
    assert _names(jobs.take(100, 3, timeout=0), pending) == ["f4"]


def test_fills_move_every_batch_however_many_writes_wait() -> None:
    jobs = JobQueue()
    pending = _queued(jobs, "f1", "f2", *(f"w{n}" for n in range(10)))
    assert _names(jobs.take(4, 1, timeout=0), pending) == ["w0", "w1", "w2", "f1"]
    assert _names(jobs.take(4, 1, timeout=0), pending) == ["w3", "w4", "w5", "f2"]
    assert _names(jobs.take(4, 1, timeout=0), pending) == ["w6", "w7", "w8", "w9"]
    assert jobs.depth() == 0


def test_a_closed_queue_runs_the_fills_it_took_before_it_stops() -> None:
    jobs = JobQueue()
    pending = _queued(jobs, "f1", "f2", "f3")
    jobs.close()
    assert _names(jobs.take(100, 2, timeout=0), pending) == ["f1", "f2"]
    assert _names(jobs.take(100, 2, timeout=0), pending) == ["f3"]
    assert jobs.take(100, 2, timeout=0) is None
    with pytest.raises(RuntimeError):
        _queued(jobs, "w1")


def test_a_batch_takes_at_least_one_fill() -> None:
    with pytest.raises(ValueError, match="at least one fill"):
        JobQueue().take(100, 0, timeout=0)
