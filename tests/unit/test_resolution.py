"""Resolution: one value per (customer, feature) from every source, by the rules of API.md."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from allotment.domain.catalog import (
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
    Spec,
)
from allotment.domain.holdings import (
    AddonQuantity,
    Holdings,
    Override,
    Promotion,
    Subscription,
    SubscriptionStatus,
)
from allotment.domain.periods import ResetPeriod
from allotment.domain.resolution import (
    DenialReason,
    Offer,
    Resolution,
    Source,
    SourceType,
    resolve,
)

UNIT = 1_000_000
T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)

SSO = Feature("sso", "SSO", FeatureKind.BOOLEAN)
AUDIT = Feature("audit-log", "Audit log", FeatureKind.BOOLEAN)
SEATS = Feature("seats", "Seats", FeatureKind.NUMERIC)
AI = Feature("ai-requests", "AI requests", FeatureKind.METERED)
EXPORTS = Feature("exports", "Exports", FeatureKind.METERED)


def metered(
    limit: int | None,
    enforcement: Enforcement = Enforcement.HARD,
    reset: ResetPeriod = ResetPeriod.MONTH,
    credit_cost: CreditCost | None = None,
) -> MeteredSpec:
    return MeteredSpec(
        limit=None if limit is None else limit * UNIT,
        reset=reset,
        enforcement=enforcement,
        credit_cost=credit_cost,
    )


def seats(value: int | None) -> NumericSpec:
    return NumericSpec(None if value is None else value * UNIT)


def increment(spec: Spec) -> AddonEntitlement:
    return AddonEntitlement(spec, AddonMode.INCREMENT)


def override_mode(spec: Spec) -> AddonEntitlement:
    return AddonEntitlement(spec, AddonMode.OVERRIDE)


def make_catalog() -> Catalog:
    catalog = Catalog()
    for feature in (SSO, AUDIT, SEATS, AI, EXPORTS):
        catalog = catalog.with_feature(feature)
    catalog = (
        catalog.with_currency(Currency("ai-credits", "AI credits"))
        .with_product(Product("coder", "Coder"))
        .with_product(Product("docs", "Docs"))
    )
    plans = [
        Plan("free", "coder", "Free", entitlements={SEATS.id: seats(1)}),
        Plan(
            "team",
            "coder",
            "Team",
            trial_days=14,
            entitlements={
                SEATS.id: seats(10),
                AI.id: metered(1000, reset=ResetPeriod.MONTH),
                AUDIT.id: BooleanSpec(),
            },
        ),
        Plan(
            "enterprise",
            "coder",
            "Enterprise",
            parent="team",
            trial_days=14,
            entitlements={
                SSO.id: BooleanSpec(),
                SEATS.id: seats(None),
                AI.id: metered(10_000, reset=ResetPeriod.DAY),
            },
        ),
        Plan("unlimited", "coder", "Unlimited", entitlements={AI.id: metered(None)}),
        Plan("docs-basic", "docs", "Docs", entitlements={EXPORTS.id: metered(5)}),
        Plan("docs-ai", "docs", "Docs AI", entitlements={AI.id: metered(1000)}),
    ]
    for plan in plans:
        catalog = catalog.with_plan(plan)
    addons = [
        Addon("extra-requests", "coder", "Extra", {AI.id: increment(metered(500))}),
        Addon("boost", "coder", "Boost", {AI.id: override_mode(metered(5000))}),
        Addon("mega", "coder", "Mega", {AI.id: override_mode(metered(8000))}),
        Addon("tiny", "coder", "Tiny", {AI.id: override_mode(metered(50))}),
        Addon("seat-pack", "coder", "Seat pack", {SEATS.id: increment(seats(5))}),
        Addon("sso-addon", "coder", "SSO", {SSO.id: increment(BooleanSpec())}),
        Addon("infinite", "coder", "Infinite", {AI.id: increment(metered(None))}),
    ]
    for addon in addons:
        catalog = catalog.with_addon(addon)
    return catalog


CATALOG = make_catalog()
_ids = itertools.count(1)


def sub(
    plan: str,
    starts_at: datetime = T0,
    *,
    addons: Sequence[tuple[str, int]] = (),
    trial_days: int | None = None,
    ends_at: datetime | None = None,
    canceled_at: datetime | None = None,
    anchor_at: datetime | None = None,
) -> Subscription:
    trial_ends_at = None if trial_days is None else starts_at + timedelta(days=trial_days)
    return Subscription(
        id=f"sub_{next(_ids)}",
        customer="acme",
        product=CATALOG.plans[plan].product,
        plan=plan,
        addons=tuple(AddonQuantity(addon, quantity) for addon, quantity in addons),
        is_trial=trial_days is not None,
        starts_at=starts_at,
        trial_ends_at=trial_ends_at,
        ends_at=ends_at,
        canceled_at=canceled_at,
        anchor_at=anchor_at or starts_at,
        created_at=starts_at,
    )


def promo(
    feature: Feature,
    spec: Spec,
    starts_at: datetime = T0,
    *,
    ends_at: datetime | None = None,
    revoked_at: datetime | None = None,
    promo_id: str | None = None,
) -> Promotion:
    return Promotion(
        id=promo_id or f"promo_{next(_ids)}",
        customer="acme",
        feature=feature.id,
        spec=spec,
        starts_at=starts_at,
        ends_at=ends_at,
        reason=None,
        revoked_at=revoked_at,
        created_at=starts_at,
    )


def override(feature: Feature, spec: Spec, created_at: datetime = T0) -> Override:
    return Override("acme", feature.id, spec, created_at, updated_at=created_at + timedelta(days=3))


def resolve_for(
    feature: Feature,
    *,
    subscriptions: Sequence[Subscription] = (),
    promotions: Sequence[Promotion] = (),
    overrides: Sequence[Override] = (),
    now: datetime = NOW,
) -> Resolution:
    holdings = Holdings(
        subscriptions=tuple(subscriptions),
        promotions=tuple(promotions),
        overrides={o.feature: o for o in overrides},
    )
    return resolve(CATALOG, holdings, feature, now)


def granted(resolution: Resolution) -> Offer:
    assert resolution.denial is None, resolution.denial
    assert resolution.offer is not None
    return resolution.offer


def source_dict(offer: Offer) -> dict[str, Any]:
    return {"type": offer.source.type.value, "id": offer.source.id}


# ------------------------------------------------------------------ 1. the subscription's value


def test_subscription_offers_the_plan_spec() -> None:
    offer = granted(resolve_for(AI, subscriptions=[sub("team")]))
    assert offer.spec == metered(1000)
    assert source_dict(offer) == {"type": "plan", "id": "team"}


def test_subscription_offers_inherited_entitlements_of_the_parent_chain() -> None:
    offer = granted(resolve_for(AUDIT, subscriptions=[sub("enterprise")]))
    assert offer.spec == BooleanSpec()
    assert source_dict(offer) == {"type": "plan", "id": "enterprise"}


def test_child_plan_spec_replaces_the_parent_spec_in_resolution() -> None:
    offer = granted(resolve_for(AI, subscriptions=[sub("enterprise")]))
    assert offer.spec == metered(10_000, reset=ResetPeriod.DAY)


def test_override_addon_replaces_the_plan_spec() -> None:
    offer = granted(resolve_for(AI, subscriptions=[sub("team", addons=[("boost", 1)])]))
    assert offer.spec == metered(5000)
    assert source_dict(offer) == {"type": "plan", "id": "team"}


def test_override_addon_replaces_even_a_more_generous_plan_spec() -> None:
    """The add-on's value replaces the plan's; it is not compared with it."""
    offer = granted(resolve_for(AI, subscriptions=[sub("team", addons=[("tiny", 1)])]))
    assert offer.spec == metered(50)


def test_highest_override_addon_wins_whatever_the_order() -> None:
    for addons in (
        [("boost", 1), ("mega", 1), ("tiny", 1)],
        [("mega", 1), ("tiny", 1), ("boost", 1)],
    ):
        offer = granted(resolve_for(AI, subscriptions=[sub("team", addons=addons)]))
        assert offer.spec == metered(8000)


def test_override_addon_quantity_does_not_multiply() -> None:
    offer = granted(resolve_for(AI, subscriptions=[sub("team", addons=[("boost", 3)])]))
    assert offer.spec == metered(5000)


def test_increment_addon_adds_amount_times_quantity() -> None:
    offer = granted(resolve_for(AI, subscriptions=[sub("team", addons=[("extra-requests", 3)])]))
    assert offer.spec == metered(1000 + 3 * 500)


def test_increment_keeps_the_plan_reset_and_enforcement() -> None:
    subscription = sub("enterprise", addons=[("extra-requests", 2)])
    offer = granted(resolve_for(AI, subscriptions=[subscription]))
    assert offer.spec == metered(11_000, reset=ResetPeriod.DAY)


def test_numeric_increment_adds_amount_times_quantity() -> None:
    offer = granted(resolve_for(SEATS, subscriptions=[sub("team", addons=[("seat-pack", 2)])]))
    assert offer.spec == seats(20)


def test_increments_apply_after_the_override() -> None:
    addons = [("extra-requests", 2), ("boost", 4)]
    offer = granted(resolve_for(AI, subscriptions=[sub("team", addons=addons)]))
    assert offer.spec == metered(5000 + 2 * 500)


def test_increment_on_an_unlimited_plan_stays_unlimited() -> None:
    subscription = sub("unlimited", addons=[("extra-requests", 5)])
    assert granted(resolve_for(AI, subscriptions=[subscription])).spec == metered(None)


def test_unlimited_increment_makes_the_limit_unlimited() -> None:
    offer = granted(resolve_for(AI, subscriptions=[sub("team", addons=[("infinite", 1)])]))
    assert offer.spec == metered(None)


def test_unlimited_numeric_plan_stays_unlimited_with_increments() -> None:
    subscription = sub("enterprise", addons=[("seat-pack", 3)])
    assert granted(resolve_for(SEATS, subscriptions=[subscription])).spec == seats(None)


def test_boolean_addon_grants_a_feature_the_plan_lacks() -> None:
    subscription = sub("team", addons=[("sso-addon", 1)])
    offer = granted(resolve_for(SSO, subscriptions=[subscription]))
    assert offer.spec == BooleanSpec()
    assert source_dict(offer) == {"type": "plan", "id": "team"}


def test_addon_for_another_feature_does_not_touch_this_one() -> None:
    offer = granted(resolve_for(SEATS, subscriptions=[sub("team", addons=[("boost", 1)])]))
    assert offer.spec == seats(10)


# ------------------------------------------------------------------ 2. the most generous wins


def test_unlimited_promotion_beats_any_number() -> None:
    promotion = promo(AI, metered(None), NOW - timedelta(days=1))
    offer = granted(resolve_for(AI, subscriptions=[sub("team")], promotions=[promotion]))
    assert offer.spec == metered(None)
    assert source_dict(offer) == {"type": "promotion", "id": promotion.id}


def test_unlimited_plan_beats_a_large_promotion() -> None:
    promotion = promo(AI, metered(10**9))
    offer = granted(resolve_for(AI, subscriptions=[sub("unlimited")], promotions=[promotion]))
    assert source_dict(offer) == {"type": "plan", "id": "unlimited"}


def test_larger_number_beats_a_smaller_one() -> None:
    bigger = promo(AI, metered(2000), NOW - timedelta(hours=1))
    smaller = promo(AI, metered(500), T0 - timedelta(days=30))
    offer = granted(resolve_for(AI, subscriptions=[sub("team")], promotions=[bigger, smaller]))
    assert offer.source.id == bigger.id
    offer = granted(resolve_for(AI, subscriptions=[sub("team")], promotions=[smaller]))
    assert source_dict(offer) == {"type": "plan", "id": "team"}


def test_larger_numeric_value_wins() -> None:
    promotion = promo(SEATS, seats(11))
    offer = granted(resolve_for(SEATS, subscriptions=[sub("team")], promotions=[promotion]))
    assert offer.spec == seats(11)


def test_on_a_tie_soft_beats_hard_even_when_later() -> None:
    soft = promo(AI, metered(1000, Enforcement.SOFT), NOW - timedelta(hours=1))
    offer = granted(resolve_for(AI, subscriptions=[sub("team")], promotions=[soft]))
    assert offer.source.id == soft.id
    assert offer.spec == metered(1000, Enforcement.SOFT)


def test_on_an_unlimited_tie_soft_beats_hard() -> None:
    soft = promo(AI, metered(None, Enforcement.SOFT), NOW - timedelta(hours=1))
    offer = granted(resolve_for(AI, subscriptions=[sub("unlimited")], promotions=[soft]))
    assert offer.source.id == soft.id


def test_soft_does_not_beat_a_larger_hard_limit() -> None:
    soft = promo(AI, metered(999, Enforcement.SOFT))
    offer = granted(resolve_for(AI, subscriptions=[sub("team")], promotions=[soft]))
    assert source_dict(offer) == {"type": "plan", "id": "team"}


def test_on_a_full_tie_the_earlier_source_wins() -> None:
    earlier = promo(AI, metered(1000), T0 - timedelta(days=1))
    later = promo(AI, metered(1000), T0 + timedelta(days=1))
    for promotions in ([earlier, later], [later, earlier]):
        offer = granted(resolve_for(AI, subscriptions=[sub("team")], promotions=promotions))
        assert offer.source.id == earlier.id
    offer = granted(resolve_for(AI, subscriptions=[sub("team")], promotions=[later]))
    assert source_dict(offer) == {"type": "plan", "id": "team"}


def test_earlier_subscription_wins_a_tie_with_a_later_one() -> None:
    """Two products' plans offering the same value: the one that started first is named."""
    early_docs = sub("docs-ai", T0 - timedelta(days=5))
    coder = sub("team")
    for order in ([early_docs, coder], [coder, early_docs]):
        offer = granted(resolve_for(AI, subscriptions=order))
        assert source_dict(offer) == {"type": "plan", "id": "docs-ai"}


