"""``allotment serve``'s server: uvicorn, with a bounded drain when it is told to stop.

On SIGTERM or SIGINT uvicorn stops accepting connections, closes the idle ones, lets the
requests in flight finish for at most ``timeout_graceful_shutdown`` seconds (then cancels them),
and runs the application's lifespan shutdown, which closes the store: the store runs every job
already queued, commits, and closes the database. An open ``GET /v1/stream`` is a request that
never finishes by itself, so each would hold the drain for the whole timeout; the server closes
the change feed first, which ends every stream at once (its client reconnects elsewhere with its
``Last-Event-ID``).
"""

from __future__ import annotations

import contextlib
import socket
import sys
from collections.abc import Callable

import uvicorn

from allotment.api.app import create_app
from allotment.api.protocol import protocol_for
from allotment.api.services import Services
from allotment.config import Settings

STARTUP_FAILURE = 3  # uvicorn's exit status when it could not start (a port in use, ...)


class DrainingServer(uvicorn.Server):
    """A uvicorn server that calls ``on_drain`` on the event loop as its shutdown begins."""

    def __init__(self, config: uvicorn.Config, on_drain: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_drain = on_drain

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._on_drain()
        await super().shutdown(sockets)


def serve(
    settings: Settings, *, host: str, port: int, log_level: str, shutdown_timeout: int
) -> None:
    """Serve the API until a signal stops it, as ``uvicorn.run`` would, with the drain above."""
    _serve(settings, None, host=host, port=port, log_level=log_level, timeout=shutdown_timeout)


def serve_on(
    settings: Settings, listener: socket.socket, *, log_level: str, shutdown_timeout: int
) -> None:
    """The same on a socket already listening: a worker of ``serve --workers N``
    (``workers.py``)."""
    host, port = listener.getsockname()[:2]
    _serve(settings, listener, host=host, port=port, log_level=log_level, timeout=shutdown_timeout)


def _serve(
    settings: Settings,
    listener: socket.socket | None,
    *,
    host: str,
    port: int,
    log_level: str,
    timeout: int,
) -> None:
    services = Services.open(settings)
    app = create_app(settings, services)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        log_config=None,  # the root logger's handler (``logs.py``) writes uvicorn's lines too
        access_log=False,  # ours is sampled (``--access-log-sample``)
        lifespan="on",
        # httptools, with a limit on request heads, answering checks from memory inline
        http=protocol_for(app),
        timeout_graceful_shutdown=timeout,
    )
    server = DrainingServer(config, services.feed.close)
    # uvicorn raises the SIGINT it handled again once it has stopped.
    with contextlib.suppress(KeyboardInterrupt):
        server.run(sockets=None if listener is None else [listener])
    if not server.started:
        sys.exit(STARTUP_FAILURE)
