"""A real server process configured from its environment, and stopped with SIGTERM while it
writes and streams: request ids, JSON logs, and a drain that loses nothing and hangs on nothing."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import ADMIN_KEY, Server, free_port

pytestmark = pytest.mark.slow

SHUTDOWN_TIMEOUT = 60  # far longer than the test waits: a stream that held the drain would fail it


def _seed(server: Server) -> None:
    with server.client() as client:
        for path, body in [
            ("/v1/features/ai-requests", {"name": "Requests", "kind": "metered"}),
            ("/v1/products/coder", {"name": "Coder"}),
            (
                "/v1/plans/team",
                {
                    "product": "coder",
                    "name": "Team",
                    "entitlements": {"ai-requests": {"limit": 1_000_000_000}},
                },
            ),
            ("/v1/customers/acme", {"name": "Acme"}),
        ]:
            assert client.put(path, json=body).status_code in (200, 201)
        answer = client.post("/v1/customers/acme/subscriptions", json={"plan": "team"})
        assert answer.status_code == 201, answer.text


def _metric(server: Server, name: str) -> float:
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"no {name} in /metrics")


def _wait_for(condition: Callable[[], bool], what: str, seconds: float = 30) -> None:
    """Poll ``condition`` until true; a deadline against a hang, never a measurement."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {seconds} s")
        time.sleep(0.05)


def test_settings_from_the_environment_request_ids_and_json_logs(tmp_path: Path) -> None:
    port = free_port()
    server = Server(
        database=tmp_path / "allotment.db",
        port=port,
        env={
            "ALLOTMENT_PORT": str(port),
            "ALLOTMENT_HOST": "127.0.0.1",
            "ALLOTMENT_LOG_LEVEL": "info",
            "ALLOTMENT_LOG_FORMAT": "json",
            "ALLOTMENT_ACCESS_LOG_SAMPLE": "1",
        },
        stderr=tmp_path / "server.log",
    )
    server.start()
    try:
        chosen = httpx.get(f"{server.url}/livez", headers={"X-Request-Id": "trace-42"})
        assert chosen.headers["x-request-id"] == "trace-42"
        body = {"customer": "nobody", "feature": "sso"}
        headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
        check = httpx.post(f"{server.url}/v1/check", json=body, headers=headers)
        assert check.status_code == 200
        generated = check.headers["x-request-id"]
        refused = httpx.post(f"{server.url}/v1/check", json=body)  # no key: 401
        assert refused.status_code == 401
        assert refused.headers["x-request-id"] not in {generated, "trace-42"}
    finally:
        server.stop()
    lines = (tmp_path / "server.log").read_text().splitlines()
    records = [json.loads(line) for line in lines]  # every line is JSON, uvicorn's included
    assert {"timestamp", "level", "logger", "message", "request_id"} <= set(records[0])
    access = {r["request_id"]: r for r in records if r["logger"] == "allotment.access"}
    assert access["trace-42"]["route"] == "/livez"
    assert (access[generated]["method"], access[generated]["status"]) == ("POST", 200)
    assert access[generated]["route"] == "/v1/check"
    assert any(r["message"].startswith("Allotment on http://127.0.0.1:") for r in records)


async def _write_until_refused(server: Server, workers: int) -> set[str]:
    """Usage reports from ``workers`` at once, each one after another, until the server stops
    answering; the idempotency keys of those answered 200 and recorded."""
    acknowledged: set[str] = set()
    numbers = iter(range(1_000_000))
    async with server.async_client(workers, timeout=30) as client:

        async def worker() -> None:
            for n in numbers:
                body = {
                    "customer": "acme",
                    "feature": "ai-requests",
                    "amount": 1,
                    "idempotency_key": f"drain-{n}",
                }
                try:
                    response = await client.post("/v1/usage", json=body)
                except httpx.TransportError:
                    return  # the server stopped listening or closed the connection
                assert response.status_code == 200, response.text
                assert response.json()["recorded"] is True
                acknowledged.add(body["idempotency_key"])
                await asyncio.sleep(0.002)  # a steady load, not a flood

        await asyncio.gather(*(worker() for _ in range(workers)))
    return acknowledged


def test_sigterm_drains_writes_ends_streams_and_closes_the_database(tmp_path: Path) -> None:
    server = Server(
        database=tmp_path / "allotment.db",
        port=free_port(),
        args=("--shutdown-timeout", str(SHUTDOWN_TIMEOUT)),
    )
    server.start()
    assert server.process is not None
    try:
        _seed(server)
        stream: dict[str, object] = {}

        def read_stream() -> None:
            headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
            timeout = httpx.Timeout(10.0, read=SHUTDOWN_TIMEOUT)
            try:
                with (
                    httpx.Client(base_url=server.url, timeout=timeout) as client,
                    client.stream("GET", "/v1/stream", headers=headers) as response,
                ):
                    stream["status"] = response.status_code
                    stream["bytes"] = sum(len(chunk) for chunk in response.iter_bytes())
                stream["ended"] = "cleanly"  # the chunked body was closed, not cut
            except Exception as error:
                stream["ended"] = repr(error)

        reader = threading.Thread(target=read_stream, daemon=True)
        reader.start()
        _wait_for(lambda: _metric(server, "allotment_stream_readers") == 1, "the stream opened")

        stop = threading.Event()

        def terminate_once_writing() -> None:
            _wait_for(
                lambda: _metric(server, "allotment_store_jobs_committed_total") > 200,
                "writes committed",
            )
            stop.set()
            assert server.process is not None
            server.process.send_signal(signal.SIGTERM)

        terminator = threading.Thread(target=terminate_once_writing, daemon=True)
        terminator.start()
        acknowledged = asyncio.run(_write_until_refused(server, workers=8))
        terminator.join(timeout=60)
        assert stop.is_set()

        # Well within the drain's bound: the open stream did not hold the shutdown up.
        returncode = server.process.wait(timeout=SHUTDOWN_TIMEOUT - 15)
        # uvicorn raises the signal it handled again once it has shut down.
        assert returncode in (0, -signal.SIGTERM), returncode
        reader.join(timeout=30)
        assert not reader.is_alive(), "the stream client still waits"
        assert stream["status"] == 200
        assert stream["ended"] == "cleanly", stream
    finally:
        server.kill()

    # The store closed its connections: SQLite folds the WAL into the file and removes it
    # when the last one closes (after a crash it stays). Checked before this test opens one.
    assert not Path(f"{server.database}-wal").exists()
    assert acknowledged
    with contextlib.closing(sqlite3.connect(server.database)) as db:
        stored = {key for (key,) in db.execute("SELECT idempotency_key FROM usage_events")}
    assert acknowledged <= stored, f"{len(acknowledged - stored)} acknowledged writes lost"
