"""``GET /v1/stream`` end to end: the change log as server-sent events over real HTTP.

Most tests run against a real ``allotment serve`` process; the keep-alive and the start of a
fresh reader need a setting the environment cannot give, so they run the app in-process under
uvicorn. A test that waits for "nothing more" writes a marker and checks that the marker is the
next change: a stream that stays silent fails on the reader's timeout instead of hanging.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from allotment.api.app import create_app
from allotment.api.services import Services
from allotment.config import Settings
from allotment.service.projector import Forget
from tests.e2e.conftest import (
    ADMIN_KEY,
    Block,
    Server,
    free_port,
    log_head,
    open_stream,
)

pytestmark = pytest.mark.slow


# --- helpers ------------------------------------------------------------------------------------


def ok(response: httpx.Response) -> Any:
    assert response.status_code in (200, 201), (response.status_code, response.text)
    return response.json() if response.content else None


def seed(client: httpx.Client, customers: tuple[str, ...] = ("acme",)) -> None:
    """Features (metered, credit-priced, boolean), a currency, a product, a plan with a hard
    limit of 5 requests, an add-on and ``customers`` subscribed to the plan."""
    ok(client.put("/v1/features/requests", json={"name": "Requests", "kind": "metered"}))
    ok(client.put("/v1/features/tokens", json={"name": "Tokens", "kind": "metered"}))
    ok(client.put("/v1/features/sso", json={"name": "SSO", "kind": "boolean"}))
    ok(client.put("/v1/currencies/credits", json={"name": "Credits"}))
    ok(client.put("/v1/products/coder", json={"name": "Coder"}))
    plan = {
        "product": "coder",
        "name": "Team",
        "entitlements": {
            "requests": {"limit": 5},
            "tokens": {
                "limit": None,
                "credit_cost": {"currency": "credits", "per_unit": "0.5"},
            },
        },
    }
    ok(client.put("/v1/plans/team", json=plan))
    addon = {
        "product": "coder",
        "name": "More",
        "entitlements": {"requests": {"limit": 5, "mode": "increment"}},
    }
    ok(client.put("/v1/addons/more", json=addon))
    for customer in customers:
        ok(client.put(f"/v1/customers/{customer}", json={"name": customer.title()}))
        ok(client.post(f"/v1/customers/{customer}/subscriptions", json={"plan": "team"}))


def marker(client: httpx.Client, name: str) -> None:
    ok(client.put(f"/v1/features/{name}", json={"name": "Marker", "kind": "boolean"}))


def is_marker(name: str) -> Any:
    return lambda block: block.event == "catalog.changed" and block.data["id"] == name


def usage(customer: str, amount: Any, key: str, **extra: Any) -> dict[str, Any]:
    return {
        "customer": customer,
        "feature": "requests",
        "amount": amount,
        "idempotency_key": key,
        **extra,
    }


def assert_consecutive(blocks: list[Block], after: int) -> None:
    """Revisions after ``after`` without a gap, each event's ``seq`` equal to its id."""
    assert [block.id for block in blocks] == list(range(after + 1, after + 1 + len(blocks)))
    for block in blocks:
        if block.event is not None:
            assert block.data["seq"] == block.id, block


def wire(block: Block) -> tuple[str | None, Any]:
    """The block's kind and data, ``written_at`` (checked, then left out) aside."""
    data = block.data
    if isinstance(data, dict) and block.event != "reset":
        written_at = data.pop("written_at")
        assert written_at.endswith("Z"), written_at
    return block.event, data


# --- every kind and its payload -----------------------------------------------------------------


