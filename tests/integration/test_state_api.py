"""``GET /v1/customers/{id}/state``: what a local cache loads, exact at one revision."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.conftest import Api, define_catalog, new_customer, open_api


def check(api: Api, customer: str, feature: str, **extra: Any) -> Any:
    return api.check(customer, feature, **extra)


def test_every_feature_is_answered_as_a_check_without_a_request_would_be(api: Api) -> None:
    define_catalog(api)
    new_customer(api, "acme", "team")
    api.usage("acme", "ai-requests", 7, "u1")
    state = api.get("/v1/customers/acme/state")
    features = [answer["feature"] for answer in state["answers"]]
    assert features == ["sso", "seats", "ai-requests"]  # the catalog's, granted or not
    for answer in state["answers"]:
        assert answer == check(api, "acme", answer["feature"])
    assert state["customer"] == "acme"
    assert state["entity"] is None
    assert state["now"] == api.now()
    assert state["pools"] == []


def test_the_revision_is_the_logs_and_moves_with_each_change(api: Api) -> None:
    define_catalog(api)
    new_customer(api, "acme", "team")
    first = api.get("/v1/customers/acme/state")["revision"]
    assert isinstance(first, int)
    assert api.get("/v1/customers/acme/state")["revision"] == first  # nothing changed
    api.usage("acme", "ai-requests", 1, "u1")
    api.usage("acme", "ai-requests", 1, "u2")
    assert api.get("/v1/customers/acme/state")["revision"] == first + 2


def test_denials_are_answers_not_errors(api: Api) -> None:
    define_catalog(api)
    new_customer(api, "acme", "team")
    nobody = api.get("/v1/customers/nobody/state")
    assert {a["access_denied_reason"] for a in nobody["answers"]} == {"customer_not_found"}
    ghost = api.get("/v1/customers/acme/state?entity=ghost")
    assert {a["access_denied_reason"] for a in ghost["answers"]} == {"entity_not_found"}
    assert api.status("GET", "/v1/customers/acme/state?entity=a%20b")[0] == 400
    assert api.status("GET", "/v1/customers/a%20b/state")[0] == 400


def test_pools_budgets_and_validity(api: Api) -> None:
    api.put("/v1/features/tokens", {"name": "Tokens", "kind": "metered"}, 201)
    api.put("/v1/currencies/credits", {"name": "Credits"}, 201)
    api.put("/v1/products/p", {"name": "P"}, 201)
    plan = {
        "product": "p",
        "name": "Plan",
        "trial_days": 3,
        "entitlements": {
            "tokens": {"limit": None, "credit_cost": {"currency": "credits", "per_unit": 2}}
        },
    }
    api.put("/v1/plans/plan", plan, 201)
    trial = new_customer(api, "acme", "plan", trial=True)
    api.put("/v1/customers/acme/entities/bot", {}, 201)
    budget = {"limit": 10, "reset": "day", "enforcement": "hard"}
    api.put("/v1/customers/acme/entities/bot/budgets/credits", budget, 201)
    grant = {"amount": 40, "category": "paid", "idempotency_key": "g"}
    api.post("/v1/customers/acme/credits/credits/grants", grant, 201)
    reservation = {"customer": "acme", "feature": "tokens", "amount": 3, "idempotency_key": "r"}
    held = api.post("/v1/reservations", reservation, 200)
    state = api.get("/v1/customers/acme/state?entity=bot")
    assert state["pools"] == [
        {"currency": "credits", "balance": 40, "held": 6, "overdraft_limit": 0}
    ]
    (tokens,) = state["answers"]
    assert tokens == check(api, "acme", "tokens", entity="bot")
    assert tokens["credits"] == {"currency": "credits", "cost": 2, "available": 34}
    assert [b["target"] for b in tokens["budgets"]] == ["credits"]
    # The reservation expires before the trial ends: the state changes by itself then.
    assert state["valid_until"] == held["expires_at"]
    assert trial["trial_ends_at"] > held["expires_at"]
    api.post(f"/v1/reservations/{held['id']}/release", {}, 200)
    assert api.get("/v1/customers/acme/state")["valid_until"] == trial["trial_ends_at"]


def test_a_client_key_reads_its_own_customer_only(api: Api) -> None:
    define_catalog(api)
    new_customer(api, "acme", "team")
    new_customer(api, "globex", "team")
    key = api.post("/v1/api-keys", {"name": "web", "scope": "client", "customer": "acme"}, 201)
    assert api.get("/v1/customers/acme/state", key=key["key"])["customer"] == "acme"
    assert api.status("GET", "/v1/customers/globex/state", key=key["key"])[0] == 403
    assert api.status("GET", "/v1/customers/acme/state", key="nope")[0] == 401


def test_after_a_restart_the_revision_is_the_logs_not_zero(tmp_path: Path) -> None:
    database = tmp_path / "allotment.db"
    for api in open_api(database, test_clock=True):
        define_catalog(api)
        new_customer(api, "acme", "team")
        api.usage("acme", "ai-requests", 1, "u1")
        before = api.get("/v1/customers/acme/state")["revision"]
    for api in open_api(database, test_clock=True):
        assert api.get("/v1/customers/acme/state")["revision"] == before


def test_a_waiting_migration_bounds_the_states_validity(api: Api) -> None:
    """A local cache must read again when a migration moves the customer: the state says so."""
    define_catalog(api)
    subscription = new_customer(api, "acme", "team")
    before = api.get("/v1/customers/acme/state")
    team = api.get("/v1/plans/team")
    changed = {k: team[k] for k in ("product", "name", "parent", "entitlements", "credits")}
    changed["entitlements"] = {**changed["entitlements"], "seats": {"value": 99}}
    api.put("/v1/plans/team", changed, 200)
    api.post("/v1/plans/team/migrations", {"at": "period_end"}, 201)
    state = api.get("/v1/customers/acme/state")
    assert before["valid_until"] != subscription["current_period_end"]
    assert state["valid_until"] == subscription["current_period_end"]
