"""Every event type, made by real API changes or by the test clock, read back through
``GET /v1/events`` (filtered by type and customer) and ``GET /v1/events/{id}``."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import pytest

from tests.conftest import Api, define_catalog, new_customer

START = "2030-01-10T00:00:00Z"
DAY = 86_400
HOUR = 3_600
TREE = "/v1/customers/acme/entities"
POOL = "/v1/customers/acme/credits/ai-credits"


@pytest.fixture
def coder(api: Api) -> Api:
    """define_catalog's catalog, with the test clock at START (plans starter, team and
    enterprise; add-ons extra-requests and big-team)."""
    api.post("/v1/test/clock", {"now": START}, 200)
    define_catalog(api)
    return api


# ------------------------------------------------------------------ helpers


def events(
    api: Api, event_type: str | None = None, customer: str | None = None
) -> list[dict[str, Any]]:
    """Every event (of ``event_type``, of ``customer``), read page by page."""
    query: dict[str, str] = {"limit": "1000"}
    if event_type is not None:
        query["type"] = event_type
    if customer is not None:
        query["customer"] = customer
    found: list[dict[str, Any]] = []
    while True:
        page = api.get(f"/v1/events?{urlencode(query)}")
        found += page["data"]
        if page["next"] is None:
            return found
        query["after"] = page["next"]


def only(api: Api, event_type: str, customer: str | None) -> dict[str, Any]:
    """The one event of ``event_type`` for ``customer`` (None: every customer), checked
    against ``GET /v1/events/{id}`` and the list's filters."""
    found = events(api, event_type, customer)
    assert len(found) == 1, found
    (event,) = found
    assert event["type"] == event_type
    if customer is not None:
        assert event["customer"] == customer
    assert event["id"].startswith("evt_")
    assert api.get(f"/v1/events/{event['id']}") == event
    return event


def types_of(api: Api, customer: str | None = None) -> list[str]:
    return [e["type"] for e in events(api, customer=customer)]


def count(api: Api, event_type: str, customer: str | None = None) -> int:
    return len(events(api, event_type, customer))


def at(offset_seconds: float, start: str = START) -> str:
    """The instant ``offset_seconds`` after ``start``, as the API writes instants."""
    moved = datetime.fromisoformat(start) + timedelta(seconds=offset_seconds)
    return moved.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def subscribe(api: Api, customer: str, **body: Any) -> dict[str, Any]:
    made: dict[str, Any] = api.post(f"/v1/customers/{customer}/subscriptions", body, 201)
    return made


def grant(api: Api, amount: Any, key: str, pool: str = POOL, **extra: Any) -> Any:
    body = {"amount": amount, "category": "paid", "idempotency_key": key, **extra}
    return api.post(f"{pool}/grants", body, 201)


def debit(api: Api, amount: Any, key: str, **extra: Any) -> Any:
    answer = api.post(f"{POOL}/debits", {"amount": amount, "idempotency_key": key, **extra}, 200)
    assert answer["applied"] is True, answer
    return answer


def reserve(api: Api, amount: Any, key: str, **extra: Any) -> Any:
    body = {
        "customer": "acme",
        "feature": "ai-requests",
        "amount": amount,
        "idempotency_key": key,
        **extra,
    }
    answer = api.post("/v1/reservations", body, 200)
    assert answer["granted"] is True, answer
    return answer


def budgeted_team(api: Api) -> None:
    """acme on team (ai-requests: 1000 a month), with team-a under eng, and daily ai-requests
    budgets of 20 on eng and 10 on team-a."""
    new_customer(api, "acme", "team")
    api.put(f"{TREE}/eng", {"kind": "department"}, 201)
    api.put(f"{TREE}/team-a", {"parent": "eng", "kind": "team"}, 201)
    api.put(f"{TREE}/eng/budgets/ai-requests", {"limit": 20, "reset": "day"}, 201)
    api.put(f"{TREE}/team-a/budgets/ai-requests", {"limit": 10, "reset": "day"}, 201)


def priced_customer(api: Api, per_unit: int, **currency: Any) -> None:
    """acme on a plan whose metered feature ``tokens`` costs ``per_unit`` ai-credits a unit,
    with 100 credits granted."""
    api.put("/v1/currencies/ai-credits", {"name": "Credits", **currency}, 201)
    api.put("/v1/features/tokens", {"name": "Tokens", "kind": "metered"}, 201)
    priced = {"limit": None, "credit_cost": {"currency": "ai-credits", "per_unit": per_unit}}
    plan = {"product": "coder", "name": "Priced", "entitlements": {"tokens": priced}}
    api.put("/v1/plans/priced", plan, 201)
    new_customer(api, "acme", "priced")
    grant(api, 100, "g1")


# ------------------------------------------------------------------ customers


def test_customer_created_updated_archived(coder: Api) -> None:
    coder.put("/v1/customers/acme", {"name": "Acme", "billing_id": "cus_1"}, 201)
    coder.put("/v1/customers/acme", {"name": "Acme Inc"}, 200)
    coder.delete("/v1/customers/acme", 200)
    created = only(coder, "customer.created", "acme")
    assert (created["data"]["id"], created["data"]["name"]) == ("acme", "Acme")
    assert (created["data"]["billing_id"], created["data"]["status"]) == ("cus_1", "active")
    assert created["created_at"] == START
    updated = only(coder, "customer.updated", "acme")
    assert (updated["data"]["id"], updated["data"]["name"]) == ("acme", "Acme Inc")
    archived = only(coder, "customer.archived", "acme")
    assert archived["data"]["id"] == "acme"
    assert archived["data"]["status"] == "archived"
    assert archived["data"]["archived_at"] == START
    assert created["seq"] < updated["seq"] < archived["seq"]
    assert types_of(coder, "acme") == ["customer.created", "customer.updated", "customer.archived"]
    # Another customer's events are not acme's.
    coder.put("/v1/customers/bolt", {"name": "Bolt"}, 201)
    assert types_of(coder, "acme")[-1] == "customer.archived"
    assert only(coder, "customer.created", "bolt")["data"]["id"] == "bolt"
    assert count(coder, "customer.created") == 2


