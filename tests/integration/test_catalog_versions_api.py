"""Catalog versions through HTTP: plans and add-ons publish versions, subscriptions pin theirs,
archiving refuses new ones, and migrations move live subscriptions (now or at period end)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.conftest import Api, define_catalog, new_customer

START = "2030-01-10T00:00:00Z"
PERIOD_END = "2030-02-10T00:00:00Z"  # a monthly period anchored at START ends here
NEXT_PERIOD_END = "2030-03-10T00:00:00Z"

TEAM: dict[str, Any] = {
    "product": "coder",
    "name": "Team",
    "parent": "starter",
    "entitlements": {
        "seats": {"value": 10},
        "ai-requests": {"limit": 1000, "reset": "month"},
    },
}
EXTRA_REQUESTS: dict[str, Any] = {
    "product": "coder",
    "name": "Extra requests",
    "entitlements": {"ai-requests": {"limit": 500, "mode": "increment"}},
}


@pytest.fixture
def coder(api: Api) -> Api:
    """define_catalog's catalog, with the test clock at START."""
    api.post("/v1/test/clock", {"now": START}, 200)
    define_catalog(api)
    return api


def team_with(limit: int, **changes: Any) -> dict[str, Any]:
    """Team's definition with its own ai-requests limit (1000 in define_catalog)."""
    team = copy.deepcopy(TEAM)
    team["entitlements"]["ai-requests"]["limit"] = limit
    return {**team, **changes}


def extra_requests_with(limit: int) -> dict[str, Any]:
    addon = copy.deepcopy(EXTRA_REQUESTS)
    addon["entitlements"]["ai-requests"]["limit"] = limit
    return addon


def subscribe(api: Api, customer: str, body: dict[str, Any]) -> Any:
    return api.post(f"/v1/customers/{customer}/subscriptions", body, 201)


def subscriptions(api: Api, customer: str) -> list[Any]:
    data: list[Any] = api.get(f"/v1/customers/{customer}/subscriptions")["data"]
    return data


def only_subscription(api: Api, customer: str) -> Any:
    (subscription,) = subscriptions(api, customer)
    return subscription


def patch(api: Api, customer: str, subscription: str, body: Any, expect: int = 200) -> Any:
    path = f"/v1/customers/{customer}/subscriptions/{subscription}"
    return api.request("PATCH", path, body, expect=expect)


def error(api: Api, method: str, path: str, body: Any = None) -> tuple[int, str]:
    status, answer = api.status(method, path, body)
    return status, answer["error"]["code"]


def version_counts(api: Api, path: str) -> dict[int, int]:
    listed = api.get(f"{path}/versions")
    assert listed["next"] is None
    return {v["version"]: v["subscriptions"] for v in listed["data"]}


def limit_of(api: Api, customer: str) -> Any:
    return api.check(customer, "ai-requests")["usage_limit"]


def set_clock(api: Api, now: str) -> None:
    assert api.post("/v1/test/clock", {"now": now}, 200) == {"now": now}


# ------------------------------------------------------------------ publishing plan versions


def test_a_new_plan_is_version_1_and_a_changed_definition_publishes_version_2(coder: Api) -> None:
    body = {"product": "coder", "name": "Solo", "entitlements": {"seats": {"value": 1}}}
    created = coder.put("/v1/plans/solo", body, 201)
    assert created == {
        "id": "solo",
        "version": 1,
        "status": "active",
        "published_at": START,
        "product": "coder",
        "name": "Solo",
        "parent": None,
        "parent_version": None,
        "trial_days": None,
        "billing_period": "month",
        "entitlements": {"seats": {"value": 1}},
        "credits": {},
    }
    later = coder.advance(60)
    changed = coder.put("/v1/plans/solo", {**body, "entitlements": {"seats": {"value": 2}}}, 200)
    assert (changed["version"], changed["status"], changed["published_at"]) == (2, "active", later)
    assert changed["entitlements"] == {"seats": {"value": 2}}
    assert coder.get("/v1/plans/solo") == changed
    first = coder.get("/v1/plans/solo/versions/1")
    assert first == {**created, "subscriptions": 0}
    # A plan with a parent names the parent's version it folded in.
    team = coder.get("/v1/plans/team")
    assert (team["version"], team["parent"], team["parent_version"]) == (1, "starter", 1)


def test_the_same_definition_again_publishes_nothing_defaults_included(coder: Api) -> None:
    short = {"product": "coder", "name": "Meter", "entitlements": {"ai-requests": {"limit": 5}}}
    created = coder.put("/v1/plans/meter", short, 201)
    coder.advance(60)
    spelled_out = {
        "product": "coder",
        "name": "Meter",
        "parent": None,
        "trial_days": None,
        "billing_period": "month",
        "entitlements": {"ai-requests": {"limit": 5, "reset": "month", "enforcement": "hard"}},
        "credits": {},
    }
    assert coder.put("/v1/plans/meter", spelled_out, 200) == created
    assert coder.put("/v1/plans/meter", short, 200) == created
    assert coder.put("/v1/plans/meter", {**short, "credits": None}, 200) == created
    # The order of entitlements does not count either.
    team = coder.get("/v1/plans/team")
    reordered = {**TEAM, "entitlements": dict(reversed(list(TEAM["entitlements"].items())))}
    assert coder.put("/v1/plans/team", reordered, 200) == team
    assert [v["version"] for v in coder.get("/v1/plans/meter/versions")["data"]] == [1]
    assert [v["version"] for v in coder.get("/v1/plans/team/versions")["data"]] == [1]