def test_every_kind_of_change_is_streamed_with_its_payload(server: Server) -> None:
    with server.client() as client:
        head = log_head(server.database)
        with open_stream(server.url, last_event_id=head) as stream:
            seed(client)
            now = client.get("/v1/test/clock").json()["now"]
            ok(client.put("/v1/customers/acme/entities/team-a", json={"kind": "team"}))
            budget = {"limit": 100, "reset": "day", "enforcement": "hard"}
            ok(client.put("/v1/customers/acme/entities/team-a/budgets/requests", json=budget))
            ok(client.post("/v1/customers/acme/promotions", json={"feature": "sso"}))
            ok(client.put("/v1/customers/acme/overrides/requests", json={"limit": 8}))
            ok(client.post("/v1/usage", json=usage("acme", 2, "u-1")))
            ok(client.post("/v1/usage", json=usage("acme", "1.5", "u-2", entity="team-a")))
            grant = {"amount": 10, "category": "paid", "idempotency_key": "g-1"}
            ok(client.post("/v1/customers/acme/credits/credits/grants", json=grant))
            debit = {"amount": 3, "idempotency_key": "d-1"}
            assert ok(client.post("/v1/customers/acme/credits/credits/debits", json=debit))[
                "applied"
            ]
            priced = {**usage("acme", 2, "u-3"), "feature": "tokens"}
            ok(client.post("/v1/usage", json=priced))
            held = ok(client.post("/v1/reservations", json=usage("acme", 1, "r-1")))
            assert held["granted"] is True
            ok(client.post(f"/v1/reservations/{held['id']}/commit", json={"amount": 1}))
            released = ok(client.post("/v1/reservations", json=usage("acme", 2, "r-2")))
            ok(client.post(f"/v1/reservations/{released['id']}/release", json={}))
            created = ok(client.post("/v1/api-keys", json={"name": "ci", "scope": "server"}))
            ok(client.delete(f"/v1/api-keys/{created['id']}"))
            ok(client.delete("/v1/customers/acme"))
            marker(client, "end")
            blocks = stream.until(is_marker("end"))

    assert_consecutive(blocks, head)
    got = [wire(block) for block in blocks]

    def catalog(kind: str, object_id: str, **version: Any) -> tuple[str, Any]:
        return "catalog.changed", {"kind": kind, "id": object_id, **version}

    def customer(**extra: Any) -> tuple[str, Any]:
        return "customer.changed", {"customer": "acme", **extra}

    def used(feature: str, amount: Any, entity: str | None = None) -> tuple[str, Any]:
        fields = {"feature": feature, "entity": entity, "amount": amount, "timestamp": now}
        path = [] if entity is None else [entity]
        return "usage.recorded", {"customer": "acme", **fields, "entity_path": path}

    def credits(balance: Any, *spent: Any) -> tuple[str, Any]:
        return "credits.changed", {
            "customer": "acme",
            "currency": "credits",
            "balance": balance,
            "valid_until": None,
            "overdraft_limit": 0,
            "spends": [{"entity_path": [], "credits": amount} for amount in spent],
        }

    def hold(reservation: dict[str, Any], amount: int) -> tuple[str, Any]:
        return customer(
            reservation={
                "id": reservation["id"],
                "status": "held",
                "feature": "requests",
                "entity": None,
                "amount": amount,
                "expires_at": reservation["expires_at"],
            }
        )

    def ended(reservation: dict[str, Any]) -> tuple[str, Any]:
        return customer(reservation={"id": reservation["id"], "status": "ended"})

    event = (None, None)
    expected = [
        catalog("feature", "requests"),
        catalog("feature", "tokens"),
        catalog("feature", "sso"),
        catalog("currency", "credits"),
        catalog("product", "coder"),
        catalog("plan", "team", version=1, status="active"),
        event,  # plan.published: business events are id lines alone (GET /v1/events)
        catalog("addon", "more", version=1, status="active"),
        event,  # addon.published
        customer(),  # put
        event,  # customer.created
        customer(),  # subscription
        event,  # subscription.created
        customer(entity="team-a"),  # entity: only that entity changed
        customer(entity="team-a"),  # its budget
        customer(),  # promotion
        customer(),  # override
        used("requests", 2),
        used("requests", 1.5, "team-a"),
        credits(10),  # grant
        event,  # credits.granted
        credits(7),  # debit (no entity: no spends)
        used("tokens", 2),  # a credit-priced usage: the usage, then its debit
        credits(6),
        hold(held, 1),
        used("requests", 1),  # commit: the usage, then the hold ends
        ended(held),
        hold(released, 2),
        ended(released),
        (None, None),  # API key created: an id line alone
        (None, None),  # API key revoked
        customer(),  # archived
        event,  # customer.archived
        catalog("feature", "end"),
    ]
    expected = [
        (kind, None if data is None else {"seq": blocks[i].id, **data})
        for i, (kind, data) in enumerate(expected)
    ]
    assert got == expected
    for block in blocks:
        if block.event is None:
            assert block.fields == (("id", str(block.id)),)  # no event, no data


