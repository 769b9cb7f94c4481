"""Two ``allotment serve`` processes on one database (a SQLite file; a PostgreSQL database)
answer from the same truth.

Every write made through A shows in B's answers, B having made no write to learn of it, and
every limit holds across the two. Each assertion polls B until the expected answer (within a
generous deadline) and records how long it took; the suite never asserts on that lag, which
the benchmark measures: these machines are shared and noisy.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.e2e.conftest import Server, free_port, log_head, open_stream
from tests.postgres_server import PostgresServer

pytestmark = pytest.mark.slow

DEADLINE_SECONDS = 5.0
LAGS: dict[str, float] = {}


class Pair:
    def __init__(self, a: Server, b: Server, database_url: str | None) -> None:
        self.a, self.b = a, b
        self.client_a, self.client_b = a.client(), b.client()
        self.database_url = database_url

    def log_head(self) -> int:
        """The newest revision in the change log, read from the database itself."""
        if self.database_url is None:
            return log_head(self.a.database)
        with psycopg.connect(self.database_url) as db:
            row = db.execute("SELECT COALESCE(MAX(seq), 0) FROM change_log").fetchone()
        assert row is not None
        return int(row[0])

    def close(self) -> None:
        self.client_a.close()
        self.client_b.close()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def pair(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Pair]:
    database = tmp_path_factory.mktemp("coherence") / "shared.db"
    with contextlib.ExitStack() as stack:
        url = None
        if request.param == "postgres":
            server: PostgresServer = request.getfixturevalue("postgres")
            url = stack.enter_context(server.fresh_database())
        yield from _pair(database, url)


def _pair(database: Path, url: str | None) -> Iterator[Pair]:
    where = () if url is None else ("--database-url", url)
    a = Server(database=database, port=free_port(), args=where)
    b = Server(database=database, port=free_port(), args=where)
    a.start()  # migrates the database before the second process opens it
    try:
        b.start()
        try:
            with a.client() as client:
                seed(client)
            made = Pair(a, b, url)
            yield made
            made.close()
        finally:
            b.stop()
    finally:
        a.stop()
    if LAGS:
        print("\nB's lag behind A's writes (ms):")
        for what, lag in LAGS.items():
            print(f"  {what}: {lag * 1000:.1f}")


def ok(response: httpx.Response) -> Any:
    assert response.status_code in (200, 201), (response.status_code, response.text)
    return response.json() if response.content else None


def seed(client: httpx.Client) -> None:
    ok(client.put("/v1/features/requests", json={"name": "Requests", "kind": "metered"}))
    ok(client.put("/v1/features/tokens", json={"name": "Tokens", "kind": "metered"}))
    ok(client.put("/v1/features/sso", json={"name": "SSO", "kind": "boolean"}))
    ok(client.put("/v1/currencies/credits", json={"name": "Credits"}))
    ok(client.put("/v1/products/coder", json={"name": "Coder"}))
    put_plan(client, "team", 100)
    capped = {"product": "coder", "name": "Capped", "entitlements": {"requests": {"limit": 50}}}
    ok(client.put("/v1/plans/capped", json=capped))


def put_plan(client: httpx.Client, plan: str, limit: int) -> None:
    body = {
        "product": "coder",
        "name": plan.title(),
        "entitlements": {
            "requests": {"limit": limit},
            "tokens": {"limit": None, "credit_cost": {"currency": "credits", "per_unit": "0.5"}},
        },
    }
    ok(client.put(f"/v1/plans/{plan}", json=body))


def customer(client: httpx.Client, name: str, plan: str | None = "team") -> None:
    ok(client.put(f"/v1/customers/{name}", json={"name": name.title()}))
    if plan is not None:
        ok(client.post(f"/v1/customers/{name}/subscriptions", json={"plan": plan}))


def check(client: httpx.Client, who: str, feature: str = "requests", **extra: Any) -> Any:
    return ok(client.post("/v1/check", json={"customer": who, "feature": feature, **extra}))


def eventually(what: str, probe: Callable[[], Any], expected: Callable[[Any], bool]) -> Any:
    """Poll ``probe`` until ``expected`` holds; record the lag from the call on."""
    started = time.monotonic()
    while True:
        answer = probe()
        if expected(answer):
            LAGS[what] = time.monotonic() - started
            return answer
        if time.monotonic() - started > DEADLINE_SECONDS:
            raise AssertionError(f"{what}: B still answers {answer!r}")
        time.sleep(0.002)


def usage(who: str, amount: Any, key: str, **extra: Any) -> dict[str, Any]:
    return {
        "customer": who,
        "feature": "requests",
        "amount": amount,
        "idempotency_key": key,
        **extra,
    }


# --- every kind of write --------------------------------------------------------------------------


def test_usage_and_catalog_changes_through_a_show_in_b(pair: Pair) -> None:
    a, b = pair.client_a, pair.client_b
    put_plan(a, "growth", 100)  # this test's own plan: it changes it
    customer(a, "u1", plan="growth")
    eventually("subscription", lambda: check(b, "u1"), lambda c: c["has_access"])
    ok(a.post("/v1/usage", json=usage("u1", 7, "u1-1")))
    eventually("usage", lambda: check(b, "u1"), lambda c: c["current_usage"] == 7)
    ok(a.post("/v1/usage", json=usage("u1", 3, "u1-2", behavior="set")))
    eventually("usage set", lambda: check(b, "u1"), lambda c: c["current_usage"] == 3)

    # A new version of the plan, then a migration that moves u1 to it, each through A.
    assert check(b, "u1")["usage_limit"] == 100
    put_plan(a, "growth", 250)
    ok(a.post("/v1/plans/growth/migrations", json={"at": "now"}))
    eventually("plan change", lambda: check(b, "u1"), lambda c: c["usage_limit"] == 250)
    customer(a, "u1-new", plan="growth")  # subscribed after the change
    eventually("new subscriber", lambda: check(b, "u1-new"), lambda c: c["usage_limit"] == 250)
    ok(a.put("/v1/features/late", json={"name": "Late", "kind": "boolean"}))
    eventually(
        "new feature",
        lambda: check(b, "u1", "late"),
        lambda c: c["access_denied_reason"] == "not_entitled",
    )


def test_what_a_customer_holds_through_a_shows_in_b(pair: Pair) -> None:
    a, b = pair.client_a, pair.client_b
    customer(a, "h1", plan=None)
    eventually(
        "customer put",
        lambda: check(b, "h1"),
        lambda c: c["access_denied_reason"] == "no_active_subscription",
    )
    subscription = ok(a.post("/v1/customers/h1/subscriptions", json={"plan": "team"}))
    eventually("subscribe", lambda: check(b, "h1"), lambda c: c["has_access"])
    assert check(b, "h1", "sso")["access_denied_reason"] == "not_entitled"
    promotion = ok(a.post("/v1/customers/h1/promotions", json={"feature": "sso"}))
    eventually("promotion", lambda: check(b, "h1", "sso"), lambda c: c["has_access"])
    ok(a.delete(f"/v1/customers/h1/promotions/{promotion['id']}"))
    eventually("promotion revoked", lambda: check(b, "h1", "sso"), lambda c: not c["has_access"])
    ok(a.put("/v1/customers/h1/overrides/requests", json={"limit": 3}))
    eventually("override", lambda: check(b, "h1"), lambda c: c["usage_limit"] == 3)
    ok(a.delete("/v1/customers/h1/overrides/requests"))
    eventually("override removed", lambda: check(b, "h1"), lambda c: c["usage_limit"] == 100)
    ok(a.delete(f"/v1/customers/h1/subscriptions/{subscription['id']}"))
    eventually(
        "cancel",
        lambda: check(b, "h1"),
        lambda c: c["access_denied_reason"] == "no_active_subscription",
    )
    ok(a.post("/v1/customers/h1/subscriptions", json={"plan": "team"}))
    eventually("subscribe again", lambda: check(b, "h1"), lambda c: c["has_access"])
    ok(a.delete("/v1/customers/h1"))
    eventually(
        "archive",
        lambda: check(b, "h1"),
        lambda c: c["access_denied_reason"] == "customer_archived",
    )


def test_entities_budgets_and_reservations_through_a_show_in_b(pair: Pair) -> None:
    a, b = pair.client_a, pair.client_b
    customer(a, "e1")
    eventually("subscription", lambda: check(b, "e1"), lambda c: c["has_access"])
    assert check(b, "e1", entity="team-a")["access_denied_reason"] == "entity_not_found"
    ok(a.put("/v1/customers/e1/entities/team-a", json={"kind": "team"}))
    eventually("entity", lambda: check(b, "e1", entity="team-a"), lambda c: c["has_access"])
    budget = {"limit": 10, "reset": "day", "enforcement": "hard"}
    ok(a.put("/v1/customers/e1/entities/team-a/budgets/requests", json=budget))
    answer = eventually(
        "budget", lambda: check(b, "e1", entity="team-a"), lambda c: c["budgets"] != []
    )
    assert [(x["entity"], x["target"], x["limit"], x["usage"]) for x in answer["budgets"]] == [
        ("team-a", "requests", 10, 0)
    ]
    ok(a.post("/v1/usage", json=usage("e1", 4, "e1-1", entity="team-a")))
    eventually(
        "entity usage",
        lambda: check(b, "e1", entity="team-a"),
        lambda c: c["budgets"][0]["usage"] == 4 and c["current_usage"] == 4,
    )
    held = ok(a.post("/v1/reservations", json=usage("e1", 5, "e1-r")))
    assert held["granted"] is True
    eventually("reservation", lambda: check(b, "e1"), lambda c: c["reserved"] == 5)
    ok(a.post(f"/v1/reservations/{held['id']}/commit", json={"amount": 2}))
    eventually(
        "commit",
        lambda: check(b, "e1"),
        lambda c: (c["reserved"], c["current_usage"]) == (0, 6),
    )
    ok(a.delete("/v1/customers/e1/entities/team-a/budgets/requests"))
    eventually(
        "budget removed", lambda: check(b, "e1", entity="team-a"), lambda c: c["budgets"] == []
    )


def test_credits_through_a_show_in_b(pair: Pair) -> None:
    a, b = pair.client_a, pair.client_b
    customer(a, "c1")
    pool = "/v1/customers/c1/credits/credits"
    grant = {"amount": 10, "category": "paid", "idempotency_key": "c1-g"}
    ok(a.post(f"{pool}/grants", json=grant))
    eventually("grant", lambda: ok(b.get(pool)), lambda p: p["balance"] == 10)
    eventually(
        "grant (check)",
        lambda: check(b, "c1", "tokens"),
        lambda c: c["credits"] is not None and c["credits"]["available"] == 10,
    )
    debit = {"amount": 4, "idempotency_key": "c1-d"}
    assert ok(a.post(f"{pool}/debits", json=debit))["applied"] is True
    eventually("debit", lambda: ok(b.get(pool)), lambda p: p["balance"] == 6)
    eventually(
        "debit (check)", lambda: check(b, "c1", "tokens"), lambda c: c["credits"]["available"] == 6
    )
    ok(a.post("/v1/usage", json={**usage("c1", 2, "c1-u"), "feature": "tokens"}))
    eventually("priced usage", lambda: ok(b.get(pool)), lambda p: p["balance"] == 5)


# --- API keys -----------------------------------------------------------------------------------


def test_keys_created_and_revoked_through_a_hold_in_b(pair: Pair) -> None:
    a, b = pair.client_a, pair.client_b
    customer(a, "k1")
    pool = "/v1/customers/k1/credits/credits"
    ok(a.post(f"{pool}/grants", json={"amount": 100, "category": "paid", "idempotency_key": "g"}))
    made = ok(a.post("/v1/api-keys", json={"name": "svc", "scope": "server"}))

    def with_key(method: str, path: str, body: Any = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {made['key']}"}
        return b.request(method, path, json=body, headers=headers)

    eventually("key created", lambda: with_key("GET", pool).status_code, lambda s: s == 200)
    assert with_key("GET", pool).json()["balance"] == 100  # B knows the key now

    ok(a.delete(f"/v1/api-keys/{made['id']}"))
    eventually("key revoked", lambda: with_key("GET", pool).status_code, lambda s: s == 401)
    for _ in range(20):
        assert with_key("GET", pool).status_code == 401
        assert (
            with_key("POST", "/v1/check", {"customer": "k1", "feature": "requests"}).status_code
            == 401
        )
    refused = with_key("POST", f"{pool}/debits", {"amount": 30, "idempotency_key": "late"})
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "unauthenticated"
    assert ok(b.get(pool))["balance"] == 100
    assert ok(a.get(pool))["balance"] == 100
    ledger = ok(a.get(f"{pool}/ledger"))["data"]
    assert [entry["type"] for entry in ledger] == ["grant"]


def test_a_write_with_a_key_revoked_through_a_is_refused_by_b_at_once(pair: Pair) -> None:
    """Once A has answered the revocation, the key moves nothing through B: B's write runs in
    a transaction that has already followed the revocation, so it cannot apply a write that
    the key no longer authorises (a read may lag; a write may not)."""
    a, b = pair.client_a, pair.client_b
    customer(a, "k2")
    pool = "/v1/customers/k2/credits/credits"
    ok(a.post(f"{pool}/grants", json={"amount": 100, "category": "paid", "idempotency_key": "g"}))
    outcomes = []
    for attempt in range(5):
        made = ok(a.post("/v1/api-keys", json={"name": f"svc-{attempt}", "scope": "server"}))
        headers = {"Authorization": f"Bearer {made['key']}"}
        eventually(
            "k2: key known",
            lambda h=headers: b.get(pool, headers=h).status_code,
            lambda s: s == 200,
        )
        ok(a.delete(f"/v1/api-keys/{made['id']}"))
        debit = {"amount": 1, "idempotency_key": f"after-revoke-{attempt}"}
        response = b.post(f"{pool}/debits", json=debit, headers=headers)
        outcomes.append((response.status_code, response.json().get("applied")))
    assert outcomes == [(401, None)] * 5
    assert ok(a.get(pool))["balance"] == 100


# --- an idle process ----------------------------------------------------------------------------


def test_an_idle_process_stays_current(pair: Pair) -> None:
    """B only reads: it learns of A's writes by following the log, never by writing."""
    a, b = pair.client_a, pair.client_b
    customer(a, "idle")
    eventually("idle: subscription", lambda: check(b, "idle"), lambda c: c["has_access"])
    head = pair.log_head()
    with (
        open_stream(pair.a.url, last_event_id=head) as on_a,
        open_stream(pair.b.url, last_event_id=head) as on_b,
    ):
        for n in range(1, 6):
            ok(a.post("/v1/usage", json=usage("idle", 1, f"idle-{n}")))
            eventually(
                f"idle: usage {n}", lambda: check(b, "idle"), lambda c, n=n: c["current_usage"] == n
            )
        time.sleep(0.3)  # a while with nothing to follow
        ok(a.put("/v1/customers/idle/overrides/requests", json={"limit": 9}))
        eventually("idle: after a pause", lambda: check(b, "idle"), lambda c: c["usage_limit"] == 9)
        from_a = on_a.changes(6)
        from_b = on_b.changes(6)
    # B streams A's changes as A does: the same revisions, kinds and payloads.
    assert [(x.id, x.event, x.data) for x in from_b] == [(x.id, x.event, x.data) for x in from_a]
    assert [x.id for x in from_b] == list(range(head + 1, head + 7))


