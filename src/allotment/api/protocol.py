"""The HTTP/1.1 protocol ``allotment serve`` runs: uvicorn's httptools protocol with a bound on
the size of a request's head, checks that memory answers written back from the parser's
callbacks, and usage reports and debits answered without an ASGI request cycle.

**The head's bound.** httptools (what uvicorn picks when it is installed, as it is here) has no
limit of its own: it gathers a header's value however long it grows, and uvicorn's
``h11_max_incomplete_event_size`` applies to h11 only. Eight connections sending 32 MB headers to
``/livez`` grew a server by 150 MB. h11 would bound it, at several times the parsing cost of
every request.

**Checks answered inline.** A check is the request every product makes before every model call,
and most are answered from memory in about 10 µs; uvicorn's ASGI request cycle around that (a
scope, a cycle object and an event, a task and its scheduling, the middleware, two ``send``
messages whose headers it validates one by one) cost more than the answer itself. So a
``POST /v1/check`` on an idle connection is kept by :class:`InlineProtocol` until its body
is complete and offered to :meth:`HotPath.answer_inline`; when memory answers it with 200, the
answer is written at once from the parser's callback, with the headers uvicorn would have
written. Anything else (a cache miss, an error, a browser's request, a pipelined one, a large
body, a connection whose writes are paused, a server shutting down) is handed to the
application as if it had just arrived, so that there is one way to answer it: uvicorn's.

**Writes answered inline.** A usage report or a debit waits for the store, so it needs a task;
it does not need the rest of the cycle. Kept back as a check is, its whole body is given to
:meth:`HotPath.answer_write` in a task the server drains on shutdown as it drains its own, and
the answer is written as an inline check's is. Meanwhile the connection holds a stand-in for
uvicorn's cycle (:class:`_WriteInFlight`), so a request pipelined behind it waits as it would
behind any other, and a shutdown closes the connection once the answer is out.

**One write per answer.** uvicorn writes an answer's head when the application sends
``http.response.start`` and its body with the next message: two system calls on the socket, and
two segments on the wire, where a debit or a usage report has one short body. Writes made in one
step of the event loop are joined (:class:`CoalescingTransport`) and leave together, at the
latest when the step ends, so a streamed answer's head still leaves at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from allotment.api.errors import error_body
from allotment.api.hot import Headers, HotPath, Route
from allotment.api.request_ids import HEADER, new_request_id

if TYPE_CHECKING:
    from uvicorn._types import ASGIReceiveCallable, ASGISendCallable, Scope

log = logging.getLogger(__name__)

# The request line and headers together; nginx's default allows 4 lines of 8 KiB, Node's 16 KiB.
MAX_HEAD_BYTES = 64 * 1024
HEADERS_TOO_LARGE = 431

_BODY = error_body(
    "headers_too_large",
    f"The request line and headers are larger than {MAX_HEAD_BYTES} bytes.",
)


class CoalescingTransport:
    """A socket's transport whose writes made in one step of the event loop leave as one.

    The first write is held and its flush scheduled for the end of the step; a second write
    sends both at once. Closing sends what is held first."""

    __slots__ = ("_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes) -> None:
        held = self._held
        if held is None:
            self._held = bytes(data)
            self._loop.call_soon(self.flush)
        else:
            self._held = None
            self._transport.write(held + data)

    def write_now(self, data: bytes) -> None:
        """Send ``data`` at once, after what is held: an answer written whole."""
        held = self._held
        if held is None:
            self._transport.write(data)
        else:
            self._held = None
            self._transport.write(held + data)

    def flush(self) -> None:
        held = self._held
        if held is not None:
            self._held = None
            if not self._transport.is_closing():
                self._transport.write(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:  # the rest of asyncio.Transport, as it is
        return getattr(self._transport, name)


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """Refuses a request whose head passes ``MAX_HEAD_BYTES`` with 431, closing the connection.

    A head that ends is measured once it has (request line and headers as parsed) and, when too
    large, answered as any request is, by a small app in place of ours. One that goes on is cut
    once the bytes received while it was unfinished pass the limit, so a connection makes the
    server hold at most the limit and a read or two. Only these three parser callbacks are
    overridden: one per header would cost more than the rest of this together."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # Flow control (``self.flow``) keeps the socket's own transport; answers go through this.
        self.coalescing = CoalescingTransport(transport, self.loop)
        self.transport = self.coalescing  # type: ignore[assignment]
        self._in_head = True
        self._head_received = 0  # bytes read while a head was unfinished
        self._last_read = 0

    def data_received(self, data: bytes) -> None:
        self._last_read = read = len(data)
        if self._in_head:
            self._head_received += read
        super().data_received(data)
        if (
            self._in_head
            and self._head_received > MAX_HEAD_BYTES
            and not self.transport.is_closing()
        ):
            self._cut()

    def on_headers_complete(self) -> None:
        self._in_head = False
        if self._head_surely_fits() or self._head_size() <= MAX_HEAD_BYTES:
            super().on_headers_complete()
            return
        ours, self.app = self.app, _headers_too_large
        try:
            super().on_headers_complete()
        finally:
            self.app = ours

    def _head_surely_fits(self) -> bool:
        """The head came in the reads counted, except for what the read that ended the message
        before it held: when those fit, so does the head, and it need not be measured."""
        return self._head_received + self._last_read <= MAX_HEAD_BYTES

    def _head_size(self) -> int:
        size = len(self.url)
        for name, value in self.headers:
            size += len(name) + len(value)
        return size

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._next_head()

    def _next_head(self) -> None:
        """A message ended: what arrives next is the next one's head."""
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


