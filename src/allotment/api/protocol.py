"""The HTTP/1.1 protocol ``allotment serve`` runs: uvicorn's httptools protocol with a bound on
the size of a request's head.

httptools (what uvicorn picks when it is installed, as it is here) has no limit of its own: it
gathers a header's value however long it grows, and uvicorn's ``h11_max_incomplete_event_size``
applies to h11 only. Eight connections sending 32 MB headers to ``/livez`` grew a server by
150 MB. h11 would bound it, at several times the parsing cost of every request.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from allotment.api.errors import error_body
from allotment.api.request_ids import HEADER, new_request_id

if TYPE_CHECKING:
    from uvicorn._types import ASGIReceiveCallable, ASGISendCallable, Scope

# The request line and headers together; nginx's default allows 4 lines of 8 KiB, Node's 16 KiB.
MAX_HEAD_BYTES = 64 * 1024
HEADERS_TOO_LARGE = 431

_BODY = error_body(
    "headers_too_large",
    f"The request line and headers are larger than {MAX_HEAD_BYTES} bytes.",
)


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """Refuses a request whose head passes ``MAX_HEAD_BYTES`` with 431, closing the connection.

    A head that ends is measured once it has (request line and headers as parsed) and, when too
    large, answered as any request is, by a small app in place of ours. One that goes on is cut
    once the bytes received while it was unfinished pass the limit, so a connection makes the
    server hold at most the limit and a read or two. Only these three parser callbacks are
    overridden: one per header would cost more than the rest of this together."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._in_head = True
        self._head_received = 0  # bytes read while a head was unfinished

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_received += len(data)
        super().data_received(data)
        if (
            self._in_head
            and self._head_received > MAX_HEAD_BYTES
            and not self.transport.is_closing()
        ):
            self._cut()

    def on_headers_complete(self) -> None:
        self._in_head = False
        size = len(self.url)
        for name, value in self.headers:
            size += len(name) + len(value)
        if size <= MAX_HEAD_BYTES:
            super().on_headers_complete()
            return
        ours, self.app = self.app, _headers_too_large
        try:
            super().on_headers_complete()
        finally:
            self.app = ours

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True
        self._head_received = 0

    def _cut(self) -> None:
        """Answer 431 and close, as uvicorn answers a request it cannot parse."""
        content = [STATUS_LINE[HEADERS_TOO_LARGE]]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend(
            [
                b"content-type: application/json\r\n",
                b"content-length: %d\r\n" % len(_BODY),
                # A new id: the request's own is somewhere in a head too large to read.
                b"%s: %s\r\n" % (HEADER, new_request_id()),
                b"connection: close\r\n\r\n",
                _BODY,
            ]
        )
        self.transport.write(b"".join(content))
        self.transport.close()


async def _headers_too_large(
    scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": HEADERS_TOO_LARGE,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", b"%d" % len(_BODY)),
                (HEADER, new_request_id()),  # a new one: the request's own may be what is large
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": _BODY, "more_body": False})