def test_quantities_and_credits_are_compared_after_defaults(coder: Api) -> None:
    coder.put("/v1/currencies/ai-credits", {"name": "Credits"}, 201)
    short = {
        "product": "coder",
        "name": "Priced",
        "entitlements": {
            "ai-requests": {
                "limit": 5,
                "credit_cost": {"currency": "ai-credits", "per_unit": "0.001"},
            }
        },
        "credits": {"ai-credits": {"amount": 100, "every": "month"}},
    }
    created = coder.put("/v1/plans/priced", short, 201)
    spelled_out = copy.deepcopy(short)
    spelled_out["entitlements"]["ai-requests"].update({"limit": "5.000", "reset": "month"})
    spelled_out["entitlements"]["ai-requests"]["credit_cost"]["per_unit"] = 0.0010
    spelled_out["credits"]["ai-credits"].update(
        {"category": "paid", "cost_basis": 0, "overdraft_limit": 0}
    )
    assert coder.put("/v1/plans/priced", spelled_out, 200) == created
    more = copy.deepcopy(short)
    more["credits"]["ai-credits"]["overdraft_limit"] = 10
    assert coder.put("/v1/plans/priced", more, 200)["version"] == 2


def test_publications_from_two_processes_stack(coder: Api) -> None:
    from tests.conftest import open_api

    assert coder.put("/v1/plans/team", team_with(2000), 200)["version"] == 2
    for other in open_api(coder.database, test_clock=True):
        assert other.put("/v1/plans/team", team_with(3000), 200)["version"] == 3
        assert coder.put("/v1/plans/team", team_with(4000), 200)["version"] == 4
        new_customer(other, "acme")
        assert subscribe(other, "acme", {"plan": "team"})["plan_version"] == 4
        listed = coder.get("/v1/plans/team/versions")["data"]
        assert [v["entitlements"]["ai-requests"]["limit"] for v in listed] == [
            1000,
            2000,
            3000,
            4000,
        ]
        assert coder.get("/v1/plans/enterprise")["version"] == 4


def test_publishing_a_parent_republishes_every_descendant_and_frozen_versions_stay(
    coder: Api,
) -> None:
    coder.put("/v1/features/storage", {"name": "Storage", "kind": "numeric"}, 201)
    starter = {
        "product": "coder",
        "name": "Starter",
        "entitlements": {
            "seats": {"value": 3},
            "ai-requests": {"limit": 100, "reset": "day"},
            "storage": {"value": 5},
        },
    }
    # starter v2 (storage 5): team v2 and enterprise v2 follow it.
    assert coder.put("/v1/plans/starter", starter, 200)["version"] == 2
    team = coder.get("/v1/plans/team")
    assert (team["version"], team["parent_version"]) == (2, 2)
    assert team["entitlements"] == {
        "seats": {"value": 10},
        "ai-requests": {"limit": 1000, "reset": "month", "enforcement": "hard"},
    }
    # team v3 alone (a new name): enterprise v3 follows team; starter stays at v2.
    assert coder.put("/v1/plans/team", {**TEAM, "name": "Team 2030"}, 200)["version"] == 3
    enterprise = coder.get("/v1/plans/enterprise")
    assert (enterprise["version"], enterprise["parent_version"]) == (3, 3)
    assert coder.get("/v1/plans/starter")["version"] == 2

    for customer in ("old-team", "old-enterprise"):
        new_customer(coder, customer)
    subscribe(coder, "old-team", {"plan": "team"})
    subscribe(coder, "old-enterprise", {"plan": "enterprise"})
    assert coder.check("old-team", "storage")["value"] == 5

    later = coder.advance(60)
    storage_8 = {**starter, "entitlements": {**starter["entitlements"], "storage": {"value": 8}}}
    assert coder.put("/v1/plans/starter", storage_8, 200)["version"] == 3
    team = coder.get("/v1/plans/team")
    enterprise = coder.get("/v1/plans/enterprise")
    assert (team["version"], team["parent_version"], team["published_at"]) == (4, 3, later)
    assert (enterprise["version"], enterprise["parent_version"]) == (4, 4)
    # Their own definitions are unchanged; the frozen versions still name what they folded.
    assert team["name"] == "Team 2030"
    assert team["entitlements"] == coder.get("/v1/plans/team/versions/3")["entitlements"]
    assert enterprise["entitlements"]["seats"] == {"value": None}
    assert coder.get("/v1/plans/team/versions/3")["parent_version"] == 2
    assert coder.get("/v1/plans/enterprise/versions/3")["parent_version"] == 3

    # Existing subscribers keep the inherited value they bought; new ones get the new one.
    for customer in ("new-team", "new-enterprise"):
        new_customer(coder, customer)
    fresh_team = subscribe(coder, "new-team", {"plan": "team"})
    fresh_enterprise = subscribe(coder, "new-enterprise", {"plan": "enterprise"})
    assert (fresh_team["plan_version"], fresh_enterprise["plan_version"]) == (4, 4)
    assert only_subscription(coder, "old-team")["plan_version"] == 3
    assert only_subscription(coder, "old-enterprise")["plan_version"] == 3
    assert coder.check("old-team", "storage")["value"] == 5
    assert coder.check("old-enterprise", "storage")["value"] == 5
    assert coder.check("new-team", "storage")["value"] == 8
    assert coder.check("new-enterprise", "storage")["value"] == 8
    assert coder.check("new-enterprise", "seats")["is_unlimited"] is True


def test_a_plan_outside_the_changed_tree_is_not_republished(coder: Api) -> None:
    coder.put("/v1/plans/solo", {"product": "coder", "name": "Solo"}, 201)
    coder.put("/v1/plans/team", team_with(2000), 200)
    assert coder.get("/v1/plans/starter")["version"] == 1
    assert coder.get("/v1/plans/solo")["version"] == 1
    assert coder.get("/v1/plans/enterprise")["version"] == 2


def test_a_child_republished_for_its_parent_keeps_its_archived_status(coder: Api) -> None:
    assert coder.delete("/v1/plans/team", 200)["status"] == "archived"
    coder.put("/v1/plans/starter", {"product": "coder", "name": "Starter 2"}, 200)
    team = coder.get("/v1/plans/team")
    assert (team["version"], team["status"]) == (2, "archived")
    assert coder.get("/v1/plans/enterprise")["status"] == "active"