# ------------------------------------------------------------------ subscriptions


def test_subscription_created_updated_canceled(coder: Api) -> None:
    new_customer(coder, "acme")
    made = subscribe(coder, "acme", plan="starter")
    created = only(coder, "subscription.created", "acme")
    assert created["data"]["id"] == made["id"]
    assert (created["data"]["plan"], created["data"]["status"]) == ("starter", "active")
    assert created["data"]["customer"] == "acme"
    path = f"/v1/customers/acme/subscriptions/{made['id']}"
    coder.request("PATCH", path, {"ends_at": at(90 * DAY)}, expect=200)
    updated = only(coder, "subscription.updated", "acme")
    assert (updated["data"]["id"], updated["data"]["ends_at"]) == (made["id"], at(90 * DAY))
    coder.advance(60)
    coder.delete(path, 200)
    canceled = only(coder, "subscription.canceled", "acme")
    assert canceled["data"]["id"] == made["id"]
    assert canceled["data"]["status"] == "canceled"
    assert canceled["data"]["canceled_at"] == at(60)
    assert types_of(coder, "acme")[-3:] == [
        "subscription.created",
        "subscription.updated",
        "subscription.canceled",
    ]
    # Canceling before ends_at: no subscription.expired when that instant comes.
    coder.advance(91 * DAY)
    assert count(coder, "subscription.expired") == 0


def test_a_replaced_subscription_is_canceled_with_an_event(coder: Api) -> None:
    new_customer(coder, "acme")
    first = subscribe(coder, "acme", plan="starter")
    coder.advance(60)
    second = subscribe(coder, "acme", plan="team")
    canceled = only(coder, "subscription.canceled", "acme")
    assert canceled["data"]["id"] == first["id"]
    created = events(coder, "subscription.created", "acme")
    assert [e["data"]["id"] for e in created] == [first["id"], second["id"]]
    assert canceled["seq"] < created[1]["seq"]


def test_subscription_expired_once_when_the_clock_passes_ends_at(coder: Api) -> None:
    new_customer(coder, "acme")
    made = subscribe(coder, "acme", plan="starter", ends_at=at(HOUR))
    coder.advance(HOUR - 1)
    assert count(coder, "subscription.expired", "acme") == 0
    coder.advance(1)  # stored before the clock answers
    expired = only(coder, "subscription.expired", "acme")
    assert expired["data"]["id"] == made["id"]
    assert expired["data"]["status"] == "expired"
    assert expired["data"]["ends_at"] == at(HOUR)
    assert expired["created_at"] == at(HOUR)
    for _ in range(3):
        coder.advance(DAY)
    assert only(coder, "subscription.expired", "acme")["id"] == expired["id"]


def test_a_moved_ends_at_expires_at_the_new_instant_only(coder: Api) -> None:
    new_customer(coder, "acme")
    made = subscribe(coder, "acme", plan="starter", ends_at=at(HOUR))
    path = f"/v1/customers/acme/subscriptions/{made['id']}"
    coder.request("PATCH", path, {"ends_at": at(3 * HOUR)}, expect=200)
    coder.advance(2 * HOUR)
    assert count(coder, "subscription.expired", "acme") == 0
    coder.advance(2 * HOUR)
    expired = only(coder, "subscription.expired", "acme")
    assert expired["data"]["ends_at"] == at(3 * HOUR)


# ------------------------------------------------------------------ trials


def test_trial_started_will_end_three_days_before_and_ended(coder: Api) -> None:
    new_customer(coder, "acme")
    trial = subscribe(coder, "acme", plan="enterprise", trial=True)  # 14 days
    assert trial["trial_ends_at"] == at(14 * DAY)
    started = only(coder, "trial.started", "acme")
    assert started["data"]["id"] == trial["id"]
    assert started["data"]["trial"] is True
    assert started["data"]["status"] == "trialing"
    assert only(coder, "subscription.created", "acme")["data"]["id"] == trial["id"]
    coder.advance(11 * DAY - 1)
    assert count(coder, "trial.will_end", "acme") == 0
    coder.advance(1)
    will_end = only(coder, "trial.will_end", "acme")
    assert will_end["data"]["id"] == trial["id"]
    assert will_end["data"]["trial_ends_at"] == at(14 * DAY)
    assert will_end["created_at"] == at(11 * DAY)
    coder.advance(3 * DAY - 1)
    assert count(coder, "trial.ended", "acme") == 0
    coder.advance(1)
    ended = only(coder, "trial.ended", "acme")
    assert ended["data"]["id"] == trial["id"]
    assert ended["data"]["status"] == "expired"
    coder.advance(10 * DAY)
    assert count(coder, "trial.will_end", "acme") == 1
    assert count(coder, "trial.ended", "acme") == 1
    assert types_of(coder, "acme") == [
        "customer.created",
        "subscription.created",
        "trial.started",
        "trial.will_end",
        "trial.ended",
    ]


def test_a_short_trial_warns_at_once(coder: Api) -> None:
    new_customer(coder, "acme")
    trial = subscribe(coder, "acme", plan="team", trial=True, trial_days=2)
    will_end = only(coder, "trial.will_end", "acme")
    assert will_end["data"]["id"] == trial["id"]
    assert will_end["created_at"] == START
    assert only(coder, "trial.started", "acme")["seq"] < will_end["seq"]
    # A change to the trial after its warning does not warn again.
    path = f"/v1/customers/acme/subscriptions/{trial['id']}"
    coder.request("PATCH", path, {"addons": [{"id": "big-team", "quantity": 1}]}, expect=200)
    assert only(coder, "subscription.updated", "acme")["data"]["id"] == trial["id"]
    assert count(coder, "trial.will_end", "acme") == 1
    coder.advance(2 * DAY)
    assert only(coder, "trial.ended", "acme")["data"]["id"] == trial["id"]
    assert count(coder, "trial.will_end", "acme") == 1


