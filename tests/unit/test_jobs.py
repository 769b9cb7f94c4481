"""Answering the callers of a store's jobs: in job order, one wake-up per event loop."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from typing import Any

import pytest

from allotment.service.ports import UnitOfWork
from allotment.storage.jobs import Finished, Pending, settle


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
