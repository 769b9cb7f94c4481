"""Budgets: per-entity caps on a metered feature (in units) or a currency (in credits), with
usage attributed along the entity path at the time of the write, enforced by checks, usage,
debits and reservations, and periods anchored at each budget's creation."""

from __future__ import annotations

import sqlite3
from calendar import monthrange
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.conftest import Api, define_catalog, new_customer

TREE = "/v1/customers/acme/entities"
POOL = "/v1/customers/acme/credits/ai-credits"
DAY = 86_400


def priced_catalog(api: Api) -> None:
    """define_catalog plus plan pro: ai-requests 1000 a month (hard), model-calls 400 a month
    (hard) at 2 ai-credits a call, and 500 ai-credits a month in a hard pool."""
    define_catalog(api)
    api.put("/v1/currencies/ai-credits", {"name": "Credits"}, 201)
    api.put("/v1/features/model-calls", {"name": "Model calls", "kind": "metered"}, 201)
    api.put(
        "/v1/plans/pro",
        {
            "product": "coder",
            "name": "Pro",
            "entitlements": {
                "sso": {},
                "seats": {"value": 10},
                "ai-requests": {"limit": 1000, "reset": "month"},
                "model-calls": {
                    "limit": 400,
                    "reset": "month",
                    "credit_cost": {"currency": "ai-credits", "per_unit": 2},
                },
            },
            "credits": {"ai-credits": {"amount": 500, "every": "month"}},
        },
        201,
    )


def grow_tree(api: Api) -> None:
    """eng > team-a > agent-7, and ops > team-b."""
    api.put(f"{TREE}/eng", {"kind": "department"}, 201)
    api.put(f"{TREE}/team-a", {"parent": "eng", "kind": "team"}, 201)
    api.put(f"{TREE}/agent-7", {"parent": "team-a", "kind": "agent"}, 201)
    api.put(f"{TREE}/ops", {"kind": "department"}, 201)
    api.put(f"{TREE}/team-b", {"parent": "ops", "kind": "team"}, 201)


@pytest.fixture
def acme(api: Api) -> Api:
    priced_catalog(api)
    new_customer(api, "acme", "pro")
    grow_tree(api)
    return api


def put_budget(
    api: Api, entity: str, target: str, limit: Any, expect: int = 201, **extra: Any
) -> Any:
    return api.put(f"{TREE}/{entity}/budgets/{target}", {"limit": limit, **extra}, expect)


def own_budget(api: Api, entity: str, target: str) -> dict[str, Any]:
    """The entity's budget on ``target`` as its GET lists it."""
    found = [b for b in api.get(f"{TREE}/{entity}")["budgets"] if b["target"] == target]
    assert len(found) == 1, found
    return found[0]


def standing(answer: dict[str, Any]) -> list[tuple[str, str, Any, Any]]:
    """(entity, target, usage, reserved) of each budget of a check or usage answer, in order."""
    return [(b["entity"], b["target"], b["usage"], b["reserved"]) for b in answer["budgets"]]


def reserve(api: Api, feature: str, amount: Any, key: str, **extra: Any) -> Any:
    body = {"customer": "acme", "feature": feature, "amount": amount, "idempotency_key": key}
    return api.post("/v1/reservations", {**body, **extra}, 200)


def debit(api: Api, amount: Any, key: str, **extra: Any) -> Any:
    return api.post(f"{POOL}/debits", {"amount": amount, "idempotency_key": key, **extra}, 200)


def ledger(api: Api) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = api.get(f"{POOL}/ledger?limit=1000")["data"]
    return entries


