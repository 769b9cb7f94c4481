"""Events and webhooks across real server processes: a pending retry survives a restart, a
time-driven event is stored once however many processes move their clocks past it, and a
receiver that was down gets every event it missed, in order.

Each server runs with the test clock (``ALLOTMENT_TEST_CLOCK=1``, the e2e default): retries wait
for the service's clock, so a test moves it; a new process's clock starts at the real time.
Every wait polls with a deadline against a hang; nothing measures how long anything took.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Server, free_port
from tests.integration.test_webhooks_api import verify
from tests.receiver import Receiver

pytestmark = pytest.mark.slow

DAY = 86_400


def wait_for(condition: Callable[[], Any], what: str, seconds: float = 30.0) -> Any:
    """Poll ``condition`` until it gives something true; a deadline against a hang."""
    deadline = time.monotonic() + seconds
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {seconds} s")
        time.sleep(0.05)


def ok(response: httpx.Response) -> Any:
    assert response.status_code in (200, 201, 202), (response.status_code, response.text)
    return response.json() if response.content else None


def advance(client: httpx.Client, seconds: float) -> str:
    now: str = ok(client.post("/v1/test/clock", json={"advance_seconds": seconds}))["now"]
    return now


def clock(client: httpx.Client) -> datetime:
    return datetime.fromisoformat(ok(client.get("/v1/test/clock"))["now"])


def instant(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def events(client: httpx.Client, **query: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    params = {"limit": "1000", **query}
    while True:
        page = ok(client.get("/v1/events", params=params))
        found += page["data"]
        if page["next"] is None:
            return found
        params["after"] = page["next"]


def deliveries(client: httpx.Client, endpoint: str) -> list[dict[str, Any]]:
    page = ok(client.get(f"/v1/webhook-endpoints/{endpoint}/deliveries", params={"limit": 1000}))
    assert page["next"] is None
    data: list[dict[str, Any]] = page["data"]
    return data


def register(client: httpx.Client, url: str, **extra: Any) -> dict[str, Any]:
    response = client.post("/v1/webhook-endpoints", json={"url": url, **extra})
    assert response.status_code == 201, response.text
    made: dict[str, Any] = response.json()
    return made


def seed(client: httpx.Client) -> None:
    ok(client.put("/v1/features/requests", json={"name": "Requests", "kind": "metered"}))
    ok(client.put("/v1/products/coder", json={"name": "Coder"}))
    team = {"product": "coder", "name": "Team", "entitlements": {"requests": {"limit": 100}}}
    ok(client.put("/v1/plans/team", json=team))


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    made = Receiver()
    yield made
    made.close()


@contextlib.contextmanager
def running(server: Server) -> Iterator[httpx.Client]:
    server.start()
    try:
        with server.client() as client:
            yield client
    finally:
        server.stop()


# ------------------------------------------------------------------ a restart


@pytest.mark.parametrize("how", ["stop", "kill"])
def test_a_pending_retry_survives_a_restart(tmp_path: Path, receiver: Receiver, how: str) -> None:
    server = Server(database=tmp_path / "allotment.db", port=free_port())
    receiver.status = 500
    with running(server) as client:
        seed(client)
        endpoint = register(client, receiver.url, events=["customer.created"])
        # The first process's clock a day ahead of the real time: the retry it schedules lies
        # well past the clock the next process starts with.
        advance(client, DAY)
        ok(client.put("/v1/customers/acme", json={"name": "Acme"}))
        (event,) = events(client, type="customer.created", customer="acme")
        failed = wait_for(
            lambda: [d for d in deliveries(client, endpoint["id"]) if d["attempts"] == 1],
            "the first attempt",
        )
        assert receiver.answered == [500]
        (pending,) = failed
        assert (pending["event"], pending["status"]) == (event["id"], "pending")
        assert pending["last_status_code"] == 500
        retry_at = datetime.fromisoformat(pending["next_attempt_at"])
        assert retry_at > clock(client)
        if how == "kill":
            server.kill()
    receiver.status = 200
    with running(server) as client:
        (still,) = deliveries(client, endpoint["id"])
        assert (still["id"], still["status"], still["attempts"]) == (pending["id"], "pending", 1)
        assert still["next_attempt_at"] == pending["next_attempt_at"]
        assert clock(client) < retry_at  # a new process's clock starts at the real time
        advance(client, 2 * DAY)
        wait_for(lambda: receiver.received, "the retry")
        (delivered,) = receiver.received
        assert delivered.headers["webhook-id"] == event["id"]
        assert delivered.event == event
        assert verify(endpoint["secret"], delivered.headers, delivered.body)
        done = wait_for(
            lambda: [d for d in deliveries(client, endpoint["id"]) if d["status"] == "succeeded"],
            "the success recorded",
        )
        assert [(d["id"], d["attempts"], d["last_status_code"]) for d in done] == [
            (pending["id"], 2, 200)
        ]
    assert receiver.answered == [500, 200]


# ------------------------------------------------------------------ two processes


def test_two_processes_store_each_time_driven_event_once(tmp_path: Path) -> None:
    """Subscriptions ending, grants expiring and reservations expiring, made through either
    process; both clocks moved past their instants at once."""
    database = tmp_path / "shared.db"
    a = Server(database=database, port=free_port())
    b = Server(database=database, port=free_port())
    customers = [f"c{n:02d}" for n in range(12)]
    with running(a) as client_a, running(b) as client_b:
        seed(client_a)
        ok(client_a.put("/v1/currencies/credits", json={"name": "Credits"}))
        # Both clocks start at the real time; the later of the two, plus a minute, is soon for
        # either process.
        soon = max(clock(client_a), clock(client_b)) + timedelta(minutes=1)
        made: dict[str, str] = {}
        for n, customer in enumerate(customers):
            client = client_a if n % 2 == 0 else client_b
            ok(client.put(f"/v1/customers/{customer}", json={"name": customer}))
            body = {"plan": "team", "ends_at": instant(soon)}
            subscription = ok(client.post(f"/v1/customers/{customer}/subscriptions", json=body))
            made[customer] = subscription["id"]
            grant = {
                "amount": 10,
                "category": "paid",
                "expires_at": instant(soon),
                "idempotency_key": "g",
            }
            ok(client.post(f"/v1/customers/{customer}/credits/credits/grants", json=grant))
            hold = {
                "customer": customer,
                "feature": "requests",
                "amount": 1,
                "ttl_seconds": 60,
                "idempotency_key": "r",
            }
            assert ok(client.post("/v1/reservations", json=hold))["granted"] is True
        timed = ("subscription.expired", "credits.expired", "reservation.expired")
        for event_type in timed:
            assert events(client_a, type=event_type) == []
        # Each process has its own test clock: move both past ends_at at once, then again.
        with ThreadPoolExecutor(2) as pool:
            for _ in range(3):
                moved = list(pool.map(lambda c: advance(c, 3600), [client_a, client_b]))
                assert all(datetime.fromisoformat(now) > soon for now in moved)
        for client in (client_a, client_b):
            expired = events(client, type="subscription.expired")
            assert sorted(e["customer"] for e in expired) == customers
            assert {e["customer"]: e["data"]["id"] for e in expired} == made
            assert {e["data"]["status"] for e in expired} == {"expired"}
            seqs = [e["seq"] for e in expired]
            assert seqs == sorted(set(seqs))
            for event_type in timed[1:]:
                found = events(client, type=event_type)
                assert sorted(e["customer"] for e in found) == customers, event_type
            amounts = {e["data"]["amount"] for e in events(client, type="credits.expired")}
            assert amounts == {10}
        # The background loops of both processes run on: still once each.
        for _ in range(2):
            advance(client_b, 3600)
            advance(client_a, 3600)
        for client in (client_b, client_a):
            for event_type in timed:
                assert len(events(client, type=event_type)) == len(customers), event_type


# ------------------------------------------------------------------ a receiver that was down


def delivered_in_order(
    received: list[dict[str, Any]], expected: list[dict[str, Any]], customers: list[str]
) -> None:
    """Every expected event delivered once, each customer's in ``seq`` order."""
    assert sorted(e["id"] for e in received) == sorted(e["id"] for e in expected)
    for customer in customers:
        mine = [e["seq"] for e in received if e["customer"] == customer]
        assert mine == sorted(mine), (customer, mine)
        assert mine == [e["seq"] for e in expected if e["customer"] == customer]