def test_promotions_compete_with_each_other_without_a_subscription() -> None:
    small = promo(SEATS, seats(3))
    large = promo(SEATS, seats(7))
    offer = granted(resolve_for(SEATS, promotions=[large, small]))
    assert offer.source == Source(SourceType.PROMOTION, large.id)


def test_boolean_is_granted_when_any_source_grants_it() -> None:
    promotion = promo(SSO, BooleanSpec())
    offer = granted(resolve_for(SSO, subscriptions=[sub("team")], promotions=[promotion]))
    assert source_dict(offer) == {"type": "promotion", "id": promotion.id}


def test_winner_brings_its_reset_enforcement_and_credit_cost() -> None:
    cost = CreditCost("ai-credits", 1000)
    spec = metered(5000, Enforcement.SOFT, ResetPeriod.WEEK, cost)
    promotion = promo(AI, spec)
    offer = granted(resolve_for(AI, subscriptions=[sub("team")], promotions=[promotion]))
    assert offer.spec == spec


# ------------------------------------------------------------------ 3. overrides


def test_override_replaces_the_result_even_when_less_generous() -> None:
    holding = override(AI, metered(10))
    offer = granted(
        resolve_for(
            AI,
            subscriptions=[sub("unlimited")],
            promotions=[promo(AI, metered(None))],
            overrides=[holding],
        )
    )
    assert offer.spec == metered(10)
    assert source_dict(offer) == {"type": "override", "id": "ai-requests"}


