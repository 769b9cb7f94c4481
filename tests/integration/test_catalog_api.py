"""The catalog routes: create or replace, read, list, and every validation error."""

from __future__ import annotations

import pytest

from tests.conftest import Api, define_catalog


def test_put_creates_with_201_then_replaces_with_200(api: Api) -> None:
    created = api.put("/v1/features/sso", {"name": "SSO", "kind": "boolean"}, 201)
    assert created == {"id": "sso", "name": "SSO", "kind": "boolean", "unit": None}
    replaced = api.put("/v1/features/sso", {"name": "Single sign-on", "kind": "boolean"}, 200)
    assert replaced["name"] == "Single sign-on"
    assert api.get("/v1/features/sso")["name"] == "Single sign-on"


def test_plan_round_trips_with_defaults_and_exact_quantities(api: Api) -> None:
    define_catalog(api)
    api.put("/v1/currencies/ai-credits", {"name": "Credits"}, 201)
    api.put("/v1/features/tokens", {"name": "Tokens", "kind": "metered"}, 201)
    plan = api.put(
        "/v1/plans/pro",
        {
            "product": "coder",
            "name": "Pro",
            "entitlements": {
                "ai-requests": {"limit": "1000.5"},
                "tokens": {
                    "limit": None,
                    "credit_cost": {"currency": "ai-credits", "per_unit": "0.001"},
                },
            },
            "credits": {"ai-credits": {"amount": 1000, "every": "month", "cost_basis": "0.01"}},
        },
        201,
    )
    assert plan["entitlements"]["ai-requests"] == {
        "limit": 1000.5,
        "reset": "month",
        "enforcement": "hard",
    }
    assert plan["entitlements"]["tokens"]["credit_cost"] == {
        "currency": "ai-credits",
        "per_unit": 0.001,
    }
    assert plan["billing_period"] == "month"
    assert plan["credits"]["ai-credits"]["overdraft_limit"] == 0
    assert api.get("/v1/plans/pro") == plan