def test_a_canceled_trial_sends_no_trial_ended(coder: Api) -> None:
    # Canceled after its warning: no trial.ended.
    new_customer(coder, "acme")
    warned = subscribe(coder, "acme", plan="team", trial=True, trial_days=7)
    # Canceled before its warning: neither.
    new_customer(coder, "bolt")
    quiet = subscribe(coder, "bolt", plan="team", trial=True, trial_days=7)
    coder.advance(DAY)
    coder.delete(f"/v1/customers/bolt/subscriptions/{quiet['id']}", 200)
    coder.advance(4 * DAY)
    assert only(coder, "trial.will_end", "acme")["data"]["id"] == warned["id"]
    coder.delete(f"/v1/customers/acme/subscriptions/{warned['id']}", 200)
    coder.advance(10 * DAY)
    assert count(coder, "trial.ended") == 0
    assert count(coder, "trial.will_end", "bolt") == 0
    assert only(coder, "subscription.canceled", "acme")["data"]["id"] == warned["id"]
    assert only(coder, "subscription.canceled", "bolt")["data"]["id"] == quiet["id"]


# ------------------------------------------------------------------ usage thresholds


def test_usage_thresholds_once_per_period_for_the_customer_limit(coder: Api) -> None:
    new_customer(coder, "acme", "starter")  # ai-requests: 100 a day, hard
    coder.usage("acme", "ai-requests", 79, "u1")
    assert count(coder, "usage.threshold_reached", "acme") == 0
    answer = coder.usage("acme", "ai-requests", 1, "u2")
    period_end = answer["usage_period_end"]
    assert period_end == at(DAY)
    reached = only(coder, "usage.threshold_reached", "acme")
    assert reached["data"] == {
        "feature": "ai-requests",
        "entity": None,
        "threshold": 80,
        "usage": 80,
        "usage_limit": 100,
        "usage_period_end": period_end,
    }
    coder.usage("acme", "ai-requests", 1, "u2")  # a replay applies and sends nothing
    assert count(coder, "usage.threshold_reached", "acme") == 1
    coder.usage("acme", "ai-requests", 30, "u3")  # past the limit: enforce is off
    both = events(coder, "usage.threshold_reached", "acme")
    assert [e["data"]["threshold"] for e in both] == [80, 100]
    assert (both[1]["data"]["usage"], both[1]["data"]["usage_limit"]) == (110, 100)
    # Lowered with "set" and raised again in the same period: nothing more.
    coder.usage("acme", "ai-requests", 0, "u4", behavior="set")
    assert coder.check("acme", "ai-requests")["current_usage"] == 0
    coder.usage("acme", "ai-requests", 85, "u5")
    coder.usage("acme", "ai-requests", 50, "u6", behavior="set")
    coder.usage("acme", "ai-requests", 100, "u7", behavior="set")
    assert count(coder, "usage.threshold_reached", "acme") == 2
    # The next period sends both again, from one report.
    coder.advance(DAY)
    coder.usage("acme", "ai-requests", 100, "u8")
    again = events(coder, "usage.threshold_reached", "acme")[2:]
    assert [e["data"]["threshold"] for e in again] == [80, 100]
    assert {e["data"]["usage_period_end"] for e in again} == {at(2 * DAY)}
    assert {e["data"]["entity"] for e in again} == {None}


def test_a_new_limit_in_another_period_sends_its_own_thresholds(coder: Api) -> None:
    # acme reaches 80 % of starter's daily 100 on its first day, bolt on its second; both
    # then move to team (1000 a month, the anchor kept, usage carried over) and reach 800.
    # 80 % of team's monthly limit is reached in a period no event was sent for, for both.
    new_customer(coder, "acme", "starter")
    new_customer(coder, "bolt", "starter")
    coder.usage("acme", "ai-requests", 80, "a1")
    coder.advance(DAY + HOUR)
    coder.usage("bolt", "ai-requests", 80, "b1")
    for customer in ("acme", "bolt"):
        assert count(coder, "usage.threshold_reached", customer) == 1
        coder.post(f"/v1/customers/{customer}/subscriptions", {"plan": "team"}, 201)
    for customer in ("acme", "bolt"):
        answer = coder.usage(customer, "ai-requests", 720, f"{customer}-2")
        assert (answer["current_usage"], answer["usage_limit"]) == (800, 1000)
        assert answer["usage_period_end"] == "2030-02-10T00:00:00Z"
    found = {
        customer: [
            (e["data"]["threshold"], e["data"]["usage_limit"], e["data"]["usage_period_end"])
            for e in events(coder, "usage.threshold_reached", customer)
        ]
        for customer in ("acme", "bolt")
    }
    assert found == {
        "acme": [(80, 100, "2030-01-11T00:00:00Z"), (80, 1000, "2030-02-10T00:00:00Z")],
        "bolt": [(80, 100, "2030-01-12T00:00:00Z"), (80, 1000, "2030-02-10T00:00:00Z")],
    }


def test_a_committed_reservation_reaches_the_customer_thresholds(coder: Api) -> None:
    new_customer(coder, "acme", "starter")  # ai-requests: 100 a day
    coder.usage("acme", "ai-requests", 70, "u1")
    held = reserve(coder, 20, "r1", ttl_seconds=60)
    assert count(coder, "usage.threshold_reached", "acme") == 0  # a hold is not usage
    coder.post(f"/v1/reservations/{held['id']}/commit", {"amount": 15}, 200)
    reached = only(coder, "usage.threshold_reached", "acme")
    assert (reached["data"]["threshold"], reached["data"]["usage"]) == (80, 85)
    released = reserve(coder, 10, "r2", ttl_seconds=60)
    coder.post(f"/v1/reservations/{released['id']}/release", {}, 200)
    assert count(coder, "usage.threshold_reached", "acme") == 1