def test_override_grants_without_any_subscription() -> None:
    offer = granted(resolve_for(SEATS, overrides=[override(SEATS, seats(50))]))
    assert offer.spec == seats(50)
    assert offer.source == Source(SourceType.OVERRIDE, "seats")


def test_override_for_another_feature_does_not_apply() -> None:
    offer = granted(
        resolve_for(AI, subscriptions=[sub("team")], overrides=[override(SEATS, seats(1))])
    )
    assert source_dict(offer) == {"type": "plan", "id": "team"}


# ------------------------------------------------------------------ trials


def test_trial_source_is_named_trial() -> None:
    trial = sub("enterprise", NOW - timedelta(days=1), trial_days=14)
    offer = granted(resolve_for(SSO, subscriptions=[trial]))
    assert source_dict(offer) == {"type": "trial", "id": "enterprise"}


def test_trial_counts_until_trial_ends_at() -> None:
    trial = sub("enterprise", T0, trial_days=14)
    last_moment = T0 + timedelta(days=14) - timedelta(microseconds=1)
    assert granted(resolve_for(SSO, subscriptions=[trial], now=last_moment)).spec == BooleanSpec()


def test_trial_that_ended_no_longer_counts() -> None:
    trial = sub("enterprise", T0, trial_days=14)
    ended = resolve_for(SSO, subscriptions=[trial], now=T0 + timedelta(days=14))
    assert ended == Resolution(None, DenialReason.NO_ACTIVE_SUBSCRIPTION)
    assert trial.status(T0 + timedelta(days=14)) is SubscriptionStatus.EXPIRED
    assert trial.status(T0 + timedelta(days=13)) is SubscriptionStatus.TRIALING