def usage_events(api: Api) -> list[tuple[str, str | None, int]]:
    with sqlite3.connect(api.database) as db:
        return db.execute(
            "SELECT feature, entity, amount FROM usage_events WHERE customer = 'acme' ORDER BY seq"
        ).fetchall()


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def text(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def next_month(moment: datetime) -> datetime:
    """The same instant a calendar month later, the day clamped to that month's length."""
    year, month = (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
    return moment.replace(year=year, month=month, day=min(moment.day, monthrange(year, month)[1]))


def whole_second(text_now: str) -> str:
    return text(instant(text_now).replace(microsecond=0))


# ---------------------------------------------------------------- defining budgets


def test_put_creates_a_budget_with_defaults_and_an_update_keeps_its_anchor(acme: Api) -> None:
    now = acme.now()
    created = put_budget(acme, "team-a", "ai-requests", 10)
    anchor = whole_second(now)
    assert created == {
        "entity": "team-a",
        "target": "ai-requests",
        "kind": "feature",
        "limit": 10,
        "usage": 0,
        "reserved": 0,
        "reset": "month",
        "enforcement": "hard",
        "usage_period_start": anchor,
        "usage_period_end": created["usage_period_end"],
        "created_at": anchor,
    }
    assert created["usage_period_end"] == text(next_month(instant(anchor)))
    acme.usage("acme", "ai-requests", 4, "u1", entity="agent-7")
    acme.advance(3600)
    updated = put_budget(
        acme, "team-a", "ai-requests", "12.5", 200, reset="day", enforcement="soft"
    )
    assert updated == {
        "entity": "team-a",
        "target": "ai-requests",
        "kind": "feature",
        "limit": 12.5,
        "usage": 4,
        "reserved": 0,
        "reset": "day",
        "enforcement": "soft",
        "usage_period_start": anchor,
        "usage_period_end": text(instant(anchor) + timedelta(days=1)),
        "created_at": anchor,
    }
    assert own_budget(acme, "team-a", "ai-requests") == updated
    # A currency budget counts credits.
    currency = put_budget(acme, "eng", "ai-credits", 300, reset="never")
    assert (currency["kind"], currency["limit"], currency["reset"]) == ("currency", 300, "never")
    assert currency["created_at"] == whole_second(acme.now())
    assert currency["usage_period_start"] == currency["created_at"]
    assert currency["usage_period_end"] is None


def test_delete_answers_the_budget_then_it_is_gone(acme: Api) -> None:
    put_budget(acme, "team-a", "ai-requests", 10)
    acme.usage("acme", "ai-requests", 3, "u1", entity="agent-7")
    deleted = acme.delete(f"{TREE}/team-a/budgets/ai-requests", 200)
    assert deleted["deleted"] is True
    assert (deleted["entity"], deleted["target"], deleted["kind"]) == (
        "team-a",
        "ai-requests",
        "feature",
    )
    assert (deleted["limit"], deleted["usage"], deleted["reserved"]) == (10, 3, 0)
    status, body = acme.status("DELETE", f"{TREE}/team-a/budgets/ai-requests")
    assert (status, body["error"]["code"]) == (404, "not_found")
    assert acme.get(f"{TREE}/team-a")["budgets"] == []
    assert acme.check("acme", "ai-requests", entity="agent-7")["budgets"] == []
    # No longer enforced, and a PUT creates it anew.
    assert acme.usage("acme", "ai-requests", 20, "u2", entity="agent-7", enforce=True)["recorded"]
    assert put_budget(acme, "team-a", "ai-requests", 10, 201)["usage"] == 23


def test_budget_errors(acme: Api) -> None:
    def status(method: str, path: str, body: Any = None) -> tuple[int, str]:
        code, answer = acme.status(method, path, body)
        return code, answer["error"]["code"]

    budget = f"{TREE}/team-a/budgets/ai-requests"
    assert status(
        "PUT", "/v1/customers/ghost/entities/team-a/budgets/ai-requests", {"limit": 1}
    ) == (
        404,
        "not_found",
    )
    assert status("PUT", f"{TREE}/ghost/budgets/ai-requests", {"limit": 1}) == (404, "not_found")
    assert status("DELETE", f"{TREE}/ghost/budgets/ai-requests") == (404, "not_found")
    assert status("DELETE", "/v1/customers/ghost/entities/team-a/budgets/ai-requests") == (
        404,
        "not_found",
    )
    assert status("PUT", f"{TREE}/team-a/budgets/nothing", {"limit": 1}) == (400, "invalid_request")
    assert status("PUT", f"{TREE}/team-a/budgets/sso", {"limit": 1}) == (400, "invalid_request")
    assert status("PUT", f"{TREE}/team-a/budgets/seats", {"limit": 1}) == (400, "invalid_request")
    assert status("PUT", budget, {"limit": -1}) == (400, "invalid_request")
    assert status("PUT", budget, {"limit": "-0.5"}) == (400, "invalid_request")
    assert status("PUT", budget, {"limit": None}) == (400, "invalid_request")
    assert status("PUT", budget, {}) == (400, "invalid_request")
    assert status("PUT", budget, {"limit": 1, "reset": "fortnight"}) == (400, "invalid_request")
    assert status("PUT", budget, {"limit": 1, "enforcement": "strict"}) == (400, "invalid_request")
    assert status("PUT", budget, {"limit": 1, "feature": "ai-requests"}) == (400, "invalid_request")
    assert acme.get(f"{TREE}/team-a")["budgets"] == []
    # Another customer's entity is not this customer's.
    new_customer(acme, "globex", "pro")
    acme.put("/v1/customers/globex/entities/theirs", {}, 201)
    assert status("PUT", f"{TREE}/theirs/budgets/ai-requests", {"limit": 1}) == (404, "not_found")
    # An archived customer takes no new budgets.
    put_budget(acme, "team-a", "ai-requests", 5)
    acme.delete("/v1/customers/acme", 200)
    assert status("PUT", budget, {"limit": 1}) == (409, "conflict")
    assert status("PUT", f"{TREE}/eng/budgets/ai-credits", {"limit": 1}) == (409, "conflict")
    assert own_budget(acme, "team-a", "ai-requests")["limit"] == 5


def test_deleting_an_entity_removes_its_budgets(acme: Api) -> None:
    put_budget(acme, "agent-7", "ai-requests", 5)
    put_budget(acme, "agent-7", "ai-credits", 50)
    put_budget(acme, "team-a", "ai-requests", 100)
    acme.usage("acme", "ai-requests", 2, "u1", entity="agent-7")
    removed = acme.delete(f"{TREE}/agent-7", 200)
    assert removed["deleted"] is True
    assert [(b["target"], b["usage"]) for b in removed["budgets"]] == [
        ("ai-requests", 2),
        ("ai-credits", 0),
    ]
    assert acme.status("DELETE", f"{TREE}/agent-7/budgets/ai-requests")[0] == 404
    # A new entity of the same id starts without budgets; the parent keeps its own.
    acme.put(f"{TREE}/agent-7", {"parent": "team-a"}, 201)
    assert acme.get(f"{TREE}/agent-7")["budgets"] == []
    check = acme.check("acme", "ai-requests", entity="agent-7", requested=50)
    assert (check["has_access"], standing(check)) == (True, [("team-a", "ai-requests", 2, 0)])


# ---------------------------------------------------------------- attribution


def test_entity_get_lists_its_own_budgets_with_its_subtrees_usage(acme: Api) -> None:
    put_budget(acme, "eng", "ai-requests", 100)
    put_budget(acme, "eng", "ai-credits", 1000, reset="day", enforcement="soft")
    put_budget(acme, "team-a", "ai-requests", 50)
    put_budget(acme, "team-b", "ai-requests", 50)
    acme.usage("acme", "ai-requests", 5, "u1", entity="agent-7")
    acme.usage("acme", "ai-requests", 7, "u2", entity="team-a")
    acme.usage("acme", "ai-requests", 11, "u3", entity="eng")
    acme.usage("acme", "ai-requests", 13, "u4", entity="team-b")
    acme.usage("acme", "ai-requests", 17, "u5")  # no entity: the customer's only
    acme.usage("acme", "model-calls", 3, "u6", entity="agent-7")  # 6 credits
    eng = acme.get(f"{TREE}/eng")
    assert [
        (b["target"], b["kind"], b["limit"], b["usage"], b["reset"]) for b in eng["budgets"]
    ] == [
        ("ai-requests", "feature", 100, 23, "month"),
        ("ai-credits", "currency", 1000, 6, "day"),
    ]
    assert [(b["target"], b["usage"]) for b in acme.get(f"{TREE}/team-a")["budgets"]] == [
        ("ai-requests", 12)
    ]
    assert [(b["target"], b["usage"]) for b in acme.get(f"{TREE}/team-b")["budgets"]] == [
        ("ai-requests", 13)
    ]
    assert acme.get(f"{TREE}/agent-7")["budgets"] == []
    assert acme.get(f"{TREE}/ops")["budgets"] == []
    assert acme.check("acme", "ai-requests")["current_usage"] == 53


def test_usage_before_a_budget_existed_is_outside_its_first_period(acme: Api) -> None:
    acme.usage("acme", "ai-requests", 9, "u1", entity="agent-7")
    acme.advance(10)
    assert put_budget(acme, "team-a", "ai-requests", 10)["usage"] == 0
    check = acme.check("acme", "ai-requests", entity="agent-7", requested=10)
    assert (check["has_access"], check["current_usage"], standing(check)) == (
        True,
        9,
        [("team-a", "ai-requests", 0, 0)],
    )


@pytest.mark.sqlite_file
def test_past_usage_stays_with_the_path_it_was_recorded_under(acme: Api) -> None:
    for entity in ("agent-7", "team-a", "team-b", "eng", "ops"):
        put_budget(acme, entity, "ai-requests", 100)
        put_budget(acme, entity, "ai-credits", 1000)
    acme.usage("acme", "ai-requests", 3, "u1", entity="agent-7")
    debit(acme, 20, "d1", entity="agent-7")
    before = acme.check("acme", "ai-requests", entity="agent-7")
    assert standing(before) == [
        ("agent-7", "ai-requests", 3, 0),
        ("team-a", "ai-requests", 3, 0),
        ("eng", "ai-requests", 3, 0),
    ]
    # agent-7 moves to team-b (under ops): later usage counts there, past usage stays.
    acme.put(f"{TREE}/agent-7", {"parent": "team-b"}, 200)
    acme.usage("acme", "ai-requests", 4, "u2", entity="agent-7")
    debit(acme, 30, "d2", entity="agent-7")
    after = acme.check("acme", "ai-requests", entity="agent-7")
    assert standing(after) == [
        ("agent-7", "ai-requests", 7, 0),
        ("team-b", "ai-requests", 4, 0),
        ("ops", "ai-requests", 4, 0),
    ]
    priced = acme.check("acme", "model-calls", entity="agent-7")
    assert standing(priced) == [
        ("agent-7", "ai-credits", 50, 0),
        ("team-b", "ai-credits", 30, 0),
        ("ops", "ai-credits", 30, 0),
    ]
    expected = {
        "agent-7": (7, 50),
        "team-a": (3, 20),
        "eng": (3, 20),
        "team-b": (4, 30),
        "ops": (4, 30),
    }
    for entity, (units, credits) in expected.items():
        assert own_budget(acme, entity, "ai-requests")["usage"] == units, entity
        assert own_budget(acme, entity, "ai-credits")["usage"] == credits, entity
    # Moving a whole subtree: team-a (no longer holding agent-7) goes under ops; what it spent
    # under eng stays eng's.
    acme.put(f"{TREE}/team-a", {"parent": "ops"}, 200)
    acme.usage("acme", "ai-requests", 5, "u3", entity="team-a")
    assert own_budget(acme, "eng", "ai-requests")["usage"] == 3
    assert own_budget(acme, "ops", "ai-requests")["usage"] == 9
    assert own_budget(acme, "team-a", "ai-requests")["usage"] == 8
    assert acme.check("acme", "ai-requests")["current_usage"] == 12
    assert usage_events(acme) == [
        ("ai-requests", "agent-7", 3_000_000),
        ("ai-requests", "agent-7", 4_000_000),
        ("ai-requests", "team-a", 5_000_000),
    ]


# ---------------------------------------------------------------- checks


def test_check_lists_every_budget_on_the_path_nearest_first(acme: Api) -> None:
    put_budget(acme, "eng", "ai-credits", 400, reset="week", enforcement="soft")
    put_budget(acme, "eng", "model-calls", 300)
    put_budget(acme, "team-a", "model-calls", 200, reset="day")
    put_budget(acme, "team-a", "ai-requests", 5)  # another feature: not listed
    put_budget(acme, "agent-7", "ai-credits", 100)
    put_budget(acme, "team-b", "model-calls", 1)  # not on the path
    acme.usage("acme", "model-calls", 10, "u1", entity="agent-7")  # 20 credits
    anchor = instant(whole_second(acme.now()))
    check = acme.check("acme", "model-calls", entity="agent-7", requested=1)
    assert check["has_access"] is True
    assert check["budgets"] == [
        {
            "entity": "agent-7",
            "target": "ai-credits",
            "limit": 100,
            "usage": 20,
            "reserved": 0,
            "reset": "month",
            "enforcement": "hard",
            "usage_period_end": text(next_month(anchor)),
        },
        {
            "entity": "team-a",
            "target": "model-calls",
            "limit": 200,
            "usage": 10,
            "reserved": 0,
            "reset": "day",
            "enforcement": "hard",
            "usage_period_end": text(anchor + timedelta(days=1)),
        },
        {
            "entity": "eng",
            "target": "model-calls",
            "limit": 300,
            "usage": 10,
            "reserved": 0,
            "reset": "month",
            "enforcement": "hard",
            "usage_period_end": text(next_month(anchor)),
        },
        {
            "entity": "eng",
            "target": "ai-credits",
            "limit": 400,
            "usage": 20,
            "reserved": 0,
            "reset": "week",
            "enforcement": "soft",
            "usage_period_end": text(anchor + timedelta(days=7)),
        },
    ]
    # The customer's figures stay the customer's.
    assert (check["current_usage"], check["remaining"], check["usage_limit"]) == (10, 390, 400)
    assert check["credits"] == {"currency": "ai-credits", "cost": 2, "available": 480}
    # An ancestor's check lists only the budgets from there up.
    assert standing(acme.check("acme", "model-calls", entity="eng")) == [
        ("eng", "model-calls", 10, 0),
        ("eng", "ai-credits", 20, 0),
    ]
    # A feature that is not credit-priced lists no currency budgets.
    assert standing(acme.check("acme", "ai-requests", entity="agent-7")) == [
        ("team-a", "ai-requests", 0, 0)
    ]
    # Without an entity, no budgets at all, and no budget denies.
    plain = acme.check("acme", "ai-requests", requested=6)
    assert (plain["entity"], plain["budgets"], plain["has_access"]) == (None, [], True)
    assert acme.check("acme", "model-calls")["budgets"] == []
    # Neither for a boolean or numeric feature.
    assert acme.check("acme", "sso", entity="agent-7")["budgets"] == []
    assert acme.check("acme", "seats", entity="agent-7")["budgets"] == []


def test_check_denies_on_a_hard_budget_with_and_without_a_request(acme: Api) -> None:
    put_budget(acme, "team-a", "ai-requests", 10)
    assert acme.usage("acme", "ai-requests", 7, "u1", entity="agent-7", enforce=True)["recorded"]

    def decision(entity: str | None, requested: int | None = None) -> tuple[bool, str | None]:
        extra: dict[str, Any] = {} if entity is None else {"entity": entity}
        if requested is not None:
            extra["requested"] = requested
        answer = acme.check("acme", "ai-requests", **extra)
        return answer["has_access"], answer["access_denied_reason"]

    assert decision("agent-7", 3) == (True, None)
    assert decision("agent-7", 4) == (False, "budget_exceeded")
    assert decision("team-a", 4) == (False, "budget_exceeded")
    assert decision("agent-7") == (True, None)
    assert decision("eng", 4) == (True, None)  # the budget is below eng
    assert decision("team-b", 4) == (True, None)
    assert decision(None, 4) == (True, None)
    assert acme.usage("acme", "ai-requests", 3, "u2", entity="agent-7", enforce=True)["recorded"]
    assert decision("agent-7") == (False, "budget_exceeded")
    assert decision("team-a") == (False, "budget_exceeded")
    assert decision("agent-7", 1) == (False, "budget_exceeded")
    assert decision("eng", 1) == (True, None)
    assert decision(None) == (True, None)
    denied = acme.check("acme", "ai-requests", entity="agent-7")
    assert (denied["current_usage"], denied["remaining"]) == (10, 990)
    assert standing(denied) == [("team-a", "ai-requests", 10, 0)]
    # Raising the limit, softening it and deleting it change the decision at once.
    put_budget(acme, "team-a", "ai-requests", 11, 200)
    assert decision("agent-7", 1) == (True, None)
    assert decision("agent-7", 2) == (False, "budget_exceeded")
    put_budget(acme, "team-a", "ai-requests", 11, 200, enforcement="soft")
    assert decision("agent-7", 500) == (True, None)
    put_budget(acme, "team-a", "ai-requests", 10, 200)
    assert decision("agent-7") == (False, "budget_exceeded")
    acme.delete(f"{TREE}/team-a/budgets/ai-requests", 200)
    assert decision("agent-7", 500) == (True, None)


def test_a_zero_budget_denies_everything_hard(acme: Api) -> None:
    put_budget(acme, "agent-7", "ai-requests", 0)
    assert acme.check("acme", "ai-requests", entity="agent-7")["access_denied_reason"] == (
        "budget_exceeded"
    )
    refused = acme.usage("acme", "ai-requests", "0.000001", "u1", entity="agent-7", enforce=True)
    assert (refused["recorded"], refused["access_denied_reason"]) == (False, "budget_exceeded")


def test_an_ancestors_budget_caps_the_whole_subtree(acme: Api) -> None:
    put_budget(acme, "eng", "ai-requests", 10)
    put_budget(acme, "agent-7", "ai-requests", 100)
    acme.usage("acme", "ai-requests", 6, "u1", entity="agent-7", enforce=True)
    acme.usage("acme", "ai-requests", 3, "u2", entity="team-a", enforce=True)
    refused = acme.usage("acme", "ai-requests", 2, "u3", entity="agent-7", enforce=True)
    assert (refused["recorded"], refused["access_denied_reason"]) == (False, "budget_exceeded")
    assert standing(refused) == [
        ("agent-7", "ai-requests", 6, 0),
        ("eng", "ai-requests", 9, 0),
    ]
    assert acme.usage("acme", "ai-requests", 1, "u4", entity="eng", enforce=True)["recorded"]
    assert acme.check("acme", "ai-requests", entity="agent-7")["access_denied_reason"] == (
        "budget_exceeded"
    )
    assert acme.check("acme", "ai-requests", entity="team-b", requested=100)["has_access"] is True


def test_soft_budgets_never_deny(acme: Api) -> None:
    put_budget(acme, "team-a", "ai-requests", 5, enforcement="soft")
    put_budget(acme, "team-a", "ai-credits", 4, enforcement="soft")
    used = acme.usage("acme", "ai-requests", 8, "u1", entity="agent-7", enforce=True)
    assert (used["recorded"], used["has_access"], used["access_denied_reason"]) == (
        True,
        True,
        None,
    )
    assert standing(used) == [("team-a", "ai-requests", 8, 0)]
    calls = acme.usage("acme", "model-calls", 5, "u2", entity="agent-7", enforce=True)
    assert (calls["recorded"], calls["has_access"], standing(calls)) == (
        True,
        True,
        [("team-a", "ai-credits", 10, 0)],
    )
    assert acme.check("acme", "ai-requests", entity="agent-7", requested=100)["has_access"] is True
    assert acme.check("acme", "ai-requests", entity="agent-7")["has_access"] is True
    assert acme.check("acme", "model-calls", entity="agent-7", requested=10)["has_access"] is True
    assert debit(acme, 10, "d1", entity="agent-7")["applied"] is True
    assert reserve(acme, "ai-requests", 50, "r1", entity="agent-7")["granted"] is True
    assert own_budget(acme, "team-a", "ai-credits")["usage"] == 20
    assert own_budget(acme, "team-a", "ai-requests")["reserved"] == 50


@pytest.mark.sqlite_file
def test_denial_reasons_come_in_the_contracts_order(acme: Api) -> None:
    """usage_limit_exceeded, then budget_exceeded, then insufficient_credits."""
    put_budget(acme, "team-a", "ai-credits", 100)  # 50 model calls
    put_budget(acme, "team-a", "ai-requests", 10)

    def reason(feature: str, entity: str, requested: int) -> str | None:
        found: str | None = acme.check("acme", feature, entity=entity, requested=requested)[
            "access_denied_reason"
        ]
        return found

    # model-calls: 400 a month for the customer, 2 credits each from a pool of 500.
    assert reason("model-calls", "agent-7", 401) == "usage_limit_exceeded"
    assert reason("model-calls", "agent-7", 260) == "budget_exceeded"  # past the pool too
    assert reason("model-calls", "agent-7", 51) == "budget_exceeded"
    assert reason("model-calls", "agent-7", 50) is None
    assert reason("model-calls", "team-b", 251) == "insufficient_credits"
    assert reason("model-calls", "team-b", 250) is None
    assert reason("model-calls", "eng", 51) is None  # team-a's budget does not bind eng
    assert reason("ai-requests", "agent-7", 1001) == "usage_limit_exceeded"
    assert reason("ai-requests", "agent-7", 11) == "budget_exceeded"
    # The same order when usage is enforced; nothing is written.
    for n, (entity, amount, expected) in enumerate(
        [
            ("agent-7", 401, "usage_limit_exceeded"),
            ("agent-7", 260, "budget_exceeded"),
            ("agent-7", 51, "budget_exceeded"),
            ("team-b", 251, "insufficient_credits"),
        ]
    ):
        refused = acme.usage("acme", "model-calls", amount, f"u{n}", entity=entity, enforce=True)
        assert (refused["recorded"], refused["access_denied_reason"]) == (False, expected)
    # ... and when reserving.
    for n, (entity, amount, expected) in enumerate(
        [
            ("agent-7", 401, "usage_limit_exceeded"),
            ("agent-7", 260, "budget_exceeded"),
            ("team-b", 251, "insufficient_credits"),
        ]
    ):
        refused = reserve(acme, "model-calls", amount, f"r{n}", entity=entity)
        assert (refused["id"], refused["granted"], refused["access_denied_reason"]) == (
            None,
            False,
            expected,
        )
    # ... and for debits: the budget before the pool.
    assert debit(acme, 600, "d1", entity="agent-7")["access_denied_reason"] == "budget_exceeded"
    assert debit(acme, 501, "d2", entity="team-b")["access_denied_reason"] == (
        "insufficient_credits"
    )
    assert acme.check("acme", "model-calls")["current_usage"] == 0
    assert acme.get(POOL)["balance"] == 500
    assert [entry["type"] for entry in ledger(acme)] == ["grant"]
    assert usage_events(acme) == []

    # Without a request: something must be left of each, in the same order.
    acme.usage("acme", "ai-requests", 1000, "all", entity="agent-7")  # the truth, past both
    assert acme.check("acme", "ai-requests", entity="agent-7")["access_denied_reason"] == (
        "usage_limit_exceeded"
    )
    acme.usage("acme", "model-calls", 250, "spent", entity="agent-7")  # 500 credits
    assert acme.check("acme", "model-calls", entity="agent-7")["access_denied_reason"] == (
        "budget_exceeded"
    )
    assert acme.check("acme", "model-calls", entity="team-b")["access_denied_reason"] == (
        "insufficient_credits"
    )


# ---------------------------------------------------------------- usage


@pytest.mark.sqlite_file
def test_enforced_usage_past_a_hard_budget_writes_nothing(acme: Api) -> None:
    put_budget(acme, "team-a", "ai-requests", 10)
    put_budget(acme, "eng", "ai-requests", 100)
    ok = acme.usage("acme", "ai-requests", 8, "u1", entity="agent-7", enforce=True)
    assert (ok["recorded"], ok["current_usage"], standing(ok)) == (
        True,
        8,
        [("team-a", "ai-requests", 8, 0), ("eng", "ai-requests", 8, 0)],
    )
    refused = acme.usage("acme", "ai-requests", 3, "u2", entity="agent-7", enforce=True)
    assert (
        refused["recorded"],
        refused["has_access"],
        refused["access_denied_reason"],
        refused["requested"],
        refused["current_usage"],
    ) == (False, False, "budget_exceeded", 3, 8)
    assert standing(refused) == [("team-a", "ai-requests", 8, 0), ("eng", "ai-requests", 8, 0)]
    assert acme.check("acme", "ai-requests")["current_usage"] == 8
    assert own_budget(acme, "team-a", "ai-requests")["usage"] == 8
    assert own_budget(acme, "eng", "ai-requests")["usage"] == 8
    assert usage_events(acme) == [("ai-requests", "agent-7", 8_000_000)]
    # The refusal is replayed as it was.
    assert acme.usage("acme", "ai-requests", 3, "u2", entity="agent-7", enforce=True) == {
        **refused,
        "replayed": True,
    }
    # Exactly up to the limit fits.
    assert acme.usage("acme", "ai-requests", 2, "u3", entity="agent-7", enforce=True)["recorded"]
    # enforce: false records what happened, past the budget, and says it was over.
    truth = acme.usage("acme", "ai-requests", 3, "u4", entity="agent-7")
    assert (
        truth["recorded"],
        truth["has_access"],
        truth["access_denied_reason"],
        truth["current_usage"],
    ) == (True, False, "budget_exceeded", 13)
    assert standing(truth) == [("team-a", "ai-requests", 13, 0), ("eng", "ai-requests", 13, 0)]
    assert own_budget(acme, "team-a", "ai-requests")["usage"] == 13
    refused = acme.usage("acme", "ai-requests", 1, "u5", entity="agent-7", enforce=True)
    assert (refused["recorded"], refused["access_denied_reason"]) == (False, "budget_exceeded")
    # Usage without an entity is not held to any budget.
    free = acme.usage("acme", "ai-requests", 50, "u6", enforce=True)
    assert (free["recorded"], free["budgets"], free["current_usage"]) == (True, [], 63)
    assert own_budget(acme, "eng", "ai-requests")["usage"] == 13


def test_credit_priced_usage_counts_units_and_credits(acme: Api) -> None:
    put_budget(acme, "team-a", "ai-credits", 30)  # credits
    put_budget(acme, "eng", "model-calls", 12)  # calls
    first = acme.usage("acme", "model-calls", 10, "u1", entity="agent-7", enforce=True)
    assert (first["recorded"], first["credits"]["cost"], first["credits"]["available"]) == (
        True,
        20,
        480,
    )
    assert standing(first) == [("team-a", "ai-credits", 20, 0), ("eng", "model-calls", 10, 0)]
    entries = ledger(acme)
    # 6 calls cost 12 credits: past team-a's 30; nothing is written.
    refused = acme.usage("acme", "model-calls", 6, "u2", entity="agent-7", enforce=True)
    assert (refused["recorded"], refused["access_denied_reason"]) == (False, "budget_exceeded")
    assert (refused["credits"]["cost"], refused["credits"]["available"]) == (12, 480)
    assert standing(refused) == [("team-a", "ai-credits", 20, 0), ("eng", "model-calls", 10, 0)]
    # 3 calls (6 credits) fit team-a's credits but not eng's 12 calls.
    refused = acme.usage("acme", "model-calls", 3, "u3", entity="agent-7", enforce=True)
    assert (refused["recorded"], refused["access_denied_reason"]) == (False, "budget_exceeded")
    assert ledger(acme) == entries
    assert acme.get(POOL)["balance"] == 480
    assert acme.check("acme", "model-calls")["current_usage"] == 10
    fits = acme.usage("acme", "model-calls", 2, "u4", entity="agent-7", enforce=True)
    assert (fits["recorded"], standing(fits)) == (
        True,
        [("team-a", "ai-credits", 24, 0), ("eng", "model-calls", 12, 0)],
    )
    check = acme.check("acme", "model-calls", entity="agent-7")
    assert (check["has_access"], check["access_denied_reason"]) == (False, "budget_exceeded")
    # The truth goes past both, and the pool pays for it.
    truth = acme.usage("acme", "model-calls", 5, "u5", entity="agent-7")
    assert (truth["recorded"], truth["access_denied_reason"], truth["credits"]["available"]) == (
        True,
        "budget_exceeded",
        466,
    )
    assert standing(truth) == [("team-a", "ai-credits", 34, 0), ("eng", "model-calls", 17, 0)]
    assert own_budget(acme, "team-a", "ai-credits")["usage"] == 34
    assert own_budget(acme, "eng", "model-calls")["usage"] == 17
    debits = [
        (e["amount"], e["entity"], e["feature"]) for e in ledger(acme) if e["type"] == "debit"
    ]
    assert debits == [
        (-20, "agent-7", "model-calls"),
        (-4, "agent-7", "model-calls"),
        (-10, "agent-7", "model-calls"),
    ]


# ---------------------------------------------------------------- debits


def test_debits_with_an_entity_are_held_to_currency_budgets(acme: Api) -> None:
    put_budget(acme, "team-a", "ai-credits", 50)
    put_budget(acme, "eng", "ai-credits", 1000, enforcement="soft")
    put_budget(acme, "team-a", "model-calls", 1)  # units: debits do not count here
    first = debit(acme, 30, "d1", entity="agent-7")
    assert (first["applied"], first["balance"]) == (True, 470)
    entries = ledger(acme)
    refused = debit(acme, 21, "d2", entity="agent-7")
    assert refused == {
        "applied": False,
        "replayed": False,
        "access_denied_reason": "budget_exceeded",
        "balance": 470,
        "entries": [],
    }
    assert ledger(acme) == entries
    assert debit(acme, 21, "d2", entity="agent-7") == {**refused, "replayed": True}
    assert debit(acme, 20, "d3", entity="team-a")["applied"] is True  # exactly 50
    assert debit(acme, 1, "d4", entity="agent-7")["access_denied_reason"] == "budget_exceeded"
    assert debit(acme, 100, "d5")["applied"] is True  # no entity: no budget
    assert debit(acme, 100, "d6", entity="team-b")["applied"] is True
    assert debit(acme, 10, "d7", entity="eng")["applied"] is True  # eng's budget is soft
    # enforce: false debits past the budget.
    past = debit(acme, 10, "d8", entity="agent-7", enforce=False)
    assert (past["applied"], past["access_denied_reason"], past["balance"]) == (True, None, 230)
    assert own_budget(acme, "team-a", "ai-credits")["usage"] == 60
    assert own_budget(acme, "eng", "ai-credits")["usage"] == 70
    assert own_budget(acme, "team-a", "model-calls")["usage"] == 0
    written = [(e["amount"], e["entity"], e["idempotency_key"]) for e in ledger(acme)[1:]]
    assert written == [
        (-30, "agent-7", "d1"),
        (-20, "team-a", "d3"),
        (-100, None, "d5"),
        (-100, "team-b", "d6"),
        (-10, "eng", "d7"),
        (-10, "agent-7", "d8"),
    ]
    check = acme.check("acme", "model-calls", entity="agent-7")
    assert standing(check) == [
        ("team-a", "model-calls", 0, 0),
        ("team-a", "ai-credits", 60, 0),
        ("eng", "ai-credits", 70, 0),
    ]
    assert check["access_denied_reason"] == "budget_exceeded"


# ---------------------------------------------------------------- reservations


@pytest.mark.sqlite_file
def test_reservations_hold_against_budgets_until_they_end(acme: Api) -> None:
    put_budget(acme, "team-a", "ai-requests", 10)
    put_budget(acme, "eng", "ai-requests", 100, enforcement="soft")
    first = reserve(acme, "ai-requests", 6, "r1", entity="agent-7", ttl_seconds=600)
    assert first["granted"] is True
    check = acme.check("acme", "ai-requests", entity="agent-7")
    assert (check["reserved"], standing(check)) == (
        6,
        [("team-a", "ai-requests", 0, 6), ("eng", "ai-requests", 0, 6)],
    )
    assert own_budget(acme, "team-a", "ai-requests")["reserved"] == 6
    assert acme.check("acme", "ai-requests", entity="agent-7", requested=5)[
        "access_denied_reason"
    ] == ("budget_exceeded")
    refused = reserve(acme, "ai-requests", 5, "r2", entity="agent-7")
    assert (refused["id"], refused["granted"], refused["access_denied_reason"]) == (
        None,
        False,
        "budget_exceeded",
    )
    over = acme.usage("acme", "ai-requests", 5, "u1", entity="team-a", enforce=True)
    assert (over["recorded"], over["access_denied_reason"]) == (False, "budget_exceeded")
    second = reserve(acme, "ai-requests", 4, "r3", entity="agent-7", ttl_seconds=600)
    assert second["granted"] is True
    assert acme.check("acme", "ai-requests", entity="agent-7")["access_denied_reason"] == (
        "budget_exceeded"
    )
    # Another branch, and requests without an entity, are not held to team-a's budget.
    assert reserve(acme, "ai-requests", 50, "r4", entity="team-b")["granted"] is True
    assert own_budget(acme, "team-a", "ai-requests")["reserved"] == 10
    assert own_budget(acme, "eng", "ai-requests")["reserved"] == 10
    acme.post(f"/v1/reservations/{first['id']}/release", {}, 200)
    assert standing(acme.check("acme", "ai-requests", entity="agent-7")) == [
        ("team-a", "ai-requests", 0, 4),
        ("eng", "ai-requests", 0, 4),
    ]
    acme.post(f"/v1/reservations/{second['id']}/commit", {"amount": 3}, 200)
    check = acme.check("acme", "ai-requests", entity="agent-7", requested=7)
    assert (check["has_access"], check["current_usage"], standing(check)) == (
        True,
        3,
        [("team-a", "ai-requests", 3, 0), ("eng", "ai-requests", 3, 0)],
    )
    assert own_budget(acme, "team-a", "ai-requests")["usage"] == 3
    assert usage_events(acme) == [("ai-requests", "agent-7", 3_000_000)]
    # A hold ends by itself at expiry.
    third = reserve(acme, "ai-requests", 7, "r5", entity="agent-7", ttl_seconds=60)
    assert third["granted"] is True
    assert own_budget(acme, "team-a", "ai-requests")["reserved"] == 7
    acme.advance(61)
    assert own_budget(acme, "team-a", "ai-requests")["reserved"] == 0
    assert standing(acme.check("acme", "ai-requests", entity="agent-7", requested=7)) == [
        ("team-a", "ai-requests", 3, 0),
        ("eng", "ai-requests", 3, 0),
    ]


def test_reservations_hold_credits_against_currency_budgets(acme: Api) -> None:
    put_budget(acme, "team-a", "ai-credits", 20)
    held = reserve(acme, "model-calls", 8, "r1", entity="agent-7")  # 16 credits
    assert held["granted"] is True
    assert acme.get(POOL)["reserved"] == 16
    budget = own_budget(acme, "team-a", "ai-credits")
    assert (budget["usage"], budget["reserved"]) == (0, 16)
    check = acme.check("acme", "model-calls", entity="agent-7", requested=2)
    assert (check["has_access"], standing(check)) == (True, [("team-a", "ai-credits", 0, 16)])
    assert acme.check("acme", "model-calls", entity="agent-7", requested=3)[
        "access_denied_reason"
    ] == ("budget_exceeded")
    refused = reserve(acme, "model-calls", 3, "r2", entity="agent-7")  # 6 more: 22 > 20
    assert (refused["granted"], refused["access_denied_reason"]) == (False, "budget_exceeded")
    assert debit(acme, 5, "d1", entity="agent-7")["access_denied_reason"] == "budget_exceeded"
    assert debit(acme, 4, "d2", entity="agent-7")["applied"] is True
    committed = acme.post(f"/v1/reservations/{held['id']}/commit", {"amount": 5}, 200)
    assert committed["credits"] == {"currency": "ai-credits", "held": 16}
    budget = own_budget(acme, "team-a", "ai-credits")
    assert (budget["usage"], budget["reserved"]) == (14, 0)
    pool = acme.get(POOL)
    assert (pool["balance"], pool["reserved"]) == (486, 0)
    check = acme.check("acme", "model-calls", entity="agent-7", requested=3)
    assert (check["has_access"], check["current_usage"], standing(check)) == (
        True,
        5,
        [("team-a", "ai-credits", 14, 0)],
    )
    entry = ledger(acme)[-1]
    assert (entry["amount"], entry["entity"], entry["feature"]) == (-10, "agent-7", "model-calls")


# ---------------------------------------------------------------- periods


def test_budget_periods_are_anchored_at_the_budgets_creation(api: Api) -> None:
    define_catalog(api)
    new_customer(api, "acme", "starter")  # ai-requests: 100 a day from the subscription
    grow_tree(api)
    api.advance(12 * 3600)
    created = put_budget(api, "team-a", "ai-requests", 10, reset="day")
    anchor = instant(created["created_at"])
    assert created["created_at"] == whole_second(api.now())
    assert created["usage_period_end"] == text(anchor + timedelta(days=1))
    api.usage("acme", "ai-requests", 6, "u1", entity="agent-7", enforce=True)
    # Twelve hours on, the customer's day has rolled but the budget's has not.
    api.advance(12 * 3600)
    check = api.check("acme", "ai-requests", entity="agent-7", requested=5)
    assert (check["current_usage"], check["has_access"], check["access_denied_reason"]) == (
        0,
        False,
        "budget_exceeded",
    )
    assert check["budgets"][0]["usage"] == 6
    assert check["budgets"][0]["usage_period_end"] == text(anchor + timedelta(days=1))
    api.advance(12 * 3600 - 1)
    budget = own_budget(api, "team-a", "ai-requests")
    assert (budget["usage"], budget["usage_period_start"]) == (6, text(anchor))
    refused = api.usage("acme", "ai-requests", 5, "u2", entity="agent-7", enforce=True)
    assert (refused["recorded"], refused["access_denied_reason"]) == (False, "budget_exceeded")
    # A day after the budget's creation it starts afresh.
    api.advance(1)
    check = api.check("acme", "ai-requests", entity="agent-7", requested=10)
    assert (check["has_access"], check["current_usage"]) == (True, 0)
    assert check["budgets"] == [
        {
            "entity": "team-a",
            "target": "ai-requests",
            "limit": 10,
            "usage": 0,
            "reserved": 0,
            "reset": "day",
            "enforcement": "hard",
            "usage_period_end": text(anchor + timedelta(days=2)),
        }
    ]
    budget = own_budget(api, "team-a", "ai-requests")
    assert (budget["usage_period_start"], budget["created_at"]) == (
        text(anchor + timedelta(days=1)),
        text(anchor),
    )
    assert api.usage("acme", "ai-requests", 10, "u3", entity="agent-7", enforce=True)["recorded"]
    assert own_budget(api, "team-a", "ai-requests")["usage"] == 10


def test_an_hourly_currency_budget_resets_on_its_own_clock(acme: Api) -> None:
    acme.advance(1800)
    put_budget(acme, "team-a", "ai-credits", 10, reset="hour")
    assert debit(acme, 10, "d1", entity="agent-7")["applied"] is True
    assert debit(acme, 1, "d2", entity="agent-7")["access_denied_reason"] == "budget_exceeded"
    acme.advance(3599)
    assert debit(acme, 1, "d3", entity="agent-7")["access_denied_reason"] == "budget_exceeded"
    acme.advance(1)
    assert debit(acme, 10, "d4", entity="agent-7")["applied"] is True
    assert own_budget(acme, "team-a", "ai-credits")["usage"] == 10
    assert acme.get(POOL)["balance"] == 480


def test_entitlements_of_an_entity_list_its_budgets(acme: Api) -> None:
    put_budget(acme, "team-a", "ai-requests", 10)
    put_budget(acme, "eng", "ai-credits", 100)
    acme.usage("acme", "ai-requests", 10, "u1", entity="agent-7")
    listed = acme.get("/v1/customers/acme/entitlements?entity=agent-7")["entitlements"]
    by_feature = {answer["feature"]: answer for answer in listed}
    assert standing(by_feature["ai-requests"]) == [("team-a", "ai-requests", 10, 0)]
    assert by_feature["ai-requests"]["access_denied_reason"] == "budget_exceeded"
    assert standing(by_feature["model-calls"]) == [("eng", "ai-credits", 0, 0)]
    assert by_feature["model-calls"]["has_access"] is True
    assert by_feature["sso"]["budgets"] == []
    plain = acme.get("/v1/customers/acme/entitlements")["entitlements"]
    assert all(answer["budgets"] == [] for answer in plain)


def test_checks_answered_from_memory_follow_every_write(acme: Api) -> None:
    """Budget figures in checks come from the snapshot once loaded; after every kind of write
    they agree with the entity's GET, which reads the store."""
    for entity in ("agent-7", "team-a", "eng"):
        put_budget(acme, entity, "ai-requests", 1000, reset="week")
        put_budget(acme, entity, "model-calls", 1000, reset="week")
        put_budget(acme, entity, "ai-credits", 1000, reset="week")

    def agree(expected: dict[str, tuple[int, int, int, int]]) -> None:
        """entity -> (feature usage, feature reserved, credit usage, credit reserved) of
        model-calls, for the check on agent-7 (from memory) and each GET (from the store)."""
        for _ in range(2):  # the first check may load, the second answers from memory
            check = acme.check("acme", "model-calls", entity="agent-7", requested=1)
            rows = standing(check)
        seen = {}
        for entity, target, usage, reserved in rows:
            current = seen.setdefault(entity, [0, 0, 0, 0])
            offset = 0 if target == "model-calls" else 2
            current[offset : offset + 2] = [usage, reserved]
            stored = own_budget(acme, entity, target)
            assert (stored["usage"], stored["reserved"]) == (usage, reserved), (entity, target)
        assert {e: tuple(v) for e, v in seen.items()} == expected

    agree(dict.fromkeys(("agent-7", "team-a", "eng"), (0, 0, 0, 0)))
    acme.usage("acme", "model-calls", 3, "u1", entity="agent-7", enforce=True)  # 6 credits
    agree({"agent-7": (3, 0, 6, 0), "team-a": (3, 0, 6, 0), "eng": (3, 0, 6, 0)})
    acme.usage("acme", "model-calls", 2, "u2", entity="team-a")  # 4 credits
    agree({"agent-7": (3, 0, 6, 0), "team-a": (5, 0, 10, 0), "eng": (5, 0, 10, 0)})
    debit(acme, 7, "d1", entity="agent-7")
    agree({"agent-7": (3, 0, 13, 0), "team-a": (5, 0, 17, 0), "eng": (5, 0, 17, 0)})
    held = reserve(acme, "model-calls", 4, "r1", entity="agent-7")  # 8 credits
    agree({"agent-7": (3, 4, 13, 8), "team-a": (5, 4, 17, 8), "eng": (5, 4, 17, 8)})
    acme.post(f"/v1/reservations/{held['id']}/commit", {"amount": 1}, 200)
    agree({"agent-7": (4, 0, 15, 0), "team-a": (6, 0, 19, 0), "eng": (6, 0, 19, 0)})
    other = reserve(acme, "model-calls", 2, "r2", entity="team-a")
    agree({"agent-7": (4, 0, 15, 0), "team-a": (6, 2, 19, 4), "eng": (6, 2, 19, 4)})
    acme.post(f"/v1/reservations/{other['id']}/release", {}, 200)
    agree({"agent-7": (4, 0, 15, 0), "team-a": (6, 0, 19, 0), "eng": (6, 0, 19, 0)})
    # Usage with a past timestamp counts in the window that holds it.
    acme.advance(60)
    earlier = text(instant(acme.now()) - timedelta(seconds=30))
    acme.usage("acme", "model-calls", 1, "u3", entity="agent-7", timestamp=earlier)
    agree({"agent-7": (5, 0, 17, 0), "team-a": (7, 0, 21, 0), "eng": (7, 0, 21, 0)})
    # Moving agent-7 under team-b: its own budget keeps its figures, eng's and team-a's
    # leave its path.
    acme.put(f"{TREE}/agent-7", {"parent": "team-b"}, 200)
    agree({"agent-7": (5, 0, 17, 0)})
    put_budget(acme, "ops", "model-calls", 50, reset="week")
    acme.usage("acme", "model-calls", 2, "u4", entity="agent-7")
    agree({"agent-7": (7, 0, 21, 0), "ops": (2, 0, 0, 0)})
    assert own_budget(acme, "eng", "model-calls")["usage"] == 7
    # The next week of agent-7's budgets; ops's budget, created a minute later, rolls then.
    acme.advance(7 * DAY - 60)
    agree({"agent-7": (0, 0, 0, 0), "ops": (2, 0, 0, 0)})
    acme.usage("acme", "model-calls", 1, "u5", entity="agent-7")
    agree({"agent-7": (1, 0, 2, 0), "ops": (3, 0, 0, 0)})
    acme.advance(60)
    agree({"agent-7": (1, 0, 2, 0), "ops": (0, 0, 0, 0)})


@pytest.mark.sqlite_file
def test_a_backdated_report_is_counted_in_the_window_of_its_timestamp(acme: Api) -> None:
    created = put_budget(acme, "team-a", "ai-requests", 10, reset="day")
    anchor = instant(created["created_at"])
    first_day_end = text(anchor + timedelta(days=1))
    assert acme.usage("acme", "ai-requests", 4, "u1", entity="agent-7", enforce=True)["recorded"]
    acme.advance(DAY)
    assert acme.usage("acme", "ai-requests", 10, "u2", entity="agent-7", enforce=True)["recorded"]
    assert acme.check("acme", "ai-requests", entity="agent-7")["access_denied_reason"] == (
        "budget_exceeded"
    )
    # Enforced, a report dated in the first day (6 left there) would step around today's used-up
    # window: refused. Reported as what already happened, it counts in the first day. The
    # answer shows the budget's current window, as it shows the customer's current period.
    second_day_end = text(anchor + timedelta(days=2))
    late = text(anchor + timedelta(hours=1))
    status, refused = acme.status(
        "POST",
        "/v1/usage",
        {
            "customer": "acme",
            "feature": "ai-requests",
            "entity": "agent-7",
            "amount": 5,
            "idempotency_key": "u3",
            "enforce": True,
            "timestamp": late,
        },
    )
    assert (status, refused["error"]["details"]) == (400, {"field": "timestamp"})
    counted = acme.usage("acme", "ai-requests", 5, "u4", entity="agent-7", timestamp=late)
    assert counted["recorded"]
    assert [(b["usage"], b["usage_period_end"]) for b in counted["budgets"]] == [
        (10, second_day_end)
    ]
    # The first day now holds 4 + 5 = 9 of its 10.
    first_day = sqlite3.connect(acme.database).execute(
        "SELECT used FROM budget_counters WHERE entity = 'team-a' AND period_end = ?",
        (int(anchor.timestamp() * 1_000_000) + DAY * 1_000_000,),
    )
    assert first_day.fetchall() == [(9_000_000,)]
    # Today's window is untouched.
    today = own_budget(acme, "team-a", "ai-requests")
    assert (today["usage"], today["usage_period_start"]) == (10, first_day_end)
    assert acme.check("acme", "ai-requests")["current_usage"] == 19


def test_set_reports_cannot_name_an_entity(acme: Api) -> None:
    """ "set" replaces the customer's usage; the difference belongs to no one entity, and
    attributing it to one would let it undo what another spent against a budget."""
    put_budget(acme, "team-a", "ai-requests", 10)
    acme.usage("acme", "ai-requests", 8, "u1", entity="agent-7", enforce=True)
    status, body = acme.status(
        "POST",
        "/v1/usage",
        {
            "customer": "acme",
            "feature": "ai-requests",
            "amount": 2,
            "idempotency_key": "s1",
            "entity": "team-b",
            "behavior": "set",
        },
    )
    assert (status, body["error"]["code"]) == (400, "invalid_request")
    assert acme.check("acme", "ai-requests")["current_usage"] == 8
    assert own_budget(acme, "team-a", "ai-requests")["usage"] == 8
    # Without an entity, "set" works on the customer's usage and touches no budget.
    lowered = acme.usage("acme", "ai-requests", 2, "s2", behavior="set")
    assert (lowered["recorded"], lowered["current_usage"]) == (True, 2)
    assert own_budget(acme, "team-a", "ai-requests")["usage"] == 8


def test_a_live_hold_stays_with_the_path_it_was_made_under(acme: Api) -> None:
    put_budget(acme, "team-a", "ai-requests", 10)
    put_budget(acme, "team-b", "ai-requests", 10)
    held = reserve(acme, "ai-requests", 6, "r1", entity="agent-7", ttl_seconds=600)
    assert held["granted"] is True
    acme.put(f"{TREE}/agent-7", {"parent": "team-b"}, 200)
    assert own_budget(acme, "team-a", "ai-requests")["reserved"] == 6
    assert own_budget(acme, "team-b", "ai-requests")["reserved"] == 0
    check = acme.check("acme", "ai-requests", entity="agent-7", requested=10)
    assert (check["has_access"], check["reserved"], standing(check)) == (
        True,
        6,
        [("team-b", "ai-requests", 0, 0)],
    )
    assert reserve(acme, "ai-requests", 5, "r2", entity="team-a")["access_denied_reason"] == (
        "budget_exceeded"
    )


@pytest.mark.sqlite_file
def test_a_budget_counter_never_passes_64_bits(api: Api) -> None:
    """SQLite would store such a counter as a float; the report is refused and nothing moves."""
    api.put("/v1/features/req", {"name": "Requests", "kind": "metered"}, 201)
    api.put("/v1/products/p", {"name": "P"}, 201)
    plan = {"product": "p", "name": "T", "entitlements": {"req": {"limit": None, "reset": "day"}}}
    api.put("/v1/plans/t", plan, 201)
    new_customer(api, "acme", "t")
    api.put(f"{TREE}/a", {}, 201)
    start = instant(put_budget(api, "a", "req", 1, reset="never", enforcement="soft")["created_at"])
    api.advance(11 * DAY)
    big = 999_999_999_999
    for day in range(1, 10):  # each day its own customer window, one budget window for all
        when = text(start + timedelta(days=day))
        assert api.usage("acme", "req", big, f"k{day}", entity="a", timestamp=when)["recorded"]
    status, body = api.status(
        "POST",
        "/v1/usage",
        {
            "customer": "acme",
            "feature": "req",
            "amount": big,
            "idempotency_key": "k10",
            "entity": "a",
            "timestamp": text(start + timedelta(days=10)),
        },
    )
    assert (status, body["error"]["code"]) == (400, "invalid_request")
    assert own_budget(api, "a", "req")["usage"] == 9 * big
    db = sqlite3.connect(api.database)
    assert db.execute("SELECT typeof(used) FROM budget_counters").fetchall() == [("integer",)]
    assert db.execute("SELECT COUNT(*) FROM usage_events").fetchone() == (9,)


def test_a_timestamped_priced_report_answers_its_own_credits(acme: Api) -> None:
    put_budget(acme, "team-a", "ai-credits", 100)
    now = acme.now()
    first = acme.usage("acme", "model-calls", 3, "k1", entity="agent-7")
    dated = acme.usage("acme", "model-calls", 3, "k2", entity="agent-7", timestamp=now)
    check = acme.check("acme", "model-calls", entity="agent-7")
    team_credits = [
        [b["usage"] for b in answer["budgets"] if b["target"] == "ai-credits"]
        for answer in (first, dated, check)
    ]
    assert team_credits == [[6], [12], [12]]


def test_enforced_usage_dated_before_a_budgets_current_window_is_400(acme: Api) -> None:
    """A daily budget used up today: a report dated yesterday, inside the plan's month, would
    be decided in yesterday's emptier budget window."""
    budget = {"limit": 5, "reset": "day", "enforcement": "hard"}
    acme.put(f"{TREE}/team-a/budgets/ai-requests", budget, 201)
    acme.advance(DAY + 60)
    used = acme.usage("acme", "ai-requests", 5, "today", entity="agent-7", enforce=True)
    assert used["recorded"]
    now = datetime.fromisoformat(acme.now().replace("Z", "+00:00"))
    yesterday = (now - timedelta(days=1)).isoformat().replace("+00:00", "Z")
    body = {
        "customer": "acme",
        "feature": "ai-requests",
        "entity": "agent-7",
        "amount": 1,
        "idempotency_key": "yesterday",
        "enforce": True,
        "timestamp": yesterday,
    }
    status, answer = acme.status("POST", "/v1/usage", body)
    assert status == 400, answer
    assert answer["error"]["details"] == {"field": "timestamp"}
    late = acme.usage("acme", "ai-requests", 1, "late", entity="agent-7", timestamp=yesterday)
    assert late["recorded"]
    assert acme.check("acme", "ai-requests", entity="agent-7")["budgets"][0]["usage"] == 5
