"""``allotment serve --workers N``: N processes answering on one port, supervised by a parent.

The parent binds the listening socket, and the CLI has brought the schema to the newest
version (and loaded the demo) before it, so the workers start on a current database and never
migrate at once. Each worker is a spawned process with its own services, store, cache and event
loop, serving the inherited socket (the kernel hands each new connection to one of them); the
workers act as one service exactly as separate ``serve`` processes on one database do, through
the change log. The parent forwards SIGTERM and SIGINT to every worker, which drains as a lone
server does (``server.py``), and starts again a worker that exits on its own (a crash), after a
pause that grows while workers keep failing. Workers run in a process group of their own, so
that a terminal's Ctrl-C reaches the parent alone and each worker is told once.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import time
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from types import FrameType

from allotment.config import Settings

log = logging.getLogger("allotment.serve")

RESTART_PAUSE_SECONDS = (0.5, 1.0, 2.0, 5.0, 10.0)
HEALTHY_AFTER_SECONDS = 60.0  # a worker up this long resets the pause


@dataclass(frozen=True)
class WorkerSetup:
    """What each worker needs to serve as ``serve`` would, sent to it when it is spawned."""

    settings: Settings
    log_level: str
    log_format: str
    access_log_sample: float
    shutdown_timeout: int


def serve_workers(setup: WorkerSetup, *, host: str, port: int, workers: int) -> int:
    """Serve with ``workers`` processes until SIGTERM or SIGINT; the exit status."""
    listener = socket.create_server((host, port), backlog=2048)
    context = multiprocessing.get_context("spawn")
    running: dict[int, tuple[BaseProcess, float]] = {}
    stopping = False
    failures = 0

    def start(index: int) -> None:
        process = context.Process(
            target=_worker,
            args=(setup, listener, index),
            name=f"allotment-worker-{index}",
            daemon=False,
        )
        process.start()
        running[index] = (process, time.monotonic())

    def stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for process, _ in running.values():
            if process.pid is not None and process.is_alive():
                os.kill(process.pid, signal.SIGTERM)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        for index in range(workers):
            start(index)
        log.info("Allotment on http://%s:%d with %d workers", host, port, workers)
        while not stopping:
            time.sleep(0.2)
            for index, (process, started) in list(running.items()):
                if process.is_alive() or stopping:
                    continue
                failures = 0 if time.monotonic() - started >= HEALTHY_AFTER_SECONDS else failures
                pause = RESTART_PAUSE_SECONDS[min(failures, len(RESTART_PAUSE_SECONDS) - 1)]
                failures += 1
                log.error(
                    "worker %d (pid %s) exited with status %s; starting it again in %.1f s",
                    index,
                    process.pid,
                    process.exitcode,
                    pause,
                )
                time.sleep(pause)
                if not stopping:
                    start(index)
        deadline = time.monotonic() + setup.shutdown_timeout + 10
        for process, _ in running.values():
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                log.error("worker pid %s did not stop in time: killing it", process.pid)
                process.kill()
                process.join()
        # uvicorn raises the signal it handled again once it has drained: a worker that ends
        # by the signal it was sent has stopped as asked.
        asked = {0, -signal.SIGTERM, -signal.SIGINT}
        codes = [process.exitcode for process, _ in running.values()]
        return 0 if all(code in asked for code in codes) else 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        listener.close()


def _worker(setup: WorkerSetup, listener: socket.socket, index: int) -> None:
    """A worker's life: serve the parent's socket until told to stop (in the spawned process)."""
    os.setpgrp()  # the terminal's Ctrl-C goes to the parent, which tells each worker once
    from allotment.api.logs import configure_logging
    from allotment.api.metrics import WORKER
    from allotment.api.server import serve_on

    configure_logging(setup.log_level, setup.log_format, setup.access_log_sample)
    WORKER.info({"index": str(index), "pid": str(os.getpid())})
    serve_on(
        setup.settings,
        listener,
        log_level=setup.log_level,
        shutdown_timeout=setup.shutdown_timeout,
    )
