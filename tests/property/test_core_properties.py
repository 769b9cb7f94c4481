"""Properties of the pure core that must hold for every input, checked with Hypothesis."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from allotment.domain.catalog import (
    Addon,
    AddonEntitlement,
    AddonMode,
    BooleanSpec,
    Catalog,
    Enforcement,
    Feature,
    FeatureKind,
    MeteredSpec,
    NumericSpec,
    Plan,
    Product,
    Spec,
)
from allotment.domain.errors import InvalidRequest
from allotment.domain.holdings import AddonQuantity, Holdings, Override, Promotion, Subscription
from allotment.domain.periods import (
    Period,
    ResetPeriod,
    period_boundary,
    period_containing,
    period_index,
)
from allotment.domain.quantities import MAX_ABS_MICROS, parse_quantity, to_decimal
from allotment.domain.resolution import Resolution, resolve

UNIT = 1_000_000
NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
PRODUCTS = ("p0", "p1", "p2")
PLAN_IDS = ("plan0", "plan1", "plan2", "plan3")
ADDON_IDS = ("addon0", "addon1", "addon2")
FEATURE_ID = "f"
EXAMPLES = settings(max_examples=200, deadline=None)


# ------------------------------------------------------------------ strategies: catalog


AMOUNTS = st.one_of(st.none(), st.sampled_from([0, 1, 5, 10]).map(lambda n: n * UNIT))
SPECS: dict[FeatureKind, st.SearchStrategy[Spec]] = {
    FeatureKind.BOOLEAN: st.just(BooleanSpec()),
    FeatureKind.NUMERIC: st.builds(NumericSpec, AMOUNTS),
    FeatureKind.METERED: st.builds(
        MeteredSpec,
        AMOUNTS,
        reset=st.sampled_from(list(ResetPeriod)),
        enforcement=st.sampled_from(list(Enforcement)),
    ),
}


def specs(kind: FeatureKind) -> st.SearchStrategy[Spec]:
    """Specs for one kind, drawn from few values so that ties are frequent."""
    return SPECS[kind]


@st.composite
def catalogs(draw: st.DrawFn, kind: FeatureKind) -> Catalog:
    catalog = Catalog().with_feature(Feature(FEATURE_ID, "F", kind))
    for product in PRODUCTS:
        catalog = catalog.with_product(Product(product, product))
    for index, plan_id in enumerate(PLAN_IDS):
        entitlements = {FEATURE_ID: draw(specs(kind))} if draw(st.booleans()) else {}
        # plan3 inherits from plan2 to bring parent chains into play.
        parent = "plan2" if plan_id == "plan3" else None
        product = PRODUCTS[min(index, 2)]
        catalog = catalog.with_plan(
            Plan(plan_id, product, plan_id, parent, None, entitlements=entitlements)
        )
    for addon_id in ADDON_IDS:
        entitlements = {}
        if draw(st.booleans()):
            mode = draw(st.sampled_from(list(AddonMode)))
            entitlements[FEATURE_ID] = AddonEntitlement(draw(specs(kind)), mode)
        catalog = catalog.with_addon(Addon(addon_id, "p0", addon_id, entitlements))
    return catalog


# ------------------------------------------------------------------ strategies: holdings

# Few distinct instants, so that sources often start at the same moment.
OFFSETS = st.sampled_from([-72, -24, -1, 0, 1, 24]).map(lambda hours: timedelta(hours=hours))
ENDS = st.one_of(st.none(), st.sampled_from([-2, 0, 1, 48]).map(lambda h: NOW + timedelta(hours=h)))


@st.composite
def subscriptions(draw: st.DrawFn, catalog: Catalog) -> Subscription:
    plan_id = draw(st.sampled_from(PLAN_IDS))
    starts_at = NOW + draw(OFFSETS)
    is_trial = draw(st.booleans())
    addon_ids = draw(st.lists(st.sampled_from(ADDON_IDS), unique=True, max_size=3))
    addons = tuple(AddonQuantity(a, draw(st.integers(1, 3))) for a in addon_ids)
    trial_ends_at = starts_at + timedelta(days=draw(st.integers(0, 14))) if is_trial else None
    return Subscription(
        id=f"sub_{plan_id}_{draw(st.integers(0, 10**6))}",
        customer="c",
        product=catalog.plans[plan_id].product,
        plan=plan_id,
        addons=addons,
        is_trial=is_trial,
        starts_at=starts_at,
        trial_ends_at=trial_ends_at,
        ends_at=draw(ENDS),
        canceled_at=draw(ENDS),
        anchor_at=starts_at - draw(st.sampled_from([timedelta(0), timedelta(days=40)])),
        created_at=starts_at,
    )


@st.composite
def promotions(draw: st.DrawFn, kind: FeatureKind, promo_id: str) -> Promotion:
    starts_at = NOW + draw(OFFSETS)
    return Promotion(
        id=promo_id,
        customer="c",
        feature=FEATURE_ID,
        spec=draw(specs(kind)),
        starts_at=starts_at,
        ends_at=draw(ENDS),
        reason=None,
        revoked_at=draw(ENDS),
        created_at=starts_at,
    )


@st.composite
def promotion_lists(draw: st.DrawFn, kind: FeatureKind) -> list[Promotion]:
    count = draw(st.integers(0, 4))
    return [draw(promotions(kind, f"promo_{index}")) for index in range(count)]


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[Catalog, Feature, Holdings, FeatureKind]:
    kind = draw(st.sampled_from(list(FeatureKind)))
    catalog = draw(catalogs(kind))
    # The service keeps at most one paid and one trial subscription per product at a time, so
    # two sources with the same plan, kind and start never compete: keep them distinct here too.
    subs = draw(
        st.lists(
            subscriptions(catalog),
            max_size=4,
            unique_by=lambda s: (s.plan, s.is_trial, s.starts_at),
        )
    )
    promos = draw(promotion_lists(kind))
    overrides: dict[str, Override] = {}
    if draw(st.integers(0, 5)) == 0:
        spec = draw(specs(kind))
        overrides[FEATURE_ID] = Override("c", FEATURE_ID, spec, NOW - timedelta(days=2), NOW)
    holdings = Holdings(tuple(subs), tuple(promos), overrides)
    return catalog, catalog.features[FEATURE_ID], holdings, kind


def generosity(resolution: Resolution) -> tuple[int, int, int]:
    """An independent ordering of results: denied < any number < unlimited; soft above hard."""
    if resolution.offer is None:
        return (0, 0, 0)
    spec = resolution.offer.spec
    if isinstance(spec, BooleanSpec):
        return (3, 0, 0)
    amount = spec.value if isinstance(spec, NumericSpec) else spec.limit
    soft = int(isinstance(spec, MeteredSpec) and spec.enforcement is Enforcement.SOFT)
    if amount is None:
        return (2, 0, soft)
    return (1, amount, soft)


# ------------------------------------------------------------------ (1) order independence


@EXAMPLES
@given(scenario=scenarios(), data=st.data())
def test_resolution_does_not_depend_on_the_order_of_sources(
    scenario: tuple[Catalog, Feature, Holdings, FeatureKind], data: st.DataObject
) -> None:
    catalog, feature, holdings, _ = scenario
    shuffled = Holdings(
        subscriptions=tuple(data.draw(st.permutations(holdings.subscriptions))),
        promotions=tuple(data.draw(st.permutations(holdings.promotions))),
        overrides=holdings.overrides,
    )
    assert resolve(catalog, shuffled, feature, NOW) == resolve(catalog, holdings, feature, NOW)


# ------------------------------------------------------------------ (2) monotonicity


def assert_no_less_generous(
    catalog: Catalog, feature: Feature, holdings: Holdings, more: Holdings
) -> None:
    """Holding ``more`` resolves ``feature`` at least as generously as ``holdings`` does."""
    before = resolve(catalog, holdings, feature, NOW)
    after = resolve(catalog, more, feature, NOW)
    assert generosity(after) >= generosity(before)
    if before.offer is not None:
        assert after.offer is not None, "a granted feature stays granted"


@EXAMPLES
@given(scenario=scenarios(), data=st.data())
def test_adding_a_subscription_never_lowers_access(
    scenario: tuple[Catalog, Feature, Holdings, FeatureKind], data: st.DataObject
) -> None:
    catalog, feature, holdings, _ = scenario
    extra = data.draw(subscriptions(catalog))
    more = Holdings((*holdings.subscriptions, extra), holdings.promotions, holdings.overrides)
    assert_no_less_generous(catalog, feature, holdings, more)


@EXAMPLES
@given(scenario=scenarios(), data=st.data())
def test_adding_a_promotion_never_lowers_access(
    scenario: tuple[Catalog, Feature, Holdings, FeatureKind], data: st.DataObject
) -> None:
    catalog, feature, holdings, kind = scenario
    extra = data.draw(promotions(kind, "promo_extra"))
    more = Holdings(holdings.subscriptions, (*holdings.promotions, extra), holdings.overrides)
    assert_no_less_generous(catalog, feature, holdings, more)


@EXAMPLES
@given(scenario=scenarios(), data=st.data())
def test_an_active_promotion_is_never_beaten_by_a_less_generous_source(
    scenario: tuple[Catalog, Feature, Holdings, FeatureKind], data: st.DataObject
) -> None:
    """Without an override, the result is at least as generous as every active promotion."""
    catalog, feature, holdings, kind = scenario
    extra = data.draw(promotions(kind, "promo_extra"))
    more = Holdings(holdings.subscriptions, (*holdings.promotions, extra), {})
    result = resolve(catalog, more, feature, NOW)
    if extra.is_active(NOW):
        alone = resolve(catalog, Holdings(promotions=(extra,)), feature, NOW)
        assert generosity(result) >= generosity(alone)


# ------------------------------------------------------------------ (3) periods


@st.composite
def anchors(draw: st.DrawFn) -> datetime:
    """Instants in 1980-2150, often on days 28-31 of a month where clamping happens."""
    year = draw(st.integers(1980, 2150))
    month = draw(st.integers(1, 12))
    if draw(st.booleans()):
        day = draw(st.sampled_from([28, 29, 30, 31]))
        days_in_month = (datetime(year + month // 12, month % 12 + 1, 1) - timedelta(days=1)).day
        day = min(day, days_in_month)
    else:
        day = draw(st.integers(1, 28))
    return datetime(
        year,
        month,
        day,
        draw(st.integers(0, 23)),
        draw(st.integers(0, 59)),
        draw(st.integers(0, 59)),
        draw(st.sampled_from([0, 1, 999_999])),
        tzinfo=UTC,
    )


RECURRING = [u for u in ResetPeriod if u is not ResetPeriod.NEVER]
SPANS = st.timedeltas(min_value=timedelta(days=-3 * 366), max_value=timedelta(days=3 * 366))


@EXAMPLES
@given(anchor=anchors(), unit=st.sampled_from(RECURRING), span=SPANS)
def test_current_period_contains_now(anchor: datetime, unit: ResetPeriod, span: timedelta) -> None:
    now = anchor + span
    period = period_containing(anchor, unit, now)
    assert period.contains(now)
    assert period.end is not None
    assert period.start < period.end
    index = period_index(anchor, unit, now)
    assert period == Period(
        period_boundary(anchor, unit, index), period_boundary(anchor, unit, index + 1)
    )
    assert (index >= 0) == (now >= anchor)


@EXAMPLES
@given(anchor=anchors(), span=SPANS.filter(lambda s: s >= timedelta(0)))
def test_never_period_contains_every_instant_from_its_anchor(
    anchor: datetime, span: timedelta
) -> None:
    assert period_containing(anchor, ResetPeriod.NEVER, anchor + span) == Period(anchor, None)


@EXAMPLES
@given(anchor=anchors(), unit=st.sampled_from(RECURRING), first=st.integers(-30, 30))
def test_consecutive_periods_tile_time(anchor: datetime, unit: ResetPeriod, first: int) -> None:
    """Period k ends exactly where period k + 1 starts: no gap, no overlap."""
    for k in range(first, first + 4):
        start = period_boundary(anchor, unit, k)
        period = period_containing(anchor, unit, start)
        assert period.start == start
        assert period.end == period_boundary(anchor, unit, k + 1)
        assert period.end > start
        last_instant = period.end - timedelta(microseconds=1)
        assert period_containing(anchor, unit, last_instant) == period
        following = period_containing(anchor, unit, period.end)
        assert following.start == period.end


@EXAMPLES
@given(
    anchor=anchors(),
    unit=st.sampled_from([ResetPeriod.MONTH, ResetPeriod.YEAR]),
    k=st.integers(-40, 40),
)
def test_calendar_boundaries_clamp_from_the_anchor_day(
    anchor: datetime, unit: ResetPeriod, k: int
) -> None:
    """The day of each boundary is the anchor's day, or the month's last day when it is shorter."""
    boundary = period_boundary(anchor, unit, k)
    next_month_first = datetime(boundary.year + boundary.month // 12, boundary.month % 12 + 1, 1)
    days_in_month = (next_month_first - timedelta(days=1)).day
    assert boundary.day == min(anchor.day, days_in_month)
    assert boundary.time() == anchor.time()
    months = (boundary.year - anchor.year) * 12 + boundary.month - anchor.month
    assert months == k * (12 if unit is ResetPeriod.YEAR else 1)


# ------------------------------------------------------------------ (4) quantities

MICROS = st.integers(min_value=-MAX_ABS_MICROS + 1, max_value=MAX_ABS_MICROS - 1)


@EXAMPLES
@given(micros=MICROS, trailing_zeros=st.integers(0, 3))
def test_exact_decimals_round_trip_through_micro_units(micros: int, trailing_zeros: int) -> None:
    text = f"{Decimal(micros).scaleb(-6):f}" + ("0" * trailing_zeros if micros % UNIT else "")
    value = Decimal(text)
    parsed = parse_quantity(value, "amount", allow_negative=True)
    assert parsed == micros
    assert to_decimal(parsed) == value
    assert parse_quantity(to_decimal(parsed), "amount", allow_negative=True) == micros


@EXAMPLES
@given(
    value=st.decimals(
        places=6,
        min_value=Decimal("-999999999999.999999"),
        max_value=Decimal("999999999999.999999"),
        allow_nan=False,
        allow_infinity=False,
    )
)
def test_decimals_with_six_places_round_trip(value: Decimal) -> None:
    assert to_decimal(parse_quantity(value, "amount", allow_negative=True)) == value


@EXAMPLES
@given(micros=MICROS, digit=st.integers(1, 9))
def test_a_seventh_fractional_digit_is_always_refused(micros: int, digit: int) -> None:
    value = Decimal(micros).scaleb(-6) + Decimal(digit).scaleb(-7)
    with pytest.raises(InvalidRequest, match=r"fractional digits|10\^12"):
        parse_quantity(value, "amount", allow_negative=True)
