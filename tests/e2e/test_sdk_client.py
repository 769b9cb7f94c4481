"""The SDK against a real server: cached checks kept current by the change feed, exact.

Every kind of change made through the service (by another client) must reach the SDK's
cached answer, and the cached answer must then equal the service's own check, field for field.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from allotment import AsyncClient, Client
from allotment.sdk.results import CheckResult
from tests.e2e.conftest import ADMIN_KEY, Server, free_port

pytestmark = pytest.mark.slow

DEADLINE = 15.0


def seed(http: httpx.Client) -> None:
    def ok(response: httpx.Response) -> Any:
        assert response.status_code < 300, response.text
        return response.json()

    ok(http.put("/v1/features/requests", json={"name": "Requests", "kind": "metered"}))
    ok(http.put("/v1/features/tokens", json={"name": "Tokens", "kind": "metered"}))
    ok(http.put("/v1/features/sso", json={"name": "SSO", "kind": "boolean"}))
    ok(http.put("/v1/features/seats", json={"name": "Seats", "kind": "numeric"}))
    ok(http.put("/v1/currencies/credits", json={"name": "Credits"}))
    ok(http.put("/v1/products/coder", json={"name": "Coder"}))
    plan = {
        "product": "coder",
        "name": "Team",
        "entitlements": {
            "requests": {"limit": 100, "reset": "month"},
            "tokens": {"limit": None, "credit_cost": {"currency": "credits", "per_unit": 0.5}},
            "seats": {"value": 5},
        },
    }
    ok(http.put("/v1/plans/team", json=plan))
    ok(http.put("/v1/customers/acme", json={"name": "Acme"}))
    ok(http.post("/v1/customers/acme/subscriptions", json={"plan": "team"}))
    ok(http.put("/v1/customers/acme/entities/team-a", json={}))
    ok(http.put("/v1/customers/acme/entities/agent-1", json={"parent": "team-a"}))
    budget = {"limit": 20, "reset": "day", "enforcement": "hard"}
    ok(http.put("/v1/customers/acme/entities/team-a/budgets/requests", json=budget))
    grant = {"amount": 50, "category": "paid", "idempotency_key": "seed-grant"}
    ok(http.post("/v1/customers/acme/credits/credits/grants", json=grant))


@pytest.fixture
def http(server: Server) -> Iterator[httpx.Client]:
    with server.client() as client:
        seed(client)
        yield client


@pytest.fixture
def sdk(server: Server, http: httpx.Client, tmp_path: Path) -> Iterator[Client]:
    client = Client(server.url, api_key=ADMIN_KEY, buffer_path=tmp_path / "buffer.db")
    assert client.wait_until_ready(10)
    yield client
    client.close()


def service_check(http: httpx.Client, **body: Any) -> dict[str, Any]:
    response = http.post("/v1/check", json=body)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def wire(result: CheckResult) -> dict[str, Any]:
    """The SDK's answer as the service would write it."""
    fields: dict[str, Any] = msgspec.json.decode(
        msgspec.json.Encoder(decimal_format="number").encode(result)
    )
    assert fields.pop("data_age") is not None
    return fields


def eventually(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.01)
    raise AssertionError(f"not within {DEADLINE} s: {what}")


def agrees(sdk: Client, http: httpx.Client, **request: Any) -> Callable[[], bool]:
    """Whether the SDK's cached answer equals the service's for ``request``."""

    def check() -> bool:
        ours = wire(sdk.check(**request))
        theirs = service_check(http, **request)
        return ours == theirs

    return check


CASES = [
    {"customer": "acme", "feature": "requests"},
    {"customer": "acme", "feature": "requests", "requested": 7},
    {"customer": "acme", "feature": "requests", "entity": "agent-1", "requested": 3},
    {"customer": "acme", "feature": "tokens", "requested": 10},
    {"customer": "acme", "feature": "tokens", "entity": "agent-1"},
    {"customer": "acme", "feature": "sso"},
    {"customer": "acme", "feature": "seats", "requested": 6},
    {"customer": "acme", "feature": "nothing"},
    {"customer": "nobody", "feature": "requests"},
    {"customer": "acme", "feature": "requests", "entity": "ghost"},
]


def all_agree(sdk: Client, http: httpx.Client) -> Callable[[], bool]:
    checks = [agrees(sdk, http, **case) for case in CASES]
    return lambda: all(check() for check in checks)


def test_cached_answers_equal_the_services_for_every_kind_of_answer(
    sdk: Client, http: httpx.Client
) -> None:
    for case in CASES:
        assert wire(sdk.check(**case)) == service_check(http, **case), case
    loads = sdk.cache.stats.loads
    for case in CASES:
        sdk.check(**case)
    assert sdk.cache.stats.loads == loads  # answered from the cache