# --- revisions under concurrent writes ----------------------------------------------------------


def test_revisions_are_gap_free_and_each_usage_is_streamed_once_under_concurrency(
    server: Server,
) -> None:
    with server.client() as client:
        seed(client)
        ok(client.put("/v1/features/unmetered", json={"name": "U", "kind": "metered"}))
        plan = {"product": "coder", "name": "Big", "entitlements": {"unmetered": {"limit": None}}}
        ok(client.put("/v1/plans/big", json=plan))
        ok(client.post("/v1/customers/acme/subscriptions", json={"plan": "big"}))
    reports = [{**usage("acme", n, f"use-{n}"), "feature": "unmetered"} for n in range(1, 201)]
    grants = [{"amount": 1, "category": "paid", "idempotency_key": f"grant-{n}"} for n in range(20)]
    # Every report is sent twice: the second is a replay and must not be streamed again.
    requests = [("/v1/usage", body) for body in reports * 2]
    requests += [("/v1/customers/acme/credits/credits/grants", body) for body in grants]
    random.Random(7).shuffle(requests)
    head = log_head(server.database)

    async def fire() -> list[dict[str, Any]]:
        async with server.async_client(16) as client:
            answers = await asyncio.gather(*(client.post(path, json=b) for path, b in requests))
        for answer in answers:
            assert answer.status_code in (200, 201), answer.text
        return [answer.json() for answer in answers]

    with open_stream(server.url, last_event_id=head) as live:
        answers = asyncio.run(fire())
        # Each grant is a credits change and its credits.granted event (an id line).
        seen = live.changes(len(reports) + 2 * len(grants))
    usage_answers = [a for a in answers if "recorded" in a]
    assert sum(a["recorded"] and not a["replayed"] for a in usage_answers) == len(reports)
    assert sum(a["replayed"] for a in usage_answers) == len(reports)

    assert_consecutive(seen, head)
    used = [b.data for b in seen if b.event == "usage.recorded"]
    assert sorted(d["amount"] for d in used) == list(range(1, 201))  # each exactly once
    assert {(d["customer"], d["feature"], d["entity"]) for d in used} == {
        ("acme", "unmetered", None)
    }
    balances = [b.data["balance"] for b in seen if b.event == "credits.changed"]
    assert balances == list(range(1, 21))  # in revision order, which is commit order
    granted = [b for b in seen if b.event is None]  # credits.granted: an id line alone
    assert len(used) + len(balances) + len(granted) == len(seen)

    # A reader that comes later reads the same history from the log.
    with open_stream(server.url, last_event_id=head) as later:
        assert [wire(b) for b in later.changes(len(seen))] == [wire(b) for b in seen]


# --- resuming -----------------------------------------------------------------------------------


def test_last_event_id_resumes_with_exactly_the_later_changes(server: Server) -> None:
    with server.client() as client:
        seed(client)
        head = log_head(server.database)
        for n in range(6):
            ok(client.post("/v1/usage", json=usage("acme", "0.5", f"r-{n}")))
        with open_stream(server.url, last_event_id=head) as stream:
            everything = stream.changes(6)
        assert_consecutive(everything, head)
        with (
            open_stream(server.url, last_event_id=head + 3) as middle,
            open_stream(server.url, last_event_id=head + 6) as at_head,
        ):
            marker(client, "after")
            assert [wire(b) for b in middle.until(is_marker("after"))] == [
                *(wire(b) for b in everything[3:]),
                ("catalog.changed", {"seq": head + 7, "kind": "feature", "id": "after"}),
            ]
            assert [b.id for b in at_head.until(is_marker("after"))] == [head + 7]
        assert all(b.event == "usage.recorded" for b in everything)
        assert all(b.data["amount"] == 0.5 for b in everything)