def test_addons_publish_versions_and_subscribers_keep_theirs(coder: Api) -> None:
    created = coder.put(
        "/v1/addons/more-seats",
        {
            "product": "coder",
            "name": "More seats",
            "entitlements": {"seats": {"value": 5, "mode": "increment"}},
        },
        201,
    )
    assert created == {
        "id": "more-seats",
        "version": 1,
        "status": "active",
        "published_at": START,
        "product": "coder",
        "name": "More seats",
        "entitlements": {"seats": {"value": 5, "mode": "increment"}},
        "credits": {},
    }
    new_customer(coder, "acme")
    held = subscribe(coder, "acme", {"plan": "team", "addons": [{"id": "extra-requests"}]})
    assert held["addons"] == [{"id": "extra-requests", "quantity": 1, "version": 1}]
    assert limit_of(coder, "acme") == 1500

    later = coder.advance(60)
    changed = coder.put("/v1/addons/extra-requests", extra_requests_with(700), 200)
    assert (changed["version"], changed["status"], changed["published_at"]) == (2, "active", later)
    spelled_out = {
        **EXTRA_REQUESTS,
        "entitlements": {
            "ai-requests": {
                "limit": 700,
                "reset": "month",
                "enforcement": "hard",
                "mode": "increment",
            }
        },
        "credits": {},
    }
    coder.advance(60)
    assert coder.put("/v1/addons/extra-requests", spelled_out, 200) == changed
    assert coder.get("/v1/addons/extra-requests") == changed
    assert coder.get("/v1/addons/extra-requests/versions/1")["entitlements"] == {
        "ai-requests": {"limit": 500, "reset": "month", "enforcement": "hard", "mode": "increment"}
    }

    new_customer(coder, "globex")
    fresh = subscribe(
        coder, "globex", {"plan": "team", "addons": [{"id": "extra-requests", "quantity": 2}]}
    )
    assert fresh["addons"] == [{"id": "extra-requests", "quantity": 2, "version": 2}]
    assert limit_of(coder, "globex") == 2400
    assert limit_of(coder, "acme") == 1500
    assert only_subscription(coder, "acme")["addons"][0]["version"] == 1


# ------------------------------------------------------------------ listing and reading versions


def test_versions_list_oldest_first_with_the_live_subscriptions_on_each(coder: Api) -> None:
    coder.put("/v1/plans/team", team_with(2000), 200)
    coder.put("/v1/plans/team", team_with(3000), 200)
    for customer in ("on-1", "canceled-1", "on-2", "on-3", "trial-3", "trial-1", "moved"):
        new_customer(coder, customer)
    subscribe(coder, "on-1", {"plan": "team", "plan_version": 1})
    canceled = subscribe(coder, "canceled-1", {"plan": "team", "plan_version": 1})
    coder.delete(f"/v1/customers/canceled-1/subscriptions/{canceled['id']}", 200)
    subscribe(coder, "on-2", {"plan": "team", "plan_version": 2})
    subscribe(coder, "on-3", {"plan": "team"})
    subscribe(coder, "trial-3", {"plan": "team", "trial": True, "trial_days": 7})
    subscribe(coder, "trial-1", {"plan": "team", "plan_version": 1, "trial": True, "trial_days": 1})
    subscribe(coder, "moved", {"plan": "team", "plan_version": 2})
    subscribe(coder, "moved", {"plan": "enterprise"})  # replaces its team subscription
    assert version_counts(coder, "/v1/plans/team") == {1: 2, 2: 1, 3: 2}

    coder.advance(2 * 86400)  # trial-1's one-day trial has expired
    assert only_subscription(coder, "trial-1")["status"] == "expired"
    listed = coder.get("/v1/plans/team/versions")
    assert [(v["version"], v["subscriptions"]) for v in listed["data"]] == [(1, 1), (2, 1), (3, 2)]
    assert [v["entitlements"]["ai-requests"]["limit"] for v in listed["data"]] == [
        1000,
        2000,
        3000,
    ]
    assert {v["id"] for v in listed["data"]} == {"team"}
    assert listed["data"][2] == {**coder.get("/v1/plans/team"), "subscriptions": 2}
    assert coder.get("/v1/plans/team/versions/2") == listed["data"][1]


def test_versions_list_pages_with_after_and_limit(coder: Api) -> None:
    coder.put("/v1/plans/team", team_with(2000), 200)
    coder.put("/v1/plans/team", team_with(3000), 200)
    first = coder.get("/v1/plans/team/versions?limit=2")
    assert [v["version"] for v in first["data"]] == [1, 2]
    assert first["next"] == "2"
    second = coder.get(f"/v1/plans/team/versions?limit=2&after={first['next']}")
    assert [v["version"] for v in second["data"]] == [3]
    assert second["next"] is None
    assert coder.get("/v1/plans/team/versions?limit=3")["next"] is None


@pytest.mark.parametrize("after", ["abc", "0", "-1", "4", "99999999999", "1.5", "%C2%B2", "%D9%A1"])
def test_a_bad_versions_cursor_is_400(coder: Api, after: str) -> None:
    """Superscript two and Arabic-Indic one (percent-encoded) are digits to str.isdigit, but
    not to the cursor's ^[0-9]{1,10}$."""
    coder.put("/v1/plans/team", team_with(2000), 200)
    coder.put("/v1/plans/team", team_with(3000), 200)
    for path in ("/v1/plans/team/versions", "/v1/addons/extra-requests/versions"):
        assert error(coder, "GET", f"{path}?after={after}") == (400, "invalid_request")


@pytest.mark.parametrize("kind", ["plans", "addons"])
def test_reading_an_unknown_version_or_object_is_404(coder: Api, kind: str) -> None:
    known = "team" if kind == "plans" else "extra-requests"
    assert coder.get(f"/v1/{kind}/{known}/versions/1")["version"] == 1
    assert error(coder, "GET", f"/v1/{kind}/{known}/versions/2") == (404, "not_found")
    assert error(coder, "GET", f"/v1/{kind}/{known}/versions/2147483647") == (404, "not_found")
    assert error(coder, "GET", f"/v1/{kind}/ghost/versions/1") == (404, "not_found")
    assert error(coder, "GET", f"/v1/{kind}/ghost/versions") == (404, "not_found")