def test_a_committed_reservation_reaches_the_budgets_on_its_path(coder: Api) -> None:
    budgeted_team(coder)
    held = reserve(coder, 10, "r1", entity="team-a", ttl_seconds=60)
    assert count(coder, "usage.threshold_reached", "acme") == 0  # a hold is not usage
    coder.post(f"/v1/reservations/{held['id']}/commit", {"amount": 9}, 200)
    reached = only(coder, "usage.threshold_reached", "acme")
    assert reached["data"] == {
        "feature": "ai-requests",
        "entity": "team-a",
        "threshold": 80,
        "usage": 9,
        "usage_limit": 10,
        "usage_period_end": at(DAY),
    }
    held = reserve(coder, 1, "r2", entity="team-a", ttl_seconds=60)
    coder.post(f"/v1/reservations/{held['id']}/commit", {"amount": 1}, 200)  # 10 and 10
    coder.put(f"{TREE}/team-b", {"parent": "eng", "kind": "team"}, 201)
    held = reserve(coder, 6, "r3", entity="team-b", ttl_seconds=60)
    coder.post(f"/v1/reservations/{held['id']}/commit", {"amount": 6}, 200)  # eng 16
    found = [
        (e["data"]["entity"], e["data"]["threshold"], e["data"]["usage"])
        for e in events(coder, "usage.threshold_reached", "acme")
    ]
    assert found == [("team-a", 80, 9), ("team-a", 100, 10), ("eng", 80, 16)]


def test_credits_of_a_committed_reservation_reach_a_currency_budget(coder: Api) -> None:
    priced_customer(coder, per_unit=2)
    coder.put(f"{TREE}/team-a", {"kind": "team"}, 201)
    coder.put(f"{TREE}/team-a/budgets/ai-credits", {"limit": 10, "reset": "day"}, 201)
    held = reserve(coder, 5, "r1", feature="tokens", entity="team-a", ttl_seconds=60)
    coder.post(f"/v1/reservations/{held['id']}/commit", {"amount": 4}, 200)  # 8 credits
    reached = only(coder, "usage.threshold_reached", "acme")
    assert reached["data"]["feature"] == "ai-credits"
    assert (reached["data"]["entity"], reached["data"]["threshold"]) == ("team-a", 80)
    assert (reached["data"]["usage"], reached["data"]["usage_limit"]) == (8, 10)


def test_a_reservation_whose_entity_moved_reaches_no_budget_threshold(coder: Api) -> None:
    new_customer(coder, "acme", "team")
    coder.put(f"{TREE}/eng", {"kind": "department"}, 201)
    coder.put(f"{TREE}/ops", {"kind": "department"}, 201)
    coder.put(f"{TREE}/team-a", {"parent": "eng", "kind": "team"}, 201)
    coder.put(f"{TREE}/ops/budgets/ai-requests", {"limit": 10, "reset": "day"}, 201)
    held = reserve(coder, 9, "r1", entity="team-a", ttl_seconds=60)
    coder.put(f"{TREE}/team-a", {"parent": "ops", "kind": "team"}, 200)
    coder.post(f"/v1/reservations/{held['id']}/commit", {"amount": 9}, 200)
    # Counted on the path it was decided on (eng), which has no budget: ops sends nothing.
    assert count(coder, "usage.threshold_reached", "acme") == 0
    assert coder.get(f"{TREE}/ops")["budgets"][0]["usage"] == 0


def test_a_refused_usage_report_reaches_no_threshold(coder: Api) -> None:
    new_customer(coder, "acme", "starter")
    coder.usage("acme", "ai-requests", 70, "u1")
    refused = coder.usage("acme", "ai-requests", 31, "u2", enforce=True)
    assert refused["recorded"] is False
    assert count(coder, "usage.threshold_reached", "acme") == 0
    coder.usage("acme", "ai-requests", 30, "u3", enforce=True)
    assert [e["data"]["threshold"] for e in events(coder, "usage.threshold_reached")] == [80, 100]


def test_usage_thresholds_of_budgets_name_their_entity(coder: Api) -> None:
    budgeted_team(coder)
    coder.usage("acme", "ai-requests", 8, "u1", entity="team-a")
    reached = only(coder, "usage.threshold_reached", "acme")
    (team_budget,) = coder.get(f"{TREE}/team-a")["budgets"]
    assert reached["data"] == {
        "feature": "ai-requests",
        "entity": "team-a",
        "threshold": 80,
        "usage": 8,
        "usage_limit": 10,
        "usage_period_end": team_budget["usage_period_end"],
    }
    assert team_budget["usage_period_end"] == at(DAY)
    coder.usage("acme", "ai-requests", 8, "u2", entity="team-a")  # team-a 16, eng 16
    coder.usage("acme", "ai-requests", 4, "u3", entity="team-a")  # eng 20
    found = [
        (e["data"]["entity"], e["data"]["threshold"], e["data"]["usage"], e["data"]["usage_limit"])
        for e in events(coder, "usage.threshold_reached", "acme")
    ]
    assert sorted(found[1:3]) == [("eng", 80, 16, 20), ("team-a", 100, 16, 10)]
    assert found == [found[0], *found[1:3], ("eng", 100, 20, 20)]
    # The customer's own limit (1000) was not approached.
    assert all(e is not None for e, *_ in found)
    # More within the period: nothing more ("set" cannot name an entity, so a budget's usage
    # only rises within a period); the next day, again.
    coder.usage("acme", "ai-requests", 20, "u5", entity="team-a")
    assert count(coder, "usage.threshold_reached", "acme") == 4
    coder.advance(DAY)
    coder.usage("acme", "ai-requests", 8, "u6", entity="team-a")
    latest = events(coder, "usage.threshold_reached", "acme")[4:]
    assert [(e["data"]["entity"], e["data"]["threshold"]) for e in latest] == [("team-a", 80)]
    assert latest[0]["data"]["usage_period_end"] == at(2 * DAY)


