"""``X-Request-Id`` on every answer, and on every log line written while answering."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from allotment.api.app import create_app
from allotment.api.logs import JsonFormatter, RequestIdFilter
from allotment.api.request_ids import MAX_LENGTH
from allotment.api.services import Services
from allotment.config import Settings
from tests.conftest import ADMIN_KEY, Api, define_catalog, new_customer

AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}


class Lines(logging.Handler):
    """Log lines as ``serve --log-format json`` writes them."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter())
        self.addFilter(RequestIdFilter())
        self.records: list[dict[str, object]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(json.loads(self.format(record)))


@pytest.fixture
def lines() -> Iterator[Lines]:
    handler = Lines()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)


def test_every_answer_carries_a_request_id(api: Api) -> None:
    define_catalog(api)
    new_customer(api, "acme", "team")
    client = api.client
    answers = [
        client.get("/livez"),
        client.get("/metrics"),
        client.post("/v1/check", json={"customer": "acme", "feature": "sso"}, headers=AUTH),
        client.post("/v1/check", json={"customer": "acme", "feature": "sso"}),  # 401, hot path
        client.get("/v1/check"),  # 405 from the hot path
        client.post("/v1/usage", content=b"x" * (2 * 1024 * 1024), headers=AUTH),  # 413
        client.get("/v1/customers/acme", headers=AUTH),
        client.get("/v1/customers/nobody", headers=AUTH),  # 404 from a route
        client.get("/no/such/route"),  # 404 from the router
        client.patch("/v1/customers/acme", headers=AUTH),  # 405 from the router
        client.post("/v1/customers/acme/credits/usd/debits", json={}, headers=AUTH),  # 400
    ]
    statuses = [answer.status_code for answer in answers]
    assert statuses == [200, 200, 200, 401, 405, 413, 200, 404, 404, 405, 400]
    ids = [answer.headers["x-request-id"] for answer in answers]
    assert all(ids)
    assert len(set(ids)) == len(ids)  # one per request, never reused
    # The contract's error body has no room for it: the header alone carries it.
    assert set(answers[3].json()) == {"error"}
    assert set(answers[3].json()["error"]) == {"code", "message", "details"}


@pytest.mark.parametrize("path", ["/livez", "/v1/check"])
def test_a_sane_request_id_is_kept_and_any_other_replaced(api: Api, path: str) -> None:
    def answered(value: str | bytes) -> str:
        response = api.client.request(
            "GET" if path == "/livez" else "POST",
            path,
            json=None if path == "/livez" else {"customer": "x", "feature": "y"},
            headers={**AUTH, "X-Request-Id": value},  # type: ignore[dict-item]
        )
        return response.headers["x-request-id"]

    for sane in ["abc", "0f8fad5b-d9cb-469f-a165-70867728950e", "a" * MAX_LENGTH, "!~{}<>"]:
        assert answered(sane) == sane
    for insane in ["a" * (MAX_LENGTH + 1), "two words", "tab\there", b"caf\xc3\xa9"]:
        replaced = answered(insane)
        assert replaced != insane
        assert 0 < len(replaced) <= MAX_LENGTH
        assert replaced.isascii()
        assert " " not in replaced


@pytest.fixture
def services(tmp_path: Path) -> Services:
    """Services for an app a test builds itself (the app's shutdown closes them)."""
    return Services.open(Settings(database_path=tmp_path / "db.sqlite", admin_key=ADMIN_KEY))


def test_log_lines_written_while_answering_name_the_request(
    services: Services, lines: Lines, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(services.entitlements, "check_cached", broken)
    with TestClient(create_app(services.settings, services)) as client:
        response = client.post(
            "/v1/check",
            json={"customer": "a", "feature": "b"},
            headers={**AUTH, "X-Request-Id": "r1"},
        )
    assert (response.status_code, response.headers["x-request-id"]) == (500, "r1")
    (logged,) = [r for r in lines.records if r["logger"] == "allotment.api.hot"]
    assert logged["request_id"] == "r1"
    assert logged["level"] == "ERROR"
    assert "RuntimeError: boom" in str(logged["exception"])


def test_starlette_routes_log_with_the_request_id_too(
    services: Services, lines: Lines, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*args: object) -> None:
        raise RuntimeError("kaput")

    monkeypatch.setattr(services.customers, "get_customer", broken)
    app = create_app(services.settings, services)
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/v1/customers/acme", headers={**AUTH, "X-Request-Id": "r2"})
    assert (response.status_code, response.headers["x-request-id"]) == (500, "r2")
    assert response.json()["error"]["code"] == "internal_error"
    logged = [r for r in lines.records if r["logger"] == "allotment.api.app"]
    assert [r["request_id"] for r in logged] == ["r2"]
    assert "RuntimeError: kaput" in str(logged[0]["exception"])
    # Outside a request (start-up, the store's thread) a line names none.
    logging.getLogger("allotment.test").warning("outside")
    assert lines.records[-1]["request_id"] is None


def test_preflights_carry_a_request_id_and_browsers_may_read_it(tmp_path: Path) -> None:
    settings = Settings(
        database_path=tmp_path / "db.sqlite",
        admin_key=ADMIN_KEY,
        cors_origins=("https://app.example",),
    )
    with TestClient(create_app(settings)) as client:
        origin = {"Origin": "https://app.example"}
        preflight = client.options(
            "/v1/check", headers={**origin, "Access-Control-Request-Method": "POST"}
        )
        assert preflight.status_code == 200
        assert preflight.headers["x-request-id"]
        check = client.post(
            "/v1/check",
            json={"customer": "a", "feature": "b"},
            headers={**AUTH, **origin, "X-Request-Id": "from-the-page"},
        )
        assert check.headers["x-request-id"] == "from-the-page"
        assert check.headers.get_list("x-request-id") == ["from-the-page"]  # added once
        exposed = check.headers["access-control-expose-headers"].lower()
        assert "x-request-id" in exposed