def test_a_reader_without_last_event_id_gets_no_history(server: Server) -> None:
    with server.client() as client:
        seed(client)
        head = log_head(server.database)
        stop = threading.Event()
        written: list[str] = []

        def keep_writing() -> None:
            # The reader does not say where it starts: write until it has seen something.
            with server.client() as writer:
                for n in range(200):
                    if stop.is_set():
                        return
                    marker(writer, f"live-{n}")
                    written.append(f"live-{n}")
                    time.sleep(0.02)

        with open_stream(server.url) as stream:
            thread = threading.Thread(target=keep_writing)
            thread.start()
            try:
                first, second = stream.changes(2)
            finally:
                stop.set()
                thread.join()
    assert first.id is not None
    assert first.id > head  # nothing from before it connected
    assert first.event == "catalog.changed"
    assert first.data["id"] in written
    assert second.id == first.id + 1
    assert second.data["id"] == f"live-{written.index(first.data['id']) + 1}"


def test_a_revision_never_given_or_garbage_gets_a_reset_to_the_head(server: Server) -> None:
    with server.client() as client:
        seed(client)
        head = log_head(server.database)
        for last_event_id in (head + 1, head + 1000, "abc", "-1", "1e3", "12x", "9" * 40):
            with open_stream(server.url, last_event_id=last_event_id) as stream:
                reset = stream.block()
                assert reset.fields == (
                    ("id", str(head)),
                    ("event", "reset"),
                    ("data", f'{{"seq":{head}}}'),
                ), last_event_id
                marker(client, f"after-{head}")
                assert wire(stream.change()) == (
                    "catalog.changed",
                    {"seq": head + 1, "kind": "feature", "id": f"after-{head}"},
                )
            head += 1


def test_a_revision_older_than_the_log_keeps_gets_a_reset(server: Server) -> None:
    with server.client() as client:
        seed(client)
        for n in range(10):
            ok(client.post("/v1/usage", json=usage("acme", 1, f"old-{n}", enforce=False)))
        head = log_head(server.database)
        # Prune as the store does, while the server runs: the oldest entries go.
        with contextlib.closing(sqlite3.connect(server.database, timeout=10)) as db:
            db.execute("DELETE FROM change_log WHERE seq <= ?", (head - 5,))
            db.commit()
        oldest = head - 4
        for too_old in (0, 1, oldest - 2):
            with open_stream(server.url, last_event_id=too_old) as stream:
                assert wire(stream.block()) == ("reset", {"seq": head}), too_old
                assert stream.seen[-1].id == head
                marker(client, f"after-{head}")
                block = stream.change()
                assert (block.id, block.data["id"]) == (head + 1, f"after-{head}")
            head += 1
        # The revision just before the oldest kept is still followed without a reset.
        with open_stream(server.url, last_event_id=oldest - 1) as stream:
            marker(client, "last")
            kept = stream.until(is_marker("last"))
        assert_consecutive(kept, oldest - 1)
        assert [b.event for b in kept[:5]] == ["usage.recorded"] * 5


# --- the customer filter and scopes -------------------------------------------------------------