# ------------------------------------------------------------------ credits


def test_credits_spent_by_priced_usage_reach_a_currency_budget(coder: Api) -> None:
    priced_customer(coder, per_unit=1)
    coder.put(f"{TREE}/team-a", {"kind": "team"}, 201)
    coder.put(f"{TREE}/team-a/budgets/ai-credits", {"limit": 10, "reset": "day"}, 201)
    coder.usage("acme", "tokens", 8, "u1", entity="team-a")
    reached = only(coder, "usage.threshold_reached", "acme")
    assert (reached["data"]["feature"], reached["data"]["entity"]) == ("ai-credits", "team-a")
    assert (reached["data"]["threshold"], reached["data"]["usage"]) == (80, 8)


def test_a_currency_keeps_its_low_balance_threshold(coder: Api) -> None:
    body = {"name": "Credits", "low_balance_threshold": "100.5"}
    assert coder.put("/v1/currencies/ai-credits", body, 201)["low_balance_threshold"] == 100.5
    assert coder.get("/v1/currencies/ai-credits")["low_balance_threshold"] == 100.5
    coder.put("/v1/currencies/plain", {"name": "Plain"}, 201)
    assert "low_balance_threshold" not in coder.get("/v1/currencies/plain")  # none set
    catalog = coder.get("/v1/catalog")["currencies"]
    assert catalog["ai-credits"]["low_balance_threshold"] == 100.5


def test_credits_granted(coder: Api) -> None:
    coder.put("/v1/currencies/ai-credits", {"name": "Credits"}, 201)
    new_customer(coder, "acme", "team")
    made = grant(coder, 300, "g1", cost_basis="0.01", reason="welcome")
    granted = only(coder, "credits.granted", "acme")
    data = granted["data"]
    assert data["currency"] == "ai-credits"
    assert (data["id"], data["amount"], data["remaining"]) == (made["id"], 300, 300)
    assert (data["category"], data["cost_basis"], data["reason"]) == ("paid", 0.01, "welcome")
    # A replayed grant grants nothing and sends nothing.
    grant(coder, 300, "g1", cost_basis="0.01", reason="welcome")
    assert count(coder, "credits.granted", "acme") == 1


def test_credits_low_once_per_crossing(coder: Api) -> None:
    coder.put("/v1/currencies/ai-credits", {"name": "Credits", "low_balance_threshold": 100}, 201)
    new_customer(coder, "acme", "team")
    grant(coder, 300, "g1")
    debit(coder, 150, "d1")  # 150
    debit(coder, 50, "d2")  # 100: not below
    assert count(coder, "credits.low", "acme") == 0
    debit(coder, 10, "d3")  # 90: below
    low = only(coder, "credits.low", "acme")
    assert low["data"]["currency"] == "ai-credits"
    assert low["data"]["available"] == 90
    assert low["data"]["low_balance_threshold"] == 100
    debit(coder, 10, "d4")  # 80: still below
    grant(coder, 15, "g2")  # 95: still below
    debit(coder, 5, "d5")  # 90
    assert count(coder, "credits.low", "acme") == 1
    grant(coder, 50, "g3")  # 140: above again
    debit(coder, 39, "d6")  # 101
    assert count(coder, "credits.low", "acme") == 1
    debit(coder, 2, "d7")  # 99: below again
    lows = events(coder, "credits.low", "acme")
    assert [e["data"]["available"] for e in lows] == [90, 99]
    assert count(coder, "credits.depleted", "acme") == 0


def test_credits_depleted_once_per_crossing(coder: Api) -> None:
    coder.put("/v1/currencies/ai-credits", {"name": "Credits"}, 201)
    new_customer(coder, "acme", "team")
    grant(coder, 100, "g1")
    debit(coder, 60, "d1")
    assert count(coder, "credits.depleted", "acme") == 0
    debit(coder, 40, "d2")  # 0
    depleted = only(coder, "credits.depleted", "acme")
    assert (depleted["data"]["currency"], depleted["data"]["available"]) == ("ai-credits", 0)
    debit(coder, 5, "d3", enforce=False)  # -5
    grant(coder, 3, "g2")  # -2: not above 0
    debit(coder, 1, "d4", enforce=False)  # -3
    assert count(coder, "credits.depleted", "acme") == 1
    grant(coder, 10, "g3")  # 7: above 0 again
    debit(coder, 7, "d5")  # 0 again
    found = events(coder, "credits.depleted", "acme")
    assert [e["data"]["available"] for e in found] == [0, 0]
    # No low-balance threshold on this currency: no credits.low.
    assert count(coder, "credits.low", "acme") == 0


def test_a_hold_that_lowers_available_credits_sends_low_and_depleted(coder: Api) -> None:
    priced_customer(coder, per_unit=1, low_balance_threshold=50)
    first = reserve(coder, 40, "r1", feature="tokens", ttl_seconds=60)  # available 60
    assert count(coder, "credits.low", "acme") == 0
    second = reserve(coder, 20, "r2", feature="tokens", ttl_seconds=60)  # 40: below
    low = only(coder, "credits.low", "acme")
    assert low["data"] == {
        "currency": "ai-credits",
        "balance": 100,
        "available": 40,
        "low_balance_threshold": 50,
    }
    coder.post(f"/v1/reservations/{second['id']}/release", {}, 200)  # 60: above again
    reserve(coder, 60, "r3", feature="tokens", ttl_seconds=60)  # 0: below, and depleted
    assert [e["data"]["available"] for e in events(coder, "credits.low", "acme")] == [40, 0]
    depleted = only(coder, "credits.depleted", "acme")
    assert (depleted["data"]["balance"], depleted["data"]["available"]) == (100, 0)
    # Committing spends what was held: available stays where the holds put it, nothing more.
    coder.post(f"/v1/reservations/{first['id']}/commit", {"amount": 40}, 200)
    assert count(coder, "credits.low", "acme") == 2
    assert count(coder, "credits.depleted", "acme") == 1


