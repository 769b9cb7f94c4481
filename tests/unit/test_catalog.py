"""The catalog: validation of every change, spec shapes by feature kind, and plan inheritance."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from allotment.domain.catalog import (
    DEFAULT_BURN_ORDER,
    MAX_PLAN_DEPTH,
    Addon,
    AddonEntitlement,
    AddonMode,
    BooleanSpec,
    Catalog,
    CreditCost,
    Currency,
    Enforcement,
    Feature,
    FeatureKind,
    MeteredSpec,
    NumericSpec,
    Plan,
    Product,
    parse_billing_period,
    parse_burn_order,
    parse_trial_days,
)
from allotment.domain.documents import (
    addon_from_document,
    addon_to_document,
    currency_from_document,
    plan_from_document,
    plan_to_document,
    spec_from_document,
)
from allotment.domain.errors import Conflict, InvalidRequest
from allotment.domain.periods import ResetPeriod

UNIT = 1_000_000

SSO = Feature("sso", "Single sign-on", FeatureKind.BOOLEAN)
SEATS = Feature("seats", "Seats", FeatureKind.NUMERIC)
AI_REQUESTS = Feature("ai-requests", "AI requests", FeatureKind.METERED)


def base_catalog() -> Catalog:
    """Three features of each kind, one currency, two products."""
    return (
        Catalog()
        .with_feature(SSO)
        .with_feature(SEATS)
        .with_feature(AI_REQUESTS)
        .with_currency(Currency("ai-credits", "AI credits"))
        .with_product(Product("coder", "Coder"))
        .with_product(Product("chat", "Chat"))
    )


def plan(plan_id: str, parent: str | None = None, product: str = "coder", **specs: Any) -> Plan:
    entitlements = {name.replace("_", "-"): spec for name, spec in specs.items()}
    return Plan(plan_id, product, plan_id.title(), parent=parent, entitlements=entitlements)


def metered(limit: int | None, **kwargs: Any) -> MeteredSpec:
    return MeteredSpec(limit=None if limit is None else limit * UNIT, **kwargs)


# ------------------------------------------------------------------ features and currencies


def test_feature_kind_cannot_change() -> None:
    catalog = base_catalog()
    with pytest.raises(Conflict) as raised:
        catalog.with_feature(Feature("sso", "SSO", FeatureKind.METERED))
    assert "'sso'" in raised.value.message
    assert "kind cannot change" in raised.value.message
    assert raised.value.details == {"feature": "sso"}


def test_feature_can_be_renamed_with_the_same_kind() -> None:
    catalog = base_catalog().with_feature(Feature("sso", "SAML SSO", FeatureKind.BOOLEAN, "seat"))
    assert catalog.features["sso"].name == "SAML SSO"
    assert catalog.features["sso"].unit == "seat"


def test_feature_cannot_take_a_currency_id() -> None:
    with pytest.raises(Conflict) as raised:
        base_catalog().with_feature(Feature("ai-credits", "Credits", FeatureKind.METERED))
    assert "'ai-credits' is already a currency" in raised.value.message


def test_currency_cannot_take_a_feature_id() -> None:
    with pytest.raises(Conflict) as raised:
        base_catalog().with_currency(Currency("seats", "Seats"))
    assert "'seats' is already a feature" in raised.value.message


def test_rejected_change_leaves_the_catalog_unchanged() -> None:
    catalog = base_catalog()
    with pytest.raises(Conflict):
        catalog.with_feature(Feature("sso", "SSO", FeatureKind.NUMERIC))
    assert catalog.features["sso"].kind is FeatureKind.BOOLEAN


def test_currency_burn_order_defaults_and_validation() -> None:
    assert currency_from_document("c", {"name": "C"}).burn_order == DEFAULT_BURN_ORDER
    assert DEFAULT_BURN_ORDER == ("priority", "expiry", "promotional_first", "created")
    custom = currency_from_document("c", {"name": "C", "burn_order": ["promotional_first"]})
    assert custom.burn_order == ("promotional_first",)
    with pytest.raises(InvalidRequest) as raised:
        parse_burn_order(["priority", "newest"])
    assert "'newest'" in raised.value.message
    with pytest.raises(InvalidRequest) as raised:
        parse_burn_order(["expiry", "expiry"])
    assert "twice" in raised.value.message


# ------------------------------------------------------------------ plans: references


def test_plan_naming_an_unknown_product_is_refused() -> None:
    with pytest.raises(InvalidRequest) as raised:
        base_catalog().with_plan(plan("pro", product="video"))
    assert raised.value.message == "plan 'pro' names unknown product 'video'."
    assert raised.value.details == {"field": "product"}


def test_addon_naming_an_unknown_product_is_refused() -> None:
    with pytest.raises(InvalidRequest) as raised:
        base_catalog().with_addon(Addon("extra", "video", "Extra"))
    assert "add-on 'extra' names unknown product 'video'" in raised.value.message


def test_plan_document_naming_an_unknown_feature_is_refused() -> None:
    document = {"product": "coder", "name": "Pro", "entitlements": {"ghost": {}}}
    with pytest.raises(InvalidRequest) as raised:
        plan_from_document("pro", document, base_catalog())
    assert "unknown feature 'ghost'" in raised.value.message
    assert raised.value.details == {"field": "entitlements.ghost"}


def test_addon_document_naming_an_unknown_feature_is_refused() -> None:
    document = {"product": "coder", "name": "X", "entitlements": {"ghost": {"mode": "override"}}}
    with pytest.raises(InvalidRequest) as raised:
        addon_from_document("x", document, base_catalog())
    assert "unknown feature 'ghost'" in raised.value.message


def test_with_plan_refuses_a_plan_naming_an_unknown_feature() -> None:
    with pytest.raises(InvalidRequest, match="ghost"):
        base_catalog().with_plan(plan("pro", ghost=BooleanSpec()))


def test_plan_naming_an_unknown_parent_is_refused() -> None:
    with pytest.raises(InvalidRequest) as raised:
        base_catalog().with_plan(plan("pro", parent="starter"))
    assert raised.value.message == "plan 'pro' names unknown parent plan 'starter'."
    assert raised.value.details == {"field": "parent"}


def test_plan_whose_parent_is_in_another_product_is_refused() -> None:
    catalog = base_catalog().with_plan(plan("chat-basic", product="chat"))
    with pytest.raises(InvalidRequest) as raised:
        catalog.with_plan(plan("pro", parent="chat-basic", product="coder"))
    message = raised.value.message
    assert "'pro' is in product 'coder'" in message
    assert "parent 'chat-basic' is in product 'chat'" in message


def test_a_plan_or_addon_never_changes_product() -> None:
    """Its subscriptions belong to its product: a version in another would move them out."""
    catalog = base_catalog().with_plan(plan("starter")).with_plan(plan("pro", parent="starter"))
    with pytest.raises(Conflict) as raised:
        catalog.with_plan(plan("pro", parent=None, product="chat"))
    assert "its product cannot change" in raised.value.message
    catalog = catalog.with_addon(Addon("extra", "coder", "Extra"))
    with pytest.raises(Conflict):
        catalog.with_addon(Addon("extra", "chat", "Extra"))


def test_a_version_this_catalog_has_not_heard_of_reads_as_the_latest_it_knows() -> None:
    """Another process may put a subscription on a version it just published, before this one
    follows the publication: reads answer with the newest version known, never fail."""
    catalog = base_catalog().with_plan(plan("starter")).with_addon(Addon("extra", "coder", "X"))
    assert catalog.plan_for("starter", 2) == catalog.plans["starter"]
    assert catalog.plan_entitlements("starter", 2) == catalog.plan_entitlements("starter", 1)
    assert catalog.addon_for("extra", 7) == catalog.addons["extra"]
    assert catalog.addon_for("missing", 1) is None


def test_plan_that_is_its_own_parent_is_refused() -> None:
    catalog = base_catalog().with_plan(plan("solo"))
    with pytest.raises(InvalidRequest) as raised:
        catalog.with_plan(plan("solo", parent="solo"))
    assert raised.value.message == "plan parents form a cycle: solo -> solo."


def test_new_plan_naming_itself_as_parent_is_refused() -> None:
    with pytest.raises(InvalidRequest) as raised:
        base_catalog().with_plan(plan("solo", parent="solo"))
    assert "cycle: solo -> solo" in raised.value.message
    assert raised.value.details == {"field": "parent"}


def test_two_plans_naming_each_other_as_parents_are_refused() -> None:
    catalog = base_catalog().with_plan(plan("a")).with_plan(plan("b", parent="a"))
    with pytest.raises(InvalidRequest) as raised:
        catalog.with_plan(plan("a", parent="b"))
    assert raised.value.message == "plan parents form a cycle: a -> b -> a."


def test_longer_parent_cycle_is_refused() -> None:
    catalog = (
        base_catalog()
        .with_plan(plan("a"))
        .with_plan(plan("b", parent="a"))
        .with_plan(plan("c", parent="b"))
    )
    with pytest.raises(InvalidRequest) as raised:
        catalog.with_plan(plan("a", parent="c"))
    assert "cycle: a -> c -> b -> a" in raised.value.message


def test_plan_pricing_usage_in_an_unknown_currency_is_refused() -> None:
    spec = MeteredSpec(limit=None, credit_cost=CreditCost("gold", UNIT))
    with pytest.raises(InvalidRequest) as raised:
        base_catalog().with_plan(plan("pro", ai_requests=spec))
    assert "unknown currency 'gold'" in raised.value.message


def test_plan_granting_an_unknown_currency_is_refused() -> None:
    document = {"product": "coder", "name": "Pro", "credits": {"gold": {"amount": 10}}}
    with pytest.raises(InvalidRequest) as raised:
        base_catalog().with_plan(plan_from_document("pro", document, base_catalog()))
    assert "grants unknown currency 'gold'" in raised.value.message


# ------------------------------------------------------------------ specs by feature kind


def test_limit_on_a_boolean_feature_is_refused() -> None:
    with pytest.raises(InvalidRequest) as raised:
        spec_from_document(SSO, {"limit": 10}, "entitlements.sso")
    message = raised.value.message
    assert "limit does not fit boolean feature 'sso'" in message
    assert "allowed: nothing" in message


def test_value_on_a_metered_feature_is_refused() -> None:
    with pytest.raises(InvalidRequest) as raised:
        spec_from_document(AI_REQUESTS, {"value": 10}, "entitlements.ai-requests")
    assert "value does not fit metered feature 'ai-requests'" in raised.value.message


def test_limit_on_a_numeric_feature_is_refused() -> None:
    with pytest.raises(InvalidRequest) as raised:
        spec_from_document(SEATS, {"limit": 10}, "entitlements.seats")
    assert "limit does not fit numeric feature 'seats'" in raised.value.message
    assert "allowed: value" in raised.value.message


def test_metered_spec_without_limit_is_refused() -> None:
    with pytest.raises(InvalidRequest) as raised:
        spec_from_document(AI_REQUESTS, {"reset": "day"}, "entitlements.ai-requests")
    assert raised.value.message.startswith("entitlements.ai-requests.limit is required")


def test_numeric_spec_without_value_is_refused() -> None:
    with pytest.raises(InvalidRequest) as raised:
        spec_from_document(SEATS, {}, "entitlements.seats")
    assert "entitlements.seats.value is required" in raised.value.message


def test_spec_with_an_unknown_reset_or_enforcement_is_refused() -> None:
    with pytest.raises(InvalidRequest) as raised:
        spec_from_document(AI_REQUESTS, {"limit": 1, "reset": "fortnight"}, "spec")
    assert "spec.reset must be one of" in raised.value.message
    with pytest.raises(InvalidRequest) as raised:
        spec_from_document(AI_REQUESTS, {"limit": 1, "enforcement": "strict"}, "spec")
    assert "spec.enforcement must be one of" in raised.value.message


def test_spec_with_a_negative_or_over_precise_limit_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="negative"):
        spec_from_document(AI_REQUESTS, {"limit": -1}, "spec")
    with pytest.raises(InvalidRequest, match="6 fractional digits"):
        spec_from_document(SEATS, {"value": Decimal("1.0000001")}, "spec")


def test_metered_spec_defaults_to_monthly_hard() -> None:
    spec = spec_from_document(AI_REQUESTS, {"limit": 1000}, "spec")
    assert spec == MeteredSpec(limit=1000 * UNIT, reset=ResetPeriod.MONTH)
    assert isinstance(spec, MeteredSpec)
    assert spec.enforcement is Enforcement.HARD
    assert spec.credit_cost is None


def test_null_limit_and_null_value_mean_unlimited() -> None:
    assert spec_from_document(AI_REQUESTS, {"limit": None}, "spec") == MeteredSpec(limit=None)
    assert spec_from_document(SEATS, {"value": None}, "spec") == NumericSpec(value=None)


def test_boolean_spec_is_empty() -> None:
    assert spec_from_document(SSO, {}, "spec") == BooleanSpec()


def test_credit_cost_is_parsed_exactly() -> None:
    fields = {
        "limit": None,
        "credit_cost": {"currency": "ai-credits", "per_unit": Decimal("0.001")},
    }
    spec = spec_from_document(AI_REQUESTS, fields, "spec")
    assert isinstance(spec, MeteredSpec)
    assert spec.credit_cost == CreditCost("ai-credits", 1_000)


def test_credit_cost_with_missing_fields_is_refused() -> None:
    with pytest.raises(InvalidRequest) as raised:
        spec_from_document(AI_REQUESTS, {"limit": 1, "credit_cost": {"currency": "x"}}, "s")
    assert "s.credit_cost must be" in raised.value.message


def test_addon_entitlement_requires_a_mode() -> None:
    document = {"product": "coder", "name": "X", "entitlements": {"seats": {"value": 5}}}
    with pytest.raises(InvalidRequest) as raised:
        addon_from_document("x", document, base_catalog())
    assert "entitlements.seats.mode is required" in raised.value.message


def test_addon_spec_must_fit_the_feature_kind() -> None:
    document = {
        "product": "coder",
        "name": "X",
        "entitlements": {"seats": {"limit": 5, "mode": "increment"}},
    }
    with pytest.raises(InvalidRequest) as raised:
        addon_from_document("x", document, base_catalog())
    assert "limit does not fit numeric feature 'seats'" in raised.value.message


def test_plan_document_spec_must_fit_the_feature_kind() -> None:
    document = {"product": "coder", "name": "Pro", "entitlements": {"sso": {"value": 1}}}
    with pytest.raises(InvalidRequest) as raised:
        plan_from_document("pro", document, base_catalog())
    assert "value does not fit boolean feature 'sso'" in raised.value.message


def test_trial_days_and_billing_period_are_bounded() -> None:
    assert parse_trial_days(14) == 14
    assert parse_trial_days(None) is None
    for bad in (0, -1, 3651):
        with pytest.raises(InvalidRequest, match="trial_days must be between 1 and 3650"):
            parse_trial_days(bad)
    assert parse_billing_period("year") is ResetPeriod.YEAR
    with pytest.raises(InvalidRequest, match="billing_period must be 'month' or 'year'"):
        parse_billing_period("week")


def test_recurring_credits_cannot_be_every_never() -> None:
    document = {
        "product": "coder",
        "name": "Pro",
        "credits": {"ai-credits": {"amount": 1000, "every": "never"}},
    }
    with pytest.raises(InvalidRequest) as raised:
        plan_from_document("pro", document, base_catalog())
    assert "credits.ai-credits.every" in raised.value.message
    assert "never" in raised.value.message


# ------------------------------------------------------------------ inheritance


def inheritance_catalog() -> Catalog:
    return (
        base_catalog()
        .with_plan(plan("starter", sso=BooleanSpec(), ai_requests=metered(100)))
        .with_plan(plan("pro", parent="starter", ai_requests=metered(1000), seats=NumericSpec(10)))
        .with_plan(plan("max", parent="pro"))
    )


def test_child_spec_replaces_the_parent_spec() -> None:
    entitlements = inheritance_catalog().plan_entitlements("pro")
    assert entitlements["ai-requests"] == metered(1000)


def test_child_inherits_what_it_does_not_set() -> None:
    entitlements = inheritance_catalog().plan_entitlements("pro")
    assert entitlements["sso"] == BooleanSpec()
    assert entitlements["seats"] == NumericSpec(10)


def test_grandchild_inherits_the_whole_chain() -> None:
    entitlements = inheritance_catalog().plan_entitlements("max")
    assert dict(entitlements) == {
        "sso": BooleanSpec(),
        "ai-requests": metered(1000),
        "seats": NumericSpec(10),
    }


def test_parent_does_not_inherit_from_its_child() -> None:
    entitlements = inheritance_catalog().plan_entitlements("starter")
    assert dict(entitlements) == {"sso": BooleanSpec(), "ai-requests": metered(100)}


def test_changing_a_parent_changes_every_descendant_at_once() -> None:
    catalog = inheritance_catalog().with_plan(
        plan("starter", sso=BooleanSpec(), ai_requests=metered(100), seats=NumericSpec(3))
    )
    # pro sets its own seats, so its value shadows the parent's new one.
    assert catalog.plan_entitlements("max")["seats"] == NumericSpec(10)
    catalog = catalog.with_plan(plan("starter", ai_requests=metered(100)))
    assert "sso" not in catalog.plan_entitlements("pro")
    assert "sso" not in catalog.plan_entitlements("max")


def test_plan_own_entitlements_are_not_rewritten_by_inheritance() -> None:
    assert dict(inheritance_catalog().plans["max"].entitlements) == {}


def test_a_chain_longer_than_the_maximum_depth_is_refused_even_by_re_parenting() -> None:
    """Create a1..aN without parents, then re-parent a(i) under a(i+1) from the end: the PUT
    that would make the chain longer than MAX_PLAN_DEPTH is refused, whichever end grows."""
    catalog = base_catalog()
    for i in range(MAX_PLAN_DEPTH + 1):
        catalog = catalog.with_plan(plan(f"a{i}"))
    for i in range(MAX_PLAN_DEPTH - 2, -1, -1):
        catalog = catalog.with_plan(plan(f"a{i}", parent=f"a{i + 1}"))
    with pytest.raises(InvalidRequest, match="at most 16 plans"):
        catalog.with_plan(plan(f"a{MAX_PLAN_DEPTH - 1}", parent=f"a{MAX_PLAN_DEPTH}"))
    catalog = catalog.with_plan(plan(f"a{MAX_PLAN_DEPTH}", sso=BooleanSpec()))
    assert "sso" not in catalog.plan_entitlements("a0")


def test_re_parenting_refolds_every_descendant() -> None:
    catalog = base_catalog().with_plan(plan("root", sso=BooleanSpec()))
    catalog = catalog.with_plan(plan("mid")).with_plan(plan("leaf", parent="mid"))
    assert "sso" not in catalog.plan_entitlements("leaf")
    catalog = catalog.with_plan(plan("mid", parent="root"))
    assert catalog.plan_entitlements("leaf") == {"sso": BooleanSpec()}


# ------------------------------------------------------------------ documents round-trip


def test_plan_document_round_trips() -> None:
    document = {
        "product": "coder",
        "name": "Pro",
        "parent": None,
        "trial_days": 14,
        "billing_period": "year",
        "entitlements": {
            "sso": {},
            "seats": {"value": 10},
            "ai-requests": {
                "limit": Decimal("1000.5"),
                "reset": "day",
                "enforcement": "soft",
                "credit_cost": {"currency": "ai-credits", "per_unit": Decimal("0.001")},
            },
        },
        "credits": {
            "ai-credits": {
                "amount": 1000,
                "every": "month",
                "category": "paid",
                "cost_basis": Decimal("0.01"),
                "overdraft_limit": None,
            }
        },
    }
    parsed = plan_from_document("pro", document, base_catalog())
    assert parsed.billing_period is ResetPeriod.YEAR
    assert parsed.credits["ai-credits"].overdraft_limit is None
    assert parsed.credits["ai-credits"].cost_basis == 10_000
    assert plan_to_document(parsed) == document


def test_addon_document_round_trips() -> None:
    document = {
        "product": "coder",
        "name": "More seats",
        "entitlements": {"seats": {"value": 5, "mode": "increment"}},
        "credits": {},
    }
    parsed = addon_from_document("more-seats", document, base_catalog())
    assert parsed.entitlements["seats"] == AddonEntitlement(
        NumericSpec(5 * UNIT), AddonMode.INCREMENT
    )
    assert addon_to_document(parsed) == document