def test_the_customer_filter_keeps_that_customer_and_the_catalog(server: Server) -> None:
    with server.client() as client:
        seed(client, customers=("acme", "globex"))
        head = log_head(server.database)
        with (
            open_stream(server.url, last_event_id=head, customer="acme") as acme,
            open_stream(server.url, last_event_id=head) as everything,
        ):
            ok(client.post("/v1/usage", json=usage("globex", 1, "g-1")))
            ok(client.post("/v1/usage", json=usage("acme", 2, "a-1")))
            ok(client.post("/v1/api-keys", json={"name": "k", "scope": "admin"}))
            grant = {"amount": 5, "category": "promotional", "idempotency_key": "g"}
            ok(client.post("/v1/customers/globex/credits/credits/grants", json=grant))
            ok(client.post("/v1/customers/acme/credits/credits/grants", json=grant))
            held = ok(client.post("/v1/reservations", json=usage("globex", 1, "res")))
            ok(client.post(f"/v1/reservations/{held['id']}/release", json={}))
            ok(client.put("/v1/customers/acme", json={"name": "Acme Inc"}))
            marker(client, "end")
            filtered = acme.until(is_marker("end"))
            unfiltered = everything.until(is_marker("end"))
        assert_consecutive(unfiltered, head)
        assert [(b.id, b.event) for b in filtered] == [
            (head + 2, "usage.recorded"),
            # Each grant and the customer's update also take a revision for their event.
            (head + 6, "credits.changed"),
            (head + 10, "customer.changed"),
            (head + 12, "catalog.changed"),
        ]
        assert [wire(b) for b in filtered] == [wire(unfiltered[b.id - head - 1]) for b in filtered]
        assert all(b.data.get("customer") in ("acme", None) for b in filtered)
        # Resuming a filtered stream filters the history as well.
        with open_stream(server.url, last_event_id=head, customer="acme") as resumed:
            assert [b.id for b in resumed.until(is_marker("end"))] == [b.id for b in filtered]


def test_who_may_read_the_stream(server: Server) -> None:
    with server.client() as client:
        seed(client, customers=("acme", "globex"))
        keys = {
            scope: ok(client.post("/v1/api-keys", json={"name": scope, "scope": scope}))["key"]
            for scope in ("server", "admin")
        }
        web = {"name": "web", "scope": "client", "customer": "acme"}
        keys["client"] = ok(client.post("/v1/api-keys", json=web))["key"]
        head = log_head(server.database)

        def status(key: str | None, customer: str | None = None) -> tuple[int, Any]:
            with open_stream(server.url, key=key, customer=customer) as stream:
                code = stream.status_code
                return code, None if code == 200 else stream.response.json()["error"]["code"]

        assert status(keys["admin"]) == (200, None)
        assert status(keys["server"]) == (200, None)
        assert status(keys["server"], "globex") == (200, None)
        assert status(keys["client"], "acme") == (200, None)
        assert status(keys["client"], "globex")[0] == 403
        assert status(keys["client"])[0] == 403
        assert status(None)[0] == 401
        assert status("alt_not-a-key")[0] == 401
        assert status(None, "acme")[0] == 401
        for bad in ("bad id!", "", "-leading", "x" * 129):
            assert status(ADMIN_KEY, bad) == (400, "invalid_request"), bad

        # A client key reads its own customer's changes (and the catalog's), nothing else.
        with open_stream(
            server.url, key=keys["client"], last_event_id=head, customer="acme"
        ) as own:
            ok(client.post("/v1/usage", json=usage("globex", 1, "g")))
            ok(client.post("/v1/usage", json=usage("acme", 1, "a")))
            marker(client, "end")
            assert [(b.event, b.data.get("customer")) for b in own.until(is_marker("end"))] == [
                ("usage.recorded", "acme"),
                ("catalog.changed", None),
            ]


def test_the_stream_of_a_revoked_key_ends(server: Server) -> None:
    with server.client() as client:
        seed(client, customers=("acme",))
        created = ok(client.post("/v1/api-keys", json={"name": "feed", "scope": "server"}))
        with open_stream(server.url, key=created["key"]) as stream:
            ok(client.delete(f"/v1/api-keys/{created['id']}"))
            with pytest.raises(AssertionError, match="the stream ended"):
                stream.until(lambda block: False)
        with open_stream(server.url, key=created["key"]) as again:
            assert again.status_code == 401


# --- what is not a change -----------------------------------------------------------------------