def test_credits_expired_is_stored_before_the_clock_answers(coder: Api) -> None:
    coder.put("/v1/currencies/ai-credits", {"name": "Credits"}, 201)
    new_customer(coder, "acme", "team")
    expiring = grant(coder, 100, "g1", expires_at=at(HOUR), priority=1)
    used_up = grant(coder, 20, "g2", expires_at=at(HOUR), priority=0)
    grant(coder, 50, "g3")  # never expires
    debit(coder, 50, "d1")  # 20 from g2, then 30 from g1
    coder.advance(HOUR + 1)
    # Read before anything else touches the pool: the clock's move stored it.
    expired = only(coder, "credits.expired", "acme")
    data = expired["data"]
    assert (data["currency"], data["amount"]) == ("ai-credits", 70)
    assert data["grant"]["id"] == expiring["id"]
    assert data["grant"]["expires_at"] == at(HOUR)
    assert expired["created_at"] == at(HOUR + 1)
    # The grant used up before its expiry sends nothing; the pool still holds g3's 50.
    assert used_up["id"] not in {e["data"]["grant"]["id"] for e in events(coder, "credits.expired")}
    assert coder.get(POOL)["balance"] == 50
    coder.advance(DAY)
    assert count(coder, "credits.expired", "acme") == 1


def test_a_grant_that_takes_effect_later_is_granted_and_expires_on_time(coder: Api) -> None:
    coder.put("/v1/currencies/ai-credits", {"name": "Credits"}, 201)
    new_customer(coder, "acme", "team")
    later = grant(coder, 40, "g1", effective_at=at(HOUR), expires_at=at(2 * HOUR))
    assert count(coder, "credits.granted", "acme") == 0
    coder.advance(HOUR)  # nothing touches the pool: the clock's move writes its entry
    granted = only(coder, "credits.granted", "acme")
    assert granted["data"]["id"] == later["id"]
    coder.advance(HOUR)
    expired = only(coder, "credits.expired", "acme")
    assert (expired["data"]["grant"]["id"], expired["data"]["amount"]) == (later["id"], 40)


def test_a_voided_grant_does_not_expire(coder: Api) -> None:
    coder.put("/v1/currencies/ai-credits", {"name": "Credits"}, 201)
    new_customer(coder, "acme", "team")
    grant(coder, 10, "g0")
    voided = grant(coder, 40, "g1", expires_at=at(HOUR))
    coder.post(f"{POOL}/grants/{voided['id']}/void", None, 200)
    coder.advance(2 * HOUR)
    assert count(coder, "credits.expired", "acme") == 0
    assert count(coder, "credits.granted", "acme") == 2


def plan_with_credits(api: Api) -> None:
    """Plan pro: 100 ai-credits each month, each block expiring at its period's end."""
    api.put("/v1/currencies/ai-credits", {"name": "Credits"}, 201)
    pro = {
        "product": "coder",
        "name": "Pro",
        "entitlements": {"ai-requests": {"limit": 100, "reset": "day"}},
        "credits": {"ai-credits": {"amount": 100, "every": "month"}},
    }
    api.put("/v1/plans/pro", pro, 201)


def test_an_expiry_that_empties_the_pool_depletes_it(coder: Api) -> None:
    coder.put("/v1/currencies/ai-credits", {"name": "Credits"}, 201)
    new_customer(coder, "acme", "team")
    grant(coder, 40, "g1", expires_at=at(HOUR))
    coder.advance(2 * HOUR)
    assert only(coder, "credits.expired", "acme")["data"]["amount"] == 40
    assert only(coder, "credits.depleted", "acme")["data"]["available"] == 0


# ------------------------------------------------------------------ reservations


def test_reservation_expired_only_for_one_that_was_left_to_expire(coder: Api) -> None:
    new_customer(coder, "acme", "starter")
    left = reserve(coder, 10, "r1", ttl_seconds=30)
    committed = reserve(coder, 10, "r2", ttl_seconds=30)
    released = reserve(coder, 10, "r3", ttl_seconds=30)
    coder.post(f"/v1/reservations/{committed['id']}/commit", {"amount": 5}, 200)
    coder.post(f"/v1/reservations/{released['id']}/release", {}, 200)
    coder.advance(29)
    assert count(coder, "reservation.expired") == 0
    coder.advance(1)
    expired = only(coder, "reservation.expired", "acme")
    assert expired["data"]["id"] == left["id"]
    assert expired["data"]["status"] == "expired"
    assert (expired["data"]["amount"], expired["data"]["feature"]) == (10, "ai-requests")
    assert expired["data"]["expires_at"] == at(30)
    coder.advance(HOUR)
    assert count(coder, "reservation.expired") == 1


