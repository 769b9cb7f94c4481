"""Concurrent consumption against entity budgets over real HTTP: sibling entities racing for a
shared budget higher up the tree never pass it, whether they consume by enforced usage, credit
debits, reservations or credit-priced usage, and what they consume rolls up to every ancestor."""

from __future__ import annotations

import asyncio
import random
import sqlite3
from collections import Counter
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Server

pytestmark = pytest.mark.slow

CUSTOMER = "acme"
ENTITIES = f"/v1/customers/{CUSTOMER}/entities"
POOL = f"/v1/customers/{CUSTOMER}/credits/ai-credits"
AGENTS = [f"agent-{n}" for n in range(1, 9)]
CONNECTIONS = 64
ATTEMPTS = 5


# ---------------------------------------------------------------------------- setup


def put(client: httpx.Client, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = client.put(path, json=body)
    assert response.status_code in (200, 201), response.text
    answer: dict[str, Any] = response.json()
    return answer


def seed_catalog(
    server: Server,
    *,
    limit: int | None = 100_000,
    credit_cost: dict[str, Any] | None = None,
    credits: int = 0,
) -> None:
    """Feature ``ai-requests`` (customer limit far above any budget), currency ``ai-credits``,
    customer ``acme`` on the plan, and ``credits`` granted to it."""
    spec: dict[str, Any] = {"limit": limit}
    if credit_cost is not None:
        spec["credit_cost"] = credit_cost
    catalog: list[tuple[str, dict[str, Any]]] = [
        ("/v1/currencies/ai-credits", {"name": "Credits"}),
        ("/v1/features/ai-requests", {"name": "Requests", "kind": "metered"}),
        ("/v1/products/coder", {"name": "Coder"}),
        (
            "/v1/plans/team",
            {"product": "coder", "name": "Team", "entitlements": {"ai-requests": spec}},
        ),
        (f"/v1/customers/{CUSTOMER}", {"name": "Acme"}),
    ]
    with server.client() as client:
        for path, body in catalog:
            put(client, path, body)
        subscribe = client.post(f"/v1/customers/{CUSTOMER}/subscriptions", json={"plan": "team"})
        assert subscribe.status_code == 201, subscribe.text
        if credits:
            seed = {"amount": credits, "category": "paid", "idempotency_key": "seed"}
            grant = client.post(f"{POOL}/grants", json=seed)
            assert grant.status_code == 201, grant.text


def build_tree(server: Server, parents: dict[str, str | None]) -> None:
    """Entities in the order given (parents first), each under its parent."""
    with server.client() as client:
        for entity, parent in parents.items():
            put(client, f"{ENTITIES}/{entity}", {"parent": parent})


def set_budget(server: Server, entity: str, target: str, limit: int, enforcement: str) -> None:
    with server.client() as client:
        body = {"limit": limit, "reset": "month", "enforcement": enforcement}
        document = put(client, f"{ENTITIES}/{entity}/budgets/{target}", body)
    assert (document["limit"], document["usage"], document["reserved"]) == (limit, 0, 0)


def one_team_tree() -> dict[str, str | None]:
    """dept > team > agent-1..agent-8."""
    return {"dept": None, "team": "dept", **dict.fromkeys(AGENTS, "team")}


def two_team_tree() -> dict[str, str | None]:
    """dept > team-a > agent-1..agent-4, and dept > team-b > agent-5..agent-8."""
    tree: dict[str, str | None] = {"dept": None, "team-a": "dept", "team-b": "dept"}
    for n, agent in enumerate(AGENTS):
        tree[agent] = "team-a" if n < 4 else "team-b"
    return tree


# ---------------------------------------------------------------------------- requests


async def post_each(
    server: Server, bodies: list[tuple[str, dict[str, Any]]]
) -> list[dict[str, Any]]:
    """POST every (path, body) at once; a transport error is retried with the same body (so
    the same idempotency key), and each request's final answer is returned in order."""
    async with server.async_client(CONNECTIONS, timeout=30) as client:

        async def one(path: str, body: dict[str, Any]) -> dict[str, Any]:
            for attempt in range(ATTEMPTS):
                try:
                    response = await client.post(path, json=body)
                except httpx.TransportError:
                    await asyncio.sleep(0.05 * (attempt + 1))
                    continue
                if response.status_code == 409 and attempt > 0 and path.endswith("/commit"):
                    # A commit is not keyed: the lost attempt had committed it.
                    details = response.json()["error"]["details"]
                    return {"status": details["status"], "retried": True}
                assert response.status_code == 200, response.text
                answer: dict[str, Any] = response.json()
                return answer
            raise AssertionError(f"{path} failed {ATTEMPTS} times: {body}")

        return await asyncio.gather(*(one(path, body) for path, body in bodies))


def usage_bodies(prefix: str, count: int, agents: list[str], amount: int = 1) -> list[Any]:
    return [
        (
            "/v1/usage",
            {
                "customer": CUSTOMER,
                "feature": "ai-requests",
                "amount": amount,
                "entity": agents[n % len(agents)],
                "idempotency_key": f"{prefix}-{n}",
                "enforce": True,
            },
        )
        for n in range(count)
    ]


# ---------------------------------------------------------------------------- reads


def budget(server: Server, entity: str, target: str) -> dict[str, Any]:
    with server.client() as client:
        response = client.get(f"{ENTITIES}/{entity}")
    assert response.status_code == 200, response.text
    (found,) = [b for b in response.json()["budgets"] if b["target"] == target]
    return dict(found)


def rows(server: Server, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(server.database) as db:
        return list(db.execute(sql, args))


def events_by_entity(server: Server) -> Counter[str]:
    """Units recorded in usage_events per entity, from the file itself."""
    found = rows(server, "SELECT entity, SUM(amount) FROM usage_events GROUP BY entity")
    return Counter({entity: total // 1_000_000 for entity, total in found})


def event_paths(server: Server) -> list[str]:
    return [path for (path,) in rows(server, "SELECT entity_path FROM usage_events")]


def debits_by_entity(server: Server) -> Counter[str]:
    """Credits debited per entity in the ledger (positive), from the file itself."""
    found = rows(
        server,
        "SELECT entity, -SUM(amount) FROM ledger_entries"
        " WHERE type = 'debit' AND entity IS NOT NULL GROUP BY entity",
    )
    return Counter({entity: total // 1_000_000 for entity, total in found})


def balance(server: Server) -> Any:
    with server.client() as client:
        return client.get(POOL).json()["balance"]


def check_refusals(answers: list[dict[str, Any]], granted: str) -> None:
    refused = [a for a in answers if not a[granted]]
    reasons = Counter(a["access_denied_reason"] for a in refused)
    assert set(reasons) <= {"budget_exceeded"}, reasons


def with_repeats(bodies: list[Any], repeats: int, seed: int) -> list[Any]:
    """``bodies`` and ``repeats`` of them sent a second time (same key), shuffled."""
    rng = random.Random(seed)
    sent = bodies + rng.sample(bodies, repeats)
    rng.shuffle(sent)
    return sent


def per_key(
    sent: list[Any], answers: list[dict[str, Any]], granted: str
) -> dict[str, dict[str, Any]]:
    """One answer per idempotency key; every answer for a key agrees on whether it was granted,
    and at most one of them is not a replay (a key is applied at most once)."""
    by_key: dict[str, list[dict[str, Any]]] = {}
    for (_, body), answer in zip(sent, answers, strict=True):
        by_key.setdefault(body["idempotency_key"], []).append(answer)
    for key, found in by_key.items():
        assert len({a[granted] for a in found}) == 1, (key, found)
        assert sum(1 for a in found if not a["replayed"]) <= 1, (key, found)
    return {key: found[0] for key, found in by_key.items()}


def check_bodies(count: int, agents: list[str]) -> list[Any]:
    return [
        (
            "/v1/check",
            {
                "customer": CUSTOMER,
                "feature": "ai-requests",
                "entity": agents[n % len(agents)],
                "requested": 1,
            },
        )
        for n in range(count)
    ]


def checked_budgets(server: Server, entity: str) -> tuple[Any, dict[tuple[str, str], Any]]:
    """The check answer for one more unit for ``entity``: its denial reason and the usage of
    each budget on its path, as the check (from the in-memory snapshot) sees them."""
    with server.client() as client:
        body = {"customer": CUSTOMER, "feature": "ai-requests", "entity": entity, "requested": 1}
        response = client.post("/v1/check", json=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    usage = {(b["entity"], b["target"]): b["usage"] for b in answer["budgets"]}
    return answer["access_denied_reason"], usage


# ---------------------------------------------------------------------------- 1. usage


def test_sibling_agents_never_pass_their_team_budget_with_enforced_usage(server: Server) -> None:
    seed_catalog(server)
    build_tree(server, one_team_tree())
    set_budget(server, "team", "ai-requests", 40, "hard")
    set_budget(server, "dept", "ai-requests", 1_000_000, "soft")  # to read the dept's usage
    # Checks load the budgets' windows into the snapshot: the storm must keep them in step.
    for agent in AGENTS:
        assert checked_budgets(server, agent) == (
            None,
            {("team", "ai-requests"): 0, ("dept", "ai-requests"): 0},
        )
    usage = usage_bodies("u", 200, AGENTS)
    # 60 keys sent twice, and checks in between.
    sent = with_repeats(usage, 60, seed=1) + check_bodies(40, AGENTS)
    random.Random(2).shuffle(sent)

    answers = asyncio.run(post_each(server, sent))

    checks = [a for s, a in zip(sent, answers, strict=True) if s[0] == "/v1/check"]
    for check in checks:  # never more than the budget, seen from the snapshot either
        assert {b["entity"]: b["usage"] for b in check["budgets"]}["team"] <= 40
    reports = [(s, a) for s, a in zip(sent, answers, strict=True) if s[0] == "/v1/usage"]
    keys = per_key([s for s, _ in reports], [a for _, a in reports], "recorded")
    assert len(keys) == 200
    recorded = [a for a in keys.values() if a["recorded"]]
    assert len(recorded) == 40
    check_refusals(list(keys.values()), "recorded")
    assert len(rows(server, "SELECT 1 FROM usage_events")) == 40
    per_agent = events_by_entity(server)
    assert set(per_agent) <= set(AGENTS)
    assert per_agent == Counter(a["entity"] for a in recorded)
    assert set(event_paths(server)) <= {f"/{agent}/team/dept/" for agent in AGENTS}
    team, dept = budget(server, "team", "ai-requests"), budget(server, "dept", "ai-requests")
    assert (team["usage"], team["reserved"]) == (40, 0)
    assert dept["usage"] == sum(per_agent.values()) == 40
    with server.client() as client:
        whole = client.post("/v1/check", json={"customer": CUSTOMER, "feature": "ai-requests"})
    assert whole.json()["current_usage"] == 40
    # The snapshot a check reads agrees with the store.
    for agent in AGENTS:
        assert checked_budgets(server, agent) == (
            "budget_exceeded",
            {("team", "ai-requests"): 40, ("dept", "ai-requests"): 40},
        )

    # Full: every further request is refused, by the team budget, and records nothing.
    again = asyncio.run(post_each(server, usage_bodies("again", 40, AGENTS)))
    assert not any(a["recorded"] for a in again)
    check_refusals(again, "recorded")
    assert len(rows(server, "SELECT 1 FROM usage_events")) == 40


def test_agents_under_two_teams_never_pass_their_department_budget(server: Server) -> None:
    seed_catalog(server)
    build_tree(server, two_team_tree())
    set_budget(server, "dept", "ai-requests", 40, "hard")
    for team in ("team-a", "team-b"):  # soft: only to read each team's usage
        set_budget(server, team, "ai-requests", 1_000_000, "soft")
    for agent in AGENTS:  # the budgets' windows in the snapshot, kept in step from now on
        assert checked_budgets(server, agent)[0] is None

    sent = usage_bodies("u", 200, AGENTS) + check_bodies(40, AGENTS)
    random.Random(3).shuffle(sent)

    answers = asyncio.run(post_each(server, sent))

    reports = [a for s, a in zip(sent, answers, strict=True) if s[0] == "/v1/usage"]
    recorded = [a for a in reports if a["recorded"]]
    assert len(recorded) == 40
    check_refusals(reports, "recorded")
    assert len(rows(server, "SELECT 1 FROM usage_events")) == 40
    per_agent = events_by_entity(server)
    assert per_agent == Counter(a["entity"] for a in recorded)
    dept = budget(server, "dept", "ai-requests")
    team_a, team_b = (
        budget(server, "team-a", "ai-requests"),
        budget(server, "team-b", "ai-requests"),
    )
    assert dept["usage"] == 40
    assert team_a["usage"] == sum(per_agent[agent] for agent in AGENTS[:4])
    assert team_b["usage"] == sum(per_agent[agent] for agent in AGENTS[4:])
    assert team_a["usage"] + team_b["usage"] == sum(per_agent.values()) == 40
    for agent in AGENTS:
        team = "team-a" if agent in AGENTS[:4] else "team-b"
        reason, usage = checked_budgets(server, agent)
        assert reason == "budget_exceeded"
        assert usage == {
            (team, "ai-requests"): budget(server, team, "ai-requests")["usage"],
            ("dept", "ai-requests"): 40,
        }


# ---------------------------------------------------------------------------- 2. debits


def test_sibling_agents_never_pass_their_team_currency_budget_with_debits(server: Server) -> None:
    seed_catalog(server, credits=10_000)
    build_tree(server, one_team_tree())
    set_budget(server, "team", "ai-credits", 50, "hard")
    set_budget(server, "dept", "ai-credits", 1_000_000, "soft")
    bodies = [
        (
            f"{POOL}/debits",
            {"amount": 1, "entity": AGENTS[n % 8], "idempotency_key": f"d-{n}"},
        )
        for n in range(200)
    ]

    sent = with_repeats(bodies, 60, seed=4)

    answers = asyncio.run(post_each(server, sent))

    keys = per_key(sent, answers, "applied")
    assert len(keys) == 200
    entity_of = {body["idempotency_key"]: body["entity"] for _, body in bodies}
    applied = [(entity_of[key], a) for key, a in keys.items() if a["applied"]]
    assert len(applied) == 50
    check_refusals(list(keys.values()), "applied")
    per_agent = debits_by_entity(server)
    assert per_agent == Counter(entity for entity, _ in applied)
    assert sum(per_agent.values()) == 50
    (debited,) = rows(
        server,
        "SELECT SUM(amount), COUNT(DISTINCT idempotency_key) FROM ledger_entries"
        " WHERE type = 'debit' AND entity IS NOT NULL",
    )
    assert (debited[0] // 1_000_000, debited[1]) == (-50, 50)
    (total,) = rows(server, "SELECT SUM(amount) FROM ledger_entries")
    assert total[0] // 1_000_000 == 10_000 - 50
    assert balance(server) == 10_000 - 50
    assert budget(server, "team", "ai-credits")["usage"] == 50
    assert budget(server, "dept", "ai-credits")["usage"] == 50


# ---------------------------------------------------------------------------- 3. reservations


def test_sibling_agents_never_reserve_past_their_team_budget(server: Server) -> None:
    seed_catalog(server)
    build_tree(server, one_team_tree())
    set_budget(server, "team", "ai-requests", 30, "hard")
    set_budget(server, "dept", "ai-requests", 1_000_000, "soft")
    bodies = [
        (
            "/v1/reservations",
            {
                "customer": CUSTOMER,
                "feature": "ai-requests",
                "amount": 1,
                "entity": AGENTS[n % 8],
                "idempotency_key": f"r-{n}",
                "ttl_seconds": 3600,  # the test clock stands still: they stay live
            },
        )
        for n in range(150)
    ]

    answers = asyncio.run(post_each(server, bodies))

    granted = [a for a in answers if a["granted"]]
    assert len(granted) == 30
    assert len({a["id"] for a in granted}) == 30
    check_refusals(answers, "granted")
    team = budget(server, "team", "ai-requests")
    assert (team["usage"], team["reserved"]) == (0, 30)
    assert budget(server, "dept", "ai-requests")["reserved"] == 30
    assert rows(server, "SELECT COUNT(*) FROM usage_events") == [(0,)]
    # While they are live, neither reservations nor enforced usage get past the holds.
    more = asyncio.run(post_each(server, usage_bodies("u", 20, AGENTS)))
    assert not any(a["recorded"] for a in more)
    check_refusals(more, "recorded")

    commits = [(f"/v1/reservations/{a['id']}/commit", {"amount": 1}) for a in granted]
    committed = asyncio.run(post_each(server, commits))

    assert all(c["status"] == "committed" for c in committed)
    assert rows(server, "SELECT COUNT(*), SUM(amount) FROM usage_events") == [(30, 30_000_000)]
    per_agent = events_by_entity(server)
    assert per_agent == Counter(a["entity"] for a in granted)
    team = budget(server, "team", "ai-requests")
    assert (team["usage"], team["reserved"]) == (30, 0)
    dept = budget(server, "dept", "ai-requests")
    assert (dept["usage"], dept["reserved"]) == (sum(per_agent.values()), 0) == (30, 0)
    # Spent: nothing more is granted.
    late = [
        ("/v1/reservations", {**body, "idempotency_key": f"late-{n}"})
        for n, (_, body) in enumerate(bodies[:20])
    ]
    assert not any(a["granted"] for a in asyncio.run(post_each(server, late)))


# ---------------------------------------------------------------------------- 4. credit-priced


def test_credit_priced_usage_never_passes_a_feature_or_a_currency_budget(server: Server) -> None:
    """2 units a call at 0.5 credit a unit: 1 credit a call. team-a may use 20 units (10 calls);
    the department 25 credits (25 calls) over both teams."""
    seed_catalog(
        server,
        limit=None,
        credit_cost={"currency": "ai-credits", "per_unit": "0.5"},
        credits=10_000,
    )
    build_tree(server, two_team_tree())
    set_budget(server, "team-a", "ai-requests", 20, "hard")
    set_budget(server, "dept", "ai-credits", 25, "hard")
    set_budget(server, "team-b", "ai-requests", 1_000_000, "soft")
    team_a, team_b = AGENTS[:4], AGENTS[4:]

    # Only team-a: its feature budget is the one that refuses.
    first = asyncio.run(post_each(server, usage_bodies("a", 80, team_a, amount=2)))
    assert sum(1 for a in first if a["recorded"]) == 10
    check_refusals(first, "recorded")
    assert budget(server, "team-a", "ai-requests")["usage"] == 20
    assert budget(server, "dept", "ai-credits")["usage"] == 10

    # Both teams at once: team-a is full, team-b may take what is left of the 25 credits.
    mixed = usage_bodies("b", 100, team_b, amount=2) + usage_bodies("c", 40, team_a, amount=2)
    random.Random(5).shuffle(mixed)
    second = asyncio.run(post_each(server, mixed))
    recorded = [a for a in second if a["recorded"]]
    assert len(recorded) == 15
    assert {a["entity"] for a in recorded} <= set(team_b)
    check_refusals(second, "recorded")

    assert rows(server, "SELECT COUNT(*), SUM(amount) FROM usage_events") == [(25, 50_000_000)]
    units = events_by_entity(server)
    assert sum(units[agent] for agent in team_a) == 20
    assert sum(units[agent] for agent in team_b) == 30
    credits = debits_by_entity(server)
    assert sum(credits.values()) == 25
    assert all(credits[agent] * 2 == units[agent] for agent in AGENTS)
    assert budget(server, "team-a", "ai-requests")["usage"] == 20
    assert budget(server, "team-b", "ai-requests")["usage"] == 30
    assert budget(server, "dept", "ai-credits")["usage"] == 25
    assert balance(server) == 10_000 - 25


def test_a_kill_mid_storm_loses_no_acknowledged_report_and_the_budget_still_holds(
    server: Server,
) -> None:
    """Budget counters change in memory and reach the table once per batch, in the batch's
    own transaction: after a SIGKILL the table equals the events, and the budget holds."""
    seed_catalog(server)
    build_tree(server, one_team_tree())
    set_budget(server, "team", "ai-requests", 400, "hard")

    def report(n: int) -> dict[str, Any]:
        return {
            "customer": CUSTOMER,
            "feature": "ai-requests",
            "entity": AGENTS[n % len(AGENTS)],
            "amount": 1,
            "idempotency_key": f"k-{n}",
            "enforce": True,
        }

    acknowledged = asyncio.run(server.report_until_killed(report, kill_after=150))
    assert len(acknowledged) >= 150
    with sqlite3.connect(server.database) as db:
        stored = [row[0] for row in db.execute("SELECT idempotency_key FROM usage_events")]
        counters = db.execute(
            "SELECT entity, used FROM budget_counters WHERE target = 'ai-requests'"
        ).fetchall()
    assert len(stored) == len(set(stored)), "an event was written twice"
    assert acknowledged <= set(stored), "an acknowledged report was lost"
    assert len(stored) < 400
    # The team's counter (the only one made) is the events' sum: nothing half-written.
    assert counters == [("team", len(stored) * 1_000_000)]
    server.start()
    with server.client() as client:
        team = client.get(f"{ENTITIES}/team").json()["budgets"][0]
        assert team["usage"] == len(stored)
    # The rest of the budget, and not one report more, is granted after the restart.
    rest = 400 - len(stored)
    bodies = [
        (
            "/v1/usage",
            {
                "customer": CUSTOMER,
                "feature": "ai-requests",
                "entity": AGENTS[n % len(AGENTS)],
                "amount": 1,
                "idempotency_key": f"after-{n}",
                "enforce": True,
            },
        )
        for n in range(rest + 40)
    ]
    answers = asyncio.run(post_each(server, bodies))
    assert sum(1 for a in answers if a["recorded"]) == rest
    with server.client() as client:
        assert client.get(f"{ENTITIES}/team").json()["budgets"][0]["usage"] == 400