def test_rejected_and_denied_writes_are_not_streamed(server: Server) -> None:
    with server.client() as client:
        seed(client)
        ok(client.put("/v1/customers/acme/entities/team", json={"kind": "team"}))
        ok(client.put("/v1/customers/acme/entities/seat", json={"parent": "team"}))
        ok(client.post("/v1/usage", json=usage("acme", 1, "used")))
        released = ok(client.post("/v1/reservations", json=usage("acme", 1, "held")))
        ok(client.post(f"/v1/reservations/{released['id']}/release", json={}))
        grant = {"amount": 1, "category": "paid", "idempotency_key": "g"}
        ok(client.post("/v1/customers/acme/credits/credits/grants", json=grant))
        head = log_head(server.database)
        web = ok(
            client.post("/v1/api-keys", json={"name": "w", "scope": "client", "customer": "acme"})
        )
        head += 1
        rejected: list[tuple[str, str, Any, int]] = [
            ("PUT", "/v1/features/bad", {"name": "Bad", "kind": "bogus"}, 400),
            ("PUT", "/v1/plans/bad", {"product": "nope", "name": "Bad"}, 400),
            ("PUT", "/v1/customers/bad id", {"name": "Bad"}, 400),
            ("POST", "/v1/usage", {"customer": "acme", "feature": "requests", "amount": 1}, 400),
            ("POST", "/v1/usage", {**usage("acme", 1, "x"), "colour": "red"}, 400),
            ("POST", "/v1/usage", usage("acme", -1, "neg"), 400),
            ("POST", "/v1/usage", usage("acme", 2, "used"), 409),  # the key, another payload
            ("POST", "/v1/customers/acme/subscriptions", {"plan": "nope"}, 400),
            ("POST", "/v1/customers/acme/credits/credits/grants", {**grant, "amount": -5}, 400),
            ("PUT", "/v1/customers/acme/entities/orphan", {"parent": "nobody"}, 400),
            ("DELETE", "/v1/customers/acme/entities/team", None, 409),
            ("POST", f"/v1/reservations/{released['id']}/commit", {"amount": 1}, 409),
            ("POST", "/v1/api-keys", {"name": "c", "scope": "client"}, 400),
            ("DELETE", "/v1/api-keys/key_nope", None, 404),
        ]
        with open_stream(server.url, last_event_id=head) as stream:
            for method, path, body, expected in rejected:
                response = client.request(method, path, json=body)
                assert response.status_code == expected, (path, response.text)
            forbidden = client.put(
                "/v1/features/x",
                json={"name": "X", "kind": "boolean"},
                headers={"Authorization": f"Bearer {web['key']}"},
            )
            assert forbidden.status_code == 403
            # Decisions that apply nothing are not changes either.
            denied = ok(client.post("/v1/usage", json=usage("acme", 50, "over", enforce=True)))
            assert denied["recorded"] is False
            replay = ok(client.post("/v1/usage", json=usage("acme", 1, "used")))
            assert replay["replayed"] is True
            refused = ok(client.post("/v1/reservations", json=usage("acme", 50, "big")))
            assert refused["granted"] is False
            debit = {"amount": 5, "idempotency_key": "too-much"}
            spent = ok(client.post("/v1/customers/acme/credits/credits/debits", json=debit))
            assert spent["applied"] is False
            marker(client, "end")
            assert wire(stream.change()) == (
                "catalog.changed",
                {"seq": head + 1, "kind": "feature", "id": "end"},
            )
        assert log_head(server.database) == head + 1


# --- in-process: keep-alive and where a fresh reader starts --------------------------------------


