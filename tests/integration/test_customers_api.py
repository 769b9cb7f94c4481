"""Customers, subscriptions (trials alongside paid ones), promotions and overrides."""

from __future__ import annotations

from tests.conftest import Api, define_catalog, new_customer


def test_customer_lifecycle(api: Api) -> None:
    created = api.put(
        "/v1/customers/acme",
        {"name": "Acme", "metadata": {"tier": 1}, "billing_id": "cus_123"},
        201,
    )
    assert created["id"] == "acme"
    assert created["status"] == "active"
    assert api.put("/v1/customers/acme", {"name": "Acme Inc"}, 200)["name"] == "Acme Inc"
    assert api.get("/v1/customers/acme")["name"] == "Acme Inc"
    archived = api.delete("/v1/customers/acme", 200)
    assert archived["status"] == "archived"
    assert archived["archived_at"] is not None
    # Archiving erases nothing, and the archived customer can still be read.
    assert api.get("/v1/customers/acme")["status"] == "archived"
    assert api.status("PUT", "/v1/customers/acme", {"name": "Back"})[0] == 409
    assert [c["id"] for c in api.get("/v1/customers")["data"]] == ["acme"]


def test_unknown_customer_is_404_on_its_routes(api: Api) -> None:
    define_catalog(api)
    assert api.status("GET", "/v1/customers/ghost")[0] == 404
    assert api.status("POST", "/v1/customers/ghost/subscriptions", {"plan": "team"})[0] == 404
    assert api.status("GET", "/v1/customers/ghost/subscriptions")[0] == 404
    assert api.status("GET", "/v1/customers/ghost/entitlements")[0] == 404


def test_subscription_answer_has_every_contract_field(api: Api) -> None:
    define_catalog(api)
    subscription = new_customer(api, "acme", "team", starts_at="2026-01-31T10:00:00Z")
    assert subscription["id"].startswith("sub_")
    assert subscription["customer"] == "acme"
    assert subscription["product"] == "coder"
    assert subscription["plan"] == "team"
    assert subscription["addons"] == []
    assert subscription["status"] == "active"
    assert subscription["starts_at"] == "2026-01-31T10:00:00Z"
    assert subscription["trial_ends_at"] is None
    assert subscription["ends_at"] is None
    # Monthly billing periods anchored on Jan 31 clamp in short months.
    assert subscription["current_period_start"] <= api.now() < subscription["current_period_end"]


def test_unknown_plan_or_addon_is_400(api: Api) -> None:
    define_catalog(api)
    new_customer(api, "acme")
    assert api.status("POST", "/v1/customers/acme/subscriptions", {"plan": "ghost"})[0] == 400
    status, body = api.status(
        "POST",
        "/v1/customers/acme/subscriptions",
        {"plan": "team", "addons": [{"id": "ghost", "quantity": 1}]},
    )
    assert status == 400
    assert "ghost" in body["error"]["message"]
    assert api.get("/v1/customers/acme/subscriptions")["data"] == []


def test_a_new_subscription_replaces_the_current_one_and_keeps_usage(api: Api) -> None:
    define_catalog(api)
    first = new_customer(api, "acme", "team")
    api.usage("acme", "ai-requests", 300, "u1")
    api.advance(3600)
    second = api.post("/v1/customers/acme/subscriptions", {"plan": "enterprise"}, 201)
    assert second["current_period_start"] == first["current_period_start"]
    check = api.check("acme", "ai-requests")
    assert check["source"] == {"type": "plan", "id": "enterprise"}
    assert check["current_usage"] == 300
    subscriptions = api.get("/v1/customers/acme/subscriptions")["data"]
    assert [(s["plan"], s["status"]) for s in subscriptions] == [
        ("team", "canceled"),
        ("enterprise", "active"),
    ]


def test_trial_runs_alongside_paid_and_reverts_by_itself(api: Api) -> None:
    """PRODUCT.md: Team can trial Enterprise for 14 days without cancelling Team."""
    define_catalog(api)
    new_customer(api, "acme", "team")
    trial = api.post("/v1/customers/acme/subscriptions", {"plan": "enterprise", "trial": True}, 201)
    assert trial["status"] == "trialing"
    assert trial["trial_ends_at"] is not None
    assert api.check("acme", "sso")["source"] == {"type": "trial", "id": "enterprise"}
    assert api.check("acme", "ai-requests")["usage_limit"] == 20000
    api.advance(14 * 86400 - 1)
    assert api.check("acme", "sso")["has_access"] is True
    api.advance(1)
    assert api.check("acme", "sso")["access_denied_reason"] == "not_entitled"
    requests = api.check("acme", "ai-requests")
    assert (requests["usage_limit"], requests["source"]) == (1000, {"type": "plan", "id": "team"})
    statuses = {s["plan"]: s["status"] for s in api.get("/v1/customers/acme/subscriptions")["data"]}
    assert statuses == {"team": "active", "enterprise": "expired"}


def test_trial_needs_a_length_and_a_plain_subscription_never_trials(api: Api) -> None:
    define_catalog(api)
    new_customer(api, "acme")
    status, body = api.status(
        "POST", "/v1/customers/acme/subscriptions", {"plan": "team", "trial": True}
    )
    assert status == 400
    assert "trial_days" in body["error"]["message"]
    plain = api.post("/v1/customers/acme/subscriptions", {"plan": "enterprise"}, 201)
    assert plain["status"] == "active"
    assert plain["trial_ends_at"] is None
    short = api.post(
        "/v1/customers/acme/subscriptions", {"plan": "team", "trial": True, "trial_days": 3}, 201
    )
    assert short["status"] == "trialing"


