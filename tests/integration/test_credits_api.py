"""Credits through the API: grants, burn order, debits, overdraft and payback, expiry by the
clock, voids, the append-only ledger as the truth, and revenue."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest

from allotment.domain.credits import EntryType, replay
from tests.conftest import Api, define_catalog, new_customer

POOL = "/v1/customers/acme/credits/ai-credits"


@pytest.fixture
def acme(api: Api) -> Api:
    define_catalog(api)
    api.put(
        "/v1/currencies/ai-credits",
        {"name": "Credits", "burn_order": ["promotional_first", "expiry", "priority", "created"]},
        201,
    )
    new_customer(api, "acme", "team")
    return api


def grant(api: Api, amount: Any, key: str, **extra: Any) -> Any:
    body = {"amount": amount, "category": "paid", "idempotency_key": key, **extra}
    return api.post(f"{POOL}/grants", body, 201)


def debit(api: Api, amount: Any, key: str, **extra: Any) -> Any:
    return api.post(f"{POOL}/debits", {"amount": amount, "idempotency_key": key, **extra}, 200)


def ledger(api: Api) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = api.get(f"{POOL}/ledger?limit=1000")["data"]
    return entries


def assert_projections_match_the_ledger(api: Api) -> None:
    """Every stored figure is rebuilt from the entries and compared."""
    with sqlite3.connect(api.database) as db:
        entries = db.execute(
            "SELECT type, grant_id, amount, balance_after FROM ledger_entries"
            " WHERE customer = 'acme' AND currency = 'ai-credits' ORDER BY seq"
        ).fetchall()
        grants = db.execute(
            "SELECT id, remaining, cost_basis FROM credit_grants WHERE customer = 'acme'"
        ).fetchall()
        (overdraft, *money) = db.execute(
            "SELECT overdraft, deferred, recognized, breakage FROM credit_pools"
            " WHERE customer = 'acme'"
        ).fetchone()
    remaining = {grant_id: left for grant_id, left, _ in grants}
    basis = {grant_id: cost for grant_id, _, cost in grants}
    rebuilt = replay((EntryType(kind), grant_id, amount) for kind, grant_id, amount, _ in entries)
    assert {g: rebuilt.remaining.get(g, 0) for g in remaining} == remaining
    assert rebuilt.overdraft == overdraft
    # Revenue, kept with the pool in exact integers (stored as text), against the replay.
    assert [int(figure) for figure in money] == [
        sum(basis[g] * credits.get(g, 0) for g in basis)
        for credits in (rebuilt.remaining, rebuilt.consumed, rebuilt.expired)
    ]
    running = 0
    for _, _, amount, balance_after in entries:
        running += amount
        assert balance_after == running
    balance = api.get(POOL)["balance"]
    assert balance * 1_000_000 == running


def test_grant_answers_the_block(acme: Api) -> None:
    block = grant(acme, 1000, "g1", cost_basis="0.01", expires_at="2099-01-01T00:00:00Z")
    assert block["id"].startswith("grant_")
    assert (block["amount"], block["remaining"], block["status"]) == (1000, 1000, "active")
    assert (block["category"], block["cost_basis"], block["priority"]) == ("paid", 0.01, 50)
    assert block["replayed"] is False
    again = grant(acme, 1000, "g1", cost_basis="0.01", expires_at="2099-01-01T00:00:00Z")
    assert again == {**block, "replayed": True}
    assert acme.get(POOL)["balance"] == 1000
    assert (
        acme.status(
            "POST", f"{POOL}/grants", {"amount": 5, "category": "paid", "idempotency_key": "g1"}
        )[0]
        == 409
    )


@pytest.mark.sqlite_file
def test_debits_burn_promotional_first_then_soonest_expiry(acme: Api) -> None:
    late = grant(acme, 100, "late", expires_at="2099-01-01T00:00:00Z")
    soon = grant(acme, 100, "soon", expires_at="2098-01-01T00:00:00Z")
    promo = grant(acme, 30, "promo", category="promotional")
    result = debit(acme, 150, "d1")
    assert result["applied"] is True
    assert result["entries"] == [
        {"grant": promo["id"], "amount": -30},
        {"grant": soon["id"], "amount": -100},
        {"grant": late["id"], "amount": -20},
    ]
    assert result["balance"] == 80
    assert [e["type"] for e in ledger(acme)] == ["grant"] * 3 + ["debit"] * 3
    assert_projections_match_the_ledger(acme)


@pytest.mark.sqlite_file
def test_a_hard_pool_refuses_and_writes_nothing(acme: Api) -> None:
    grant(acme, 10, "g")
    refused = debit(acme, 11, "d1")
    assert (refused["applied"], refused["access_denied_reason"]) == (False, "insufficient_credits")
    assert (refused["balance"], refused["entries"]) == (10, [])
    assert len(ledger(acme)) == 1
    assert debit(acme, 10, "d2")["balance"] == 0
    # enforce: false records the truth even beyond the limit.
    truth = debit(acme, 4, "d3", enforce=False)
    assert (truth["applied"], truth["balance"], truth["entries"]) == (
        True,
        -4,
        [{"grant": None, "amount": -4}],
    )
    assert_projections_match_the_ledger(acme)


@pytest.mark.sqlite_file
def test_soft_overdraft_is_bounded_and_paid_back_by_the_next_grant(acme: Api) -> None:
    acme.put(
        "/v1/plans/team",
        {
            "product": "coder",
            "name": "Team",
            "parent": "starter",
            "credits": {"ai-credits": {"amount": 0, "overdraft_limit": 50}},
        },
        200,
    )
    acme.post("/v1/plans/team/migrations", {"at": "now"}, 201)  # acme moves to it
    assert acme.get(POOL)["overdraft_limit"] == 50
    grant(acme, 20, "g1")
    assert debit(acme, 70, "d1")["balance"] == -50
    assert debit(acme, 1, "d2")["access_denied_reason"] == "insufficient_credits"
    top_up = grant(acme, 100, "g2")
    assert top_up["remaining"] == 50
    tail = ledger(acme)[-3:]
    assert [(e["type"], e["grant"], e["amount"]) for e in tail] == [
        ("grant", top_up["id"], 100),
        ("debit", top_up["id"], -50),
        ("adjustment", None, 50),
    ]
    assert [e["balance_after"] for e in tail] == [50, 0, 50]
    assert acme.get(POOL)["balance"] == 50
    assert_projections_match_the_ledger(acme)


@pytest.mark.sqlite_file
def test_expiry_happens_by_the_clock_without_any_job(acme: Api) -> None:
    now = acme.now()
    block = grant(acme, 100, "g1", expires_at="2030-01-01T00:00:00Z", cost_basis="0.5")
    debit(acme, 30, "d1")
    acme.post("/v1/test/clock", {"now": "2031-01-01T00:00:00Z"}, 200)
    pool = acme.get(POOL)
    assert (pool["balance"], pool["grants"]) == (0, [])  # it ended: in the list of grants
    assert acme.get(f"{POOL}/grants")["data"][0]["status"] == "expired"
    expiry = ledger(acme)[-1]
    assert (expiry["type"], expiry["grant"], expiry["amount"], expiry["at"]) == (
        "expiry",
        block["id"],
        -70,
        "2030-01-01T00:00:00Z",
    )
    assert acme.get(f"{POOL}/revenue") == {"deferred": 0, "recognized": 15, "breakage": 35}
    assert now < "2030"
    assert_projections_match_the_ledger(acme)


def test_a_scheduled_grant_enters_the_ledger_when_it_takes_effect(acme: Api) -> None:
    block = grant(acme, 40, "g1", effective_at="2030-01-01T00:00:00Z")
    assert block["status"] == "scheduled"
    assert acme.get(POOL)["balance"] == 0
    assert debit(acme, 1, "d1")["applied"] is False
    acme.post("/v1/test/clock", {"now": "2030-06-01T00:00:00Z"}, 200)
    assert acme.get(POOL)["balance"] == 40
    assert ledger(acme)[0]["at"] == "2030-01-01T00:00:00Z"


@pytest.mark.sqlite_file
def test_void_takes_the_remaining_out_once(acme: Api) -> None:
    block = grant(acme, 100, "g1", cost_basis=2)
    debit(acme, 25, "d1")
    voided = acme.post(f"{POOL}/grants/{block['id']}/void", None, 200)
    assert (voided["status"], voided["remaining"]) == ("voided", 0)
    assert ledger(acme)[-1]["type"] == "void"
    assert acme.get(POOL)["balance"] == 0
    assert acme.status("POST", f"{POOL}/grants/{block['id']}/void")[0] == 409
    assert acme.status("POST", f"{POOL}/grants/grant_nope/void")[0] == 404
    assert acme.get(f"{POOL}/revenue") == {"deferred": 0, "recognized": 50, "breakage": 0}
    assert_projections_match_the_ledger(acme)


def test_ended_grants_leave_the_pool_answer_and_are_listed_a_page_at_a_time(acme: Api) -> None:
    used = grant(acme, 10, "g1", expires_at="2029-01-01T00:00:00Z")  # burns first: soonest
    live = grant(acme, 20, "g2")
    later = grant(acme, 5, "g3", effective_at="2030-01-01T00:00:00Z")
    voided = grant(acme, 1, "g4")
    debit(acme, 10, "d1")  # uses g1 up
    acme.post(f"{POOL}/grants/{voided['id']}/void", None, 200)
    # The pool lists its live grants, oldest first; the ended ones are in the list of grants.
    assert [g["id"] for g in acme.get(POOL)["grants"]] == [live["id"], later["id"]]
    every = acme.get(f"{POOL}/grants")
    assert [(g["id"], g["status"], g["remaining"]) for g in every["data"]] == [
        (used["id"], "depleted", 0),
        (live["id"], "active", 20),
        (later["id"], "scheduled", 0),
        (voided["id"], "voided", 0),
    ]
    assert every["next"] is None
    for status, expected in [("depleted", used), ("active", live), ("voided", voided)]:
        listed = acme.get(f"{POOL}/grants?status={status}")["data"]
        assert [g["id"] for g in listed] == [expected["id"]]
    assert acme.get(f"{POOL}/grants?status=expired")["data"] == []
    first = acme.get(f"{POOL}/grants?limit=3")
    assert len(first["data"]) == 3
    rest = acme.get(f"{POOL}/grants?limit=3&after={first['next']}")
    assert ([g["id"] for g in rest["data"]], rest["next"]) == ([voided["id"]], None)
    for query in ("status=gone", "status=ACTIVE", "after=abc", "limit=0"):
        code, body = acme.status("GET", f"{POOL}/grants?{query}")
        assert (code, body["error"]["code"]) == (400, "invalid_request"), query
    assert acme.status("GET", "/v1/customers/nobody/credits/ai-credits/grants")[0] == 404

    # A used-up grant has left the pool and can still be voided: it writes no entry.
    entries = len(ledger(acme))
    answer = acme.post(f"{POOL}/grants/{used['id']}/void", None, 200)
    assert (answer["status"], answer["remaining"], answer["voided_at"]) == ("voided", 0, acme.now())
    assert len(ledger(acme)) == entries
    assert acme.status("POST", f"{POOL}/grants/{used['id']}/void")[0] == 409
    acme.post("/v1/test/clock", {"now": "2029-06-01T00:00:00Z"}, 200)
    assert [g["status"] for g in acme.get(f"{POOL}/grants")["data"]] == [
        "voided",
        "active",
        "scheduled",
        "voided",
    ]


def test_debits_are_idempotent(acme: Api) -> None:
    grant(acme, 100, "g1")
    first = debit(acme, 10, "d1", feature="ai-requests")
    assert debit(acme, 10, "d1", feature="ai-requests") == {**first, "replayed": True}
    assert acme.status("POST", f"{POOL}/debits", {"amount": 11, "idempotency_key": "d1"})[0] == 409
    assert acme.get(POOL)["balance"] == 90
    entry = ledger(acme)[-1]
    assert (entry["idempotency_key"], entry["feature"]) == ("d1", "ai-requests")


def test_unknown_pools_are_404_and_bad_amounts_400(acme: Api) -> None:
    assert acme.status("GET", "/v1/customers/ghost/credits/ai-credits")[0] == 404
    assert acme.status("GET", "/v1/customers/acme/credits/gold")[0] == 404
    for amount in (0, -1, "0.0000001"):
        body = {"amount": amount, "category": "paid", "idempotency_key": f"k{amount}"}
        assert acme.status("POST", f"{POOL}/grants", body)[0] == 400
    assert (
        acme.status(
            "POST",
            f"{POOL}/grants",
            {
                "amount": 1,
                "category": "paid",
                "idempotency_key": "k",
                "effective_at": "2030-01-01T00:00:00Z",
                "expires_at": "2029-01-01T00:00:00Z",
            },
        )[0]
        == 400
    )


@pytest.mark.sqlite_file
def test_plans_grant_credits_every_period_that_expire_at_its_end(api: Api) -> None:
    """PRODUCT.md: every workspace gets 1,000 model credits per month."""
    define_catalog(api)
    api.put("/v1/currencies/ai-credits", {"name": "Credits"}, 201)
    api.put(
        "/v1/plans/team",
        {
            "product": "coder",
            "name": "Team",
            "parent": "starter",
            "credits": {"ai-credits": {"amount": 1000, "every": "month", "cost_basis": "0.01"}},
        },
        200,
    )
    api.put(
        "/v1/addons/credit-pack",
        {
            "product": "coder",
            "name": "Credit pack",
            "entitlements": {},
            "credits": {"ai-credits": {"amount": 100, "every": "month", "category": "promotional"}},
        },
        201,
    )
    new_customer(
        api,
        "acme",
        "team",
        starts_at="2030-01-31T00:00:00Z",
        addons=[{"id": "credit-pack", "quantity": 2}],
    )
    api.post("/v1/test/clock", {"now": "2030-02-10T00:00:00Z"}, 200)
    pool = api.get(POOL)
    assert pool["balance"] == 1200
    plan_block = next(g for g in pool["grants"] if g["amount"] == 1000)
    assert (plan_block["effective_at"], plan_block["expires_at"]) == (
        "2030-01-31T00:00:00Z",
        "2030-02-28T00:00:00Z",
    )
    assert plan_block["priority"] == 50
    debit(api, 300, "d1")
    api.post("/v1/test/clock", {"now": "2030-03-05T00:00:00Z"}, 200)
    # February's blocks expired at their period's end; March's arrived, once.
    assert api.get(POOL)["balance"] == 1200
    assert api.get(POOL)["balance"] == 1200
    types = [(e["type"], e["amount"]) for e in ledger(api)]
    assert types.count(("grant", 1000)) == 2
    # The promotional pack burned first (same expiry), then 100 of the plan's block.
    assert ("expiry", -900) in types
    assert api.get(f"{POOL}/revenue") == {"deferred": 10, "recognized": 1, "breakage": 9}
    assert_projections_match_the_ledger(api)


def priced_catalog(api: Api, overdraft_limit: Any = 0) -> None:
    define_catalog(api)
    api.put(
        "/v1/currencies/ai-credits",
        {"name": "Credits", "burn_order": ["promotional_first", "expiry", "priority", "created"]},
        201,
    )
    api.put("/v1/features/model-tokens", {"name": "Tokens", "kind": "metered"}, 201)
    api.put(
        "/v1/plans/team",
        {
            "product": "coder",
            "name": "Team",
            "parent": "starter",
            "entitlements": {
                "model-tokens": {
                    "limit": None,
                    "credit_cost": {"currency": "ai-credits", "per_unit": "0.001"},
                }
            },
            "credits": {
                "ai-credits": {
                    "amount": 1000,
                    "every": "month",
                    "cost_basis": "0.01",
                    "overdraft_limit": overdraft_limit,
                }
            },
        },
        200,
    )


@pytest.mark.sqlite_file
def test_credit_priced_usage_debits_in_the_same_step_and_stops_hard(api: Api) -> None:
    """PRODUCT.md: 1,000 credits a month; when they are gone, further usage is denied."""
    priced_catalog(api)
    new_customer(api, "acme", "team")
    check = api.check("acme", "model-tokens", requested=1000)
    assert check["credits"] == {"currency": "ai-credits", "cost": 1, "available": 1000}
    used = api.usage("acme", "model-tokens", 600_000, "call-1", enforce=True)
    assert (used["recorded"], used["credits"]["cost"], used["credits"]["available"]) == (
        True,
        600,
        400,
    )
    refused = api.usage("acme", "model-tokens", 400_001, "call-2", enforce=True)
    assert (refused["recorded"], refused["access_denied_reason"]) == (False, "insufficient_credits")
    assert refused["credits"]["available"] == 400
    assert api.check("acme", "model-tokens", requested=400_001)["access_denied_reason"] == (
        "insufficient_credits"
    )
    assert api.check("acme", "model-tokens", requested=400_000)["has_access"] is True
    entry = ledger(api)[-1]
    assert (entry["type"], entry["amount"], entry["feature"], entry["idempotency_key"]) == (
        "debit",
        -600,
        "model-tokens",
        "call-1",
    )
    # The truth is recorded even past the pool (enforce: false): the pool overdraws.
    truth = api.usage("acme", "model-tokens", 500_000, "call-3")
    assert (truth["recorded"], truth["credits"]["available"]) == (True, -100)
    assert api.check("acme", "model-tokens")["access_denied_reason"] == "insufficient_credits"
    assert_projections_match_the_ledger(api)


@pytest.mark.sqlite_file
def test_a_soft_workspace_runs_a_bounded_overdraft(api: Api) -> None:
    priced_catalog(api, overdraft_limit=200)
    new_customer(api, "acme", "team")
    assert api.usage("acme", "model-tokens", 1_150_000, "a", enforce=True)["recorded"] is True
    assert api.get(POOL)["balance"] == -150
    assert api.usage("acme", "model-tokens", 60_000, "b", enforce=True)["recorded"] is False
    assert api.usage("acme", "model-tokens", 50_000, "c", enforce=True)["recorded"] is True
    top_up = grant(api, 500, "top-up", expires_at="2099-01-01T00:00:00Z")
    assert top_up["remaining"] == 300
    assert api.get(POOL)["balance"] == 300
    assert_projections_match_the_ledger(api)


def test_replacing_a_subscription_does_not_mint_the_periods_credits_again(api: Api) -> None:
    priced_catalog(api)
    new_customer(api, "acme", "team")
    assert api.get(POOL)["balance"] == 1000
    api.advance(10 * 86400)
    for _ in range(2):
        api.post("/v1/customers/acme/subscriptions", {"plan": "team"}, 201)
        assert api.get(POOL)["balance"] == 1000
    api.advance(25 * 86400)  # the next period of the inherited anchor: one new block
    assert api.get(POOL)["balance"] == 1000
    assert [e["type"] for e in ledger(api)] == ["grant", "expiry", "grant"]


def test_pool_figures_past_what_a_counter_holds_are_400(acme: Api) -> None:
    statuses = [
        acme.status(
            "POST",
            f"{POOL}/grants",
            {"amount": "999999999999", "category": "paid", "idempotency_key": f"g{n}"},
        )[0]
        for n in range(12)
    ]
    # A pool keeps 10^12 credits of room for the recurring blocks of a period: its grants may
    # hold 2^63 - 1 micro-credits less that together.
    assert statuses[:8] == [201] * 8
    assert set(statuses[8:]) == {400}
    assert acme.get(POOL)["balance"] == 8 * 999999999999


def test_voiding_an_expired_grant_is_409(acme: Api) -> None:
    block = grant(acme, 5, "g1", expires_at="2030-01-01T00:00:00Z")
    acme.post("/v1/test/clock", {"now": "2031-01-01T00:00:00Z"}, 200)
    status, body = acme.status("POST", f"{POOL}/grants/{block['id']}/void")
    assert (status, body["error"]["code"]) == (409, "conflict")


def test_a_debit_names_a_known_feature_and_a_positive_amount(acme: Api) -> None:
    grant(acme, 10, "g")
    assert (
        acme.status(
            "POST", f"{POOL}/debits", {"amount": 1, "idempotency_key": "d1", "feature": "teleport"}
        )[0]
        == 400
    )
    assert acme.status("POST", f"{POOL}/debits", {"amount": 0, "idempotency_key": "d2"})[0] == 400
    assert acme.get(POOL)["balance"] == 10


def test_a_plan_change_grants_the_new_plans_block_at_once(api: Api) -> None:
    define_catalog(api)
    api.put("/v1/currencies/ai-credits", {"name": "Credits"}, 201)
    api.put(
        "/v1/plans/daily",
        {
            "product": "coder",
            "name": "Daily",
            "credits": {"ai-credits": {"amount": 10, "every": "day"}},
        },
        201,
    )
    api.put(
        "/v1/plans/monthly",
        {"product": "coder", "name": "Monthly", "credits": {"ai-credits": {"amount": 1000}}},
        201,
    )
    new_customer(api, "acme", "daily")
    for _ in range(3):
        api.advance(86400)
        assert api.get(POOL)["balance"] == 10
    api.post("/v1/customers/acme/subscriptions", {"plan": "monthly"}, 201)
    assert api.get(POOL)["balance"] == 1010  # today's daily block runs out at the day's end
    for _ in range(3):
        api.advance(31 * 86400)
        assert api.get(POOL)["balance"] == 1000


def test_recurring_blocks_of_different_customers_never_collide(api: Api) -> None:
    define_catalog(api)
    api.put("/v1/currencies/cr", {"name": "Credits"}, 201)
    for product in ("c", "b:c"):
        api.put(f"/v1/products/{product}", {"name": product}, 201)
        api.put(
            f"/v1/plans/plan-{product.replace(':', '-')}",
            {"product": product, "name": "P", "credits": {"cr": {"amount": 1000}}},
            201,
        )
    new_customer(api, "a:b", "plan-c")
    new_customer(api, "a", "plan-b-c")
    assert api.get("/v1/customers/a:b/credits/cr")["balance"] == 1000
    assert api.get("/v1/customers/a/credits/cr")["balance"] == 1000


def test_an_addon_attached_later_grants_only_the_current_period(api: Api) -> None:
    define_catalog(api)
    api.put("/v1/currencies/ai-credits", {"name": "Credits"}, 201)
    api.put(
        "/v1/addons/pack",
        {
            "product": "coder",
            "name": "Pack",
            "entitlements": {},
            "credits": {"ai-credits": {"amount": 1000, "cost_basis": "0.01"}},
        },
        201,
    )
    subscription = new_customer(api, "acme", "team", starts_at="2030-01-01T00:00:00Z")
    api.post("/v1/test/clock", {"now": "2030-06-10T00:00:00Z"}, 200)
    debit(api, 600, "d", enforce=False)
    api.request(
        "PATCH",
        f"/v1/customers/acme/subscriptions/{subscription['id']}",
        {"addons": [{"id": "pack", "quantity": 1}]},
        expect=200,
    )
    assert api.get(POOL)["balance"] == 400
    assert api.get(f"{POOL}/revenue") == {"deferred": 4, "recognized": 6, "breakage": 0}
    entries = ledger(api)
    assert [e["at"] for e in entries] == sorted(e["at"] for e in entries)


def test_an_addon_that_would_grant_10_to_the_12_a_period_is_refused(api: Api) -> None:
    define_catalog(api)
    api.put("/v1/currencies/ai-credits", {"name": "Credits"}, 201)
    api.put(
        "/v1/addons/vast",
        {
            "product": "coder",
            "name": "Vast",
            "entitlements": {},
            "credits": {"ai-credits": {"amount": 999999999999}},
        },
        201,
    )
    new_customer(api, "acme")
    status, body = api.status(
        "POST",
        "/v1/customers/acme/subscriptions",
        {"plan": "team", "addons": [{"id": "vast", "quantity": 2}]},
    )
    assert status == 400, body


def boosts(api: Api, amount: str) -> None:
    """Add-ons boost-a and boost-b, each granting ``amount`` ai-credits a month."""
    for addon in ("boost-a", "boost-b"):
        body = {
            "product": "coder",
            "name": addon,
            "credits": {"ai-credits": {"amount": amount, "every": "month"}},
        }
        api.put(f"/v1/addons/{addon}", body, 201)


def test_subscriptions_whose_recurring_credits_could_not_fit_a_pool_are_400(acme: Api) -> None:
    """Minted the first time the pool is read in a period, they would fail every read after."""
    boosts(acme, "600000000000")
    both = [{"id": "boost-a", "quantity": 1}, {"id": "boost-b", "quantity": 1}]
    subscription = {"plan": "team", "addons": both}
    status, body = acme.status("POST", "/v1/customers/acme/subscriptions", subscription)
    assert status == 400, body
    assert body["error"]["details"] == {"field": "addons"}
    current = acme.get("/v1/customers/acme/subscriptions")["data"][0]
    assert current["addons"] == []
    # Attached one at a time, the second one is refused the same way.
    path = f"/v1/customers/acme/subscriptions/{current['id']}"
    acme.request("PATCH", path, {"addons": both[:1]}, expect=200)
    status, body = acme.status("PATCH", path, {"addons": both})
    assert status == 400, body
    assert body["error"]["details"] == {"field": "addons"}
    # The customer's reads and writes go on, now and in later periods.
    acme.advance(40 * 86_400)
    assert acme.get(POOL)["balance"] == 600000000000
    assert debit(acme, 1, "after")["applied"]
    assert acme.check("acme", "ai-requests")["has_access"]


def test_a_pool_at_its_bound_still_mints_the_next_periods_credits(acme: Api) -> None:
    boosts(acme, "999999999999")
    subscription = acme.get("/v1/customers/acme/subscriptions")["data"][0]["id"]
    path = f"/v1/customers/acme/subscriptions/{subscription}"
    acme.request("PATCH", path, {"addons": [{"id": "boost-a", "quantity": 1}]}, expect=200)
    block = 999999999999
    room = (2**63 - 1) // 1_000_000 - 10**12  # whole credits a pool's grants may hold together
    assert acme.get(POOL)["balance"] == block
    # Purchased grants fill the rest of what grants may hold; one credit more is refused.
    filled = block
    key = 0
    while filled + block <= room:
        grant(acme, block, f"fill-{key}")
        filled, key = filled + block, key + 1
    grant(acme, room - filled, "last")
    status, _ = acme.status(
        "POST", f"{POOL}/grants", {"amount": 1, "category": "paid", "idempotency_key": "over"}
    )
    assert status == 400
    # A scheduled grant counts too.
    status, _ = acme.status(
        "POST",
        f"{POOL}/grants",
        {
            "amount": 1,
            "category": "paid",
            "idempotency_key": "later",
            "effective_at": "2099-01-01T00:00:00Z",
        },
    )
    assert status == 400
    # Next period the block is minted again beside the purchased credits: reads still work.
    acme.advance(32 * 86_400)
    assert acme.get(POOL)["balance"] == room
    assert debit(acme, 1, "next-period")["applied"]
