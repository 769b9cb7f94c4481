"""``allotment sidecar``: the request path for apps in any language, answered by the SDK.

Most tests run the sidecar in-process (Starlette's TestClient around ``create_app(client)``)
against a real ``allotment serve`` process; the outage runs it as a real process, since it
kills the service under it and reads what the sidecar kept. Every wait polls with a deadline:
nothing here asserts how long anything took.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from allotment.cli import main
from allotment.sdk import Client
from allotment.sidecar import create_app
from tests.e2e.conftest import Server, free_port

T = TypeVar("T")
LIMIT = 1000  # the plan's monthly limit of "requests"
POLL_SECONDS = 20.0
# After an outage the usage delivery and the change feed wait out their backoff (doubling, at
# most 30 s) before trying again; an outage of a few seconds leaves them at most ~16 s.
AFTER_OUTAGE_SECONDS = 45.0


# --- helpers ------------------------------------------------------------------------------------


def ok(response: httpx.Response) -> Any:
    assert response.status_code in (200, 201), (response.status_code, response.text)
    return response.json() if response.content else None


def eventually(
    probe: Callable[[], T], accept: Callable[[T], bool], what: str, timeout: float = POLL_SECONDS
) -> T:
    """``probe()`` again until ``accept`` takes its value; fails after ``timeout`` seconds with
    the last value seen."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if accept(value):
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not within {timeout:g} s; last seen {value!r}")
        time.sleep(0.05)


def seed(admin: httpx.Client) -> str:
    """A metered feature (hard limit of ``LIMIT`` a month) and a boolean one on a plan, the
    customers acme and globex on it; a server-scope key, returned."""
    ok(admin.put("/v1/features/requests", json={"name": "Requests", "kind": "metered"}))
    ok(admin.put("/v1/features/sso", json={"name": "SSO", "kind": "boolean"}))
    ok(admin.put("/v1/products/coder", json={"name": "Coder"}))
    plan = {
        "product": "coder",
        "name": "Team",
        "entitlements": {"requests": {"limit": LIMIT}, "sso": {}},
    }
    ok(admin.put("/v1/plans/team", json=plan))
    for customer in ("acme", "globex"):
        ok(admin.put(f"/v1/customers/{customer}", json={"name": customer.title()}))
        ok(admin.post(f"/v1/customers/{customer}/subscriptions", json={"plan": "team"}))
    created = ok(admin.post("/v1/api-keys", json={"name": "sidecar", "scope": "server"}))
    key: str = created["key"]
    return key


def check_body(customer: str = "acme", feature: str = "requests", **extra: Any) -> dict[str, Any]:
    return {"customer": customer, "feature": feature, **extra}


def usage_body(key: str, amount: int, customer: str = "acme", **extra: Any) -> dict[str, Any]:
    return {
        "customer": customer,
        "feature": "requests",
        "amount": amount,
        "idempotency_key": key,
        **extra,
    }


def service_usage(admin: httpx.Client, customer: str = "acme") -> Any:
    return ok(admin.post("/v1/check", json=check_body(customer)))["current_usage"]


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The contract's error body, exactly: ``{"error": {"code", "message", "details"}}``."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert set(error) == {"code", "message", "details"}, body
    assert error["code"] == code, body
    assert isinstance(error["message"], str), body
    assert error["message"], body
    assert isinstance(error["details"], dict), body
    return error


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(get: Callable[[str], httpx.Response]) -> Samples:
    """``GET /metrics`` parsed: each sample's value by its name and labels."""
    response = get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def figure(samples: Samples, name: str, **labels: str) -> float:
    return samples[("allotment_sidecar_" + name, tuple(sorted(labels.items())))]


# --- fixtures -----------------------------------------------------------------------------------


@dataclass
class Service:
    server: Server
    admin: httpx.Client
    key: str  # a server-scope key for the sidecar


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    server = Server(database=tmp_path / "allotment.db", port=free_port())
    server.start()
    try:
        with server.client() as admin:
            yield Service(server, admin, seed(admin))
    finally:
        server.stop()