def test_patch_changes_addons_and_delete_cancels(api: Api) -> None:
    define_catalog(api)
    subscription = new_customer(api, "acme", "team")
    path = f"/v1/customers/acme/subscriptions/{subscription['id']}"
    patched = api.request(
        "PATCH", path, {"addons": [{"id": "extra-requests", "quantity": 2}]}, expect=200
    )
    assert patched["addons"] == [{"id": "extra-requests", "quantity": 2, "version": 1}]
    assert api.check("acme", "ai-requests")["usage_limit"] == 2000
    canceled = api.delete(path, 200)
    assert canceled["status"] == "canceled"
    assert api.check("acme", "ai-requests")["access_denied_reason"] == "no_active_subscription"
    assert api.status("DELETE", path)[0] == 409
    assert api.status("DELETE", "/v1/customers/acme/subscriptions/sub_nope")[0] == 404


def test_subscription_ends_at_by_the_clock(api: Api) -> None:
    define_catalog(api)
    new_customer(api, "acme")
    start = api.now()
    api.post(
        "/v1/customers/acme/subscriptions",
        {"plan": "team", "starts_at": start, "ends_at": "2099-01-01T00:00:00Z"},
        201,
    )
    api.post("/v1/test/clock", {"now": "2099-01-01T00:00:00Z"}, 200)
    assert api.check("acme", "seats")["access_denied_reason"] == "no_active_subscription"


def test_promotion_competes_lapses_and_can_be_revoked(api: Api) -> None:
    define_catalog(api)
    new_customer(api, "acme", "starter")
    promotion = api.post(
        "/v1/customers/acme/promotions",
        {
            "feature": "ai-requests",
            "limit": 5000,
            "reset": "week",
            "reason": "launch",
            "ends_at": "2099-01-01T00:00:00Z",
        },
        201,
    )
    assert promotion["id"].startswith("promo_")
    assert promotion["limit"] == 5000
    check = api.check("acme", "ai-requests")
    assert check["source"] == {"type": "promotion", "id": promotion["id"]}
    assert check["reset_period"] == "week"
    api.delete(f"/v1/customers/acme/promotions/{promotion['id']}", 200)
    assert api.check("acme", "ai-requests")["usage_limit"] == 100
    assert api.status("DELETE", f"/v1/customers/acme/promotions/{promotion['id']}")[0] == 409

    lapsing = api.post(
        "/v1/customers/acme/promotions", {"feature": "sso", "ends_at": "2099-01-01T00:00:00Z"}, 201
    )
    assert api.check("acme", "sso")["source"]["id"] == lapsing["id"]
    api.post("/v1/test/clock", {"now": "2099-01-01T00:00:00Z"}, 200)
    assert api.check("acme", "sso")["access_denied_reason"] == "not_entitled"


def test_promotion_alone_grants_without_a_subscription(api: Api) -> None:
    define_catalog(api)
    new_customer(api, "acme")
    assert api.check("acme", "sso")["access_denied_reason"] == "no_active_subscription"
    api.post("/v1/customers/acme/promotions", {"feature": "sso"}, 201)
    assert api.check("acme", "sso")["has_access"] is True
    assert api.check("acme", "seats")["access_denied_reason"] == "no_active_subscription"


def test_override_is_the_last_word_and_can_be_removed(api: Api) -> None:
    define_catalog(api)
    new_customer(api, "acme", "enterprise")
    created = api.put(
        "/v1/customers/acme/overrides/ai-requests",
        {"limit": 10, "reset": "day", "enforcement": "hard"},
        201,
    )
    assert created["limit"] == 10
    check = api.check("acme", "ai-requests")
    assert (check["usage_limit"], check["source"]) == (
        10,
        {"type": "override", "id": "ai-requests"},
    )
    assert api.put("/v1/customers/acme/overrides/ai-requests", {"limit": 20}, 200)["limit"] == 20
    api.delete("/v1/customers/acme/overrides/ai-requests", 200)
    assert api.check("acme", "ai-requests")["usage_limit"] == 20000
    assert api.status("DELETE", "/v1/customers/acme/overrides/ai-requests")[0] == 404
    assert api.status("PUT", "/v1/customers/acme/overrides/ghost", {})[0] == 404
    assert api.status("PUT", "/v1/customers/acme/overrides/sso", {"limit": 3})[0] == 400


def test_addons_increment_and_override(api: Api) -> None:
    define_catalog(api)
    new_customer(
        api,
        "acme",
        "team",
        addons=[{"id": "extra-requests", "quantity": 3}, {"id": "big-team", "quantity": 4}],
    )
    assert api.check("acme", "ai-requests")["usage_limit"] == 2500
    # An override add-on's quantity does not multiply its value.
    assert api.check("acme", "seats")["value"] == 50


def test_entitlements_lists_every_granted_feature(api: Api) -> None:
    define_catalog(api)
    new_customer(api, "acme", "team")
    listing = api.get("/v1/customers/acme/entitlements")
    assert listing["customer"] == "acme"
    assert {e["feature"] for e in listing["entitlements"]} == {"seats", "ai-requests"}
    assert all(e["has_access"] for e in listing["entitlements"])