@pytest.mark.parametrize("kind", ["plans", "addons"])
@pytest.mark.parametrize(
    "version", ["0", "-1", "abc", "1.0", "01x", "2147483648", "99999999999999999999", "%C2%B2"]
)
def test_a_version_that_is_not_a_number_from_1_is_400(coder: Api, kind: str, version: str) -> None:
    known = "team" if kind == "plans" else "extra-requests"
    assert error(coder, "GET", f"/v1/{kind}/{known}/versions/{version}") == (
        400,
        "invalid_request",
    )


def test_addon_versions_count_the_subscriptions_holding_each(coder: Api) -> None:
    coder.put("/v1/addons/extra-requests", extra_requests_with(700), 200)
    for customer in ("holds-1", "holds-2", "canceled", "none"):
        new_customer(coder, customer)
    subscribe(
        coder, "holds-1", {"plan": "team", "addons": [{"id": "extra-requests", "version": 1}]}
    )
    subscribe(
        coder, "holds-2", {"plan": "team", "addons": [{"id": "extra-requests", "quantity": 3}]}
    )
    gone = subscribe(coder, "canceled", {"plan": "team", "addons": [{"id": "extra-requests"}]})
    coder.delete(f"/v1/customers/canceled/subscriptions/{gone['id']}", 200)
    subscribe(coder, "none", {"plan": "team", "addons": [{"id": "big-team"}]})
    assert version_counts(coder, "/v1/addons/extra-requests") == {1: 1, 2: 1}
    assert version_counts(coder, "/v1/addons/big-team") == {1: 1}
    page = coder.get("/v1/addons/extra-requests/versions?limit=1")
    assert ([v["version"] for v in page["data"]], page["next"]) == ([1], "1")
    rest = coder.get("/v1/addons/extra-requests/versions?after=1")
    assert ([v["version"] for v in rest["data"]], rest["next"]) == ([2], None)
    assert rest["data"][0] == {**coder.get("/v1/addons/extra-requests"), "subscriptions": 1}


# ------------------------------------------------------------------ subscriptions pin versions


def test_a_subscription_takes_the_latest_version_or_the_one_it_names(coder: Api) -> None:
    coder.put("/v1/plans/team", team_with(2000), 200)
    new_customer(coder, "latest")
    new_customer(coder, "pinned")
    latest = subscribe(coder, "latest", {"plan": "team"})
    pinned = subscribe(coder, "pinned", {"plan": "team", "plan_version": 1})
    assert (latest["plan_version"], pinned["plan_version"]) == (2, 1)
    assert "pending_version" not in latest
    assert "pending_at" not in latest
    assert (limit_of(coder, "latest"), limit_of(coder, "pinned")) == (2000, 1000)
    assert only_subscription(coder, "pinned")["plan_version"] == 1


@pytest.mark.parametrize("version", [3, 0, -1, "1", None])
def test_a_plan_version_the_plan_does_not_have_is_400(coder: Api, version: Any) -> None:
    coder.put("/v1/plans/team", team_with(2000), 200)
    new_customer(coder, "acme")
    body = {"plan": "team", "plan_version": version}
    if version is None:
        # null is the default (the latest): the one value here that is accepted.
        assert subscribe(coder, "acme", body)["plan_version"] == 2
        return
    status, answer = coder.status("POST", "/v1/customers/acme/subscriptions", body)
    assert (status, answer["error"]["code"]) == (400, "invalid_request")
    assert subscriptions(coder, "acme") == []


def test_an_addon_entry_takes_a_version_and_patch_keeps_it_unless_named(coder: Api) -> None:
    coder.put("/v1/addons/extra-requests", extra_requests_with(700), 200)
    new_customer(coder, "acme")
    held = subscribe(
        coder, "acme", {"plan": "team", "addons": [{"id": "extra-requests", "version": 1}]}
    )
    assert held["addons"] == [{"id": "extra-requests", "quantity": 1, "version": 1}]
    assert limit_of(coder, "acme") == 1500

    # A quantity change keeps version 1; a new entry takes the latest.
    patched = patch(
        coder,
        "acme",
        held["id"],
        {"addons": [{"id": "extra-requests", "quantity": 2}, {"id": "big-team"}]},
    )
    assert patched["addons"] == [
        {"id": "extra-requests", "quantity": 2, "version": 1},
        {"id": "big-team", "quantity": 1, "version": 1},
    ]
    assert limit_of(coder, "acme") == 2000
    coder.put(
        "/v1/addons/big-team",
        {
            "product": "coder",
            "name": "Big team",
            "entitlements": {"seats": {"value": 60, "mode": "override"}},
        },
        200,
    )
    assert coder.check("acme", "seats")["value"] == 50

    # Naming a version moves the entry to it.
    named = patch(
        coder,
        "acme",
        held["id"],
        {"addons": [{"id": "extra-requests", "quantity": 2, "version": 2}, {"id": "big-team"}]},
    )
    assert named["addons"] == [
        {"id": "extra-requests", "quantity": 2, "version": 2},
        {"id": "big-team", "quantity": 1, "version": 1},
    ]
    assert limit_of(coder, "acme") == 2400
    assert coder.check("acme", "seats")["value"] == 50
    assert only_subscription(coder, "acme")["addons"] == named["addons"]


