"""Outages: the service killed while the SDK checks and reports, and the SDK's own process
killed while its buffer holds reports. Every report arrives, exactly once."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from allotment import Client
from tests.e2e.conftest import ADMIN_KEY, Server, free_port

pytestmark = pytest.mark.slow

DEADLINE = 30.0


def seed(http: httpx.Client) -> None:
    for path, body in [
        ("/v1/features/requests", {"name": "Requests", "kind": "metered"}),
        ("/v1/products/coder", {"name": "Coder"}),
        (
            "/v1/plans/team",
            {"product": "coder", "name": "Team", "entitlements": {"requests": {"limit": 1000}}},
        ),
        ("/v1/customers/acme", {"name": "Acme"}),
    ]:
        assert http.put(path, json=body).status_code < 300
    assert http.post("/v1/customers/acme/subscriptions", json={"plan": "team"}).status_code == 201


def eventually(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError(f"not within {DEADLINE} s: {what}")


def usage_of(http: httpx.Client) -> Any:
    answer = http.post("/v1/check", json={"customer": "acme", "feature": "requests"})
    return answer.json()["current_usage"]


def each_recorded_once(http: httpx.Client, keys: list[str]) -> None:
    """Sending each report again must replay it: the service holds each key exactly once."""
    for key in keys:
        body = {"customer": "acme", "feature": "requests", "amount": 1, "idempotency_key": key}
        answer = http.post("/v1/usage", json=body).json()
        assert answer["replayed"] is True, key


def test_checks_and_reports_go_on_through_a_killed_service(server: Server, tmp_path: Path) -> None:
    with server.client() as http:
        seed(http)
    client = Client(
        server.url,
        api_key=ADMIN_KEY,
        buffer_path=tmp_path / "buffer.db",
        fallback={"*": {"has_access": True, "usage_limit": 5}},
        timeout=1.0,
    )
    try:
        assert client.wait_until_ready(10)
        assert client.check("acme", "requests").has_access
        server.kill()
        keys = []
        for n in range(50):
            keys.append(client.report_usage("acme", "requests", 1).idempotency_key)
            cached = client.check("acme", "requests")
            assert cached.is_fallback is False
            assert cached.current_usage == n + 1  # its own reports count at once
        unknown = client.check("globex", "requests")
        assert unknown.is_fallback is True
        assert unknown.usage_limit == 5
        assert client.buffer.depth() == 50
        server.start()  # the same database and port
        eventually(lambda: client.buffer.depth() == 0, "the buffer drained")
        with server.client() as http:
            assert usage_of(http) == 50
            each_recorded_once(http, keys)
        # The feed resumed where it was cut: each delivered report replaced its own count.
        eventually(lambda: client.check("acme", "requests").current_usage == 50, "in step")
        assert client.cache.stats.resets == 0
    finally:
        client.close()


REPORTER = textwrap.dedent(
    """
    import sys
    from allotment import Client

    client = Client(sys.argv[1], api_key=sys.argv[2], buffer_path=sys.argv[3], timeout=0.5)
    for n in range(30):
        client.report_usage("acme", "requests", 1, idempotency_key=f"killed-{n}")
    print("reported", flush=True)
    sys.stdin.read()  # wait to be killed
    """
)


def test_reports_buffered_by_a_killed_process_are_delivered_by_the_next(
    server: Server, tmp_path: Path
) -> None:
    with server.client() as http:
        seed(http)
    buffer = tmp_path / "buffer.db"
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens: every delivery fails
    reporter = subprocess.Popen(
        [sys.executable, "-c", REPORTER, dead, ADMIN_KEY, str(buffer)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert reporter.stdout is not None
        assert reporter.stdout.readline().strip() == b"reported"
    finally:
        reporter.kill()
        reporter.wait(10)
    client = Client(server.url, api_key=ADMIN_KEY, buffer_path=buffer)
    try:
        eventually(lambda: client.buffer.depth() == 0, "the next client delivered the buffer")
    finally:
        client.close()
    with server.client() as http:
        assert usage_of(http) == 30
        each_recorded_once(http, [f"killed-{n}" for n in range(30)])
