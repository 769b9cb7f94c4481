"""The client when the service misbehaves: checks never raise for the network, close never
hangs, reports are never lost, and a client made before a fork works in the child."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from allotment import BufferFull, Client, Fallback, InvalidReport
from allotment.sdk.buffer import DeliveryState

Handler = Callable[[httpx.Request], httpx.Response]


class Upstream:
    """A scripted service behind httpx's mock transport, counting what it is asked."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(f"{request.method} {request.url.path}")
        return self.handler(request)

    def count(self, path: str) -> int:
        return sum(1 for r in self.requests if r.endswith(path))


def unavailable(request: httpx.Request) -> httpx.Response:
    return httpx.Response(503, json={"error": {"code": "unavailable", "message": "down"}})


def refused(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


@pytest.fixture
def make_client(tmp_path: Path) -> Iterator[Callable[..., Client]]:
    made: list[Client] = []

    def make(handler: Handler, **options: object) -> Client:
        options.setdefault("buffer_path", tmp_path / "buffer.db")
        client = Client(
            "http://upstream.test",
            api_key="k",
            transport=httpx.MockTransport(handler),
            **options,  # type: ignore[arg-type]
        )
        made.append(client)
        return client

    yield make
    for client in made:
        client.close(timeout=1)


@pytest.mark.parametrize("handler", [unavailable, refused], ids=["503", "connection refused"])
def test_checks_answer_from_the_fallback_and_never_raise(
    make_client: Callable[..., Client], handler: Handler
) -> None:
    upstream = Upstream(handler)
    client = make_client(
        upstream,
        fallback={"*": False, "ai-requests": {"has_access": True, "usage_limit": 10}},
    )
    denied = client.check("acme", "exports")
    assert denied.is_fallback
    assert not denied.has_access
    assert denied.data_age is None
    granted = client.check("acme", "ai-requests", requested=2)
    assert granted.is_fallback
    assert granted.has_access
    assert granted.usage_limit == 10
    assert granted.requested == 2
    per_call = client.check("acme", "exports", fallback=True)
    assert per_call.is_fallback
    assert per_call.has_access
    # An outage costs checks nothing: after a failed read, reads wait a second.
    for _ in range(1000):
        client.check("acme", "exports")
    assert upstream.count("/state") <= 3
    assert client.fallbacks >= 1000


def test_a_fallback_file_needs_has_access(tmp_path: Path) -> None:
    broken = tmp_path / "fallback.json"
    broken.write_text('{"ai-requests": {"usage_limit": 3}}')
    with pytest.raises(ValueError, match="has_access"):
        Fallback.load(broken)
    broken.write_text("[1, 2]")
    with pytest.raises(ValueError, match="object"):
        Fallback.load(broken)
    good = tmp_path / "good.json"
    good.write_text('{"*": true, "exports": {"has_access": false, "usage_limit": 1.5}}')
    fallback = Fallback.load(good)
    assert fallback.answer("c", "x", None, None).has_access is True
    assert str(fallback.answer("c", "exports", None, None).usage_limit) == "1.5"


def test_a_revoked_key_answers_from_the_fallback_and_says_so(
    make_client: Callable[..., Client], caplog: pytest.LogCaptureFixture
) -> None:
    def revoked(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"error": {"code": "unauthenticated", "message": "no"}})

    client = make_client(revoked)
    assert client.check("acme", "exports").is_fallback
    assert any("could not read" in r.getMessage() for r in caplog.records)


def test_reports_are_buffered_while_the_service_is_down(
    make_client: Callable[..., Client], tmp_path: Path
) -> None:
    client = make_client(Upstream(refused), max_buffered=5)
    keys = [client.report_usage("acme", "exports", 1).idempotency_key for _ in range(5)]
    with pytest.raises(BufferFull):
        client.report_usage("acme", "exports", 1)
    assert client.buffer.refused == 1
    with sqlite3.connect(tmp_path / "buffer.db") as db:
        stored = [
            row[0] for row in db.execute("SELECT idempotency_key FROM usage_reports ORDER BY id")
        ]
    assert stored == keys


def test_close_never_hangs_on_a_black_holed_upstream(make_client: Callable[..., Client]) -> None:
    """A resolver or a network that never answers: every request blocks forever."""
    never = threading.Event()

    def black_hole(request: httpx.Request) -> httpx.Response:
        never.wait()
        return unavailable(request)

    client = make_client(black_hole, timeout=0.2)
    client.report_usage("acme", "exports", 1)  # the delivery thread now blocks on the post
    time.sleep(0.2)
    closed = threading.Thread(target=client.close, kwargs={"timeout": 1.0})
    started = time.monotonic()
    closed.start()
    closed.join(30)
    assert not closed.is_alive(), "close() hung"
    assert time.monotonic() - started < 30
    client.close()  # idempotent
    never.set()