@pytest.fixture
def client(service: Service, tmp_path: Path) -> Iterator[Client]:
    sdk = Client(service.server.url, api_key=service.key, buffer_path=tmp_path / "buffer.db")
    try:
        yield sdk
    finally:
        sdk.close(timeout=5)


@pytest.fixture
def sidecar(client: Client) -> Iterator[TestClient]:
    with TestClient(create_app(client)) as test_client:
        yield test_client


@pytest.fixture
def unreachable(tmp_path: Path) -> Iterator[TestClient]:
    """A sidecar whose service is a port nothing listens on."""
    sdk = Client(f"http://127.0.0.1:{free_port()}", api_key="nobody", buffer_path=tmp_path / "b.db")
    try:
        with TestClient(create_app(sdk)) as test_client:
            yield test_client
    finally:
        sdk.close(timeout=5)


# --- 1. the request path ------------------------------------------------------------------------


@pytest.mark.slow
def test_check_answers_the_service_s_result_from_the_cache(
    sidecar: TestClient, service: Service
) -> None:
    got = ok(sidecar.post("/v1/check", json=check_body()))
    direct = ok(service.admin.post("/v1/check", json=check_body()))
    assert set(got) == set(direct) | {"data_age"}
    assert got["has_access"] is True
    assert got["is_fallback"] is False
    assert got["usage_limit"] == LIMIT
    assert got["current_usage"] == 0
    assert isinstance(got["data_age"], int | float)
    assert got["data_age"] >= 0
    assert {k: got[k] for k in direct} == direct

    too_much = ok(sidecar.post("/v1/check", json=check_body(requested=LIMIT + 1)))
    assert too_much["has_access"] is False
    assert too_much["access_denied_reason"] == "usage_limit_exceeded"
    assert too_much["requested"] == LIMIT + 1

    assert ok(sidecar.post("/v1/check", json=check_body(feature="sso")))["has_access"] is True
    stranger = ok(sidecar.post("/v1/check", json=check_body("stranger")))
    assert stranger["has_access"] is False
    assert stranger["access_denied_reason"] == "customer_not_found"
    assert stranger["is_fallback"] is False