@pytest.mark.parametrize("version", [3, 0, -1])
def test_an_addon_version_the_addon_does_not_have_is_400(coder: Api, version: int) -> None:
    coder.put("/v1/addons/extra-requests", extra_requests_with(700), 200)
    new_customer(coder, "acme")
    entry = [{"id": "extra-requests", "version": version}]
    status, answer = coder.status(
        "POST", "/v1/customers/acme/subscriptions", {"plan": "team", "addons": entry}
    )
    assert (status, answer["error"]["code"]) == (400, "invalid_request")
    plain = subscribe(coder, "acme", {"plan": "team"})
    status, answer = coder.status(
        "PATCH", f"/v1/customers/acme/subscriptions/{plain['id']}", {"addons": entry}
    )
    assert (status, answer["error"]["code"]) == (400, "invalid_request")
    assert only_subscription(coder, "acme")["addons"] == []


# ------------------------------------------------------------------ archiving


def test_an_archived_plan_refuses_new_subscriptions_and_keeps_existing_ones(coder: Api) -> None:
    new_customer(coder, "acme")
    held = subscribe(coder, "acme", {"plan": "team"})
    archived = coder.delete("/v1/plans/team", 200)
    assert archived == {**coder.get("/v1/plans/team"), "status": "archived"}
    assert (archived["version"], archived["status"]) == (1, "archived")
    assert [p["status"] for p in coder.get("/v1/plans")["data"]] == ["active", "archived", "active"]
    assert coder.get("/v1/plans/team/versions/1")["status"] == "archived"
    assert coder.delete("/v1/plans/team", 200) == archived  # archiving again changes nothing

    new_customer(coder, "globex")
    for body in (
        {"plan": "team"},
        {"plan": "team", "plan_version": 1},
        {"plan": "team", "trial": True, "trial_days": 7},
    ):
        assert error(coder, "POST", "/v1/customers/globex/subscriptions", body) == (
            409,
            "conflict",
        )
    assert subscriptions(coder, "globex") == []

    # Existing subscriptions keep working.
    check = coder.check("acme", "ai-requests")
    assert (check["has_access"], check["usage_limit"]) == (True, 1000)
    assert coder.usage("acme", "ai-requests", 3, "u1")["recorded"] is True
    assert coder.check("acme", "seats")["value"] == 10
    assert only_subscription(coder, "acme")["id"] == held["id"]
    assert version_counts(coder, "/v1/plans/team") == {1: 1}

    # An unchanged PUT leaves it archived; a changed one publishes and reactivates it.
    assert coder.put("/v1/plans/team", TEAM, 200) == archived
    assert error(coder, "POST", "/v1/customers/globex/subscriptions", {"plan": "team"})[0] == 409
    published = coder.put("/v1/plans/team", team_with(2000), 200)
    assert (published["version"], published["status"]) == (2, "active")
    assert subscribe(coder, "globex", {"plan": "team"})["plan_version"] == 2
    assert coder.get("/v1/plans/team/versions/1")["status"] == "active"


@pytest.mark.parametrize("kind", ["plans", "addons"])
def test_archiving_an_unknown_plan_or_addon_is_404(coder: Api, kind: str) -> None:
    assert error(coder, "DELETE", f"/v1/{kind}/ghost") == (404, "not_found")
    assert error(coder, "GET", f"/v1/{kind}/ghost") == (404, "not_found")


def test_an_archived_addon_refuses_new_entries_and_keeps_held_ones(coder: Api) -> None:
    new_customer(coder, "acme")
    new_customer(coder, "globex")
    held = subscribe(coder, "acme", {"plan": "team", "addons": [{"id": "extra-requests"}]})
    plain = subscribe(coder, "globex", {"plan": "team"})
    archived = coder.delete("/v1/addons/extra-requests", 200)
    assert (archived["version"], archived["status"]) == (1, "archived")
    assert coder.get("/v1/addons/extra-requests") == archived

    new_customer(coder, "initech")
    entry = {"plan": "team", "addons": [{"id": "extra-requests"}]}
    assert error(coder, "POST", "/v1/customers/initech/subscriptions", entry) == (409, "conflict")
    globex_path = f"/v1/customers/globex/subscriptions/{plain['id']}"
    assert error(coder, "PATCH", globex_path, {"addons": [{"id": "extra-requests"}]}) == (
        409,
        "conflict",
    )
    assert only_subscription(coder, "globex")["addons"] == []
    assert subscriptions(coder, "initech") == []

    # The entry acme holds survives a PATCH, quantity changed and another add-on added.
    assert limit_of(coder, "acme") == 1500
    patched = patch(
        coder,
        "acme",
        held["id"],
        {"addons": [{"id": "extra-requests", "quantity": 3}, {"id": "big-team"}]},
    )
    assert patched["addons"] == [
        {"id": "extra-requests", "quantity": 3, "version": 1},
        {"id": "big-team", "quantity": 1, "version": 1},
    ]
    assert limit_of(coder, "acme") == 2500

    # Unchanged PUT: still archived. Changed PUT: active again, entries allowed.
    assert coder.put("/v1/addons/extra-requests", EXTRA_REQUESTS, 200) == archived
    assert error(coder, "POST", "/v1/customers/initech/subscriptions", entry)[0] == 409
    published = coder.put("/v1/addons/extra-requests", extra_requests_with(700), 200)
    assert (published["version"], published["status"]) == (2, "active")
    assert subscribe(coder, "initech", entry)["addons"] == [
        {"id": "extra-requests", "quantity": 1, "version": 2}
    ]


# ------------------------------------------------------------------ migrations


def test_a_migration_defaults_to_every_older_version_and_the_latest(coder: Api) -> None:
    coder.put("/v1/plans/team", team_with(2000), 200)
    coder.put("/v1/plans/team", team_with(3000), 200)
    for customer, version in (("on-1", 1), ("on-2", 2), ("on-3", 3), ("canceled", 1)):
        new_customer(coder, customer)
        subscribe(coder, customer, {"plan": "team", "plan_version": version})
    ended = only_subscription(coder, "canceled")
    coder.delete(f"/v1/customers/canceled/subscriptions/{ended['id']}", 200)
    migration = coder.post("/v1/plans/team/migrations", {"at": "now"}, 201)
    assert migration["id"].startswith("mig_")
    assert {k: v for k, v in migration.items() if k != "id"} == {
        "plan": "team",
        "from_versions": [1, 2],
        "to_version": 3,
        "at": "now",
        "subscriptions": 2,
        "created_at": START,
    }
    assert version_counts(coder, "/v1/plans/team") == {1: 0, 2: 0, 3: 3}
    for customer in ("on-1", "on-2", "on-3"):
        assert only_subscription(coder, customer)["plan_version"] == 3
        assert limit_of(coder, customer) == 3000
    assert only_subscription(coder, "canceled")["plan_version"] == 1