def usage(customer: str, feature: str, amount: Any, key: str, **extra: Any) -> dict[str, Any]:
    return {
        "customer": customer,
        "feature": feature,
        "amount": amount,
        "idempotency_key": key,
        **extra,
    }


CHANGES: list[tuple[str, Callable[[httpx.Client], httpx.Response]]] = [
    ("usage", lambda h: h.post("/v1/usage", json=usage("acme", "requests", 4, "u1"))),
    (
        "usage for an entity",
        lambda h: h.post("/v1/usage", json=usage("acme", "requests", 2, "u2", entity="agent-1")),
    ),
    (
        "credit-priced usage",
        lambda h: h.post("/v1/usage", json=usage("acme", "tokens", 8, "u3", entity="agent-1")),
    ),
    (
        "a grant",
        lambda h: h.post(
            "/v1/customers/acme/credits/credits/grants",
            json={"amount": 5, "category": "promotional", "idempotency_key": "g2"},
        ),
    ),
    (
        "a debit",
        lambda h: h.post(
            "/v1/customers/acme/credits/credits/debits",
            json={"amount": 3, "idempotency_key": "d1", "entity": "agent-1"},
        ),
    ),
    (
        "an override",
        lambda h: h.put("/v1/customers/acme/overrides/requests", json={"limit": 30}),
    ),
    (
        "a budget",
        lambda h: h.put(
            "/v1/customers/acme/entities/agent-1/budgets/requests",
            json={"limit": 5, "reset": "day", "enforcement": "hard"},
        ),
    ),
    (
        "a reservation",
        lambda h: h.post("/v1/reservations", json=usage("acme", "requests", 3, "r1")),
    ),
    (
        "a plan's change",
        lambda h: h.put(
            "/v1/plans/team",
            json={
                "product": "coder",
                "name": "Team",
                "entitlements": {
                    "requests": {"limit": 100, "reset": "month"},
                    "tokens": {
                        "limit": None,
                        "credit_cost": {"currency": "credits", "per_unit": 0.5},
                    },
                    "seats": {"value": 9},
                    "sso": {},
                },
            },
        ),
    ),
    (
        "a promotion",
        lambda h: h.post("/v1/customers/acme/promotions", json={"feature": "seats", "value": 20}),
    ),
    ("archiving", lambda h: h.delete("/v1/customers/acme")),
]


def test_every_kind_of_change_reaches_the_cached_answer(sdk: Client, http: httpx.Client) -> None:
    assert all_agree(sdk, http)()
    for name, change in CHANGES:
        response = change(http)
        assert response.status_code < 300, (name, response.text)
        eventually(all_agree(sdk, http), f"the SDK's answers after {name}")


def test_own_reports_count_at_once_and_exactly_once(sdk: Client, http: httpx.Client) -> None:
    before = sdk.check("acme", "requests").current_usage
    for n in range(10):
        sdk.report_usage("acme", "requests", 1, entity="agent-1", idempotency_key=f"own-{n}")
        assert sdk.check("acme", "requests").current_usage == before + n + 1
    eventually(lambda: sdk.buffer.depth() == 0, "the buffer drained")
    eventually(all_agree(sdk, http), "the SDK agrees with the service")
    assert service_check(http, customer="acme", feature="requests")["current_usage"] == 10


def test_a_change_through_another_process_reaches_the_cache_quickly(
    sdk: Client, http: httpx.Client
) -> None:
    """Write on the service, watch the cached answer change (the bench measures the lag)."""
    sdk.check("acme", "requests")
    for n in range(20):
        expected = n + 1
        http.post("/v1/usage", json=usage("acme", "requests", 1, f"lag-{n}"))
        eventually(
            lambda expected=expected: sdk.check("acme", "requests").current_usage == expected,
            "usage reached the cache",
        )
    assert sdk.cache.stats.loads == 1  # followed, never read again
    assert sdk.cache.lag is not None
    assert 0 <= sdk.cache.lag < DEADLINE  # from the write to its arrival here


def test_enforced_usage_is_decided_by_the_service(sdk: Client, http: httpx.Client) -> None:
    report = sdk.report_usage("acme", "requests", 101, enforce=True, idempotency_key="big")
    assert report.recorded is False
    assert report.result is not None
    assert report.result.access_denied_reason == "usage_limit_exceeded"
    report = sdk.report_usage("acme", "requests", 5, enforce=True, idempotency_key="fits")
    assert report.recorded is True
    assert not report.buffered
    eventually(lambda: sdk.check("acme", "requests").current_usage == 5, "the usage counted")


