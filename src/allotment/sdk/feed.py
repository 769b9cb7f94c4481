"""Following ``GET /v1/stream`` from a client: one connection, resumed with ``Last-Event-ID``.

:class:`SseParser` turns the stream's lines into messages (the server-sent events format: a
message ends at a blank line; a connection cut mid-message loses only that message, which the
resumed stream sends again). :class:`FeedFollower` runs one daemon thread that connects, hands
every message to its sink in order, and reconnects after a cut with backoff, from the last
revision it handed over.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from enum import StrEnum

import httpx

from allotment.sdk.buffer import Backoff

log = logging.getLogger("allotment.sdk")


@dataclass(frozen=True, slots=True)
class Message:
    """One dispatched server-sent event: ``seq`` its id (None when it had none), ``event`` its
    kind (None for an id line alone), ``data`` its data lines joined."""

    seq: int | None
    event: str | None
    data: str


class SseParser:
    """Lines in, messages out; comments are heard but not dispatched."""

    def __init__(self) -> None:
        self._id: str | None = None
        self._event: str | None = None
        self._data: list[str] = []
        self._fields = False

    def feed(self, line: str) -> Message | None:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "id":
            self._id, self._fields = value, True
        elif name == "event":
            self._event, self._fields = value, True
        elif name == "data":
            self._data.append(value)
            self._fields = True
        return None  # retry and unknown fields: the follower keeps its own pace

    def _dispatch(self) -> Message | None:
        if not self._fields:
            return None
        seq = int(self._id) if self._id is not None and self._id.isdigit() else None
        message = Message(seq, self._event, "\n".join(self._data))
        self._id, self._event, self._data, self._fields = None, None, [], False
        return message


class FeedState(StrEnum):
    CONNECTING = "connecting"
    LIVE = "live"
    RETRYING = "retrying"
    UNAUTHORIZED = "unauthorized"
    STOPPED = "stopped"


class StreamRefused(Exception):
    """The service answered the stream's request with an error status."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"{status}: {text[:200]}")
        self.status = status


OpenStream = Callable[[int | None], AbstractContextManager[Iterable[str]]]
"""Opens the stream after a revision (None: from now) and yields its lines; raises
:class:`StreamRefused` for an error status and a transport error when the network fails."""


class FeedFollower:
    """One thread following the stream; ``sink`` gets every message, in order, on it."""

    def __init__(
        self,
        open_stream: OpenStream,
        sink: Callable[[Message], None],
        *,
        heard: Callable[[], None] = lambda: None,
        live: Callable[[], None] = lambda: None,
        backoff: Backoff | None = None,
        name: str = "allotment-feed",
    ) -> None:
        self._open = open_stream
        self._sink = sink
        self._heard = heard
        self._on_live = live
        self._backoff = backoff or Backoff()
        self._name = name
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._live = threading.Event()
        self.state = FeedState.CONNECTING
        self.last_seq: int | None = None
        self.connects = 0
        self.errors = 0
        self.last_error: str | None = None

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float) -> bool:
        """Ask the thread to end and wait at most ``timeout``; a connection blocked in the
        network ends when its read times out (it is a daemon thread)."""
        self._stop.set()
        self.state = FeedState.STOPPED
        thread = self._thread
        if thread is None or thread is threading.current_thread():
            return True
        thread.join(max(0.0, timeout))
        return not thread.is_alive()

    def after_fork(self) -> None:
        """In a forked child: the parent's thread is not here; start afresh when asked."""
        self._stop = threading.Event()
        self._live = threading.Event()
        self._thread = None
        self.state = FeedState.CONNECTING

    def wait_live(self, timeout: float) -> bool:
        return self._live.wait(timeout)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._follow()
                delay = self._backoff.failed(time.monotonic()) if not self._stop.is_set() else 0
            except StreamRefused as refused:
                self.errors += 1
                self.last_error = str(refused)
                if refused.status in (401, 403):
                    self.state = FeedState.UNAUTHORIZED
                    log.error(
                        "the change feed refused this client's key (%s): answers are no longer "
                        "kept current, and are read from the service when they age",
                        refused,
                    )
                    return
                delay = self._backoff.failed(time.monotonic())
            except (httpx.TransportError, OSError) as error:  # the network, or a restart
                if self._stop.is_set():
                    return
                self.errors += 1
                self.last_error = f"{type(error).__name__}: {error}"
                delay = self._backoff.failed(time.monotonic())
                log.info("the change feed was cut (%s); reconnecting in %.1f s", error, delay)
            except Exception as error:
                if self._stop.is_set():
                    return  # closing: the connection was closed under the read
                # A fault of this process (a message it could not apply): never a silent death
                # of the thread. The message was not counted as handled, so it comes again.
                self.errors += 1
                self.last_error = f"{type(error).__name__}: {error}"
                delay = self._backoff.failed(time.monotonic())
                log.exception("following the change feed failed; reconnecting in %.1f s", delay)
            if self._stop.is_set():
                return
            self.state = FeedState.RETRYING
            self._live.clear()
            self._stop.wait(delay)

    def _follow(self) -> None:
        self.state = FeedState.CONNECTING
        with self._open(self.last_seq) as lines:
            self.connects += 1
            parser = SseParser()
            for line in lines:
                if self._stop.is_set():
                    return
                self._heard()
                if self.state is not FeedState.LIVE:
                    self.state = FeedState.LIVE
                    self._live.set()
                    self._backoff.succeeded(time.monotonic())
                    self._on_live()
                message = parser.feed(line)
                if message is None:
                    continue
                self._sink(message)
                if message.seq is not None:
                    self.last_seq = message.seq