def test_a_migration_names_its_versions(coder: Api) -> None:
    coder.put("/v1/plans/team", team_with(2000), 200)
    coder.put("/v1/plans/team", team_with(3000), 200)
    for customer, version in (("on-1", 1), ("on-2", 2), ("on-3", 3)):
        new_customer(coder, customer)
        subscribe(coder, customer, {"plan": "team", "plan_version": version})
    back = coder.post(
        "/v1/plans/team/migrations", {"at": "now", "from_versions": [3], "to_version": 1}, 201
    )
    assert (back["from_versions"], back["to_version"], back["subscriptions"]) == ([3], 1, 1)
    assert only_subscription(coder, "on-3")["plan_version"] == 1
    assert limit_of(coder, "on-3") == 1000
    middle = coder.post("/v1/plans/team/migrations", {"at": "now", "to_version": 2}, 201)
    assert (middle["from_versions"], middle["to_version"], middle["subscriptions"]) == ([1], 2, 2)
    assert version_counts(coder, "/v1/plans/team") == {1: 0, 2: 3, 3: 0}


def test_a_migration_now_changes_checks_at_once_and_keeps_the_usage(coder: Api) -> None:
    new_customer(coder, "acme")
    new_customer(coder, "trialer")
    paid = subscribe(coder, "acme", {"plan": "team"})
    trial = subscribe(coder, "trialer", {"plan": "team", "trial": True, "trial_days": 7})
    coder.advance(86400)
    assert coder.usage("acme", "ai-requests", 30, "u1")["current_usage"] == 30
    before = coder.check("acme", "ai-requests")
    assert (before["usage_limit"], before["remaining"]) == (1000, 970)

    coder.put("/v1/plans/team", team_with(2000), 200)
    assert limit_of(coder, "acme") == 1000  # publishing moves nobody
    migration = coder.post("/v1/plans/team/migrations", {"at": "now"}, 201)
    assert migration["subscriptions"] == 2
    after = coder.check("acme", "ai-requests")
    assert (after["usage_limit"], after["current_usage"], after["remaining"]) == (2000, 30, 1970)
    assert after["usage_period_start"] == before["usage_period_start"] == START
    assert after["usage_period_end"] == PERIOD_END
    moved = only_subscription(coder, "acme")
    assert moved["plan_version"] == 2
    assert "pending_version" not in moved
    assert "pending_at" not in moved
    assert (moved["id"], moved["current_period_start"]) == (paid["id"], START)
    assert moved["current_period_end"] == PERIOD_END
    # The trial moved too.
    trial_check = coder.check("trialer", "ai-requests")
    assert trial_check["source"] == {"type": "trial", "id": "team"}
    assert trial_check["usage_limit"] == 2000
    moved_trial = only_subscription(coder, "trialer")
    assert (moved_trial["id"], moved_trial["plan_version"]) == (trial["id"], 2)
    assert moved_trial["status"] == "trialing"


def test_a_migration_at_period_end_waits_for_the_periods_end(coder: Api) -> None:
    new_customer(coder, "acme")
    subscribe(coder, "acme", {"plan": "team"})
    coder.usage("acme", "ai-requests", 30, "u1")
    coder.put("/v1/plans/team", team_with(2000), 200)
    migration = coder.post("/v1/plans/team/migrations", {"at": "period_end"}, 201)
    assert {k: v for k, v in migration.items() if k != "id"} == {
        "plan": "team",
        "from_versions": [1],
        "to_version": 2,
        "at": "period_end",
        "subscriptions": 1,
        "created_at": START,
    }
    waiting = only_subscription(coder, "acme")
    assert (waiting["plan_version"], waiting["pending_version"]) == (1, 2)
    assert waiting["pending_at"] == waiting["current_period_end"] == PERIOD_END
    assert waiting["current_period_start"] == START
    assert version_counts(coder, "/v1/plans/team") == {1: 1, 2: 0}
    # A PATCH of the add-ons leaves the plan's move waiting.
    patched = patch(coder, "acme", waiting["id"], {"addons": [{"id": "big-team"}]})
    assert (patched["plan_version"], patched["pending_version"]) == (1, 2)
    assert patched["pending_at"] == PERIOD_END
    patched = patch(coder, "acme", waiting["id"], {"addons": []})
    assert patched == waiting

    set_clock(coder, "2030-02-09T23:59:59Z")
    check = coder.check("acme", "ai-requests")
    assert (check["usage_limit"], check["current_usage"]) == (1000, 30)
    assert only_subscription(coder, "acme") == waiting
    assert version_counts(coder, "/v1/plans/team") == {1: 1, 2: 0}

    set_clock(coder, PERIOD_END)
    check = coder.check("acme", "ai-requests")
    # The new version from its instant; the period anchor is kept, so a new period begins.
    assert (check["usage_limit"], check["current_usage"]) == (2000, 0)
    assert (check["usage_period_start"], check["usage_period_end"]) == (
        PERIOD_END,
        NEXT_PERIOD_END,
    )
    moved = only_subscription(coder, "acme")
    assert moved["plan_version"] == 2
    assert "pending_version" not in moved
    assert "pending_at" not in moved
    assert (moved["current_period_start"], moved["current_period_end"]) == (
        PERIOD_END,
        NEXT_PERIOD_END,
    )
    assert moved["starts_at"] == START
    assert version_counts(coder, "/v1/plans/team") == {1: 0, 2: 1}


