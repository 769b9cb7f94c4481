"""Checks answered from the HTTP protocol's callbacks (``api/protocol.py``): the same answers as
the application gives, in order on a connection, and everything memory cannot answer handed to
the application unchanged; and every answer, either way, written to the socket in one piece.

Each test drives the protocol ``allotment serve`` runs on a transport that keeps every write,
and counts the ASGI tasks started: a check answered inline starts none.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import uvicorn
from uvicorn.server import ServerState

from allotment.api.hot import HotPath
from allotment.api.metrics import REGISTRY
from allotment.api.protocol import INLINE_BODY_LIMIT, InlineProtocol, protocol_for
from tests.conftest import ADMIN_KEY, Api, define_catalog, new_customer


class _Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self.closed:  # as a socket's transport, which drops what comes after close
            self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8080)}.get(name)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class _CountingSet(set[Any]):
    """The server's set of request tasks, counting every task ever added to it."""

    added = 0

    def add(self, item: Any) -> None:
        self.added += 1
        super().add(item)


@dataclass
class Answer:
    status: int
    headers: dict[bytes, bytes]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Connection:
    """A client connection to the protocol ``allotment serve`` runs for ``app``."""

    def __init__(self, app: Any) -> None:
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
        config.load()
        self.state = ServerState()
        self.state.tasks = _CountingSet()
        self.protocol = protocol_for(app)(config=config, server_state=self.state, app_state={})
        self.transport = _Transport()
        self.protocol.connection_made(self.transport)

    async def send(self, data: bytes) -> None:
        self.protocol.data_received(data)
        await self.settle()

    @property
    def tasks_started(self) -> int:
        return self.state.tasks.added  # type: ignore[attr-defined, no-any-return]

    async def settle(self) -> None:
        while self.state.tasks:
            await asyncio.gather(*list(self.state.tasks))
        await asyncio.sleep(0)  # the step that sends what the last one wrote

    def answers(self) -> list[Answer]:
        """Every answer written so far, in order; each must have been one write."""
        found: list[Answer] = []
        for data in self.transport.writes:
            head, _, body = data.partition(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            headers = dict(line.split(b": ", 1) for line in lines[1:])
            assert len(body) == int(headers[b"content-length"]), data
            found.append(Answer(int(lines[0].split()[1]), headers, body))
        return found


def request(body: Any, *, key: str = ADMIN_KEY, path: str = "/v1/check", **headers: str) -> bytes:
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    lines = [f"POST {path} HTTP/1.1", "Host: test", f"Authorization: Bearer {key}"]
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    lines.append(f"Content-Length: {len(payload)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


CHECK = {"customer": "acme", "feature": "ai-requests", "requested": 5}


@pytest.fixture
def seeded(api: Api) -> Iterator[Api]:
    define_catalog(api)
    new_customer(api, "acme", "starter")
    new_customer(api, "globex", "team")
    for customer in ("acme", "globex"):  # in memory from here on, usage windows included
        api.post("/v1/check", {"customer": customer, "feature": "ai-requests"}, 200)
    return api


def test_the_server_runs_the_inline_protocol_only_around_the_bare_hot_path(api: Api) -> None:
    app = api.client.app
    assert isinstance(app, HotPath)
    served = protocol_for(app)
    assert issubclass(served, InlineProtocol)
    assert served.hot_path is app
    assert not issubclass(protocol_for(object()), InlineProtocol)


def test_a_check_memory_answers_is_written_inline_as_the_application_answers_it(
    seeded: Api,
) -> None:
    checks = [
        CHECK,
        {"customer": "acme", "feature": "ai-requests", "requested": 500},  # denied: over limit
        {"customer": "acme", "feature": "seats"},
        {"customer": "acme", "feature": "sso"},  # starter has no sso
        {"customer": "globex", "feature": "sso"},
        {"customer": "acme", "feature": "no-such-feature"},
    ]
    expected = [seeded.post("/v1/check", check, 200) for check in checks]

    async def run() -> Connection:
        connection = Connection(seeded.client.app)
        for check in checks:
            connection.protocol.data_received(request(check))
        assert not connection.state.tasks  # no ASGI task for any of them
        await connection.settle()
        return connection

    connection = asyncio.run(run())
    answers = connection.answers()
    assert [answer.json() for answer in answers] == expected
    assert all(answer.status == 200 for answer in answers)
    assert connection.tasks_started == 0
    assert {answer.headers[b"content-type"] for answer in answers} == {b"application/json"}
    assert len({answer.headers[b"x-request-id"] for answer in answers}) == len(checks)
    assert not connection.transport.closed


def test_an_inline_answer_keeps_the_callers_request_id_and_is_counted(seeded: Api) -> None:
    def counted() -> float:
        labels = {"route": "check", "method": "POST", "status": "200"}
        return REGISTRY.get_sample_value("allotment_http_requests_total", labels) or 0.0

    before = counted()

    async def run() -> Connection:
        connection = Connection(seeded.client.app)
        await connection.send(request(CHECK, x_request_id="trace-42"))
        await connection.send(request(CHECK, x_request_id="bad id with spaces"))
        return connection

    connection = asyncio.run(run())
    first, second = connection.answers()
    assert connection.tasks_started == 0
    assert first.headers[b"x-request-id"] == b"trace-42"
    assert second.headers[b"x-request-id"] != b"bad id with spaces"
    assert counted() == before + 2


@pytest.mark.parametrize(
    ("data", "status", "code"),
    [
        (request(CHECK, key="no-such-key"), 401, "unauthenticated"),
        (request(b'{"customer": "acme", "feature": '), 400, "invalid_request"),
        (request({"customer": "acme"}), 400, "invalid_request"),
        (request({**CHECK, "requested": "1" * 200}), 400, "invalid_request"),
        (request({"customer": "acme", "feature": "sso\n"}), 400, "invalid_request"),
        (request(CHECK, path="/v1/check?verbose=1"), 200, None),
        (request(CHECK, origin="https://app.example"), 200, None),
        (request({"customer": "nobody-in-memory", "feature": "sso"}), 200, None),
    ],
    ids=[
        "unknown key",
        "broken json",
        "missing field",
        "too many digits",
        "bad id",
        "query string",
        "browser origin",
        "customer not in memory",
    ],
)
def test_what_memory_cannot_answer_goes_to_the_application(
    seeded: Api, data: bytes, status: int, code: str | None
) -> None:
    async def run() -> Connection:
        connection = Connection(seeded.client.app)
        await connection.send(data)
        return connection

    connection = asyncio.run(run())
    (answer,) = connection.answers()  # in one write, as every answer
    assert connection.tasks_started == 1
    assert answer.status == status
    if code is not None:
        assert answer.json()["error"]["code"] == code


def test_pipelined_checks_are_answered_in_order_whichever_way_each_goes(seeded: Api) -> None:
    unknown = {"customer": "stranger", "feature": "sso"}
    sequence = [CHECK, unknown, CHECK, b"{", CHECK]
    data = b"".join(request(body, x_request_id=f"r{n}") for n, body in enumerate(sequence))

    async def run() -> Connection:
        connection = Connection(seeded.client.app)
        await connection.send(data)
        return connection

    connection = asyncio.run(run())
    answers = connection.answers()
    assert [answer.headers[b"x-request-id"] for answer in answers] == [
        b"r0",
        b"r1",
        b"r2",
        b"r3",
        b"r4",
    ]
    assert [answer.status for answer in answers] == [200, 200, 200, 400, 200]
    # The first inline; the second a miss, and the three behind it queued as uvicorn queues.
    assert connection.tasks_started == 4
    assert answers[1].json()["access_denied_reason"] == "customer_not_found"
    assert answers[2].json()["customer"] == "acme"


def test_a_body_in_pieces_is_answered_inline_and_a_large_one_goes_to_the_application(
    seeded: Api,
) -> None:
    whole = request(CHECK)
    large = request({**CHECK, "padding": "x" * (INLINE_BODY_LIMIT + 1)})

    async def run() -> Connection:
        connection = Connection(seeded.client.app)
        for start in range(0, len(whole), 7):
            connection.protocol.data_received(whole[start : start + 7])
        await connection.settle()
        assert connection.tasks_started == 0
        await connection.send(large)
        assert connection.tasks_started == 1
        return connection

    small_answer, large_answer = asyncio.run(run()).answers()
    assert small_answer.status == 200
    assert large_answer.status in (200, 400)  # whatever the application says of it


def test_http_1_0_is_answered_inline_and_the_connection_closed(seeded: Api) -> None:
    data = request(CHECK).replace(b"HTTP/1.1", b"HTTP/1.0", 1)

    async def run() -> Connection:
        connection = Connection(seeded.client.app)
        await connection.send(data)
        return connection

    connection = asyncio.run(run())
    (answer,) = connection.answers()
    assert connection.tasks_started == 0
    assert answer.status == 200
    assert answer.headers[b"connection"] == b"close"
    assert connection.transport.closed


def test_a_check_arriving_when_the_server_stops_is_answered_then_the_connection_closed(
    seeded: Api,
) -> None:
    data = request(CHECK)
    head_and_some = len(data) - 10

    async def run() -> Connection:
        connection = Connection(seeded.client.app)
        connection.protocol.data_received(data[:head_and_some])
        connection.protocol.shutdown()
        await connection.send(data[head_and_some:])
        return connection

    connection = asyncio.run(run())
    (answer,) = connection.answers()
    assert answer.status == 200
    assert answer.json()["has_access"] is True
    assert connection.transport.closed


def test_an_answer_streamed_by_the_application_leaves_its_head_at_once(seeded: Api) -> None:
    """The change feed's head is written before any event: joining writes must not hold it."""

    async def run() -> Connection:
        connection = Connection(seeded.client.app)
        stream = b"GET /v1/stream HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer %s\r\n\r\n"
        connection.protocol.data_received(stream % ADMIN_KEY.encode())
        for _ in range(200):  # the stream never ends: wait for its head, not for its task
            await asyncio.sleep(0.01)
            if connection.transport.writes:
                break
        for task in connection.state.tasks:
            task.cancel()
        return connection

    writes = asyncio.run(run()).transport.writes
    assert writes
    assert writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"text/event-stream" in writes[0]


def test_an_inline_answer_leaves_after_what_an_earlier_answer_still_holds(seeded: Api) -> None:
    """The last piece of an earlier answer may wait for the end of its step of the event loop;
    a check answered inline meanwhile must not overtake it."""

    async def run() -> Connection:
        connection = Connection(seeded.client.app)
        connection.protocol.transport.write(b"the end of an earlier answer;")
        await connection.send(request(CHECK))
        return connection

    writes = asyncio.run(run()).transport.writes
    assert len(writes) == 1
    assert writes[0].startswith(b"the end of an earlier answer;HTTP/1.1 200 OK\r\n")
