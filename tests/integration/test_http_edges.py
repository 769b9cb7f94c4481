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
from click.testing import CliRunner
from starlette.testclient import TestClient
from starlette.types import ASGIApp

import allotment.api.routes.operations
from allotment.api.app import create_app
from allotment.api.hot import HotPath
from allotment.api.metrics import REGISTRY
from allotment.api.services import Services
from allotment.cli import main
from allotment.config import Settings
from tests.conftest import ADMIN_KEY, Api, define_catalog, new_customer, open_api


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


# --- CORS for the client routes ------------------------------------------------------------------

ORIGIN = "https://app.example.com"


@pytest.fixture
def browser_api(tmp_path: Path) -> Iterator[tuple[Api, str]]:
    """An API that lets ORIGIN call the client routes, with acme and a client key for it."""
    for api in open_api(tmp_path / "db.sqlite", test_clock=True, cors_origins=(ORIGIN,)):
        define_catalog(api)
        new_customer(api, "acme", "team")
        key = api.post("/v1/api-keys", {"name": "web", "scope": "client", "customer": "acme"}, 201)
        yield api, key["key"]


def _preflight(api: Api, path: str, method: str = "POST", origin: str = ORIGIN) -> Any:
    return api.client.options(
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )


@pytest.mark.parametrize(
    ("path", "method"),
    [
        ("/v1/check", "POST"),
        ("/v1/customers/acme/entitlements", "GET"),
        ("/v1/stream", "GET"),
    ],
)
def test_client_routes_answer_a_preflight_without_a_key(
    browser_api: tuple[Api, str], path: str, method: str
) -> None:
    api, _ = browser_api
    response = _preflight(api, path, method)
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ORIGIN
    assert method in response.headers["access-control-allow-methods"]
    allowed = response.headers["access-control-allow-headers"].lower()
    assert "authorization" in allowed
    assert "content-type" in allowed


def test_client_routes_answer_a_browser_with_its_origin(browser_api: tuple[Api, str]) -> None:
    api, key = browser_api
    headers = {"Origin": ORIGIN, "Authorization": f"Bearer {key}"}
    check = api.client.post(
        "/v1/check", json={"customer": "acme", "feature": "sso"}, headers=headers
    )
    assert check.status_code == 200
    assert check.headers["access-control-allow-origin"] == ORIGIN
    listed = api.client.get("/v1/customers/acme/entitlements", headers=headers)
    assert listed.status_code == 200
    assert listed.headers["access-control-allow-origin"] == ORIGIN
    refused = api.client.get("/v1/customers/other/entitlements", headers=headers)
    assert refused.status_code == 403  # CORS lets the browser read the refusal, nothing more
    assert refused.headers["access-control-allow-origin"] == ORIGIN


def test_other_origins_and_other_routes_get_no_cors(browser_api: tuple[Api, str]) -> None:
    api, key = browser_api
    response = _preflight(api, "/v1/check", origin="https://evil.example")
    assert response.status_code == 400
    assert "access-control-allow-origin" not in response.headers
    check = api.client.post(
        "/v1/check",
        json={"customer": "acme", "feature": "sso"},
        headers={"Origin": "https://evil.example", "Authorization": f"Bearer {key}"},
    )
    assert "access-control-allow-origin" not in check.headers
    # Routes that need a server or admin key answer no preflight: such keys stay off browsers.
    for path in ("/v1/usage", "/v1/features/sso", "/v1/customers/acme"):
        assert _preflight(api, path).status_code == 405
    put = api.client.put(
        "/v1/features/f",
        json={"name": "F", "kind": "boolean"},
        headers={"Origin": ORIGIN, "Authorization": f"Bearer {api.key}"},
    )
    assert put.status_code == 201
    assert "access-control-allow-origin" not in put.headers


def test_without_origins_there_is_no_cors_layer(api: Api) -> None:
    assert isinstance(api.client.app, HotPath)  # the check path pays for nothing
    response = _preflight(api, "/v1/check")
    assert response.status_code == 405
    assert "access-control-allow-origin" not in response.headers


def test_origins_come_from_the_environment_or_the_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {"ALLOTMENT_CORS_ORIGINS": " https://a.example , https://b.example:8443/,"}
    assert Settings.from_environment(env).cors_origins == (
        "https://a.example",
        "https://b.example:8443",
    )
    assert Settings.from_environment({}).cors_origins == ()
    with pytest.raises(ValueError, match="not an origin"):
        Settings.from_environment({"ALLOTMENT_CORS_ORIGINS": "https://a.example/app"})

    served: list[Settings] = []
    monkeypatch.setattr("allotment.api.server.serve", lambda settings, **_: served.append(settings))
    monkeypatch.setattr("allotment.api.logs.configure_logging", lambda *_: None)
    monkeypatch.setenv("ALLOTMENT_CORS_ORIGINS", "https://env.example")
    database = ["--db", str(tmp_path / "db.sqlite")]
    runner = CliRunner()
    options = ["--cors-origin", "https://a.example", "--cors-origin", "*"]
    assert runner.invoke(main, ["serve", *database, *options]).exit_code == 0
    assert runner.invoke(main, ["serve", *database]).exit_code == 0
    assert [s.cors_origins for s in served] == [
        ("https://a.example", "*"),
        ("https://env.example",),
    ]
    refused = runner.invoke(main, ["serve", *database, "--cors-origin", "app.example"])
    assert refused.exit_code == 2
    assert "not an origin" in refused.output