def test_a_period_end_migration_keeps_usage_recorded_before_its_instant(coder: Api) -> None:
    """Usage of the current reset period counts on the new version when the reset period
    outlives the billing period (a yearly limit on a monthly plan)."""
    yearly = team_with(1000)
    yearly["entitlements"]["ai-requests"]["reset"] = "year"
    coder.put("/v1/plans/team", yearly, 200)
    new_customer(coder, "acme")
    subscribe(coder, "acme", {"plan": "team"})
    coder.usage("acme", "ai-requests", 40, "u1")
    raised = copy.deepcopy(yearly)
    raised["entitlements"]["ai-requests"]["limit"] = 5000
    coder.put("/v1/plans/team", raised, 200)
    coder.post("/v1/plans/team/migrations", {"at": "period_end"}, 201)
    set_clock(coder, PERIOD_END)
    check = coder.check("acme", "ai-requests")
    assert (check["usage_limit"], check["current_usage"]) == (5000, 40)
    assert check["usage_period_start"] == START


def test_a_later_migration_replaces_a_waiting_move(coder: Api) -> None:
    new_customer(coder, "acme")
    subscribe(coder, "acme", {"plan": "team"})
    coder.put("/v1/plans/team", team_with(2000), 200)
    coder.post("/v1/plans/team/migrations", {"at": "period_end"}, 201)
    coder.put("/v1/plans/team", team_with(3000), 200)
    # acme is on version 1 until its move: a migration from version 1 replaces the move.
    migration = coder.post("/v1/plans/team/migrations", {"at": "now", "from_versions": [1]}, 201)
    assert (migration["to_version"], migration["subscriptions"]) == (3, 1)
    moved = only_subscription(coder, "acme")
    assert moved["plan_version"] == 3
    assert "pending_version" not in moved
    assert limit_of(coder, "acme") == 3000
    set_clock(coder, PERIOD_END)
    assert only_subscription(coder, "acme")["plan_version"] == 3
    assert limit_of(coder, "acme") == 3000


@pytest.mark.parametrize(
    "body",
    [
        {"at": "now", "to_version": 3},
        {"at": "now", "to_version": 0},
        {"at": "now", "from_versions": [7]},
        {"at": "now", "from_versions": [0]},
        {"at": "now", "from_versions": [1, 2]},
        {"at": "now", "from_versions": [2], "to_version": 2},
        {"at": "now", "from_versions": [1, 1]},
        {"at": "now", "from_versions": []},
        {"at": "now", "from_versions": 1},
        {},
        {"from_versions": [1]},
        {"at": "later"},
        {"at": None},
        {"at": "now", "plan": "team"},
    ],
)
@pytest.mark.parametrize("kind", ["plans", "addons"])
def test_a_bad_migration_is_400_and_moves_nobody(
    coder: Api,
    kind: str,
    body: dict[str, Any],
) -> None:
    coder.put("/v1/plans/team", team_with(2000), 200)
    coder.put("/v1/addons/extra-requests", extra_requests_with(700), 200)
    new_customer(coder, "acme")
    subscribe(
        coder,
        "acme",
        {"plan": "team", "plan_version": 1, "addons": [{"id": "extra-requests", "version": 1}]},
    )
    known = "team" if kind == "plans" else "extra-requests"
    assert error(coder, "POST", f"/v1/{kind}/{known}/migrations", body) == (400, "invalid_request")
    held = only_subscription(coder, "acme")
    assert (held["plan_version"], held["addons"]) == (
        1,
        [{"id": "extra-requests", "quantity": 1, "version": 1}],
    )
    assert "pending_version" not in held
    assert limit_of(coder, "acme") == 1500


@pytest.mark.parametrize("kind", ["plans", "addons"])
def test_migrating_an_unknown_plan_or_addon_is_404(coder: Api, kind: str) -> None:
    assert error(coder, "POST", f"/v1/{kind}/ghost/migrations", {"at": "now"}) == (
        404,
        "not_found",
    )


def test_an_addon_migration_moves_entries_at_period_end(coder: Api) -> None:
    new_customer(coder, "acme")
    new_customer(coder, "other")
    held = subscribe(
        coder, "acme", {"plan": "team", "addons": [{"id": "extra-requests", "quantity": 2}]}
    )
    subscribe(coder, "other", {"plan": "team", "addons": [{"id": "big-team"}]})
    coder.put("/v1/addons/extra-requests", extra_requests_with(700), 200)
    migration = coder.post("/v1/addons/extra-requests/migrations", {"at": "period_end"}, 201)
    assert migration["id"].startswith("mig_")
    assert {k: v for k, v in migration.items() if k != "id"} == {
        "addon": "extra-requests",
        "from_versions": [1],
        "to_version": 2,
        "at": "period_end",
        "subscriptions": 1,
        "created_at": START,
    }
    waiting = only_subscription(coder, "acme")
    assert waiting["addons"] == [
        {
            "id": "extra-requests",
            "quantity": 2,
            "version": 1,
            "pending_version": 2,
            "pending_at": PERIOD_END,
        }
    ]
    assert waiting["plan_version"] == 1
    assert "pending_version" not in waiting  # the plan itself does not move
    assert version_counts(coder, "/v1/addons/extra-requests") == {1: 1, 2: 0}

    # A PATCH that keeps the entry keeps the move waiting for it.
    patched = patch(
        coder, "acme", held["id"], {"addons": [{"id": "extra-requests", "quantity": 3}]}
    )
    assert patched["addons"] == [
        {
            "id": "extra-requests",
            "quantity": 3,
            "version": 1,
            "pending_version": 2,
            "pending_at": PERIOD_END,
        }
    ]
    set_clock(coder, "2030-02-09T23:59:59Z")
    assert limit_of(coder, "acme") == 2500
    set_clock(coder, PERIOD_END)
    assert limit_of(coder, "acme") == 3100
    assert only_subscription(coder, "acme")["addons"] == [
        {"id": "extra-requests", "quantity": 3, "version": 2}
    ]
    assert version_counts(coder, "/v1/addons/extra-requests") == {1: 0, 2: 1}