@pytest.mark.parametrize("comes_back", ["same port", "new url"])
def test_a_receiver_that_was_down_gets_every_missed_event_in_order(
    tmp_path: Path, comes_back: str
) -> None:
    server = Server(database=tmp_path / "allotment.db", port=free_port())
    first = Receiver()
    port = first.server.server_address[1]
    customers = ["acme", "bolt"]
    with running(server) as client:
        seed(client)
        endpoint = register(client, first.url)
        ok(client.put("/v1/customers/acme", json={"name": "Acme"}))
        wait_for(lambda: len(first.events()) == 1, "the first delivery")
        since = first.events()[0]["seq"]
        first.close()  # gone: attempts are refused
        for n in range(4):
            for customer in customers:
                ok(client.put(f"/v1/customers/{customer}", json={"name": f"{customer} {n}"}))
        body = {"plan": "team"}
        ok(client.post("/v1/customers/bolt/subscriptions", json=body))
        missed = [e for e in events(client) if e["seq"] > since]
        assert {e["customer"] for e in missed} == set(customers)

        def failed_heads() -> bool:
            made = deliveries(client, endpoint["id"])
            heads = [d for d in made if d["attempts"] >= 1 and d["status"] == "pending"]
            return len(made) == len(missed) + 1 and len(heads) == len(customers)

        # The head of each customer's line is tried and refused; the rest wait behind it.
        wait_for(failed_heads, "a refused attempt for each customer")
        for made in deliveries(client, endpoint["id"]):
            if made["status"] == "pending" and made["attempts"]:
                assert made["last_status_code"] is None
                assert made["last_error"]
        if comes_back == "same port":
            second = Receiver(port=port)
        else:
            second = Receiver()
            patched = client.patch(
                f"/v1/webhook-endpoints/{endpoint['id']}", json={"url": second.url}
            )
            assert ok(patched)["url"] == second.url
        try:
            advance(client, 60)
            wait_for(lambda: len(second.events()) >= len(missed), "the missed events")
            delivered_in_order(second.events(), missed, customers)
            for got in second.received:
                assert got.headers["webhook-id"] == got.event["id"]
                assert verify(endpoint["secret"], got.headers, got.body)
            # Later changes follow the missed ones, at once.
            ok(client.put("/v1/customers/acme", json={"name": "Acme again"}))
            wait_for(lambda: len(second.events()) == len(missed) + 1, "a later event")
            assert second.events()[-1]["data"]["name"] == "Acme again"
            statuses = {d["status"] for d in deliveries(client, endpoint["id"])}
            assert statuses == {"succeeded"}
        finally:
            second.close()
