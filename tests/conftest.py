"""Shared fixtures: an in-process API on a fresh SQLite file with the test clock on.

``ALLOTMENT_TEST_DATABASE=memory`` runs the tests on the memory adapter instead: every store a
test opens on a file opens on the in-memory database named after that file (``memory://PATH``),
so stores opened on one file share it and a store opened again finds what was written.
``ALLOTMENT_TEST_DATABASE=postgres`` does the same with a PostgreSQL database per file, made on
the test run's server (``tests/postgres_server.py``) when the test first opens it and dropped
after the test. Tests marked ``sqlite_file`` read or write the SQLite file itself and are
skipped in both.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

import allotment.api.services
import allotment.bootstrap
from allotment.api.app import create_app
from allotment.config import Settings
from allotment.service.ports import Store
from tests.openapi_kit import conformance
from tests.postgres_server import PostgresServer, postgres_server

ADMIN_KEY = "test-admin-key"

TEST_DATABASE = os.environ.get("ALLOTMENT_TEST_DATABASE", "sqlite")
if TEST_DATABASE not in {"sqlite", "memory", "postgres"}:
    raise pytest.UsageError("ALLOTMENT_TEST_DATABASE is sqlite (the default), memory or postgres")
ON_MEMORY = TEST_DATABASE == "memory"
ON_POSTGRES = TEST_DATABASE == "postgres"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if TEST_DATABASE == "sqlite":
        return
    skip = pytest.mark.skip(
        reason=f"reads the SQLite file itself (ALLOTMENT_TEST_DATABASE={TEST_DATABASE})"
    )
    for item in items:
        if item.get_closest_marker("sqlite_file") is not None:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _database_under_test(
    monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Iterator[None]:
    if ON_POSTGRES:
        yield from _on_postgres(monkeypatch, request.getfixturevalue("postgres"))
        return
    if not ON_MEMORY:
        yield
        return
    from allotment.storage.memory import forget_shared_databases

    open_store = allotment.bootstrap.open_store

    def open_in_memory(settings: Settings) -> Store:
        if settings.database_url is None:
            url = f"memory://{settings.database_path.resolve()}"
            settings = replace(settings, database_url=url)
        return open_store(settings)

    monkeypatch.setattr(allotment.bootstrap, "open_store", open_in_memory)
    monkeypatch.setattr(allotment.api.services, "open_store", open_in_memory)
    yield
    forget_shared_databases()


def _on_postgres(monkeypatch: pytest.MonkeyPatch, server: PostgresServer) -> Iterator[None]:
    """Stores opened on a file open on a database of the server made for that file."""
    open_store = allotment.bootstrap.open_store
    databases: dict[Path, str] = {}
    with contextlib.ExitStack() as made:

        def open_on_postgres(settings: Settings) -> Store:
            if settings.database_url is None:
                path = settings.database_path.resolve()
                if path not in databases:
                    database = server.fresh_database(migrated=True)
                    databases[path] = made.enter_context(database)
                settings = replace(settings, database_url=databases[path])
            return open_store(settings)

        monkeypatch.setattr(allotment.bootstrap, "open_store", open_on_postgres)
        monkeypatch.setattr(allotment.api.services, "open_store", open_on_postgres)
        yield


class Api:
    """A test client that speaks the contract: JSON in, JSON out, the admin key by default."""

    def __init__(self, client: TestClient, database: Path) -> None:
        self.client = client
        self.database = database
        self.key = ADMIN_KEY

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        key: str | None = None,
        raw: bytes | None = None,
        expect: int | None = None,
    ) -> Any:
        headers = {"Authorization": f"Bearer {key or self.key}"} if (key or self.key) else {}
        if raw is not None:
            response = self.client.request(method, path, content=raw, headers=headers)
        else:
            response = self.client.request(method, path, json=body, headers=headers)
        if expect is not None:
            assert response.status_code == expect, (response.status_code, response.text)
        return response.json() if response.content else None

    def status(self, method: str, path: str, body: Any = None, **kwargs: Any) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {kwargs.pop('key', self.key)}"}
        response = self.client.request(method, path, json=body, headers=headers, **kwargs)
        return response.status_code, response.json() if response.content else None

    def put(self, path: str, body: Any, expect: int | None = None) -> Any:
        return self.request("PUT", path, body, expect=expect)

    def post(self, path: str, body: Any, expect: int | None = None, key: str | None = None) -> Any:
        return self.request("POST", path, body, expect=expect, key=key)

    def get(self, path: str, expect: int | None = 200, key: str | None = None) -> Any:
        return self.request("GET", path, expect=expect, key=key)

    def delete(self, path: str, expect: int | None = None) -> Any:
        return self.request("DELETE", path, expect=expect)

    def check(self, customer: str, feature: str, **extra: Any) -> Any:
        return self.post("/v1/check", {"customer": customer, "feature": feature, **extra}, 200)

    def usage(self, customer: str, feature: str, amount: Any, key: str, **extra: Any) -> Any:
        body = {
            "customer": customer,
            "feature": feature,
            "amount": amount,
            "idempotency_key": key,
            **extra,
        }
        return self.post("/v1/usage", body, 200)

    def advance(self, seconds: int) -> str:
        now: str = self.post("/v1/test/clock", {"advance_seconds": seconds}, 200)["now"]
        return now

    def now(self) -> str:
        now: str = self.get("/v1/test/clock")["now"]
        return now


def open_api(database: Path, **settings: Any) -> Iterator[Api]:
    config = Settings(database_path=database, admin_key=ADMIN_KEY, **settings)
    with TestClient(create_app(config)) as client:
        # Every answer any test receives must be one the API description lists, and fit it.
        client.event_hooks["response"].append(conformance().hook)
        yield Api(client, database)


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    yield from open_api(tmp_path / "allotment.db", test_clock=True)


def define_catalog(api: Api) -> None:
    """A small catalog: product coder, plans starter < team < enterprise, two add-ons."""
    api.put("/v1/features/sso", {"name": "SSO", "kind": "boolean"}, 201)
    api.put("/v1/features/seats", {"name": "Seats", "kind": "numeric"}, 201)
    api.put("/v1/features/ai-requests", {"name": "Requests", "kind": "metered"}, 201)
    api.put("/v1/products/coder", {"name": "Coder"}, 201)
    api.put(
        "/v1/plans/starter",
        {
            "product": "coder",
            "name": "Starter",
            "entitlements": {"seats": {"value": 3}, "ai-requests": {"limit": 100, "reset": "day"}},
        },
        201,
    )
    api.put(
        "/v1/plans/team",
        {
            "product": "coder",
            "name": "Team",
            "parent": "starter",
            "entitlements": {
                "seats": {"value": 10},
                "ai-requests": {"limit": 1000, "reset": "month"},
            },
        },
        201,
    )
    api.put(
        "/v1/plans/enterprise",
        {
            "product": "coder",
            "name": "Enterprise",
            "parent": "team",
            "trial_days": 14,
            "entitlements": {
                "sso": {},
                "seats": {"value": None},
                "ai-requests": {"limit": 20000, "reset": "month", "enforcement": "soft"},
            },
        },
        201,
    )
    api.put(
        "/v1/addons/extra-requests",
        {
            "product": "coder",
            "name": "Extra requests",
            "entitlements": {"ai-requests": {"limit": 500, "mode": "increment"}},
        },
        201,
    )
    api.put(
        "/v1/addons/big-team",
        {
            "product": "coder",
            "name": "Big team",
            "entitlements": {"seats": {"value": 50, "mode": "override"}},
        },
        201,
    )


def new_customer(api: Api, customer: str, plan: str | None = None, **subscription: Any) -> Any:
    api.put(f"/v1/customers/{customer}", {"name": customer.title()}, 201)
    if plan is None:
        return None
    return api.post(f"/v1/customers/{customer}/subscriptions", {"plan": plan, **subscription}, 201)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """The test run's PostgreSQL server (``tests/postgres_server.py``), started when first
    needed."""
    with postgres_server() as server:
        yield server


@pytest.fixture
def postgres_url(postgres: PostgresServer) -> Iterator[str]:
    """The URL of a new, empty database on it, dropped after the test."""
    with postgres.fresh_database() as url:
        yield url


@pytest.fixture
def migrated_postgres_url(postgres: PostgresServer) -> Iterator[str]:
    """The URL of a new database at the newest schema, dropped after the test."""
    with postgres.fresh_database(migrated=True) as url:
        yield url
