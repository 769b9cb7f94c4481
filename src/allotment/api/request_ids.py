"""``X-Request-Id``: every answer names the request it answers, and so does every log line
written while answering it.

The id is the request's own ``X-Request-Id`` when it sent a sane one (what a proxy or the
caller chose, so one id follows a request across services), otherwise a new one: this process's
random prefix and a counter, unique across processes and restarts without a system call per
request (``os.urandom`` per request costs 0.45 µs, the counter 0.12 µs). It is kept as bytes,
as headers are, in a context variable the logging filter reads (``api/logs.py``); the hot path
(``api/hot.py``) takes it in its own scan of the headers, and :class:`RequestIds` gives it to
every other route.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Iterable
from contextvars import ContextVar

from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = b"x-request-id"
MAX_LENGTH = 128
# Visible ASCII only: an id is written into log lines and headers as it came, so it may hold no
# space, control character (a newline would forge a log line) or byte above 0x7e.
_SANE = re.compile(rb"[\x21-\x7e]{1,%d}" % MAX_LENGTH)
_PREFIX = os.urandom(6).hex().encode()
_counter = itertools.count(1)

REQUEST_ID: ContextVar[bytes | None] = ContextVar("allotment_request_id", default=None)


def new_request_id() -> bytes:
    return b"%s-%x" % (_PREFIX, next(_counter))


def accepted(value: bytes) -> bytes:
    """``value`` when it is a sane id, else a new one."""
    return value if _SANE.fullmatch(value) else new_request_id()


def request_id_of(headers: Iterable[tuple[bytes, bytes]]) -> bytes:
    """The id of a request with these (ASGI, lower-case) headers."""
    for name, value in headers:
        if name == HEADER:
            return accepted(value)
    return new_request_id()


def current_request_id() -> str | None:
    """The id of the request being answered in this context, if any."""
    found = REQUEST_ID.get()
    return None if found is None else found.decode("ascii")


class RequestIds:
    """Gives a request its id: in the context while it is answered, and on its answer."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        request_id = request_id_of(scope["headers"])
        header = (HEADER, request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        token = REQUEST_ID.set(request_id)
        await self._app(scope, receive, send_with_id)
        # Not reset when the app raises: ASGI servers answer each request in a task of its own,
        # so the id goes no further, and the server's own log line about the error still names
        # the request.
        REQUEST_ID.reset(token)