# ------------------------------------------------------------------ 4. anchors


def test_anchor_is_the_subscription_anchor_not_its_start() -> None:
    """A replacement keeps its predecessor's anchor, so resolution must read anchor_at."""
    anchor = T0 - timedelta(days=40)
    offer = granted(resolve_for(AI, subscriptions=[sub("team", T0, anchor_at=anchor)]))
    assert offer.anchor == anchor


def test_anchor_is_the_promotion_start() -> None:
    start = T0 + timedelta(days=3, hours=5)
    promotion = promo(AI, metered(None), start)
    offer = granted(resolve_for(AI, subscriptions=[sub("team")], promotions=[promotion]))
    assert offer.anchor == start


def test_anchor_is_the_override_creation_not_its_last_update() -> None:
    created = T0 + timedelta(days=2)
    offer = granted(resolve_for(AI, overrides=[override(AI, metered(5), created)]))
    assert offer.anchor == created


def test_anchor_follows_the_winner() -> None:
    subscription = sub("team", T0, anchor_at=T0 - timedelta(days=3))
    loser = promo(AI, metered(10), T0 + timedelta(days=1))
    offer = granted(resolve_for(AI, subscriptions=[subscription], promotions=[loser]))
    assert offer.anchor == T0 - timedelta(days=3)


