"""HTTP beyond the bodies: Allow on 405, clients that leave mid-request, readiness, CORS."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest.mock import patch

import httpx
import pytest
from starlette.testclient import TestClient
from starlette.types import ASGIApp

import allotment.api.routes.operations
from allotment.api.app import create_app
from allotment.api.metrics import REGISTRY
from allotment.api.services import Services
from allotment.config import Settings
from tests.conftest import ADMIN_KEY, Api


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("DELETE", "/v1/features", "GET, HEAD"),
        ("POST", "/v1/customers/acme", "DELETE, GET, HEAD, PUT"),
        ("PUT", "/v1/customers/acme/subscriptions", "GET, HEAD, POST"),
        ("PUT", "/v1/test/clock", "GET, HEAD, POST"),
        ("POST", "/readyz", "GET, HEAD"),
        ("GET", "/v1/check", "POST"),
        ("PUT", "/v1/usage", "POST"),
        ("GET", "/v1/customers/acme/credits/cr/debits", "POST"),
    ],
)
def test_405_names_the_allowed_methods(api: Api, method: str, path: str, allow: str) -> None:
    response = api.client.request(method, path, headers={"Authorization": f"Bearer {api.key}"})
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"
    assert response.headers["allow"] == allow


# --- Clients that leave in the middle of their body ----------------------------------------------


def _scope(method: str, path: str) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"testserver"),
            (b"authorization", f"Bearer {ADMIN_KEY}".encode()),
            (b"content-type", b"application/json"),
            (b"content-length", b"100"),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }


def _requests_counted(route: str, method: str, status: int) -> float:
    value = REGISTRY.get_sample_value(
        "allotment_http_requests_total", {"route": route, "method": method, "status": str(status)}
    )
    return value or 0.0


@pytest.mark.parametrize(
    ("method", "path", "route"),
    [
        ("PUT", "/v1/features/f", "put_object"),
        ("POST", "/v1/customers/acme/subscriptions", "subscribe"),
        ("POST", "/v1/usage", "report_usage"),
    ],
)
def test_a_client_that_leaves_mid_body_is_no_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, method: str, path: str, route: str
) -> None:
    settings = Settings(database_path=tmp_path / "db.sqlite", admin_key=ADMIN_KEY)
    services = Services.open(settings)
    app = create_app(settings, services)
    messages = iter(
        [
            {"type": "http.request", "body": b'{"name": "half', "more_body": True},
            {"type": "http.disconnect"},
        ]
    )
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return next(messages)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    errors_before = _requests_counted(route, method, 500)
    gone_before = _requests_counted(route, method, 499)
    caplog.set_level(logging.INFO)
    try:
        asyncio.run(app(_scope(method, path), receive, send))  # raises nothing
    finally:
        services.close()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert _requests_counted(route, method, 500) == errors_before
    assert _requests_counted(route, method, 499) == gone_before + 1
    assert all(m.get("status", 499) == 499 for m in sent)


# --- Readiness -----------------------------------------------------------------------------------


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Services, ASGIApp]]:
    settings = Settings(database_path=tmp_path / "db.sqlite", admin_key=ADMIN_KEY)
    services = Services.open(settings)
    try:
        yield services, create_app(settings, services)
    finally:
        services.close()


def test_readiness_does_not_wait_behind_writes(served: tuple[Services, ASGIApp]) -> None:
    services, app = served
    release = threading.Event()
    busy = threading.Thread(
        target=services.runtime.store.run_blocking, args=(lambda uow: release.wait(5),)
    )
    with TestClient(app) as client:
        busy.start()  # the store's writer is now held by a job, as by a long batch
        try:
            started = time.monotonic()
            response = client.get("/readyz")
            elapsed = time.monotonic() - started
        finally:
            release.set()
            busy.join()
    assert (response.status_code, response.json()) == (200, {"status": "ok"})
    assert elapsed < 1.0


def test_concurrent_probes_share_one_read(served: tuple[Services, ASGIApp]) -> None:
    services, app = served
    store = services.runtime.store
    reads = 0

    async def slow_bounds() -> tuple[int, int]:
        nonlocal reads
        reads += 1
        await asyncio.sleep(0.2)
        return (0, 0)

    async def probe_all() -> list[int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            first = await asyncio.gather(*(client.get("/readyz") for _ in range(50)))
            again = await client.get("/readyz")
        return [r.status_code for r in [*first, again]]

    with patch.object(store, "log_bounds", slow_bounds):
        statuses = asyncio.run(probe_all())
    assert statuses == [200] * 51
    assert reads == 2  # one for the fifty at once, one for the probe after them


def test_readiness_is_503_when_the_database_fails_or_hangs(
    served: tuple[Services, ASGIApp], monkeypatch: pytest.MonkeyPatch
) -> None:
    services, app = served
    store = services.runtime.store

    async def failing() -> tuple[int, int]:
        raise sqlite3.OperationalError("disk I/O error")

    async def hanging() -> tuple[int, int]:
        await asyncio.sleep(5)
        return (0, 0)

    monkeypatch.setattr(allotment.api.routes.operations, "READY_TIMEOUT_SECONDS", 0.1)
    with TestClient(app) as client:
        for probe, reason in ((failing, "disk I/O error"), (hanging, "did not answer")):
            with patch.object(store, "log_bounds", probe):
                response = client.get("/readyz")
            assert response.status_code == 503
            assert response.json()["status"] == "unavailable"
            assert reason in response.json()["reason"]