# --- limits across processes --------------------------------------------------------------------


def test_a_hard_limit_holds_across_processes(pair: Pair) -> None:
    a, b = pair.client_a, pair.client_b
    customer(a, "hard", plan="capped")
    eventually("hard: subscription", lambda: check(b, "hard"), lambda c: c["has_access"])
    head = pair.log_head()

    async def fire(server: Server, keys: range) -> list[dict[str, Any]]:
        async with server.async_client(16) as client:
            answers = await asyncio.gather(
                *(
                    client.post("/v1/usage", json=usage("hard", 1, f"hard-{n}", enforce=True))
                    for n in keys
                )
            )
        for answer in answers:
            assert answer.status_code == 200, answer.text
        return [answer.json() for answer in answers]

    async def both() -> list[dict[str, Any]]:
        on_a, on_b = await asyncio.gather(
            fire(pair.a, range(0, 120, 2)), fire(pair.b, range(1, 120, 2))
        )
        return on_a + on_b

    answers = asyncio.run(both())
    assert sum(answer["recorded"] for answer in answers) == 50
    assert {answer["access_denied_reason"] for answer in answers if not answer["recorded"]} == {
        "usage_limit_exceeded"
    }
    assert check(a, "hard")["current_usage"] == 50
    eventually("hard: final usage", lambda: check(b, "hard"), lambda c: c["current_usage"] == 50)
    assert check(b, "hard")["has_access"] is False
    with open_stream(pair.a.url, last_event_id=head) as stream:
        ok(a.put("/v1/features/hard-end", json={"name": "End", "kind": "boolean"}))
        streamed = stream.until(lambda x: x.event == "catalog.changed")
    # Reaching 80 and 100 % of the limit are events: revisions streamed as id lines alone.
    assert [x.event for x in streamed if x.event] == ["usage.recorded"] * 50 + ["catalog.changed"]
    assert sum(x.event is None for x in streamed) == 2


