"""The typed answers of every service encode to the contract's JSON: fields, order and numbers."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import msgspec
import pytest

from allotment.domain.budgets import Budget, BudgetKind, Standing
from allotment.domain.catalog import (
    Addon,
    AddonEntitlement,
    AddonMode,
    BooleanSpec,
    Catalog,
    CreditCategory,
    CreditCost,
    Currency,
    Enforcement,
    Feature,
    FeatureKind,
    MeteredSpec,
    NumericSpec,
    Plan,
    Product,
    RecurringCredits,
    spec_to_document,
)
from allotment.domain.credits import Entry, EntryType, Grant
from allotment.domain.customers import ApiKey, Customer, Scope
from allotment.domain.documents import (
    addon_to_document,
    currency_to_document,
    feature_to_document,
    plan_to_document,
    product_to_document,
)
from allotment.domain.entities import Entity
from allotment.domain.holdings import AddonQuantity, Override, Promotion, Subscription
from allotment.domain.periods import Period, ResetPeriod
from allotment.domain.quantities import MICROS_PER_UNIT
from allotment.domain.reservations import Reservation, ReservationStatus
from allotment.service.answers import BudgetFigures, CheckAnswer, Entitlements, PeriodView
from allotment.service.catalog_views import (
    CatalogView,
    addon_view,
    currency_view,
    feature_view,
    plan_view,
    product_view,
)
from allotment.service.credit_views import (
    PoolBalance,
    PoolGrantViews,
    Revenue,
    grant_view,
    ledger_entry_view,
)
from allotment.service.customer_views import (
    customer_view,
    deleted_override,
    override_view,
    promotion_view,
    subscription_view,
)
from allotment.service.entity_views import deleted_budget, deleted_entity, entity_view
from allotment.service.key_views import created_key, key_view
from allotment.service.outcomes import GRANT_RECORD, GrantOutcome, reservation_view
from allotment.service.ports import LedgerRecord

_encode = msgspec.json.Encoder(decimal_format="number").encode
NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
T0 = "2026-11-24T10:00:00Z"
UNIT = MICROS_PER_UNIT


def _json(value: Any) -> bytes:
    return _encode(value)


# ---------------------------------------------------------------------- catalog

PRICED = MeteredSpec(
    limit=None,
    reset=ResetPeriod.MONTH,
    enforcement=Enforcement.SOFT,
    credit_cost=CreditCost("ai-credits", 1_000),
)
CREDITS = RecurringCredits(
    amount=1000 * UNIT,
    every=ResetPeriod.MONTH,
    category=CreditCategory.PAID,
    cost_basis=10_000,
    overdraft_limit=None,
)
PLAN = Plan(
    id="pro",
    product="coder",
    name="Pro",
    parent="starter",
    trial_days=14,
    billing_period=ResetPeriod.YEAR,
    entitlements={
        "sso": BooleanSpec(),
        "seats": NumericSpec(None),
        "ai-requests": MeteredSpec(1000 * UNIT, ResetPeriod.DAY),
        "model-tokens": PRICED,
    },
    credits={"ai-credits": CREDITS},
)
ADDON = Addon(
    id="extra",
    product="coder",
    name="Extra",
    entitlements={
        "seats": AddonEntitlement(NumericSpec(5 * UNIT), AddonMode.INCREMENT),
        "ai-requests": AddonEntitlement(MeteredSpec(UNIT // 2), AddonMode.OVERRIDE),
    },
    credits={"ai-credits": CREDITS},
)


def test_a_plan_answers_its_definition_with_every_spec_shaped_by_its_kind() -> None:
    assert _json(
        plan_view(replace(PLAN, version=3, parent_version=2, published_at=NOW), False)
    ) == (
        b'{"id":"pro","version":3,"status":"active","published_at":"2026-11-24T10:00:00Z",'
        b'"product":"coder","name":"Pro","parent":"starter","parent_version":2,"trial_days":14,'
        b'"billing_period":"year","entitlements":{"sso":{},"seats":{"value":null},'
        b'"ai-requests":{"limit":1000,"reset":"day","enforcement":"hard"},'
        b'"model-tokens":{"limit":null,"reset":"month","enforcement":"soft",'
        b'"credit_cost":{"currency":"ai-credits","per_unit":0.001}}},'
        b'"credits":{"ai-credits":{"amount":1000,"every":"month","category":"paid",'
        b'"cost_basis":0.01,"overdraft_limit":null}}}'
    )


def test_an_addon_answers_each_spec_with_its_mode_last() -> None:
    assert _json(addon_view(ADDON, True)) == (
        b'{"id":"extra","version":1,"status":"archived","published_at":null,"product":"coder","name":"Extra","entitlements":{'
        b'"seats":{"value":5,"mode":"increment"},'
        b'"ai-requests":{"limit":0.5,"reset":"month","enforcement":"hard","mode":"override"}},'
        b'"credits":{"ai-credits":{"amount":1000,"every":"month","category":"paid",'
        b'"cost_basis":0.01,"overdraft_limit":null}}}'
    )


@pytest.mark.parametrize(
    ("view", "document"),
    [
        (
            feature_view(Feature("tokens", "Tokens", FeatureKind.METERED, "token")),
            feature_to_document(Feature("tokens", "Tokens", FeatureKind.METERED, "token")),
        ),
        (
            currency_view(Currency("ai-credits", "AI credits", None, ("expiry", "created"))),
            currency_to_document(Currency("ai-credits", "AI credits", None, ("expiry", "created"))),
        ),
        (product_view(Product("coder", "Coder")), product_to_document(Product("coder", "Coder"))),
        (plan_view(PLAN, False), plan_to_document(PLAN)),
        (addon_view(ADDON, False), addon_to_document(ADDON)),
    ],
)
def test_a_catalog_answer_is_the_stored_definition_with_its_id_and_version(
    view: CatalogView, document: dict[str, Any]
) -> None:
    server_made = {"id", "version", "status", "published_at", "parent_version"}
    answered = msgspec.json.decode(_json(view))
    assert answered["id"] == view.id
    definition = {name: value for name, value in answered.items() if name not in server_made}
    assert _json(definition) == _json(document)


# ---------------------------------------------------------------------- customers


def test_a_customer_answers_its_fields_then_status_and_instants() -> None:
    customer = Customer("acme", None, {"tier": "gold"}, "cus_1", NOW, NOW, NOW)
    assert _json(customer_view(customer)) == (
        b'{"id":"acme","name":null,"metadata":{"tier":"gold"},"billing_id":"cus_1",'
        b'"status":"archived","created_at":"%s","updated_at":"%s","archived_at":"%s"}'
        % ((T0.encode(),) * 3)
    )


def test_a_subscription_answers_its_status_and_current_period() -> None:
    plan = Plan("team", "coder", "Team")
    subscription = Subscription(
        id="sub_1",
        customer="acme",
        product="coder",
        plan="team",
        addons=(AddonQuantity("extra", 2),),
        is_trial=True,
        starts_at=NOW,
        trial_ends_at=NOW + timedelta(days=14),
        ends_at=None,
        canceled_at=None,
        anchor_at=NOW,
        created_at=NOW,
    )
    catalog = Catalog().with_product(Product("coder", "Coder")).with_plan(plan)
    view = subscription_view(subscription, catalog, NOW)
    assert _json(view) == (
        b'{"id":"sub_1","customer":"acme","product":"coder","plan":"team","plan_version":1,'
        b'"addons":[{"id":"extra","quantity":2,"version":1}],"status":"trialing","trial":true,'
        b'"starts_at":"2026-11-24T10:00:00Z","trial_ends_at":"2026-12-08T10:00:00Z",'
        b'"ends_at":"2026-12-08T10:00:00Z","canceled_at":null,'
        b'"current_period_start":"2026-11-24T10:00:00Z",'
        b'"current_period_end":"2026-12-24T10:00:00Z","created_at":"2026-11-24T10:00:00Z"}'
    )


def test_a_promotion_answers_its_spec_fields_between_feature_and_starts_at() -> None:
    promotion = Promotion(
        id="promo_1",
        customer="acme",
        feature="model-tokens",
        spec=PRICED,
        starts_at=NOW + timedelta(hours=1),
        ends_at=None,
        reason="launch",
        revoked_at=None,
        created_at=NOW,
    )
    assert _json(promotion_view(promotion, NOW)) == (
        b'{"id":"promo_1","customer":"acme","feature":"model-tokens",'
        b'"limit":null,"reset":"month","enforcement":"soft",'
        b'"credit_cost":{"currency":"ai-credits","per_unit":0.001},'
        b'"starts_at":"2026-11-24T11:00:00Z","ends_at":null,"reason":"launch",'
        b'"status":"scheduled","revoked_at":null,"created_at":"2026-11-24T10:00:00Z"}'
    )


@pytest.mark.parametrize("spec", [BooleanSpec(), NumericSpec(None), NumericSpec(3), PRICED])
def test_an_override_answers_the_spec_as_given_and_deleted_last(
    spec: BooleanSpec | NumericSpec | MeteredSpec,
) -> None:
    override = Override("acme", "f", spec, NOW, NOW)
    expected = {
        "customer": "acme",
        "feature": "f",
        **spec_to_document(spec),
        "created_at": T0,
        "updated_at": T0,
    }
    assert _json(override_view(override)) == _json(expected)
    assert _json(deleted_override(override)) == _json({**expected, "deleted": True})


# ---------------------------------------------------------------------- entities and budgets


def _figures() -> BudgetFigures:
    budget = Budget(
        "team-a",
        "ai-credits",
        BudgetKind.CURRENCY,
        100 * UNIT,
        ResetPeriod.DAY,
        Enforcement.HARD,
        NOW,
    )
    window = Period(NOW, NOW + timedelta(days=1))
    return BudgetFigures(Standing(budget, window, 40 * UNIT, UNIT // 4), PeriodView.of(window))


BUDGET_JSON = (
    b'{"entity":"team-a","target":"ai-credits","kind":"currency","limit":100,"usage":40,'
    b'"reserved":0.25,"reset":"day","enforcement":"hard",'
    b'"usage_period_start":"2026-11-24T10:00:00Z","usage_period_end":"2026-11-25T10:00:00Z",'
    b'"created_at":"2026-11-24T10:00:00Z"}'
)


def test_an_entity_answers_its_children_and_budgets() -> None:
    entity = Entity("team-a", "dept", None, None, NOW)
    head = b'{"id":"team-a","parent":"dept","kind":null,"name":null,"children":'
    tail = b'"created_at":"2026-11-24T10:00:00Z"'
    assert _json(entity_view(entity, ["agent", "bot"], [_figures()])) == (
        head + b'["agent","bot"],"budgets":[' + BUDGET_JSON + b"]," + tail + b"}"
    )
    assert _json(deleted_entity(entity, [])) == (
        head + b'[],"budgets":[],' + tail + b',"deleted":true}'
    )


def test_a_removed_budget_answers_deleted_last() -> None:
    assert _json(deleted_budget(_figures())) == BUDGET_JSON[:-1] + b',"deleted":true}'


# ---------------------------------------------------------------------- credits

GRANT = Grant(
    id="grant_1",
    amount=100 * UNIT,
    category=CreditCategory.PROMOTIONAL,
    cost_basis=0,
    priority=50,
    effective_at=NOW,
    expires_at=NOW + timedelta(days=30),
    created_at=NOW,
    remaining=12_500_000,
)
GRANT_JSON = (
    b'{"id":"grant_1","amount":100,"remaining":12.5,"category":"promotional","cost_basis":0,'
    b'"priority":50,"effective_at":"2026-11-24T10:00:00Z","expires_at":"2026-12-24T10:00:00Z",'
    b'"status":"active","reason":null,"created_at":"2026-11-24T10:00:00Z","voided_at":null}'
)


def test_a_pool_answers_its_figures_then_every_grant() -> None:
    pool = PoolBalance(
        balance=Decimal("12.5"),
        reserved=0,
        available=Decimal("12.5"),
        overdraft=0,
        overdraft_limit=None,
        grants=[grant_view(GRANT, NOW)],
    )
    assert _json(pool) == (
        b'{"balance":12.5,"reserved":0,"available":12.5,"overdraft":0,"overdraft_limit":null,'
        b'"grants":[' + GRANT_JSON + b"]}"
    )


def test_kept_grant_views_are_the_views_with_the_status_of_the_moment() -> None:
    views = PoolGrantViews(limit=3)
    later = replace(GRANT, id="grant_2", effective_at=NOW + timedelta(days=1))
    first = views.views(("acme", "ai-credits"), [GRANT, later], NOW)
    assert first == [grant_view(GRANT, NOW), grant_view(later, NOW)]
    assert first[1].status == "scheduled"
    # The same grants a day later: kept views, with the status of the moment.
    tomorrow = NOW + timedelta(days=1)
    again = views.views(("acme", "ai-credits"), [GRANT, later], tomorrow)
    assert again == [grant_view(GRANT, tomorrow), grant_view(later, tomorrow)]
    assert again[0] is first[0]
    assert again[1].status == "active"
    # A grant replaced (a debit, a void) is a new object: its view is made again.
    spent = replace(GRANT, remaining=1)
    assert views.views(("acme", "ai-credits"), [spent], tomorrow) == [grant_view(spent, tomorrow)]
    # Past the limit, the pools read least recently are let go; a pool past it is not kept.
    kept = views.views(("umbrella", "ai-credits"), [GRANT, later], NOW)[0]
    assert views.views(("umbrella", "ai-credits"), [GRANT], NOW)[0] is kept
    too_many = [GRANT, later, spent, replace(GRANT, id="g4")]
    views.views(("acme", "ai-credits"), too_many, NOW)
    assert views.views(("acme", "ai-credits"), [GRANT], NOW)[0] is not first[0]  # not kept
    views.views(("initech", "ai-credits"), [GRANT, later], NOW)  # 1 + 1 + 2: umbrella goes
    assert views.views(("umbrella", "ai-credits"), [GRANT], NOW)[0] is not kept


def test_a_new_grant_answers_the_grant_then_replayed() -> None:
    view = grant_view(GRANT, NOW)
    outcome = GrantOutcome(**msgspec.structs.asdict(view), replayed=False)
    assert _json(outcome) == GRANT_JSON[:-1] + b',"replayed":false}'


def test_a_grant_record_stored_before_answers_were_typed_replays_unchanged() -> None:
    stored = GRANT_JSON[:-1] + b',"replayed":false}'
    replayed = GRANT_RECORD.replay(stored)
    assert replayed.category is CreditCategory.PROMOTIONAL
    assert _json(replayed) == GRANT_JSON[:-1] + b',"replayed":true}'
    assert GRANT_RECORD.replay(GRANT_RECORD.store(replayed)) == replayed  # kept positionally


def test_a_ledger_entry_and_revenue_answer_signed_exact_numbers() -> None:
    entry = Entry(EntryType.DEBIT, None, -1, -1, NOW, "k1", "agent", "tokens")
    record = LedgerRecord("led_1", 7, "acme", "ai-credits", entry)
    assert _json(ledger_entry_view(record)) == (
        b'{"id":"led_1","seq":7,"type":"debit","grant":null,"amount":-0.000001,'
        b'"balance_after":-0.000001,"idempotency_key":"k1","entity":"agent",'
        b'"feature":"tokens","at":"2026-11-24T10:00:00Z"}'
    )
    revenue = Revenue(deferred=Decimal("0.125"), recognized=Decimal(0), breakage=Decimal(10))
    assert _json(revenue) == b'{"deferred":0.125,"recognized":0,"breakage":10}'


# ---------------------------------------------------------------------- keys and reservations


def test_a_new_key_answers_its_secret_last_and_a_listed_key_never() -> None:
    key = ApiKey("key_1", "ci", Scope.CLIENT, "acme", "digest", NOW)
    listed = (
        b'{"id":"key_1","name":"ci","scope":"client","customer":"acme",'
        b'"created_at":"2026-11-24T10:00:00Z","revoked_at":null'
    )
    assert _json(key_view(key)) == listed + b"}"
    assert _json(created_key(key, "alt_secret")) == listed + b',"key":"alt_secret"}'


def test_an_ended_reservation_answers_its_status_and_held_credits() -> None:
    reservation = Reservation(
        id="res_1",
        customer="acme",
        feature="tokens",
        entity=None,
        amount=10 * UNIT,
        currency="ai-credits",
        credits=UNIT // 100,
        created_at=NOW,
        expires_at=NOW + timedelta(minutes=1),
        ended_at=NOW,
        ended_as=ReservationStatus.COMMITTED,
        committed_amount=7 * UNIT,
    )
    assert _json(reservation_view(reservation, NOW)) == (
        b'{"id":"res_1","customer":"acme","feature":"tokens","entity":null,"amount":10,'
        b'"status":"committed","committed_amount":7,'
        b'"credits":{"currency":"ai-credits","held":0.01},'
        b'"created_at":"2026-11-24T10:00:00Z","expires_at":"2026-11-24T10:01:00Z",'
        b'"ended_at":"2026-11-24T10:00:00Z"}'
    )


def test_entitlements_answer_the_customer_then_its_check_results() -> None:
    answer = CheckAnswer(
        customer="acme",
        feature="sso",
        entity=None,
        has_access=True,
        access_denied_reason=None,
        kind=FeatureKind.BOOLEAN,
    )
    assert _json(Entitlements("acme", [answer])) == (
        b'{"customer":"acme","entitlements":[' + _json(answer) + b"]}"
    )
