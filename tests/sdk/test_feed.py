"""Following the change feed: parsing, cuts mid-event, gaps, refusals and storms of errors."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from allotment.sdk.buffer import Backoff
from allotment.sdk.cache import LocalCache
from allotment.sdk.feed import FeedFollower, FeedState, Message, SseParser, StreamRefused

DEADLINE = 10.0


def parse(lines: list[str]) -> list[Message]:
    parser = SseParser()
    return [m for m in (parser.feed(line) for line in lines) if m is not None]


def test_messages_end_at_a_blank_line_and_comments_are_not_dispatched() -> None:
    lines = [
        "retry: 1000",
        ": connected",
        "",
        "id: 7",
        "event: usage.recorded",
        'data: {"seq": 7}',
        "",
        "id: 8",
        "",
        ": keep-alive",
        "",
        "id: 9",
        "event: catalog.changed",
        "data:{",
        "data: }",
        "",
        "id: 10",
        "event: half",
    ]
    assert parse(lines) == [
        Message(7, "usage.recorded", '{"seq": 7}'),
        Message(8, None, ""),
        Message(9, "catalog.changed", "{\n}"),
    ]


def fast_backoff() -> Backoff:
    return Backoff(first=0.01, cap=0.02)


class FakeStream:
    """Connections scripted one by one: each is a list of lines, or an exception to raise."""

    def __init__(self, connections: list[list[str] | Exception]) -> None:
        self.connections = list(connections)
        self.asked_after: list[int | None] = []
        self.done = threading.Event()

    @contextlib.contextmanager
    def open(self, after: int | None) -> Iterator[list[str]]:
        self.asked_after.append(after)
        if not self.connections:
            self.done.set()
            raise httpx.ConnectError("no more scripted connections")
        script = self.connections.pop(0)
        if isinstance(script, Exception):
            raise script
        yield script


def follow(
    stream: FakeStream, cache: LocalCache | None = None
) -> tuple[FeedFollower, list[Message]]:
    got: list[Message] = []

    def sink(message: Message) -> None:
        got.append(message)
        if cache is not None:
            cache.apply(message)

    follower = FeedFollower(stream.open, sink, backoff=fast_backoff())
    follower.start()
    return follower, got


def wait_for(condition: object, what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return
        time.sleep(0.005)
    raise AssertionError(what)


def event(seq: int, kind: str = "customer.changed", customer: str = "acme") -> list[str]:
    return [f"id: {seq}", f"event: {kind}", f'data: {{"seq": {seq}, "customer": "{customer}"}}', ""]


def test_a_cut_mid_event_loses_only_that_event_and_resumes_after_the_last_whole_one() -> None:
    first = [": connected", "", *event(1), *event(2), "id: 3", "event: customer.changed"]
    second = [": connected", "", *event(3), *event(4)]
    stream = FakeStream([first, second])
    follower, got = follow(stream)
    wait_for(stream.done.is_set, "both connections used")
    follower.stop(1)
    assert [m.seq for m in got] == [1, 2, 3, 4]
    assert stream.asked_after[:2] == [None, 2]


def test_a_gap_in_revisions_drops_the_cache() -> None:
    cache = LocalCache()
    stream = FakeStream([[*event(1), *event(2), *event(5)]])
    follower, _ = follow(stream, cache)
    wait_for(stream.done.is_set, "the connection used")
    follower.stop(1)
    assert cache.stats.gaps == 1
    assert cache.last_seq == 5


def test_a_reset_drops_the_cache_and_continues_from_its_revision() -> None:
    cache = LocalCache()
    stream = FakeStream(
        [[*event(1), "id: 40", "event: reset", 'data: {"seq": 40}', "", *event(41)]]
    )
    follower, _ = follow(stream, cache)
    wait_for(stream.done.is_set, "the connection used")
    follower.stop(1)
    assert cache.stats.resets == 1
    assert cache.stats.gaps == 0
    assert cache.last_seq == 41
    assert stream.asked_after[-1] == 41


def test_a_refused_key_stops_following_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    stream = FakeStream([StreamRefused(401, '{"error": {"code": "unauthenticated"}}')])
    follower, _ = follow(stream)
    wait_for(lambda: not follower.alive, "the thread ended")
    assert follower.state is FeedState.UNAUTHORIZED
    assert stream.asked_after == [None]  # no retry against a key that cannot heal
    assert any("refused this client's key" in r.getMessage() for r in caplog.records)


def test_a_storm_of_503s_is_ridden_out_with_backoff() -> None:
    storm: list[list[str] | Exception] = [StreamRefused(503, "busy") for _ in range(30)]
    stream = FakeStream([*storm, [*event(1)]])
    follower, got = follow(stream)
    wait_for(stream.done.is_set, "every scripted connection used")
    follower.stop(1)
    assert [m.seq for m in got] == [1]
    assert follower.errors >= 30


def test_a_fault_in_applying_a_message_never_kills_the_thread() -> None:
    calls = []

    def sink(message: Message) -> None:
        calls.append(message.seq)
        if len(calls) == 1:
            raise ValueError("a message this process could not apply")

    stream = FakeStream([[*event(1)], [*event(1), *event(2)]])
    follower = FeedFollower(stream.open, sink, backoff=fast_backoff())
    follower.start()
    wait_for(stream.done.is_set, "both connections used")
    follower.stop(1)
    assert calls == [1, 1, 2]  # the failed message came again
    assert stream.asked_after[:2] == [None, None]


def test_stop_returns_while_a_read_is_blocked() -> None:
    never = threading.Event()

    class Blocked:
        def __iter__(self) -> Iterator[str]:
            never.wait()
            yield ""

    @contextlib.contextmanager
    def open_blocked(after: int | None) -> Iterator[Blocked]:
        yield Blocked()

    follower = FeedFollower(open_blocked, lambda m: None, backoff=fast_backoff())
    follower.start()
    started = time.monotonic()
    assert follower.stop(0.2) is False  # still blocked: a daemon thread, left behind
    assert time.monotonic() - started < 5
    never.set()