# A check's body is a few hundred bytes; a larger one goes the application's way, bounded there.
INLINE_BODY_LIMIT = 16 * 1024
_CHECK_PATH = b"/v1/check"
_JSON_HEAD = b"content-type: application/json\r\ncontent-length: "


class _Unawaited:
    """An event nobody waits on: uvicorn sets its cycle's event when the connection is lost."""

    def set(self) -> None:
        pass


class _WriteInFlight:
    """What uvicorn's protocol finds as its ``cycle`` while a write answered inline is in
    flight: a response not yet complete, and whether the connection stays open after it (a
    shutdown says it does not)."""

    __slots__ = ("disconnected", "keep_alive", "response_complete")
    message_event: ClassVar[_Unawaited] = _Unawaited()

    def __init__(self, keep_alive: bool) -> None:
        self.keep_alive = keep_alive
        self.response_complete = False
        self.disconnected = False


class InlineProtocol(BoundedHttpToolsProtocol):
    """Answers checks that memory answers from the parser's callbacks, and usage reports and
    debits without an ASGI cycle (module docstring).

    Use :func:`protocol_for`, which gives the class the application's :class:`HotPath`."""

    hot_path: ClassVar[HotPath | None] = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._inline: list[bytes] | None = None  # the body so far of a request kept back
        self._inline_size = 0
        self._write: tuple[Route, tuple[str, ...]] | None = None  # None: the one kept is a check

    def on_headers_complete(self) -> None:
        # A request arrived: the keep-alive timer goes, whichever way it is answered. uvicorn
        # stops it as each read begins, but an answer written inline in the middle of a read
        # (a check's) arms it again for the request after it in the same read.
        self._unset_keepalive_if_required()
        hot = self.hot_path
        if (
            hot is not None
            and self.parser.get_method() == b"POST"
            and not self.expect_100_continue
            and not self.parser.should_upgrade()
            and (self.cycle is None or self.cycle.response_complete)  # nothing in flight
            and not self.pipeline
            and not self.flow.write_paused
            and self._head_surely_fits()
        ):
            url = self.url
            write = None if url == _CHECK_PATH else hot.write_route(url)
            if write is not None or url == _CHECK_PATH:
                self._in_head = False
                self._inline = []
                self._inline_size = 0
                self._write = write
                return
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        inline = self._inline
        if inline is None:
            super().on_body(body)
            return
        inline.append(body)
        self._inline_size += len(body)
        if self._inline_size > INLINE_BODY_LIMIT:
            self._hand_over()

    def on_message_complete(self) -> None:
        inline = self._inline
        if inline is None:
            super().on_message_complete()
            return
        self._inline = None
        assert self.hot_path is not None
        body = b"".join(inline)
        if self._write is not None:
            self._start_write(self.hot_path, *self._write, body)
            return
        answered = self.hot_path.answer_inline(self.headers, body)
        if answered is None:
            self._inline = inline
            self._hand_over()
            super().on_message_complete()
            return
        request_id, payload = answered
        self._next_head()
        keep_alive = self._keeps_alive()
        self._send(200, payload, request_id, (), keep_alive)
        self._answered(keep_alive)

    def shutdown(self) -> None:
        if self._inline is not None:  # a request still arriving is answered, then the door shut
            self._hand_over()
        super().shutdown()  # a write in flight: the connection closes once it is answered

    def _keeps_alive(self) -> bool:
        return self.parser.get_http_version() != "1.0" and self.parser.should_keep_alive()

    def _start_write(
        self, hot: HotPath, route: Route, params: tuple[str, ...], body: bytes
    ) -> None:
        in_flight = _WriteInFlight(self._keeps_alive())
        self.cycle = in_flight  # type: ignore[assignment]
        self._next_head()
        answer = self._answer_write(hot, in_flight, route, params, self.url, self.headers, body)
        task = self.loop.create_task(answer)
        task.add_done_callback(self.tasks.discard)
        self.tasks.add(task)

    async def _answer_write(
        self,
        hot: HotPath,
        in_flight: _WriteInFlight,
        route: Route,
        params: tuple[str, ...],
        url: bytes,
        headers: Sequence[tuple[bytes, bytes]],
        body: bytes,
    ) -> None:
        try:
            status, payload, request_id, extra = await hot.answer_write(
                route, params, url, headers, body
            )
        except asyncio.CancelledError:  # the drain on shutdown ran out of time
            self.transport.close()
            raise
        except Exception:
            # Never expected (errors are answers); the client must not wait for one. Logged
            # here and not raised: nothing awaits this task to hear of it.
            log.exception("answering a write inline failed; closing its connection")
            self.transport.close()
            return
        if not self.transport.is_closing():
            self._send(status, payload, request_id, extra, in_flight.keep_alive)
        in_flight.response_complete = True
        self._answered(in_flight.keep_alive)

    def _send(
        self, status: int, payload: bytes, request_id: bytes, extra: Headers, keep_alive: bool
    ) -> None:
        """Write a JSON answer whole, with the headers uvicorn would have written."""
        content = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            content.extend((name, b": ", value, b"\r\n"))
        content.extend((_JSON_HEAD, b"%d\r\n" % len(payload), HEADER, b": ", request_id))
        for name, value in extra:
            content.extend((b"\r\n", name, b": ", value))
        content.append(b"\r\n\r\n" if keep_alive else b"\r\nconnection: close\r\n\r\n")
        content.append(payload)
        # At once, but after what an earlier answer may still hold (the end of a stream).
        self.coalescing.write_now(b"".join(content))

    def _answered(self, keep_alive: bool) -> None:
        """An answer was written (or its client is gone): close or start what waits behind it."""
        if not keep_alive:
            self.transport.close()
        self.on_response_complete()

    def _hand_over(self) -> None:
        """Give the request kept back to the application, as if its head had just ended."""
        inline, self._inline = self._inline, None
        assert inline is not None
        super().on_headers_complete()
        for chunk in inline:
            super().on_body(chunk)


def protocol_for(app: object) -> type[BoundedHttpToolsProtocol]:
    """The protocol to serve ``app`` with: the request path answered inline when ``app`` is the
    hot path itself (not wrapped, as CORS wraps it)."""
    if not isinstance(app, HotPath):
        return BoundedHttpToolsProtocol
    hot: HotPath = app

    class Protocol(InlineProtocol):
        hot_path = hot

    return Protocol