def test_catalog_survives_a_restart(api: Api, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import open_api

    define_catalog(api)
    before = api.get("/v1/plans/enterprise")
    api.client.__exit__(None, None, None)
    for reopened in open_api(api.database):
        assert reopened.get("/v1/plans/enterprise") == before
        assert [p["id"] for p in reopened.get("/v1/plans")["data"]] == [
            "starter",
            "team",
            "enterprise",
        ]


def test_lists_are_oldest_first_and_page_with_a_cursor(api: Api) -> None:
    for name in ("a", "b", "c"):
        api.put(f"/v1/features/{name}", {"name": name, "kind": "boolean"}, 201)
    first = api.get("/v1/features?limit=2")
    assert [f["id"] for f in first["data"]] == ["a", "b"]
    assert first["next"] == "b"
    second = api.get(f"/v1/features?limit=2&after={first['next']}")
    assert [f["id"] for f in second["data"]] == ["c"]
    assert second["next"] is None


@pytest.mark.parametrize("limit", ["0", "1001", "x", "-1"])
def test_a_bad_page_limit_is_400(api: Api, limit: str) -> None:
    assert api.status("GET", f"/v1/features?limit={limit}")[0] == 400


@pytest.mark.parametrize(
    ("plan", "message"),
    [
        ({"product": "coder", "name": "X", "entitlements": {"nope": {}}}, "unknown feature 'nope'"),
        ({"product": "nope", "name": "X"}, "unknown product 'nope'"),
        ({"product": "coder", "name": "X", "parent": "ghost"}, "unknown parent plan 'ghost'"),
        (
            {"product": "coder", "name": "X", "entitlements": {"sso": {"limit": 5}}},
            "does not fit boolean feature 'sso'",
        ),
        (
            {"product": "coder", "name": "X", "entitlements": {"ai-requests": {"value": 5}}},
            "does not fit metered feature",
        ),
        (
            {"product": "coder", "name": "X", "entitlements": {"ai-requests": {}}},
            "limit is required",
        ),
        (
            {"product": "coder", "name": "X", "entitlements": {"seats": {"value": -1}}},
            "must not be negative",
        ),
        (
            {
                "product": "coder",
                "name": "X",
                "entitlements": {"ai-requests": {"limit": 5, "reset": "fortnight"}},
            },
            "reset must be",
        ),
        ({"product": "coder", "name": "X", "billing_period": "day"}, "billing_period"),
        (
            {"product": "coder", "name": "X", "credits": {"gold": {"amount": 5}}},
            "unknown currency 'gold'",
        ),
    ],
)
def test_invalid_plans_are_400_naming_the_problem(api: Api, plan: dict, message: str) -> None:  # type: ignore[type-arg]
    define_catalog(api)
    status, body = api.status("PUT", "/v1/plans/x", plan)
    assert status == 400, body
    assert body["error"]["code"] == "invalid_request"
    assert message in body["error"]["message"]
    assert api.status("GET", "/v1/plans/x")[0] == 404


def test_a_parent_cycle_is_400(api: Api) -> None:
    define_catalog(api)
    status, body = api.status(
        "PUT", "/v1/plans/starter", {"product": "coder", "name": "S", "parent": "enterprise"}
    )
    assert status == 400
    assert "cycle" in body["error"]["message"]
    # The rejected change left the catalog as it was.
    assert api.get("/v1/plans/starter")["parent"] is None


def test_a_parent_in_another_product_is_400(api: Api) -> None:
    define_catalog(api)
    api.put("/v1/products/other", {"name": "Other"}, 201)
    status, body = api.status(
        "PUT", "/v1/plans/x", {"product": "other", "name": "X", "parent": "team"}
    )
    assert status == 400
    assert "parent 'team' is in product 'coder'" in body["error"]["message"]


def test_a_child_inherits_and_overrides_its_parents_entitlements(api: Api) -> None:
    define_catalog(api)
    from tests.conftest import new_customer

    new_customer(api, "acme", "enterprise")
    # seats and ai-requests come from enterprise itself; nothing else is lost on the way.
    assert api.check("acme", "seats")["is_unlimited"] is True
    assert api.check("acme", "ai-requests")["usage_limit"] == 20000
    api.put(
        "/v1/plans/team",
        {"product": "coder", "name": "Team", "parent": "starter", "entitlements": {"sso": {}}},
        200,
    )
    api.put("/v1/plans/enterprise", {"product": "coder", "name": "E", "parent": "team"}, 200)
    # Enterprise's latest version inherits sso from team and seats and ai-requests from
    # starter; a new subscriber gets it, while acme keeps the version it subscribed to.
    new_customer(api, "globex", "enterprise")
    assert api.check("globex", "sso")["has_access"] is True
    assert api.check("globex", "seats")["value"] == 3
    assert api.check("globex", "ai-requests")["usage_limit"] == 100
    assert api.check("acme", "seats")["is_unlimited"] is True
    assert api.check("acme", "ai-requests")["usage_limit"] == 20000


def test_a_feature_kind_cannot_change(api: Api) -> None:
    api.put("/v1/features/sso", {"name": "SSO", "kind": "boolean"}, 201)
    status, body = api.status("PUT", "/v1/features/sso", {"name": "SSO", "kind": "metered"})
    assert status == 409
    assert body["error"]["code"] == "conflict"


def test_features_and_currencies_share_ids(api: Api) -> None:
    api.put("/v1/features/credits", {"name": "C", "kind": "metered"}, 201)
    assert api.status("PUT", "/v1/currencies/credits", {"name": "C"})[0] == 409


def test_burn_order_is_validated_and_defaults(api: Api) -> None:
    currency = api.put("/v1/currencies/c", {"name": "C"}, 201)
    assert currency["burn_order"] == ["priority", "expiry", "promotional_first", "created"]
    status, body = api.status("PUT", "/v1/currencies/d", {"name": "D", "burn_order": ["cheap"]})
    assert status == 400
    assert "cheap" in body["error"]["message"]


def test_addon_needs_a_mode_and_a_known_product(api: Api) -> None:
    define_catalog(api)
    assert (
        api.status(
            "PUT",
            "/v1/addons/x",
            {"product": "coder", "name": "X", "entitlements": {"seats": {"value": 1}}},
        )[0]
        == 400
    )
    assert (
        api.status(
            "PUT",
            "/v1/addons/x",
            {
                "product": "nope",
                "name": "X",
                "entitlements": {"seats": {"value": 1, "mode": "increment"}},
            },
        )[0]
        == 400
    )


def test_unknown_catalog_object_is_404_and_bad_id_is_400(api: Api) -> None:
    status, body = api.status("GET", "/v1/plans/ghost")
    assert status == 404
    assert body["error"]["code"] == "not_found"
    assert api.status("PUT", "/v1/features/-bad", {"name": "x", "kind": "boolean"})[0] == 400


def test_a_plan_re_parented_under_a_newer_plan_loads_after_a_restart(api: Api) -> None:
    from tests.conftest import open_api

    api.put("/v1/features/sso", {"name": "SSO", "kind": "boolean"}, 201)
    api.put("/v1/products/coder", {"name": "Coder"}, 201)
    api.put("/v1/plans/team", {"product": "coder", "name": "Team"}, 201)
    api.put(
        "/v1/plans/starter",
        {"product": "coder", "name": "Starter", "entitlements": {"sso": {}}},
        201,
    )
    api.put("/v1/plans/team", {"product": "coder", "name": "Team", "parent": "starter"}, 200)
    api.client.__exit__(None, None, None)
    for reopened in open_api(api.database):
        assert reopened.get("/v1/plans/team")["parent"] == "starter"
        assert [p["id"] for p in reopened.get("/v1/plans")["data"]] == ["team", "starter"]