def test_reservation_context_commits_what_the_block_set_or_releases(
    sdk: Client, http: httpx.Client
) -> None:
    with sdk.reserve("acme", "requests", 10) as hold:
        assert hold.granted
        hold.used = 4
    assert hold.ended is not None
    assert hold.ended.committed_amount == 4
    with pytest.raises(RuntimeError), sdk.reserve("acme", "requests", 10) as failed:
        raise RuntimeError("the model call failed")
    assert failed.ended is not None
    assert failed.ended.status == "released"
    eventually(agrees(sdk, http, customer="acme", feature="requests"), "usage 4")
    assert service_check(http, customer="acme", feature="requests")["current_usage"] == 4


def test_typed_admin_and_credit_calls(sdk: Client) -> None:
    assert sdk.get_customer("acme").name == "Acme"
    pool = sdk.credit_pool("acme", "credits")
    assert pool.balance == 50
    debit = sdk.debit_credits("acme", "credits", "1.5", idempotency_key="typed-debit")
    assert debit.applied
    assert debit.balance == pytest.approx(48.5)
    ledger = sdk.credit_ledger("acme", "credits")
    assert [entry.type for entry in ledger.data] == ["grant", "debit"]
    assert [a.feature for a in sdk.entitlements("acme").entitlements] == [
        "requests",
        "tokens",
        "seats",
    ]
    key = sdk.create_api_key("ci", "server")
    assert key.key
    assert key.scope == "server"
    assert sdk.revoke_api_key(key.id).revoked_at is not None


def test_typed_catalog_version_calls(sdk: Client) -> None:
    document = sdk.catalog()
    team = document.plans["team"]
    raised = {**team, "entitlements": {**team["entitlements"], "seats": {"value": 8}}}
    changed = {"plans": {"team": raised}}
    dry = sdk.apply_catalog(changed, dry_run=True)
    assert dry.dry_run
    assert [(c.id, c.action, c.version, c.fields) for c in dry.changes] == [
        ("team", "update", 2, ["entitlements.seats.value"])
    ]
    assert sdk.catalog().plans["team"] == team  # the dry run changed nothing
    assert sdk.apply_catalog(changed).changes[0].diff["entitlements.seats.value"].to == 8
    versions = sdk.plan_versions("team").data
    assert [(v.version, v.subscriptions) for v in versions] == [(1, 1), (2, 0)]
    migration = sdk.migrate_plan("team", at="now")
    assert (migration.from_versions, migration.to_version, migration.subscriptions) == ([1], 2, 1)
    assert [(v.version, v.subscriptions) for v in sdk.plan_versions("team").data] == [
        (1, 0),
        (2, 1),
    ]
    assert sdk.archive_plan("team").status == "archived"


def test_without_the_feed_a_reread_state_counts_delivered_reports_once(
    server: Server, http: httpx.Client, tmp_path: Path
) -> None:
    client = Client(
        server.url,
        api_key=ADMIN_KEY,
        buffer_path=tmp_path / "polled.db",
        follow=False,
        poll_interval=0.05,
    )
    try:
        assert client.check("acme", "requests").current_usage == 0
        for n in range(5):
            client.report_usage("acme", "requests", 1, idempotency_key=f"polled-{n}")
        assert client.check("acme", "requests").current_usage == 5
        eventually(lambda: client.buffer.depth() == 0, "the buffer drained")
        loads = client.cache.stats.loads
        eventually(lambda: client.cache.stats.loads > loads, "the poll read the state again")
        assert client.check("acme", "requests").current_usage == 5
        assert service_check(http, customer="acme", feature="requests")["current_usage"] == 5
    finally:
        client.close()


def test_the_async_client_answers_from_the_same_cache(server: Server, http: httpx.Client) -> None:
    async def scenario() -> None:
        async with AsyncClient(server.url, api_key=ADMIN_KEY) as client:
            assert await client.wait_until_ready(10)
            first = await client.check("acme", "requests", requested=3)
            assert first.has_access
            loads = client.client.cache.stats.loads
            again = await client.check("acme", "requests", requested=3)
            assert again == first
            assert client.client.cache.stats.loads == loads
            report = await client.report_usage("acme", "requests", 2)
            assert report.buffered
            pool = await client.credit_pool("acme", "credits")
            assert pool.balance == 50

    asyncio.run(scenario())