def test_idempotency_keys_hold_across_processes(pair: Pair) -> None:
    a, b = pair.client_a, pair.client_b
    customer(a, "idem")
    first = ok(a.post("/v1/usage", json=usage("idem", 2, "same")))
    assert (first["recorded"], first["replayed"]) == (True, False)
    again = ok(b.post("/v1/usage", json=usage("idem", 2, "same")))
    assert (again["recorded"], again["replayed"]) == (True, True)
    conflict = b.post("/v1/usage", json=usage("idem", 3, "same"))
    assert conflict.status_code == 409
    assert conflict.json()["error"]["code"] == "idempotency_conflict"
    pool = "/v1/customers/idem/credits/credits"
    grant = {"amount": 5, "category": "paid", "idempotency_key": "grant"}
    assert ok(a.post(f"{pool}/grants", json=grant))["replayed"] is False
    assert ok(b.post(f"{pool}/grants", json=grant))["replayed"] is True
    debit = {"amount": 1, "idempotency_key": "debit"}
    assert ok(b.post(f"{pool}/debits", json=debit))["replayed"] is False
    assert ok(a.post(f"{pool}/debits", json=debit))["replayed"] is True

    # The same key sent to both at once is applied once.
    async def race(server: Server) -> list[dict[str, Any]]:
        async with server.async_client(8) as client:
            body = usage("idem", 1, "raced")
            answers = await asyncio.gather(
                *(client.post("/v1/usage", json=body) for _ in range(16))
            )
        return [answer.json() for answer in answers]

    async def both() -> list[dict[str, Any]]:
        on_a, on_b = await asyncio.gather(race(pair.a), race(pair.b))
        return on_a + on_b

    answers = asyncio.run(both())
    assert sum(not answer["replayed"] for answer in answers) == 1
    assert all(answer["recorded"] for answer in answers)
    assert check(a, "idem")["current_usage"] == 3
    eventually("idem: usage", lambda: check(b, "idem"), lambda c: c["current_usage"] == 3)
    assert ok(b.get(pool))["balance"] == 4