@contextlib.contextmanager
def serve_in_process(settings: Settings, services: Services | None = None) -> Iterator[str]:
    """The app under uvicorn on a free port, in a thread of this process."""
    port = free_port()
    config = uvicorn.Config(
        create_app(settings, services),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=2,
    )
    running = uvicorn.Server(config)
    thread = threading.Thread(target=running.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not running.started:
        assert thread.is_alive(), "uvicorn stopped"
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        running.should_exit = True
        thread.join(timeout=10)


def admin(url: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=30)


def test_an_idle_stream_gets_keep_alive_comments(tmp_path: Path) -> None:
    settings = Settings(
        database_path=tmp_path / "allotment.db",
        admin_key=ADMIN_KEY,
        stream_keepalive_seconds=0.2,
    )
    with serve_in_process(settings) as url:
        head = log_head(settings.database_path)
        with open_stream(url, last_event_id=head, read_timeout=3) as stream:
            idle = [stream.block() for _ in range(3)]
            assert all(b.is_comment and b.comments == ("keep-alive",) for b in idle), idle
            with admin(url) as client:
                marker(client, "f")
            change = stream.change()
            assert (change.id, change.event) == (head + 1, "catalog.changed")
            after = stream.block()
            assert after.is_comment
            assert after.comments == ("keep-alive",)


def test_a_write_made_after_connected_reaches_a_reader_without_last_event_id(
    tmp_path: Path,
) -> None:
    """``: connected`` is the only sign that a fresh reader is attached: a cache that then loads
    its snapshot must get every change committed after it, however long the server takes to
    find its starting point (here 0.5 s, as when the thread pool is busy)."""
    settings = Settings(database_path=tmp_path / "allotment.db", admin_key=ADMIN_KEY)
    services = Services.open(settings)
    bounds = services.feed.bounds

    async def slow_bounds() -> tuple[int, int]:
        await asyncio.sleep(0.5)
        return await bounds()

    services.feed.bounds = slow_bounds  # type: ignore[method-assign]
    with (
        serve_in_process(settings, services) as url,
        open_stream(url, read_timeout=3) as stream,
        admin(url) as client,
    ):
        marker(client, "after-connected")
        try:
            change = stream.change()
        except AssertionError as silent:
            raise AssertionError(
                "a change committed after the reader got ': connected' never reached it: the "
                "stream fixes its starting revision only after sending ': connected'"
            ) from silent
    assert (change.event, change.data["id"]) == ("catalog.changed", "after-connected")


def test_a_filtered_stream_keeps_alive_while_only_other_customers_change(tmp_path: Path) -> None:
    settings = Settings(
        database_path=tmp_path / "allotment.db",
        admin_key=ADMIN_KEY,
        stream_keepalive_seconds=0.2,
    )
    with serve_in_process(settings) as url, admin(url) as client:
        seed(client, customers=("acme", "globex"))
        with open_stream(url, customer="acme", read_timeout=3) as stream:
            kept_alive_at: list[float] = []

            def read() -> None:
                block = stream.block()
                if block.comments == ("keep-alive",):
                    kept_alive_at.append(time.monotonic())

            reader = threading.Thread(target=read)
            reader.start()
            for n in range(80):  # over a second of globex's usage, none of acme's
                ok(client.post("/v1/usage", json=usage("globex", 1, f"g-{n}")))
                time.sleep(0.01)
            writes_ended = time.monotonic()
            reader.join(timeout=5)
        assert kept_alive_at, "no keep-alive reached the filtered reader"
        assert kept_alive_at[0] < writes_ended


def test_a_stream_outlives_a_reload_of_the_cache(tmp_path: Path) -> None:
    """Dropping every cached key (a process that fell behind the log) is no revocation."""
    settings = Settings(database_path=tmp_path / "allotment.db", admin_key=ADMIN_KEY)
    services = Services.open(settings)
    with serve_in_process(settings, services) as url, admin(url) as client:
        seed(client)
        reader = ok(client.post("/v1/api-keys", json={"name": "feed", "scope": "server"}))
        with open_stream(url, key=reader["key"], read_timeout=3) as stream:
            services.runtime.project([Forget()])
            ok(client.post("/v1/usage", json=usage("acme", 1, "after-reload")))
            change = stream.change()
            assert (change.event, change.data["customer"]) == ("usage.recorded", "acme")


def test_the_first_block_names_the_revision_the_stream_continues_after(server: Server) -> None:
    with server.client() as client:
        seed(client)
    head = log_head(server.database)
    with open_stream(server.url) as fresh:
        assert fresh.start == head
    with open_stream(server.url, last_event_id=head - 3) as resumed:
        assert resumed.start == head - 3
        assert resumed.change().id == head - 2
    with open_stream(server.url, last_event_id="not a number") as reset:
        assert reset.start is None  # a reset follows, carrying the head
        block = reset.change()
        assert (block.event, block.id) == ("reset", head)
