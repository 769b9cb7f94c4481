"""Usage reports and debits answered by the HTTP protocol without an ASGI request cycle
(``api/protocol.py``): the same answers as the application gives, errors and their headers
included, in order on a connection, durable, and drained when the server stops.

The harness is the inline checks' one: the protocol ``allotment serve`` runs, on a transport
that keeps every write. The application's own way is counted by wrapping ``HotPath.__call__``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from allotment.api.hot import HotPath
from allotment.domain.errors import ServiceBusy
from allotment.service.credits import CreditService
from tests.conftest import Api, define_catalog, new_customer
from tests.integration.test_inline_checks import CHECK, Connection, request

DEBITS = "/v1/customers/acme/credits/cr/debits"
HARNESS_PEER = ("127.0.0.1", 40000)  # the peer address of the harness's transport


def debit(key: str, amount: int = 5, **extra: Any) -> dict[str, Any]:
    return {"amount": amount, "idempotency_key": key, **extra}


def usage(key: str, amount: int = 1) -> dict[str, Any]:
    return {"customer": "acme", "feature": "ai-requests", "amount": amount, "idempotency_key": key}


@pytest.fixture
def seeded(api: Api) -> Iterator[Api]:
    define_catalog(api)
    new_customer(api, "acme", "starter")
    api.put("/v1/currencies/cr", {"name": "Credits"}, 201)
    api.post(
        "/v1/customers/acme/credits/cr/grants",
        {"amount": 100, "category": "paid", "idempotency_key": "g"},
        201,
    )
    api.post("/v1/check", {"customer": "acme", "feature": "ai-requests"}, 200)
    return api


@pytest.fixture
def asgi_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths that reached the application as ASGI calls from the harness's connections
    (not the test client's)."""
    calls: list[str] = []
    original = HotPath.__call__

    async def counted(self: HotPath, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["client"] == HARNESS_PEER:
            calls.append(scope["path"])
        await original(self, scope, receive, send)

    monkeypatch.setattr(HotPath, "__call__", counted)
    return calls


def exchange(app: Any, *requests: bytes, then: Any = None) -> Connection:
    """Send ``requests`` in one piece (pipelined), call ``then`` at once, and wait for the
    answers."""

    async def run() -> Connection:
        connection = Connection(app)
        connection.protocol.data_received(b"".join(requests))
        if then is not None:
            then(connection)
        await connection.settle()
        return connection

    return asyncio.run(run())


def one_by_one(app: Any, *requests: bytes) -> Connection:
    """Send each of ``requests`` once the answer before it is written."""

    async def run() -> Connection:
        connection = Connection(app)
        for data in requests:
            await connection.send(data)
        return connection

    return asyncio.run(run())


def test_a_debit_and_a_usage_report_are_answered_without_the_application(
    seeded: Api, asgi_calls: list[str]
) -> None:
    connection = one_by_one(
        seeded.client.app,
        request(debit("d1"), path=DEBITS, x_request_id="trace-1"),
        request(usage("u1", 3), path="/v1/usage"),
    )
    debited, reported = connection.answers()
    assert asgi_calls == []
    assert (debited.status, reported.status) == (200, 200)
    assert debited.headers[b"x-request-id"] == b"trace-1"
    assert {debited.headers[b"content-type"], reported.headers[b"content-type"]} == {
        b"application/json"
    }
    assert debited.json()["applied"] is True
    assert debited.json()["balance"] == 95
    assert reported.json()["recorded"] is True
    # Durable, and answered the same by the application's way: the same keys replay.
    replayed = seeded.post(DEBITS, debit("d1"), 200)
    assert replayed == {**debited.json(), "replayed": True}
    assert seeded.post("/v1/usage", usage("u1", 3), 200)["replayed"] is True
    assert seeded.check("acme", "ai-requests")["current_usage"] == 3
    assert not connection.transport.closed


@pytest.mark.parametrize(
    ("data", "status", "code"),
    [
        (request(debit("e1"), path=DEBITS, key="no-such-key"), 401, "unauthenticated"),
        (request(b'{"amount": ', path=DEBITS), 400, "invalid_request"),
        (request(debit("e2", amount=0), path=DEBITS), 400, "invalid_request"),
        (request(debit("d1", amount=7), path=DEBITS), 409, "idempotency_conflict"),
        (request(debit("e3"), path="/v1/customers/nobody/credits/cr/debits"), 404, "not_found"),
        (request(debit("e4"), path="/v1/customers/acme/credits/nope/debits"), 404, "not_found"),
        (request({"customer": "acme"}, path="/v1/usage"), 400, "invalid_request"),
    ],
    ids=[
        "unknown key",
        "broken json",
        "zero amount",
        "key reused with another body",
        "unknown customer",
        "unknown currency",
        "missing field",
    ],
)
def test_a_refused_write_is_answered_inline_as_the_application_answers_it(
    seeded: Api, asgi_calls: list[str], data: bytes, status: int, code: str
) -> None:
    seeded.post(DEBITS, debit("d1"), 200)
    (answer,) = exchange(seeded.client.app, data).answers()
    assert asgi_calls == []
    assert answer.status == status
    assert answer.json()["error"]["code"] == code
    # The application's way (taken for a target with a query) says the same of the same body.
    path = answer_path(data)
    (again,) = exchange(seeded.client.app, data.replace(path, path + b"?via=app", 1)).answers()
    assert asgi_calls == [path.decode()]
    assert again.status == status
    assert again.json() == answer.json()


def answer_path(data: bytes) -> bytes:
    return data.split(b" ", 2)[1]


def test_a_client_key_may_not_write_inline_either(seeded: Api, asgi_calls: list[str]) -> None:
    web = seeded.post("/v1/api-keys", {"name": "web", "scope": "client", "customer": "acme"}, 201)
    (answer,) = exchange(
        seeded.client.app, request(debit("c1"), path=DEBITS, key=web["key"])
    ).answers()
    assert asgi_calls == []
    assert answer.status == 403
    assert seeded.get("/v1/customers/acme/credits/cr")["balance"] == 100


def test_an_error_answer_keeps_its_headers(
    seeded: Api, asgi_calls: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def busy(*args: Any) -> Any:
        raise ServiceBusy("The database is busy: try again shortly.")

    monkeypatch.setattr(CreditService, "debit", busy)
    (answer,) = exchange(seeded.client.app, request(debit("b1"), path=DEBITS)).answers()
    assert asgi_calls == []
    assert answer.status == 503
    assert answer.headers[b"retry-after"] == b"1"
    assert answer.json()["error"]["code"] == "service_busy"


def test_requests_behind_a_write_in_flight_are_answered_after_it_in_order(
    seeded: Api, asgi_calls: list[str]
) -> None:
    sequence = [
        request(debit("p1"), path=DEBITS, x_request_id="r0"),
        request(CHECK, x_request_id="r1"),
        request(usage("p2"), path="/v1/usage", x_request_id="r2"),
        request(debit("p3"), path=DEBITS, x_request_id="r3"),
        request(CHECK, x_request_id="r4"),
    ]
    connection = exchange(seeded.client.app, *sequence)
    answers = connection.answers()
    assert [a.headers[b"x-request-id"] for a in answers] == [b"r0", b"r1", b"r2", b"r3", b"r4"]
    assert [a.status for a in answers] == [200] * 5
    assert [a.json()["balance"] for a in (answers[0], answers[3])] == [95, 90]
    # The first inline; those queued behind it go the application's way, as uvicorn queues them.
    assert asgi_calls == ["/v1/check", "/v1/usage", DEBITS, "/v1/check"]


def test_what_the_inline_way_does_not_take_goes_to_the_application(
    seeded: Api, asgi_calls: list[str]
) -> None:
    escaped = "/v1/customers/acm%65/credits/cr/debits"
    answers = one_by_one(
        seeded.client.app,
        request(debit("q1"), path=DEBITS + "?x=1"),
        request(debit("q2"), path=escaped),
    ).answers()
    assert [a.status for a in answers] == [200, 200]
    assert [a.json()["balance"] for a in answers] == [95, 90]
    assert asgi_calls == [DEBITS, DEBITS]


def test_a_write_in_flight_when_the_server_stops_is_answered_then_the_connection_closed(
    seeded: Api,
) -> None:
    connection = exchange(
        seeded.client.app,
        request(debit("s1"), path=DEBITS),
        then=lambda connection: connection.protocol.shutdown(),
    )
    (answer,) = connection.answers()
    assert answer.status == 200
    assert answer.headers[b"connection"] == b"close"
    assert connection.transport.closed


def test_http_1_0_write_is_answered_inline_and_the_connection_closed(
    seeded: Api, asgi_calls: list[str]
) -> None:
    data = request(usage("h1"), path="/v1/usage").replace(b"HTTP/1.1", b"HTTP/1.0", 1)
    connection = exchange(seeded.client.app, data)
    (answer,) = connection.answers()
    assert asgi_calls == []
    assert answer.status == 200
    assert answer.headers[b"connection"] == b"close"
    assert connection.transport.closed


def test_a_client_gone_before_its_answer_leaves_the_write_done_and_nothing_written(
    seeded: Api,
) -> None:
    connection = exchange(
        seeded.client.app,
        request(debit("g1"), path=DEBITS),
        then=lambda connection: connection.protocol.connection_lost(None),
    )
    assert connection.answers() == []
    assert seeded.get("/v1/customers/acme/credits/cr")["balance"] == 95


@pytest.mark.parametrize("path", [DEBITS, DEBITS + "?via=app"], ids=["inline", "application"])
def test_a_slow_write_behind_an_inline_check_in_one_read_is_not_cut_by_the_keep_alive_timer(
    seeded: Api, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    """The check answered inline arms uvicorn's keep-alive timer in the middle of the read; the
    write after it must stop it, or the connection is closed before the write is answered."""
    debit_now = CreditService.debit

    async def slow_debit(self: CreditService, *args: Any) -> Any:
        await asyncio.sleep(0.3)
        return await debit_now(self, *args)

    monkeypatch.setattr(CreditService, "debit", slow_debit)

    async def run() -> Connection:
        connection = Connection(seeded.client.app)
        connection.protocol.timeout_keep_alive = 0.1
        connection.protocol.data_received(request(CHECK) + request(debit("k1"), path=path))
        await connection.settle()
        return connection

    connection = asyncio.run(run())
    checked, debited = connection.answers()
    assert (checked.status, debited.status) == (200, 200)
    assert debited.json()["balance"] == 95
    assert not connection.transport.closed


def test_a_write_that_cannot_be_answered_closes_its_connection_and_says_why(
    seeded: Api, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(self: HotPath, *args: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(HotPath, "answer_write", broken)
    connection = exchange(seeded.client.app, request(debit("x1"), path=DEBITS))
    assert connection.answers() == []
    assert connection.transport.closed
    assert "answering a write inline failed" in caplog.text