def test_an_addon_migration_now_moves_entries_at_once(coder: Api) -> None:
    new_customer(coder, "acme")
    subscribe(coder, "acme", {"plan": "team", "addons": [{"id": "extra-requests"}]})
    coder.usage("acme", "ai-requests", 25, "u1")
    coder.put("/v1/addons/extra-requests", extra_requests_with(700), 200)
    migration = coder.post(
        "/v1/addons/extra-requests/migrations",
        {"at": "now", "from_versions": [1], "to_version": 2},
        201,
    )
    assert (migration["addon"], migration["subscriptions"]) == ("extra-requests", 1)
    check = coder.check("acme", "ai-requests")
    assert (check["usage_limit"], check["current_usage"]) == (1700, 25)
    assert only_subscription(coder, "acme")["addons"] == [
        {"id": "extra-requests", "quantity": 1, "version": 2}
    ]


@pytest.mark.parametrize("at", ["now", "period_end"])
def test_recurring_credits_follow_the_new_version_from_the_next_period(coder: Api, at: str) -> None:
    coder.put("/v1/currencies/ai-credits", {"name": "Credits"}, 201)

    def metered(amount: int) -> dict[str, Any]:
        return {
            "product": "coder",
            "name": "Metered",
            "credits": {"ai-credits": {"amount": amount, "every": "month"}},
        }

    coder.put("/v1/plans/metered", metered(100), 201)
    new_customer(coder, "acme")
    subscribe(coder, "acme", {"plan": "metered"})
    pool = "/v1/customers/acme/credits/ai-credits"
    assert coder.get(pool)["balance"] == 100
    coder.advance(86400)
    coder.put("/v1/plans/metered", metered(500), 200)
    assert coder.post("/v1/plans/metered/migrations", {"at": at}, 201)["subscriptions"] == 1

    # The current period's block stays 100.
    assert coder.get(pool)["balance"] == 100
    set_clock(coder, "2030-02-09T23:59:59Z")
    now_pool = coder.get(pool)
    assert now_pool["balance"] == 100
    assert [(g["amount"], g["effective_at"], g["expires_at"]) for g in now_pool["grants"]] == [
        (100, START, PERIOD_END)
    ]
    # The next period's block is the new version's.
    set_clock(coder, PERIOD_END)
    next_pool = coder.get(pool)
    assert next_pool["balance"] == 500
    assert [(g["amount"], g["effective_at"], g["expires_at"]) for g in next_pool["grants"]] == [
        (500, PERIOD_END, NEXT_PERIOD_END)
    ]
    set_clock(coder, "2030-03-20T00:00:00Z")
    assert coder.get(pool)["balance"] == 500


@pytest.mark.parametrize("read_first", [True, False])
def test_a_migration_now_at_the_instant_the_period_began_keeps_the_periods_block(
    coder: Api, read_first: bool
) -> None:
    """The subscription began its period on version 1: that period's block is version 1's,
    whether or not anything read the pool before the migration."""
    coder.put("/v1/currencies/ai-credits", {"name": "Credits"}, 201)
    metered = {
        "product": "coder",
        "name": "Metered",
        "credits": {"ai-credits": {"amount": 100, "every": "month"}},
    }
    coder.put("/v1/plans/metered", metered, 201)
    new_customer(coder, "acme")
    subscribe(coder, "acme", {"plan": "metered"})
    if read_first:
        assert coder.get("/v1/customers/acme/credits/ai-credits")["balance"] == 100
    raised = {**metered, "credits": {"ai-credits": {"amount": 500, "every": "month"}}}
    coder.put("/v1/plans/metered", raised, 200)
    coder.post("/v1/plans/metered/migrations", {"at": "now"}, 201)
    pool = coder.get("/v1/customers/acme/credits/ai-credits")
    assert [(g["amount"], g["effective_at"]) for g in pool["grants"]] == [(100, START)]
    assert pool["balance"] == 100
    set_clock(coder, PERIOD_END)
    assert coder.get("/v1/customers/acme/credits/ai-credits")["balance"] == 500


def test_versions_archives_and_waiting_moves_survive_a_restart(coder: Api) -> None:
    from tests.conftest import open_api

    coder.put("/v1/plans/starter", {"product": "coder", "name": "Starter 2"}, 200)
    coder.put("/v1/addons/extra-requests", extra_requests_with(700), 200)
    coder.delete("/v1/addons/big-team", 200)
    new_customer(coder, "acme")
    subscribe(
        coder,
        "acme",
        {"plan": "team", "plan_version": 1, "addons": [{"id": "extra-requests", "version": 1}]},
    )
    coder.post("/v1/plans/team/migrations", {"at": "period_end"}, 201)
    coder.post("/v1/addons/extra-requests/migrations", {"at": "period_end"}, 201)
    paths = [
        "/v1/plans",
        "/v1/addons",
        "/v1/plans/team/versions",
        "/v1/plans/enterprise/versions",
        "/v1/addons/extra-requests/versions",
        "/v1/customers/acme/subscriptions",
        "/v1/catalog",
    ]
    before = {path: coder.get(path) for path in paths}
    assert before["/v1/customers/acme/subscriptions"]["data"][0]["pending_version"] == 2
    coder.client.__exit__(None, None, None)
    for reopened in open_api(coder.database, test_clock=True):
        set_clock(reopened, START)
        assert {path: reopened.get(path) for path in paths} == before
        assert limit_of(reopened, "acme") == 1500
        set_clock(reopened, PERIOD_END)
        assert limit_of(reopened, "acme") == 1700
        held = only_subscription(reopened, "acme")
        assert (held["plan_version"], held["addons"][0]["version"]) == (2, 2)