# ------------------------------------------------------------------ 5. denials


def test_customer_holding_nothing_has_no_active_subscription() -> None:
    assert resolve_for(AI) == Resolution(None, DenialReason.NO_ACTIVE_SUBSCRIPTION)


def test_active_subscription_without_the_feature_is_not_entitled() -> None:
    assert resolve_for(SSO, subscriptions=[sub("team")]) == Resolution(
        None, DenialReason.NOT_ENTITLED
    )


def test_subscription_of_another_product_without_the_feature_is_not_entitled() -> None:
    resolution = resolve_for(AI, subscriptions=[sub("docs-basic")])
    assert resolution.denial is DenialReason.NOT_ENTITLED


def test_promotion_for_another_feature_only_is_no_active_subscription() -> None:
    resolution = resolve_for(AI, promotions=[promo(SSO, BooleanSpec())])
    assert resolution.denial is DenialReason.NO_ACTIVE_SUBSCRIPTION


def test_subscription_not_yet_started_is_not_active() -> None:
    future = sub("team", NOW + timedelta(seconds=1))
    assert resolve_for(AI, subscriptions=[future]).denial is DenialReason.NO_ACTIVE_SUBSCRIPTION
    assert granted(resolve_for(AI, subscriptions=[future], now=NOW + timedelta(seconds=1)))


def test_subscription_past_its_end_is_not_active() -> None:
    ended = sub("team", T0, ends_at=NOW)
    assert resolve_for(AI, subscriptions=[ended]).denial is DenialReason.NO_ACTIVE_SUBSCRIPTION
    assert ended.status(NOW) is SubscriptionStatus.EXPIRED


def test_canceled_subscription_is_not_active() -> None:
    canceled = sub("team", T0, canceled_at=NOW - timedelta(days=1))
    assert resolve_for(AI, subscriptions=[canceled]).denial is DenialReason.NO_ACTIVE_SUBSCRIPTION
    assert canceled.status(NOW) is SubscriptionStatus.CANCELED


def test_cancellation_in_the_future_keeps_the_subscription_active() -> None:
    canceling = sub("team", T0, canceled_at=NOW + timedelta(days=1))
    assert granted(resolve_for(AI, subscriptions=[canceling])).spec == metered(1000)
    assert canceling.status(NOW) is SubscriptionStatus.ACTIVE


def test_promotion_that_lapsed_no_longer_counts() -> None:
    lapsed = promo(AI, metered(None), T0, ends_at=NOW)
    offer = granted(resolve_for(AI, subscriptions=[sub("team")], promotions=[lapsed]))
    assert source_dict(offer) == {"type": "plan", "id": "team"}
    assert resolve_for(AI, promotions=[lapsed]).denial is DenialReason.NO_ACTIVE_SUBSCRIPTION