def test_close_closes_every_part_even_when_one_fails(
    make_client: Callable[..., Client], monkeypatch: pytest.MonkeyPatch
) -> None:
    client = make_client(Upstream(refused))

    def broken(timeout: float) -> bool:
        raise RuntimeError("the feed would not stop")

    monkeypatch.setattr(client.feed, "stop", broken)
    client.close(timeout=1)
    assert client.delivery.state is DeliveryState.STOPPED
    with pytest.raises(sqlite3.ProgrammingError):
        client.buffer.append("after-close", b"{}")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX")
def test_a_client_made_before_a_fork_works_in_the_child(tmp_path: Path) -> None:
    delivered: list[bytes] = []
    lock = threading.Lock()

    def service(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/usage":
            with lock:
                delivered.append(request.content)
            return httpx.Response(200, json={"recorded": True, "replayed": False})
        return unavailable(request)

    client = Client(
        "http://upstream.test",
        api_key="k",
        buffer_path=tmp_path / "buffer.db",
        transport=httpx.MockTransport(service),
    )
    try:
        client.report_usage("acme", "exports", 1, idempotency_key="parent")
        deadline = time.monotonic() + 10
        while not delivered and time.monotonic() < deadline:
            time.sleep(0.01)
        pid = os.fork()
        if pid == 0:  # the child: its own threads, its own buffer connection
            code = 1
            try:
                report = client.report_usage("acme", "exports", 1, idempotency_key="child")
                end = time.monotonic() + 10
                while client.buffer.depth() and time.monotonic() < end:
                    time.sleep(0.01)
                threads = {t.name for t in threading.enumerate()}
                ok = (
                    report.buffered
                    and client.buffer.depth() == 0
                    and "allotment-usage-delivery" in threads
                    and client.check("acme", "x").is_fallback
                )
                code = 0 if ok else 2
                client.close(timeout=1)
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        client.close(timeout=1)


@pytest.mark.parametrize("customer", ["../api-keys", "acme/credits/credits", "", "a b", "acme\n"])
def test_an_id_from_outside_never_changes_the_route_asked(
    make_client: Callable[..., Client], customer: str
) -> None:
    upstream = Upstream(unavailable)
    client = make_client(upstream, follow=False)
    with pytest.raises(ValueError, match="not a valid id"):
        client.check(customer, "exports")
    with pytest.raises(ValueError, match="not a valid id"):
        client.credit_pool(customer, "credits")
    assert not [r for r in upstream.requests if "/v1/customers" in r]


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(200, text="<html>a proxy's page</html>"),
        httpx.Response(200, json={"unexpected": True}),
        httpx.Response(404, json={"error": {"code": "not_found", "message": "an older service"}}),
    ],
    ids=["html", "another shape", "no state route"],
)
def test_an_answer_not_in_the_apis_form_is_no_answer(
    make_client: Callable[..., Client], answer: httpx.Response
) -> None:
    client = make_client(lambda request: answer, follow=False)
    result = client.check("acme", "exports")
    assert result.is_fallback
    assert client.upstream_errors == 1


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"customer": "a b"}, "customer"),
        ({"entity": "../x"}, "entity"),
        ({"amount": -1}, "amount"),
        ({"amount": "1.0000001"}, "amount"),
        ({"behavior": "set", "entity": "agent-1"}, "entity"),
        ({"behavior": "add"}, "behavior"),
        ({"timestamp": "2026-12-01T10:00:00"}, "timestamp"),
        ({"timestamp": "yesterday"}, "timestamp"),
        ({"idempotency_key": "k" * 256}, "idempotency_key"),
    ],
)
def test_a_report_the_service_would_refuse_is_refused_before_it_is_buffered(
    make_client: Callable[..., Client], change: dict[str, Any], field: str
) -> None:
    client = make_client(Upstream(refused), follow=False)
    report: dict[str, Any] = {"customer": "acme", "feature": "exports", "amount": 1, **change}
    customer, feature, amount = report.pop("customer"), report.pop("feature"), report.pop("amount")
    with pytest.raises(InvalidReport) as refusal:
        client.report_usage(customer, feature, amount, **report)
    assert refusal.value.field == field
    assert client.buffer.depth() == 0


def test_a_fork_without_pythons_hooks_is_found_by_the_process_id(
    make_client: Callable[..., Client], monkeypatch: pytest.MonkeyPatch
) -> None:
    """uWSGI forks without running Python's fork hooks unless told to."""
    client = make_client(Upstream(refused), follow=False)
    forks: list[int] = []
    monkeypatch.setattr(client, "_after_fork", lambda: forks.append(1))
    client.report_usage("acme", "exports", 1)
    assert forks == []
    monkeypatch.setattr(os, "getpid", lambda: 1)  # as in a child the hooks did not tell
    client.report_usage("acme", "exports", 1)
    assert forks == [1]
