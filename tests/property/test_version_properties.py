"""Properties of catalog versions, checked with Hypothesis: a published version never changes
what it grants, a migration at period end changes nothing before its instant and everything
from it, a move written into a history changes nothing of the year kept before it, and a
catalog exported and applied back publishes nothing."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

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
    Spec,
)
from allotment.domain.documents import (
    addon_from_document,
    currency_from_document,
    feature_from_document,
    plan_from_document,
    product_from_document,
)
from allotment.domain.holdings import (
    MOVES_KEPT_FOR,
    AddonQuantity,
    Holdings,
    Move,
    Subscription,
    Versions,
)
from allotment.domain.periods import ResetPeriod
from allotment.domain.resolution import Resolution, resolve
from allotment.service.catalog import CatalogKind
from allotment.service.catalog_document import catalog_document
from allotment.service.migrations import _moved

UNIT = 1_000_000
T0 = datetime(2026, 1, 31, 9, 0, tzinfo=UTC)
NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
EXAMPLES = settings(max_examples=60, deadline=None)

FEATURES = (
    Feature("sso", "SSO", FeatureKind.BOOLEAN),
    Feature("seats", "Seats", FeatureKind.NUMERIC),
    Feature("calls", "Calls", FeatureKind.METERED),
)
KINDS = {feature.id: feature.kind for feature in FEATURES}
PRODUCT = "coder"

encode = msgspec.json.Encoder(decimal_format="number").encode
decode = msgspec.json.Decoder(float_hook=Decimal).decode


def base_catalog() -> Catalog:
    catalog = Catalog()
    for feature in FEATURES:
        catalog = catalog.with_feature(feature)
    return (
        catalog.with_currency(Currency("credits", "Credits"))
        .with_product(Product(PRODUCT, "Coder"))
        .with_product(Product("docs", "Docs"))
    )


# ------------------------------------------------------------------ strategies

# Exact quantities, the smallest and the largest the contract allows among them.
AMOUNTS = st.one_of(
    st.none(),
    st.sampled_from([0, 1, 5 * UNIT, 10 * UNIT, 1_500_000, 999_999_999_999_999_999]),
)
SPECS: dict[FeatureKind, st.SearchStrategy[Spec]] = {
    FeatureKind.BOOLEAN: st.just(BooleanSpec()),
    FeatureKind.NUMERIC: st.builds(NumericSpec, AMOUNTS),
    FeatureKind.METERED: st.builds(
        MeteredSpec,
        AMOUNTS,
        reset=st.sampled_from(list(ResetPeriod)),
        enforcement=st.sampled_from(list(Enforcement)),
        credit_cost=st.one_of(
            st.none(), st.builds(CreditCost, st.just("credits"), st.sampled_from([1, UNIT, 7]))
        ),
    ),
}


@st.composite
def entitlements(draw: st.DrawFn) -> dict[str, Spec]:
    chosen = draw(st.lists(st.sampled_from(list(KINDS)), unique=True, max_size=3))
    return {feature_id: draw(SPECS[KINDS[feature_id]]) for feature_id in chosen}


RECURRING = st.builds(
    RecurringCredits,
    amount=st.sampled_from([1, 100 * UNIT, 2_500_000]),
    every=st.sampled_from([p for p in ResetPeriod if p is not ResetPeriod.NEVER]),
    category=st.sampled_from(list(CreditCategory)),
    cost_basis=st.sampled_from([0, 1, 370_000]),
    overdraft_limit=st.one_of(st.none(), st.sampled_from([0, 5 * UNIT])),
)


@st.composite
def definitions(draw: st.DrawFn, plan_id: str, parents: tuple[str | None, ...]) -> Plan:
    return Plan(
        plan_id,
        PRODUCT,
        draw(st.sampled_from([plan_id.title(), f"{plan_id} plan"])),
        parent=draw(st.sampled_from(parents)),
        trial_days=draw(st.sampled_from([None, 14])),
        billing_period=draw(st.sampled_from([ResetPeriod.MONTH, ResetPeriod.YEAR])),
        entitlements=draw(entitlements()),
        credits=draw(st.sampled_from([{}, {"credits": draw(RECURRING)}])),
    )


@st.composite
def addon_definitions(draw: st.DrawFn, addon_id: str) -> Addon:
    chosen = draw(st.lists(st.sampled_from(list(KINDS)), unique=True, max_size=2))
    return Addon(
        addon_id,
        PRODUCT,
        draw(st.sampled_from(["Boost", "Boost+"])),
        {
            feature_id: AddonEntitlement(
                draw(SPECS[KINDS[feature_id]]), draw(st.sampled_from(list(AddonMode)))
            )
            for feature_id in chosen
        },
        credits=draw(st.sampled_from([{}, {"credits": draw(RECURRING)}])),
    )


# Plans the operations work on: two roots, a child of either (or of none), a grandchild.
PARENTS: dict[str, tuple[str | None, ...]] = {
    "base": (None,),
    "alt": (None,),
    "child": ("base", "alt", None),
    "grand": ("child",),
}


def operations() -> st.SearchStrategy[tuple[str, str, Any]]:
    publish = st.sampled_from(list(PARENTS)).flatmap(
        lambda plan_id: definitions(plan_id, PARENTS[plan_id]).map(
            lambda plan: ("publish", plan_id, plan)
        )
    )
    again = st.sampled_from(list(PARENTS)).map(lambda plan_id: ("again", plan_id, None))
    archive = st.tuples(st.just("archive"), st.sampled_from(list(PARENTS)), st.booleans())
    return st.one_of(publish, again, archive)


def pinned(plan_id: str, version: int, **fields: Any) -> Subscription:
    values: dict[str, Any] = {
        "product": PRODUCT,
        "addons": (),
        "is_trial": False,
        "starts_at": T0,
        "trial_ends_at": None,
        "ends_at": None,
        "canceled_at": None,
        "anchor_at": T0,
        "created_at": T0,
        "plan_versions": Versions(version),
    }
    return Subscription(f"sub_{plan_id}", "acme", plan=plan_id, **{**values, **fields})


def answers(catalog: Catalog, subscription: Subscription, now: datetime) -> list[Resolution]:
    holdings = Holdings([subscription])
    return [resolve(catalog, holdings, feature, now) for feature in FEATURES]


# ------------------------------------------------------------------ (a) a version is frozen


@EXAMPLES
@given(st.lists(operations(), min_size=1, max_size=12))
def test_what_a_pinned_version_grants_never_changes_after_it_is_published(
    steps: list[tuple[str, str, Any]],
) -> None:
    catalog = base_catalog()
    for plan_id in PARENTS:
        parent = {"child": "base", "grand": "child"}.get(plan_id)
        catalog = catalog.with_plan(Plan(plan_id, PRODUCT, plan_id, parent=parent), T0)
    seen: dict[tuple[str, int], list[Resolution]] = {}

    def record(published: Catalog) -> None:
        for plan_id, history in published.plan_versions.items():
            for version in history:
                key = (plan_id, version.version)
                if key not in seen:
                    seen[key] = answers(published, pinned(plan_id, version.version), NOW)

    record(catalog)
    for step, plan_id, argument in steps:
        before = {plan_id: len(h) for plan_id, h in catalog.plan_versions.items()}
        if step == "publish":
            catalog, published = catalog.publish_plans([argument], NOW)
            assert len({p.id for p in published}) == len(published)
        elif step == "again":
            again, published = catalog.publish_plans([catalog.plans[plan_id]], NOW)
            assert (again, published) == (catalog, [])
        else:
            catalog = catalog.with_archived("plan", plan_id, argument)
        for known, count in before.items():
            history = catalog.plan_versions[known]
            assert len(history) in (count, count + 1)
            assert [v.version for v in history] == list(range(1, len(history) + 1))
        for (known, version), expected in seen.items():
            assert answers(catalog, pinned(known, version), NOW) == expected, (known, version)
        record(catalog)


# ------------------------------------------------------------------ (b) a migration at period end


OFFSETS = st.one_of(
    st.integers(-90 * 86_400 * UNIT, 400 * 86_400 * UNIT),
    st.sampled_from([-1, 0, 1]),
)


@EXAMPLES
@given(
    st.lists(st.tuples(definitions("pro", (None, "base")), entitlements()), min_size=2, max_size=4),
    st.data(),
)
def test_a_period_end_migration_changes_nothing_before_its_instant_and_all_from_it(
    versions: list[tuple[Plan, dict[str, Spec]]], data: st.DataObject
) -> None:
    catalog = base_catalog().with_plan(Plan("base", PRODUCT, "Base"), T0)
    for definition, base_entitlements in versions:
        catalog = catalog.with_plan(replace(catalog.plans["base"], entitlements=base_entitlements))
        catalog = catalog.with_plan(definition)
    latest = catalog.plans["pro"].version
    source = data.draw(st.integers(1, latest), label="from")
    target = data.draw(st.integers(1, latest).filter(lambda v: v != source), label="to")
    boost = Addon(
        "boost",
        PRODUCT,
        "Boost",
        {"calls": AddonEntitlement(MeteredSpec(UNIT), AddonMode.INCREMENT)},
    )
    catalog = catalog.with_addon(boost)
    held = pinned("pro", source, addons=(AddonQuantity("boost", 2),))
    moved = _moved(catalog, CatalogKind.PLAN, "pro", held, {source}, target, "period_end", NOW)
    assert moved is not None
    waiting = moved.plan_versions.waiting(NOW)
    assert waiting is not None
    assert waiting.version == target
    move_at = waiting.at
    assert moved.plan_versions == Versions(source, (Move(target, move_at),))
    assert NOW < move_at <= NOW + timedelta(days=366)
    before = replace(held, plan_versions=Versions(source))
    after = replace(held, plan_versions=Versions(target))
    for offset in data.draw(st.lists(OFFSETS, min_size=1, max_size=6), label="offsets"):
        instant = move_at + timedelta(microseconds=offset)
        expected = answers(catalog, before if instant < move_at else after, instant)
        assert answers(catalog, moved, instant) == expected, instant


# ------------------------------------------------------------------ (c) a history's moves


# Instants of moves, from two years before NOW to a year after it, to the microsecond.
INSTANTS = st.integers(-730 * 86_400 * UNIT, 366 * 86_400 * UNIT).map(
    lambda offset: NOW + timedelta(microseconds=offset)
)


# How long after its migration a move is made: at once, a microsecond, a day or 40 days.
DELAYS = st.sampled_from([0, 0, 1, 86_400 * UNIT, 40 * 86_400 * UNIT]).map(
    lambda micros: timedelta(microseconds=micros)
)


@st.composite
def histories(draw: st.DrawFn) -> tuple[Versions, datetime]:
    """A history as migrations write it, and the ``now`` of its last migration: each move
    written by ``moved`` at a ``now`` no earlier than the one before, for an instant at or after
    that ``now`` (so the last move may still be waiting)."""
    history = Versions(draw(st.integers(1, 5)))
    nows = sorted(draw(st.lists(INSTANTS, min_size=1, max_size=6)))
    for now in nows:
        history = history.moved(draw(st.integers(1, 5)), now + draw(DELAYS), now)
    return history, nows[-1]


@EXAMPLES
@given(histories(), st.integers(1, 5), DELAYS, st.data())
def test_a_move_changes_nothing_of_the_year_kept_before_it_and_everything_from_it(
    written: tuple[Versions, datetime], target: int, delay: timedelta, data: st.DataObject
) -> None:
    history, last_now = written
    # Any instant from the last migration's on: often one of the moves' own instants, or about
    # a year after one (where the history folds its older moves).
    later = [move.at for move in history.moves if move.at >= last_now]
    year_on = [
        move.at + MOVES_KEPT_FOR + timedelta(microseconds=micros)
        for move in history.moves
        for micros in (-1, 0, 1, 86_400 * UNIT)
    ]
    now = data.draw(
        st.one_of(
            st.integers(0, 800 * 86_400 * UNIT).map(
                lambda micros: last_now + timedelta(microseconds=micros)
            ),
            st.sampled_from([last_now, *later]),
            st.sampled_from([last_now, *year_on]).map(lambda t: max(t, last_now)),
        ),
        label="now",
    )
    at = now + delay
    moved = history.moved(target, at, now)
    horizon = now - MOVES_KEPT_FOR
    assert moved.moves[-1] == Move(target, at)
    assert moved.waiting(now) == (Move(target, at) if at > now else None)
    assert list(moved.moves) == sorted(moved.moves, key=lambda move: move.at)
    assert all(move.at > horizon for move in moved.moves)
    assert all(move.at <= now for move in moved.moves[:-1])
    assert set(moved.held()) <= {*history.held(), target}
    instants = [horizon + timedelta(microseconds=1), now, at, at - timedelta(microseconds=1)]
    instants += [move.at for move in history.moves]
    instants += [move.at - timedelta(microseconds=1) for move in history.moves]
    instants += data.draw(st.lists(INSTANTS, max_size=4), label="instants")
    for instant in instants:
        if instant >= at:
            assert moved.at(instant) == target, instant
        elif horizon < instant <= now:
            # The year kept reads as before; a move older is folded into the first version.
            assert moved.at(instant) == history.at(instant), instant
        elif now < instant:
            # Until the new move, the version held at now: a move that was waiting is gone.
            assert moved.at(instant) == history.at(now), instant


# ------------------------------------------------------------------ (d) export and apply back


@st.composite
def published_catalogs(draw: st.DrawFn) -> Catalog:
    """A catalog whose plans and add-ons went through a few versions, some of them archived."""
    catalog = base_catalog()
    for feature in FEATURES:
        catalog = catalog.with_feature(replace(feature, unit=draw(st.sampled_from([None, "u"]))))
    catalog = catalog.with_currency(
        Currency("credits", "Credits", draw(st.sampled_from([None, "cr"])), ("created",))
    )
    catalog = catalog.with_plan(Plan("base", PRODUCT, "Base"), T0)
    catalog = catalog.with_plan(Plan("child", PRODUCT, "Child", parent="base"), T0)
    for _ in range(draw(st.integers(1, 5))):
        plan_id = draw(st.sampled_from(["base", "child", "solo"]))
        parents = {"base": (None,), "child": ("base", None), "solo": (None, "base", "child")}
        catalog, _ = catalog.publish_plans([draw(definitions(plan_id, parents[plan_id]))], NOW)
    for _ in range(draw(st.integers(1, 3))):
        addon_id = draw(st.sampled_from(["boost", "pack"]))
        catalog, _ = catalog.publish_addon(draw(addon_definitions(addon_id)), NOW)
    for plan_id in catalog.plans:
        if draw(st.booleans()):
            catalog = catalog.with_archived("plan", plan_id, True)
    return catalog


@EXAMPLES
@given(published_catalogs())
def test_a_catalog_exported_and_applied_back_publishes_nothing(catalog: Catalog) -> None:
    # The document travels as JSON, numbers read back as exact decimals (as PUT reads them).
    sent = decode(encode(catalog_document(catalog)))
    applied = catalog
    for feature_id, document in sent["features"].items():
        applied = applied.with_feature(feature_from_document(feature_id, document))
    for currency_id, document in sent["currencies"].items():
        applied = applied.with_currency(currency_from_document(currency_id, document))
    for product_id, document in sent["products"].items():
        applied = applied.with_product(product_from_document(product_id, document))
    plans = [
        plan_from_document(plan_id, document, applied)
        for plan_id, document in sent["plans"].items()
    ]
    applied, published = applied.publish_plans(plans, NOW + timedelta(days=1))
    assert published == []
    for addon_id, document in sent["addons"].items():
        addon = addon_from_document(addon_id, document, applied)
        applied, addon_published = applied.publish_addon(addon, NOW + timedelta(days=1))
        assert addon_published is None
    assert applied == catalog
    # Each plan alone, as a PUT of its own would send it, publishes nothing either.
    for plan in plans:
        assert catalog.publish_plans([plan], NOW) == (catalog, [])