def test_promotion_counts_until_just_before_it_lapses() -> None:
    lapsing = promo(AI, metered(None), T0, ends_at=NOW + timedelta(microseconds=1))
    assert granted(resolve_for(AI, promotions=[lapsing])).source.id == lapsing.id


def test_revoked_promotion_no_longer_counts() -> None:
    revoked = promo(SSO, BooleanSpec(), T0, revoked_at=NOW - timedelta(minutes=1))
    assert resolve_for(SSO, subscriptions=[sub("team")], promotions=[revoked]).denial is (
        DenialReason.NOT_ENTITLED
    )


def test_promotion_not_yet_started_does_not_count() -> None:
    upcoming = promo(SSO, BooleanSpec(), NOW + timedelta(hours=1))
    assert resolve_for(SSO, promotions=[upcoming]).denial is DenialReason.NO_ACTIVE_SUBSCRIPTION


def test_promotion_alone_grants_without_a_subscription() -> None:
    promotion = promo(SSO, BooleanSpec())
    offer = granted(resolve_for(SSO, promotions=[promotion]))
    assert source_dict(offer) == {"type": "promotion", "id": promotion.id}


# ------------------------------------------------------------------ the PRODUCT.md example


def test_team_with_enterprise_trial_gets_enterprise_limits_then_team_limits() -> None:
    """A Team workspace trials Enterprise for 14 days; Team's limits return by themselves."""
    team = sub("team", T0 - timedelta(days=60), addons=[("extra-requests", 1)])
    trial_start = T0 + timedelta(days=2)
    trial = sub("enterprise", trial_start, trial_days=14)
    subscriptions = [team, trial]
    during = trial_start + timedelta(days=13, hours=23)
    after = trial_start + timedelta(days=14)

    ai = granted(resolve_for(AI, subscriptions=subscriptions, now=during))
    assert ai.spec == metered(10_000, reset=ResetPeriod.DAY)
    assert source_dict(ai) == {"type": "trial", "id": "enterprise"}
    assert ai.anchor == trial_start
    assert granted(resolve_for(SEATS, subscriptions=subscriptions, now=during)).spec == seats(None)
    assert granted(resolve_for(SSO, subscriptions=subscriptions, now=during)).spec == BooleanSpec()

    ai = granted(resolve_for(AI, subscriptions=subscriptions, now=after))
    assert ai.spec == metered(1500, reset=ResetPeriod.MONTH)
    assert source_dict(ai) == {"type": "plan", "id": "team"}
    assert ai.anchor == T0 - timedelta(days=60)
    assert granted(resolve_for(SEATS, subscriptions=subscriptions, now=after)).spec == seats(10)
    assert resolve_for(SSO, subscriptions=subscriptions, now=after).denial is (
        DenialReason.NOT_ENTITLED
    )


def test_team_features_stay_granted_while_the_enterprise_trial_runs() -> None:
    team = sub("team", T0 - timedelta(days=60))
    trial = sub("enterprise", NOW - timedelta(days=1), trial_days=14)
    offer = granted(resolve_for(AUDIT, subscriptions=[team, trial]))
    assert source_dict(offer) == {"type": "plan", "id": "team"}  # both grant: the earlier wins
    assert offer.spec == BooleanSpec()
    assert team.status(NOW) is SubscriptionStatus.ACTIVE


# ------------------------------------------------------------------ holdings: when results change


def test_next_change_after_is_the_first_future_start_or_end() -> None:
    trial = sub("enterprise", T0, trial_days=14)
    upcoming = promo(SSO, BooleanSpec(), NOW + timedelta(days=1), ends_at=NOW + timedelta(days=5))
    holdings = Holdings(subscriptions=(trial,), promotions=(upcoming,))
    assert holdings.next_change_after(NOW) == NOW + timedelta(days=1)
    assert holdings.next_change_after(NOW + timedelta(days=1)) == NOW + timedelta(days=5)
    assert holdings.next_change_after(NOW + timedelta(days=5)) is None
    assert Holdings(subscriptions=(trial,)).next_change_after(T0) == T0 + timedelta(days=14)