def test_plan_and_addon_published_on_create_and_change_only(coder: Api) -> None:
    published = events(coder, "plan.published")
    assert [e["data"] for e in published] == [
        {"id": "starter", "version": 1},
        {"id": "team", "version": 1},
        {"id": "enterprise", "version": 1},
    ]
    assert {e["customer"] for e in published} == {None}
    assert [e["data"] for e in events(coder, "addon.published")] == [
        {"id": "extra-requests", "version": 1},
        {"id": "big-team", "version": 1},
    ]
    before = events(coder)
    enterprise = coder.get("/v1/plans/enterprise")
    definition = {
        k: enterprise[k]
        for k in ("product", "name", "parent", "trial_days", "billing_period", "entitlements")
    }
    coder.put("/v1/plans/enterprise", definition, 200)  # identical
    addon: dict[str, Any] = {
        "product": "coder",
        "name": "Big team",
        "entitlements": {"seats": {"value": 50, "mode": "override"}},
    }
    coder.put("/v1/addons/big-team", addon, 200)  # identical
    assert events(coder) == before
    changed = copy.deepcopy(definition)
    changed["name"] = "Enterprise+"
    coder.put("/v1/plans/enterprise", changed, 200)
    latest = events(coder, "plan.published")[-1]
    assert (latest["data"], latest["customer"]) == ({"id": "enterprise", "version": 2}, None)
    assert coder.get(f"/v1/events/{latest['id']}") == latest
    addon["entitlements"]["seats"]["value"] = 60
    coder.put("/v1/addons/big-team", addon, 200)
    assert events(coder, "addon.published")[-1]["data"] == {"id": "big-team", "version": 2}
    assert len(events(coder)) == len(before) + 2


def test_a_parent_publication_publishes_its_children_too(coder: Api) -> None:
    before = len(events(coder, "plan.published"))
    starter = {
        "product": "coder",
        "name": "Starter",
        "entitlements": {"seats": {"value": 4}, "ai-requests": {"limit": 100, "reset": "day"}},
    }
    coder.put("/v1/plans/starter", starter, 200)
    assert [v["version"] for v in coder.get("/v1/plans/team/versions")["data"]] == [1, 2]
    published = events(coder, "plan.published")[before:]
    assert sorted((e["data"]["id"], e["data"]["version"]) for e in published) == [
        ("enterprise", 2),
        ("starter", 2),
        ("team", 2),
    ]


# ------------------------------------------------------------------ migrations


def publish_team_v2(api: Api) -> None:
    team = {
        "product": "coder",
        "name": "Team",
        "parent": "starter",
        "entitlements": {
            "seats": {"value": 10},
            "ai-requests": {"limit": 2000, "reset": "month"},
        },
    }
    assert api.put("/v1/plans/team", team, 200)["version"] == 2


def test_a_migration_now_sends_migrated_and_completed_at_once(coder: Api) -> None:
    acme = new_customer(coder, "acme", "team")
    bolt = new_customer(coder, "bolt", "team")
    publish_team_v2(coder)
    migration = coder.post("/v1/plans/team/migrations", {"at": "now"}, 201)
    assert migration["subscriptions"] == 2
    for customer, subscription in (("acme", acme), ("bolt", bolt)):
        migrated = only(coder, "subscription.migrated", customer)
        assert migrated["data"]["id"] == subscription["id"]
        assert (migrated["data"]["plan"], migrated["data"]["plan_version"]) == ("team", 2)
    completed = only(coder, "migration.completed", None)
    assert completed["customer"] is None
    assert completed["data"] == migration
    assert completed["seq"] > max(e["seq"] for e in events(coder, "subscription.migrated"))


def test_an_addon_migration_sends_the_same_events(coder: Api) -> None:
    acme = new_customer(coder, "acme", "team", addons=[{"id": "extra-requests", "quantity": 2}])
    addon: dict[str, Any] = {
        "product": "coder",
        "name": "Extra requests",
        "entitlements": {"ai-requests": {"limit": 600, "mode": "increment"}},
    }
    assert coder.put("/v1/addons/extra-requests", addon, 200)["version"] == 2
    migration = coder.post("/v1/addons/extra-requests/migrations", {"at": "now"}, 201)
    assert (migration["addon"], migration["subscriptions"]) == ("extra-requests", 1)
    migrated = only(coder, "subscription.migrated", "acme")
    assert migrated["data"]["id"] == acme["id"]
    assert migrated["data"]["addons"][0]["version"] == 2
    assert only(coder, "migration.completed", None)["data"] == migration


def test_a_migration_with_nobody_to_move_completes_at_once(coder: Api) -> None:
    publish_team_v2(coder)
    migration = coder.post("/v1/plans/team/migrations", {"at": "period_end"}, 201)
    assert migration["subscriptions"] == 0
    assert only(coder, "migration.completed", None)["data"]["id"] == migration["id"]


def test_a_migration_at_period_end_sends_its_events_when_the_clock_gets_there(
    coder: Api,
) -> None:
    acme = new_customer(coder, "acme", "team")  # period ends 2030-02-10
    coder.advance(10 * DAY)
    bolt = new_customer(coder, "bolt", "team")  # period ends 2030-02-20
    assert (acme["current_period_end"], bolt["current_period_end"]) == (
        "2030-02-10T00:00:00Z",
        "2030-02-20T00:00:00Z",
    )
    publish_team_v2(coder)
    migration = coder.post("/v1/plans/team/migrations", {"at": "period_end"}, 201)
    assert (migration["subscriptions"], migration["at"]) == (2, "period_end")
    assert count(coder, "subscription.migrated") == 0
    assert count(coder, "migration.completed") == 0
    coder.post("/v1/test/clock", {"now": "2030-02-09T23:59:59Z"}, 200)
    assert count(coder, "subscription.migrated") == 0
    coder.post("/v1/test/clock", {"now": "2030-02-10T00:00:00Z"}, 200)
    moved = only(coder, "subscription.migrated", "acme")
    assert moved["data"]["id"] == acme["id"]
    assert moved["data"]["plan_version"] == 2
    assert count(coder, "subscription.migrated", "bolt") == 0
    assert count(coder, "migration.completed") == 0
    coder.post("/v1/test/clock", {"now": "2030-02-20T00:00:01Z"}, 200)
    assert only(coder, "subscription.migrated", "bolt")["data"]["id"] == bolt["id"]
    completed = only(coder, "migration.completed", None)
    assert completed["data"] == migration
    coder.advance(40 * DAY)
    assert count(coder, "subscription.migrated") == 2
    assert count(coder, "migration.completed") == 1