def test_cached_answers_stay_exact_across_worker_processes(workers: Server, tmp_path: Path) -> None:
    with workers.client() as http:
        seed(http)
        client = Client(workers.url, api_key=ADMIN_KEY, buffer_path=tmp_path / "b.db")
        try:
            assert client.wait_until_ready(10)
            assert all_agree(client, http)()
            for name, change in CHANGES[:-1]:  # archiving last would end the comparison early
                assert change(http).status_code < 300, name
                eventually(all_agree(client, http), f"the SDK's answers after {name}")
            for n in range(30):
                client.report_usage("acme", "requests", 1, idempotency_key=f"w-{n}")
                http.post("/v1/usage", json=usage("acme", "requests", 1, f"direct-{n}"))
            eventually(lambda: client.buffer.depth() == 0, "the buffer drained")
            eventually(all_agree(client, http), "the SDK's answers after 60 reports")
        finally:
            client.close()


def test_close_ends_a_live_stream_at_once(server: Server, http: httpx.Client) -> None:
    client = Client(server.url, api_key=ADMIN_KEY)
    assert client.wait_until_ready(10)
    client.close(timeout=1)
    # The stream's read was cut, not waited out: the thread has ended. Just connected, the
    # stream is silent for 10 s (its keep-alive) and the read times out after 45 s, while
    # close gave the thread half a second.
    assert not client.feed.alive


def test_a_key_sent_twice_counts_once(sdk: Client, http: httpx.Client) -> None:
    for _ in range(3):
        sdk.report_usage("acme", "requests", 2, idempotency_key="same-key")
    # (A state read while the first copy's answer is on its way counts it, pending as well,
    # until the feed shows it: checked here only once that settled.)
    eventually(lambda: sdk.check("acme", "requests").current_usage == 2, "counted once")
    eventually(lambda: sdk.buffer.depth() == 0, "the buffer drained")
    eventually(all_agree(sdk, http), "the SDK agrees with the service")
    assert sdk.check("acme", "requests").current_usage == 2
    # Sent again long after the first was recorded and shown: a retry, not more usage.
    sdk.report_usage("acme", "requests", 2, idempotency_key="same-key")
    assert sdk.check("acme", "requests").current_usage == 2


def test_reports_held_in_the_buffer_from_before_count_in_checks(
    server: Server, http: httpx.Client, tmp_path: Path
) -> None:
    buffer = tmp_path / "held.db"
    dead = f"http://127.0.0.1:{free_port()}"
    with Client(dead, api_key=ADMIN_KEY, buffer_path=buffer, timeout=0.5) as offline:
        for n in range(4):
            offline.report_usage("acme", "requests", "1.5", idempotency_key=f"held-{n}")
    # A client key may read acme's state but not report usage: the reports stay held.
    key = http.post("/v1/api-keys", json={"name": "web", "scope": "client", "customer": "acme"})
    with Client(server.url, api_key=key.json()["key"], buffer_path=buffer, customer="acme") as c:
        assert c.check("acme", "requests").current_usage == 6
        eventually(lambda: c.delivery.state == "unauthorized", "deliveries refused")
        assert c.buffer.depth() == 4


def test_changes_made_before_the_feed_connects_are_not_lost(
    server: Server, http: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A state read before the stream connects, then writes, then the stream: it starts
    after those writes, so the entry read before them must go."""
    connect = threading.Event()
    opened = Client._open_stream

    def late(self: Client, after: int | None) -> Any:
        connect.wait(20)
        return opened(self, after)

    monkeypatch.setattr(Client, "_open_stream", late)
    client = Client(server.url, api_key=ADMIN_KEY)
    try:
        assert client.check("acme", "requests").current_usage == 0
        for n in range(5):
            http.post("/v1/usage", json=usage("acme", "requests", 1, f"early-{n}"))
        connect.set()
        assert client.wait_until_ready(10)
        eventually(agrees(client, http, customer="acme", feature="requests"), "in step")
        assert client.check("acme", "requests").current_usage == 5
    finally:
        client.close()


def test_a_grant_added_while_cached_expires_in_the_cache_too(
    sdk: Client, http: httpx.Client
) -> None:
    now = http.get("/v1/test/clock").json()["now"]
    expires = datetime.fromisoformat(now.replace("Z", "+00:00")) + timedelta(seconds=2)
    request = {"customer": "acme", "feature": "tokens", "requested": 110}
    assert not sdk.check(**request).has_access  # 50 credits at 0.5 each: 100 tokens
    grant = {
        "amount": 10,
        "category": "promotional",
        "idempotency_key": "short-lived",
        "expires_at": expires.isoformat(),
    }
    assert http.post("/v1/customers/acme/credits/credits/grants", json=grant).status_code == 201
    eventually(lambda: sdk.check(**request).has_access, "the grant reached the cache")
    http.post("/v1/test/clock", json={"advance_seconds": 3})
    # Nothing is written when a grant expires: the cache must know when to read again (asking
    # the service here would settle the pool and stream the change, proving nothing).
    eventually(lambda: not sdk.check(**request).has_access, "the grant expired in the cache")
    assert agrees(sdk, http, **request)()
