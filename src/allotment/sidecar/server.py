"""Running the sidecar under uvicorn, and closing its client once it has stopped.

On SIGTERM or SIGINT uvicorn stops accepting connections, lets the requests in flight finish
(for at most ``shutdown_timeout`` seconds), and then raises the signal again, which ends the
process before any code after ``Server.run`` would run. So the client is closed as the last
step of the server's own shutdown: its threads stop, its connections close, and the usage
reports not yet delivered stay in the buffer file for the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

import uvicorn

from allotment.sdk import Client
from allotment.sidecar.app import create_app

log = logging.getLogger("allotment.sidecar")

STARTUP_FAILURE = 3  # as ``allotment serve``: the server could not start (a port in use, ...)
CLOSE_TIMEOUT_SECONDS = 5.0


class _ClosingServer(uvicorn.Server):
    """A uvicorn server that closes ``client`` after its shutdown."""

    def __init__(self, config: uvicorn.Config, client: Client) -> None:
        super().__init__(config)
        self._client = client
        self.closed_client = False

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await super().shutdown(sockets)
        await asyncio.to_thread(close_client, self._client)
        self.closed_client = True


def close_client(client: Client) -> None:
    """Close the client, saying what waits in the buffer for the next start."""
    try:
        waiting = client.buffer.depth()
    except Exception:  # the file is unreadable: nothing to tell
        waiting = 0
    client.close(timeout=CLOSE_TIMEOUT_SECONDS)
    if waiting:
        log.warning("%d usage reports wait in the buffer for the next start", waiting)


def serve(
    client: Client, *, host: str, port: int, log_level: str, shutdown_timeout: int = 10
) -> int:
    """Serve until a signal stops the server; the exit status (0, or ``STARTUP_FAILURE``).
    The client is closed in every case."""
    config = uvicorn.Config(
        create_app(client),
        host=host,
        port=port,
        log_level=log_level,
        log_config=None,  # the root logger's handler writes uvicorn's lines too
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=shutdown_timeout,
    )
    server = _ClosingServer(config, client)
    try:
        # uvicorn raises the SIGINT it handled again once it has stopped.
        with contextlib.suppress(KeyboardInterrupt):
            server.run()
    finally:
        if not server.closed_client:  # it did not start, or stopped without a shutdown
            close_client(client)
    return 0 if server.started else STARTUP_FAILURE