def test_a_subscription_canceled_before_its_move_is_not_migrated(coder: Api) -> None:
    acme = new_customer(coder, "acme", "team")
    new_customer(coder, "bolt", "team")
    publish_team_v2(coder)
    coder.post("/v1/plans/team/migrations", {"at": "period_end"}, 201)
    coder.advance(DAY)
    coder.delete(f"/v1/customers/acme/subscriptions/{acme['id']}", 200)
    coder.advance(40 * DAY)
    assert count(coder, "subscription.migrated", "acme") == 0
    assert count(coder, "subscription.migrated", "bolt") == 1
    assert count(coder, "migration.completed") == 1


# ------------------------------------------------------------------ nothing without a change


def test_rejected_requests_emit_nothing(coder: Api) -> None:
    coder.put("/v1/currencies/ai-credits", {"name": "Credits", "low_balance_threshold": 10}, 201)
    made = new_customer(coder, "acme", "starter")
    grant(coder, 20, "g1")
    reserve(coder, 1, "r0")
    released = reserve(coder, 1, "r1")
    coder.post(f"/v1/reservations/{released['id']}/release", {}, 200)
    before = events(coder)
    sub = f"/v1/customers/acme/subscriptions/{made['id']}"
    rejected: list[tuple[str, str, Any, int]] = [
        # 400
        ("PUT", "/v1/customers/acme", {"name": "X", "unknown": 1}, 400),
        ("PUT", "/v1/customers/bolt", {"name": 5}, 400),
        ("POST", "/v1/customers/acme/subscriptions", {"plan": "team", "trial": True}, 400),
        ("PATCH", sub, {"ends_at": "2000-01-01T00:00:00Z"}, 400),
        ("PUT", "/v1/plans/starter", {"product": "coder", "name": "S", "parent": "nope"}, 400),
        ("PUT", "/v1/currencies/ai-credits", {"name": "C", "low_balance_threshold": "x"}, 400),
        (
            "POST",
            f"{POOL}/grants",
            {"amount": -5, "category": "paid", "idempotency_key": "bad"},
            400,
        ),
        (
            "POST",
            "/v1/usage",
            {"customer": "acme", "feature": "ai-requests", "amount": -90, "idempotency_key": "n"},
            400,
        ),
        ("POST", "/v1/plans/team/migrations", {"at": "soon"}, 400),
        # 404
        ("POST", "/v1/customers/ghost/subscriptions", {"plan": "starter"}, 404),
        ("PATCH", "/v1/customers/acme/subscriptions/sub_nope", {"ends_at": at(DAY)}, 404),
        ("DELETE", "/v1/customers/acme/subscriptions/sub_nope", None, 404),
        ("DELETE", "/v1/customers/ghost", None, 404),
        ("POST", "/v1/reservations/res_nope/commit", {"amount": 1}, 404),
        ("POST", "/v1/plans/nope/migrations", {"at": "now"}, 404),
        # 409
        ("POST", f"/v1/reservations/{released['id']}/commit", {"amount": 1}, 409),
        (
            "POST",
            f"{POOL}/grants",
            {"amount": 99, "category": "paid", "idempotency_key": "g1"},
            409,
        ),
    ]
    for method, path, body, expected in rejected:
        status, answer = coder.status(method, path, body)
        assert status == expected, (method, path, status, answer)
        assert events(coder) == before, (method, path)
    coder.delete(sub, 200)
    after_cancel = events(coder)
    assert coder.status("DELETE", sub)[0] == 409
    assert events(coder) == after_cancel


# ------------------------------------------------------------------ reading events


def test_events_page_in_seq_order_and_filter(coder: Api) -> None:
    for name in ("acme", "bolt", "cara"):
        coder.put(f"/v1/customers/{name}", {"name": name}, 201)
        coder.put(f"/v1/customers/{name}", {"name": name.upper()}, 200)
    everything = events(coder)
    seqs = [e["seq"] for e in everything]
    assert seqs == sorted(set(seqs))
    walked: list[dict[str, Any]] = []
    after: str | None = None
    pages = 0
    while True:
        query = "limit=2" + ("" if after is None else f"&after={after}")
        page = coder.get(f"/v1/events?{query}")
        assert len(page["data"]) <= 2
        walked += page["data"]
        pages += 1
        if page["next"] is None:
            break
        assert page["next"] == str(page["data"][-1]["seq"])
        after = page["next"]
    assert walked == everything
    assert pages == (len(everything) + 1) // 2  # the last full page says there is no more
    # after= a seq lists only later events; the filters combine.
    middle = everything[len(everything) // 2]["seq"]
    later = coder.get(f"/v1/events?after={middle}")["data"]
    assert later == [e for e in everything if e["seq"] > middle]
    updated = events(coder, "customer.updated")
    assert [e["customer"] for e in updated] == ["acme", "bolt", "cara"]
    bolt = events(coder, customer="bolt")
    assert [e["type"] for e in bolt] == ["customer.created", "customer.updated"]
    (one,) = events(coder, "customer.created", "cara")
    assert one["data"]["name"] == "cara"
    assert events(coder, "credits.granted") == []
    assert events(coder, customer="nobody") == []


def test_reading_an_unknown_event_or_a_bad_filter(coder: Api) -> None:
    status, body = coder.status("GET", "/v1/events/evt_doesnotexist")
    assert (status, body["error"]["code"]) == (404, "not_found")
    status, body = coder.status("GET", "/v1/events?type=customer.exploded")
    assert (status, body["error"]["code"]) == (400, "invalid_request")
    assert coder.status("GET", "/v1/events/nope")[0] == 400
    assert coder.status("GET", "/v1/events?customer=%20bad")[0] == 400
    assert coder.status("GET", "/v1/events?after=abc")[0] == 400
    assert coder.status("GET", "/v1/events?limit=0")[0] == 400
    assert coder.status("GET", "/v1/events?limit=1001")[0] == 400