@pytest.mark.slow
def test_a_cached_customer_is_checked_without_the_client_s_blocking_call(
    sidecar: TestClient, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once the customer is cached, every check (each ``requested`` a new question) is built
    from the cache on the event loop: ``Client.check``, which may read the service, is never
    called."""
    ok(sidecar.post("/v1/check", json=check_body()))

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("Client.check called for a cached customer")

    monkeypatch.setattr(client, "check", refuse)
    hits, misses = client.cache.stats.hits, client.cache.stats.misses
    for requested in (1, "2.5", LIMIT + 1):
        got = ok(sidecar.post("/v1/check", json=check_body(requested=requested)))
        assert got["has_access"] is (requested != LIMIT + 1)
        assert got["is_fallback"] is False
    # Answered from the cache (a hit), though no answer had been built for these requests.
    assert client.cache.stats.hits == hits + 3
    assert client.cache.stats.misses == misses


@pytest.mark.slow
def test_entitlements_come_from_the_cache_and_an_unknown_customer_is_404(
    sidecar: TestClient,
) -> None:
    listed = ok(sidecar.get("/v1/customers/acme/entitlements"))
    assert listed["customer"] == "acme"
    assert {e["feature"] for e in listed["entitlements"]} == {"requests", "sso"}
    assert all(e["has_access"] for e in listed["entitlements"])
    assert not any(e["is_fallback"] for e in listed["entitlements"])

    assert_error(sidecar.get("/v1/customers/nobody/entitlements"), 404, "not_found")


@pytest.mark.slow
def test_usage_is_buffered_then_reaches_the_service(sidecar: TestClient, service: Service) -> None:
    ok(sidecar.post("/v1/check", json=check_body()))  # acme is cached

    answer = ok(sidecar.post("/v1/usage", json=usage_body("u-1", 3)))
    assert answer["recorded"] is True
    assert answer["replayed"] is False
    assert answer["buffered"] is True
    assert answer["decided_offline"] is False
    assert answer["customer"] == "acme"
    assert answer["feature"] == "requests"
    assert answer["current_usage"] == 3  # the cache counts the report at once

    eventually(lambda: service_usage(service.admin), lambda usage: usage == 3, "usage delivered")
    replay = ok(service.admin.post("/v1/usage", json=usage_body("u-1", 3)))
    assert replay["replayed"] is True  # delivered with the app's key
    assert service_usage(service.admin) == 3


@pytest.mark.slow
def test_enforced_usage_is_decided_by_the_service(sidecar: TestClient, service: Service) -> None:
    body = usage_body("e-1", 5, enforce=True)
    answer = ok(sidecar.post("/v1/usage", json=body))
    assert answer["recorded"] is True
    assert answer["replayed"] is False
    assert answer["buffered"] is False
    assert answer["decided_offline"] is False
    assert answer["current_usage"] == 5
    assert service_usage(service.admin) == 5  # already recorded when the sidecar answered

    again = ok(sidecar.post("/v1/usage", json=body))
    assert again["recorded"] is True
    assert again["replayed"] is True

    refused = ok(sidecar.post("/v1/usage", json=usage_body("e-2", LIMIT, enforce=True)))
    assert refused["recorded"] is False
    assert refused["has_access"] is False
    assert refused["access_denied_reason"] == "usage_limit_exceeded"
    assert refused["buffered"] is False
    assert service_usage(service.admin) == 5


@pytest.mark.slow
def test_reservations_pass_through(sidecar: TestClient, service: Service) -> None:
    held = {"customer": "acme", "feature": "requests", "amount": 10, "idempotency_key": "r-1"}
    reservation = ok(sidecar.post("/v1/reservations", json=held))
    assert reservation["granted"] is True
    assert reservation["id"].startswith("res_")
    committed = ok(sidecar.post(f"/v1/reservations/{reservation['id']}/commit", json={"amount": 4}))
    assert committed["status"] == "committed"
    assert committed["committed_amount"] == 4
    assert service_usage(service.admin) == 4
    again = sidecar.post(f"/v1/reservations/{reservation['id']}/commit", json={"amount": 4})
    assert_error(again, 409, "conflict")

    other = ok(sidecar.post("/v1/reservations", json={**held, "idempotency_key": "r-2"}))
    released = ok(sidecar.post(f"/v1/reservations/{other['id']}/release"))
    assert released["status"] == "released"
    assert service_usage(service.admin) == 4

    assert_error(sidecar.post("/v1/reservations/res_unknown/release"), 404, "not_found")


CHECK = {"customer": "acme", "feature": "requests"}
USAGE = {**CHECK, "amount": 1, "idempotency_key": "k"}
TOO_LARGE = {**CHECK, "pad": "x" * (1 << 20)}
CODES = {
    400: "invalid_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
}

REFUSALS: list[tuple[str, str, bytes | dict[str, Any], int]] = [
    ("POST", "/v1/check", b'{"customer": "acme",', 400),
    ("POST", "/v1/check", b"", 400),
    ("POST", "/v1/check", {**CHECK, "x": 1}, 400),
    ("POST", "/v1/check", {**CHECK, "customer": "no spaces"}, 400),
    ("POST", "/v1/check", {**CHECK, "requested": True}, 400),
    ("POST", "/v1/check", {**CHECK, "requested": -1}, 400),
    ("POST", "/v1/check", TOO_LARGE, 413),
    ("POST", "/v1/usage", {**CHECK, "amount": 1}, 400),
    ("POST", "/v1/usage", {**USAGE, "amount": -1}, 400),
    ("POST", "/v1/usage", {**USAGE, "amount": "1.0000001"}, 400),
    ("POST", "/v1/usage", {**USAGE, "behavior": "add"}, 400),
    ("POST", "/v1/usage", {**USAGE, "x": 1}, 400),
    ("POST", "/v1/reservations", {**CHECK, "amount": 1}, 400),
    ("POST", "/v1/reservations/not-a-reservation/commit", {"amount": 1}, 400),
    ("POST", "/v1/reservations/res_abc/commit", {"amount": "lots"}, 400),
    ("POST", "/v1/reservations/res_abc/release", {"amount": 1}, 400),
    ("GET", "/v1/customers/bad%20id/entitlements", b"", 400),
    ("GET", "/v1/customers/acme/entitlements?entity=bad%20id", b"", 400),
    ("GET", "/v1/nothing-here", b"", 404),
    ("GET", "/v1/check", b"", 405),
]


@pytest.mark.parametrize(("method", "path", "body", "status"), REFUSALS)
def test_a_refused_request_is_the_contract_s_error_and_buffers_nothing(
    unreachable: TestClient, method: str, path: str, body: bytes | dict[str, Any], status: int
) -> None:
    """Refused before the client is asked, so the service need not even be up."""
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    error = assert_error(unreachable.request(method, path, content=content), status, CODES[status])
    if isinstance(body, dict) and "x" in body:
        assert error["details"] == {"field": "x"}
    client: Client = unreachable.app.state.client  # type: ignore[attr-defined]
    assert client.buffer.depth() == 0


def test_an_unreachable_service_is_a_503_the_app_may_retry(unreachable: TestClient) -> None:
    held = {**CHECK, "amount": 1, "idempotency_key": "r-1"}
    response = unreachable.post("/v1/reservations", json=held)
    assert_error(response, 503, "upstream_unavailable")
    assert response.headers["retry-after"] == "1"
    response = unreachable.get("/v1/customers/acme/entitlements")
    assert_error(response, 503, "upstream_unavailable")


def test_a_full_buffer_refuses_the_report_with_a_503(tmp_path: Path) -> None:
    sdk = Client(
        f"http://127.0.0.1:{free_port()}",
        api_key="nobody",
        buffer_path=tmp_path / "buffer.db",
        max_buffered=1,
    )
    try:
        with TestClient(create_app(sdk)) as sidecar:
            assert ok(sidecar.post("/v1/usage", json=usage_body("f-1", 1)))["buffered"] is True
            response = sidecar.post("/v1/usage", json=usage_body("f-2", 1))
            assert_error(response, 503, "buffer_full")
            assert response.headers["retry-after"] == "1"
            assert figure(scrape(sidecar.get), "buffer_refused_total") == 1
    finally:
        sdk.close(timeout=5)


# --- 2. changes made on the service -------------------------------------------------------------


@pytest.mark.slow
def test_changes_made_on_the_service_show_in_the_sidecar(
    sidecar: TestClient, service: Service, client: Client
) -> None:
    first = ok(sidecar.post("/v1/check", json=check_body()))
    assert first["current_usage"] == 0
    assert first["usage_limit"] == LIMIT
    assert client.wait_until_ready(POLL_SECONDS), "the change feed never went live"

    def sidecar_check() -> Any:
        return ok(sidecar.post("/v1/check", json=check_body()))

    ok(service.admin.post("/v1/usage", json=usage_body("direct-1", 7)))
    eventually(sidecar_check, lambda got: got["current_usage"] == 7, "usage made on the service")

    ok(service.admin.put("/v1/customers/acme/overrides/requests", json={"limit": 3}))
    got = eventually(sidecar_check, lambda got: got["usage_limit"] == 3, "the override")
    assert got["source"] == {"type": "override", "id": "requests"}
    assert got["has_access"] is False
    assert got["access_denied_reason"] == "usage_limit_exceeded"
    assert got["is_fallback"] is False


# --- 4. readiness and metrics -------------------------------------------------------------------


def test_not_ready_while_the_change_feed_is_not_live(unreachable: TestClient) -> None:
    assert ok(unreachable.get("/livez")) == {"status": "ok"}
    response = unreachable.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert "change feed" in body["reason"]

    samples = scrape(unreachable.get)
    assert figure(samples, "stream_state", state="live") == 0
    assert sum(figure(samples, "stream_state", state=s) for s in ("connecting", "retrying")) == 1
    assert figure(samples, "buffered_reports") == 0
    assert figure(samples, "cached_entries") == 0


@pytest.mark.slow
def test_ready_once_live_and_metrics_follow_the_client(sidecar: TestClient) -> None:
    eventually(lambda: sidecar.get("/readyz").status_code, lambda status: status == 200, "ready")
    before = scrape(sidecar.get)
    assert figure(before, "stream_state", state="live") == 1
    assert figure(before, "stream_connects_total") >= 1
    assert figure(before, "data_age_seconds") >= 0

    ok(sidecar.post("/v1/check", json=check_body("globex")))
    after_miss = scrape(sidecar.get)
    assert figure(after_miss, "cache_misses_total") > figure(before, "cache_misses_total")
    assert figure(after_miss, "cache_loads_total") > figure(before, "cache_loads_total")
    assert figure(after_miss, "cached_entries") >= 1

    def hits_after_checks() -> float:
        ok(sidecar.post("/v1/check", json=check_body("globex")))
        ok(sidecar.post("/v1/check", json=check_body("globex")))
        return figure(scrape(sidecar.get), "cache_hits_total")

    eventually(
        hits_after_checks, lambda hits: hits > figure(after_miss, "cache_hits_total"), "hits"
    )

    ok(sidecar.post("/v1/usage", json=usage_body("m-1", 1, customer="globex")))
    delivered = eventually(
        lambda: scrape(sidecar.get),
        lambda s: figure(s, "delivered_total") >= 1 and figure(s, "buffered_reports") == 0,
        "the report delivered",
    )
    assert figure(delivered, "last_revision") > 0  # none before the feed's first change
    lag = eventually(
        lambda: scrape(sidecar.get),
        lambda s: ("allotment_sidecar_stream_lag_seconds", ()) in s,
        "an event's lag",
    )
    assert 0 <= figure(lag, "stream_lag_seconds") < POLL_SECONDS
    assert figure(delivered, "delivery_state", state="unauthorized") == 0
    assert figure(delivered, "fallback_answers_total") == 0


# --- 3. an outage, with the sidecar as a real process ------------------------------------------


@dataclass
class SidecarProcess:
    process: subprocess.Popen[bytes]
    http: httpx.Client

    def stop(self) -> int:
        """SIGTERM, as an orchestrator stops it; the exit status."""
        self.http.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
                raise
        return self.process.returncode


def start_sidecar(upstream: str, key: str, *options: str) -> SidecarProcess:
    port = free_port()
    command = [sys.executable, "-m", "allotment", "sidecar", "--upstream", upstream]
    command += ["--port", str(port), "--log-level", "warning", *options]
    environment = {**os.environ, "ALLOTMENT_API_KEY": key}
    process = subprocess.Popen(command, env=environment)
    http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)

    def live() -> bool:
        assert process.poll() is None, f"the sidecar exited with {process.returncode}"
        try:
            return http.get("/livez").status_code == 200
        except httpx.TransportError:
            return False

    eventually(live, bool, "the sidecar listening")
    return SidecarProcess(process, http)


@pytest.mark.slow
def test_an_outage_is_answered_from_the_cache_and_usage_waits_in_the_buffer(
    service: Service, tmp_path: Path
) -> None:
    fallback = tmp_path / "fallback.json"
    fallback.write_text('{"*": false, "requests": {"has_access": true, "usage_limit": 10}}')
    buffer = tmp_path / "sidecar-buffer.db"
    options = ("--buffer", str(buffer), "--fallback", str(fallback))
    sidecar = start_sidecar(service.server.url, service.key, *options)
    try:
        http = sidecar.http
        eventually(lambda: http.get("/readyz").status_code, lambda s: s == 200, "ready")
        assert ok(http.post("/v1/check", json=check_body()))["is_fallback"] is False

        service.server.kill()
        for _ in range(3):
            cached = ok(http.post("/v1/check", json=check_body()))
            assert cached["is_fallback"] is False
            assert cached["has_access"] is True
            assert cached["usage_limit"] == LIMIT
        walk_in = ok(http.post("/v1/check", json=check_body("walk-in")))
        assert walk_in["is_fallback"] is True
        assert walk_in["data_age"] is None
        assert walk_in["has_access"] is True
        assert walk_in["usage_limit"] == 10
        assert ok(http.post("/v1/check", json=check_body("walk-in", "sso")))["has_access"] is False

        bodies = [usage_body(f"outage-{n}", n) for n in range(1, 21)]
        for body in bodies:
            answer = ok(http.post("/v1/usage", json=body))
            assert answer["buffered"] is True
            assert answer["recorded"] is True
        total = sum(body["amount"] for body in bodies)
        assert ok(http.post("/v1/check", json=check_body()))["current_usage"] == total
        during = scrape(http.get)
        assert figure(during, "buffered_reports") == len(bodies)
        assert figure(during, "fallback_answers_total") >= 2
        assert figure(during, "stream_state", state="live") == 0

        service.server.start()  # the same database on the same port
        eventually(
            lambda: service_usage(service.admin),
            lambda usage: usage == total,
            "every buffered report delivered",
            AFTER_OUTAGE_SECONDS,
        )
        for body in bodies:
            replay = ok(service.admin.post("/v1/usage", json=body))
            assert replay["replayed"] is True, body  # each was recorded once, with its key
        assert service_usage(service.admin) == total
        eventually(
            lambda: figure(scrape(http.get), "buffered_reports"), lambda n: n == 0, "drained"
        )
        eventually(
            lambda: ok(http.post("/v1/check", json=check_body()))["current_usage"],
            lambda usage: usage == total,
            "the sidecar counts each report once",
            AFTER_OUTAGE_SECONDS,
        )
    finally:
        status = sidecar.stop()
    assert status in (0, -signal.SIGTERM), status


@pytest.mark.slow
def test_buffered_usage_survives_the_sidecar_being_killed(service: Service, tmp_path: Path) -> None:
    """Reports the sidecar answered are in its buffer file: a sidecar started again on the
    file delivers them once the service is back."""
    options = ("--buffer", str(tmp_path / "sidecar-buffer.db"))
    first = start_sidecar(service.server.url, service.key, *options)
    service.server.kill()
    bodies = [usage_body(f"kept-{n}", n) for n in range(1, 6)]
    try:
        for body in bodies:
            assert ok(first.http.post("/v1/usage", json=body))["buffered"] is True
    finally:
        first.process.kill()  # SIGKILL: nothing of the sidecar's shutdown runs
        first.process.wait(timeout=10)
        first.http.close()

    second = start_sidecar(service.server.url, service.key, *options)
    try:
        service.server.start()
        total = sum(body["amount"] for body in bodies)
        eventually(
            lambda: service_usage(service.admin),
            lambda usage: usage == total,
            "the reports of the killed sidecar delivered",
            AFTER_OUTAGE_SECONDS,
        )
    finally:
        second.stop()


# --- 5. the command line ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        '["requests"]',
        '{"requests": {"usage_limit": 5}}',
        '{"requests": {"has_access": true, "colour": "red"}}',
        '{"requests": {"has_access": true, "usage_limit": "lots"}}',
    ],
)
def test_a_broken_fallback_file_is_one_line_and_exit_status_2(tmp_path: Path, content: str) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text(content)
    result = CliRunner().invoke(
        main,
        [
            "sidecar",
            "--upstream",
            "http://127.0.0.1:9",
            "--api-key",
            "k",
            "--fallback",
            str(broken),
        ],
    )
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"Error: --fallback {broken}: "), lines
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.parametrize(
    "options",
    [
        ["--fallback", "missing.json"],
        ["--offline", "requests=maybe"],
        ["--offline", "=deny"],
        ["--upstream", "allotment.internal:8080"],
    ],
)
def test_other_bad_options_are_one_line_and_exit_status_2(
    tmp_path: Path, options: list[str]
) -> None:
    arguments = ["sidecar", "--upstream", "http://127.0.0.1:9", "--api-key", "k", *options]
    result = CliRunner().invoke(main, arguments)
    assert result.exit_code == 2, result.output
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.slow
def test_the_command_refuses_a_broken_fallback_without_a_traceback(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    command = [sys.executable, "-m", "allotment", "sidecar", "--upstream", "http://127.0.0.1:9"]
    command += ["--api-key", "k", "--fallback", str(broken), "--buffer", str(tmp_path / "b.db")]
    done = subprocess.run(command, capture_output=True, timeout=60, check=False)
    assert done.returncode == 2
    lines = done.stderr.decode().strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("Error: --fallback"), lines
    assert not (tmp_path / "b.db").exists()  # refused before anything was opened
