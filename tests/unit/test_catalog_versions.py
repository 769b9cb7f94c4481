"""Catalog versions: what publishes a version and what does not, versions frozen with their
inheritance, the history documents, archiving, the version a subscription is on at an instant
(its history of versions), migrations' moves, an add-on entry's versions on a PATCH, and the
recurring credits that follow a move (API.md, "Catalog versions")."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import msgspec
import pytest

from allotment.domain.catalog import (
    Addon,
    AddonEntitlement,
    AddonMode,
    BooleanSpec,
    Catalog,
    CreditCategory,
    Currency,
    Feature,
    FeatureKind,
    MeteredSpec,
    NumericSpec,
    Plan,
    Product,
    RecurringCredits,
    same_definition,
)
from allotment.domain.documents import (
    addon_from_document,
    catalog_from_documents,
    plan_from_document,
    plan_history_document,
    plan_history_from_document,
)
from allotment.domain.errors import InvalidRequest, NotFound
from allotment.domain.holdings import (
    MOVES_KEPT_FOR,
    AddonQuantity,
    Holdings,
    Move,
    Subscription,
    Versions,
)
from allotment.domain.periods import ResetPeriod
from allotment.domain.resolution import resolve
from allotment.service.catalog import CatalogKind
from allotment.service.catalog_document import field_diff
from allotment.service.credits import recurring_grants
from allotment.service.customers import AddonRequest, _addon_holdings
from allotment.service.migrations import (
    MigrateAt,
    MigrationRequest,
    _moved,
    _period_end,
    _versions,
)

UNIT = 1_000_000
T0 = datetime(2026, 1, 1, tzinfo=UTC)
LATER = datetime(2026, 2, 1, tzinfo=UTC)

SSO = Feature("sso", "Single sign-on", FeatureKind.BOOLEAN)
SEATS = Feature("seats", "Seats", FeatureKind.NUMERIC)
AI = Feature("ai-requests", "AI requests", FeatureKind.METERED)

encode = msgspec.json.Encoder(decimal_format="number").encode
decode = msgspec.json.Decoder(float_hook=Decimal).decode


def base_catalog() -> Catalog:
    return (
        Catalog()
        .with_feature(SSO)
        .with_feature(SEATS)
        .with_feature(AI)
        .with_currency(Currency("ai-credits", "AI credits"))
        .with_product(Product("coder", "Coder"))
    )


def plan(plan_id: str, parent: str | None = None, **specs: Any) -> Plan:
    entitlements = {name.replace("_", "-"): spec for name, spec in specs.items()}
    return Plan(plan_id, "coder", plan_id.title(), parent=parent, entitlements=entitlements)


def metered(limit: int | None) -> MeteredSpec:
    return MeteredSpec(limit=None if limit is None else limit * UNIT)


def seats(value: int | None) -> NumericSpec:
    return NumericSpec(None if value is None else value * UNIT)


def block(credits: int, every: ResetPeriod = ResetPeriod.MONTH) -> RecurringCredits:
    return RecurringCredits(credits * UNIT, every, CreditCategory.PAID, 0, 0)


def day(n: int, month: int = 1, year: int = 2026) -> datetime:
    return datetime(year, month, n, tzinfo=UTC)


def family() -> Catalog:
    """starter < team < enterprise, solo < starter, and an unrelated plan, each on version 1."""
    return (
        base_catalog()
        .with_plan(plan("starter", sso=BooleanSpec(), ai_requests=metered(100)), T0)
        .with_plan(plan("team", "starter", seats=seats(10)), T0)
        .with_plan(plan("enterprise", "team", ai_requests=metered(10_000)), T0)
        .with_plan(plan("solo", "starter", seats=seats(1)), T0)
        .with_plan(plan("other", seats=seats(2)), T0)
    )


def subscription(
    plan_id: str = "pro",
    *,
    version: int = 1,
    moves: tuple[Move, ...] = (),
    addons: tuple[AddonQuantity, ...] = (),
    starts_at: datetime = T0,
    anchor_at: datetime | None = None,
    **fields: Any,
) -> Subscription:
    values: dict[str, Any] = {
        "product": "coder",
        "addons": addons,
        "is_trial": False,
        "starts_at": starts_at,
        "trial_ends_at": None,
        "ends_at": None,
        "canceled_at": None,
        "anchor_at": starts_at if anchor_at is None else anchor_at,
        "created_at": starts_at,
        "plan_versions": Versions(version, moves),
    }
    return Subscription(f"sub_{plan_id}", "acme", plan=plan_id, **{**values, **fields})


# ------------------------------------------------------------------ publishing


def test_the_first_definition_is_version_1_published_when_it_was_put() -> None:
    catalog, published = base_catalog().publish_plans([plan("pro", sso=BooleanSpec())], T0)
    assert [(p.id, p.version, p.parent_version, p.published_at) for p in published] == [
        ("pro", 1, None, T0)
    ]
    assert catalog.plans["pro"] == published[0]
    assert catalog.plan_versions["pro"] == (published[0],)
    assert catalog.plan_at("pro", 1) == published[0]
    assert catalog.plan_at("pro", 0) is None
    assert catalog.plan_at("pro", 2) is None


def test_a_changed_definition_publishes_the_next_version_and_keeps_the_older() -> None:
    first = base_catalog().with_plan(plan("pro", seats=seats(5)), T0)
    catalog, published = first.publish_plans([plan("pro", seats=seats(6))], LATER)
    assert [(p.version, p.published_at) for p in published] == [(2, LATER)]
    assert catalog.plans["pro"].version == 2
    assert [p.version for p in catalog.plan_versions["pro"]] == [1, 2]
    assert catalog.plan_at("pro", 1) == first.plans["pro"]
    assert catalog.plan_entitlements("pro", 1) == {"seats": seats(5)}
    assert catalog.plan_entitlements("pro", 2) == {"seats": seats(6)}
    assert catalog.plan_entitlements("pro") == {"seats": seats(6)}
    third, _ = catalog.publish_plans([plan("pro", seats=seats(7))], LATER)
    assert third.plans["pro"].version == 3


def test_the_same_definition_publishes_nothing() -> None:
    catalog = base_catalog().with_plan(plan("pro", seats=seats(5)), T0)
    again, published = catalog.publish_plans([plan("pro", seats=seats(5))], LATER)
    assert published == []
    assert again is catalog
    assert catalog.with_plan(plan("pro", seats=seats(5)), LATER) is catalog


def test_definitions_are_compared_after_defaults_and_whatever_the_order() -> None:
    terse = {
        "product": "coder",
        "name": "Pro",
        "entitlements": {"sso": {}, "seats": {"value": 5}, "ai-requests": {"limit": 100}},
        "credits": {"ai-credits": {"amount": 10}},
    }
    spelled_out = {
        "product": "coder",
        "name": "Pro",
        "parent": None,
        "trial_days": None,
        "billing_period": "month",
        "entitlements": {
            "ai-requests": {"limit": Decimal("100.000"), "reset": "month", "enforcement": "hard"},
            "seats": {"value": Decimal("5.0")},
            "sso": {},
        },
        "credits": {
            "ai-credits": {
                "amount": Decimal("10.00"),
                "every": "month",
                "category": "paid",
                "cost_basis": 0,
                "overdraft_limit": 0,
            }
        },
    }
    catalog = base_catalog()
    first = plan_from_document("pro", terse, catalog)
    second = plan_from_document("pro", spelled_out, catalog)
    assert list(first.entitlements) != list(second.entitlements)
    assert same_definition(first, second)
    published = catalog.with_plan(first, T0)
    assert published.publish_plans([second], LATER) == (published, [])
    changed = {**spelled_out, "billing_period": "year"}
    _, versions = published.publish_plans([plan_from_document("pro", changed, catalog)], LATER)
    assert [p.version for p in versions] == [2]


def test_same_definition_ignores_where_a_version_stands() -> None:
    catalog = family()
    team = catalog.plans["team"]
    moved = replace(team, version=7, parent_version=3, published_at=LATER)
    assert same_definition(team, moved)
    assert not same_definition(team, replace(team, name="Team!"))
    assert not same_definition(team, replace(team, parent=None))
    addon = Addon(
        "boost", "coder", "Boost", {"seats": AddonEntitlement(seats(1), AddonMode.INCREMENT)}
    )
    assert same_definition(addon, replace(addon, version=4, published_at=LATER))
    assert not same_definition(addon, replace(addon, credits={"ai-credits": block(1)}))


def test_an_addon_publishes_versions_only_when_its_definition_changes() -> None:
    document = {"product": "coder", "name": "Boost", "entitlements": {}}
    catalog = base_catalog()
    addon = addon_from_document("boost", document, catalog)
    catalog, first = catalog.publish_addon(addon, T0)
    assert first is not None
    assert (first.version, first.published_at) == (1, T0)
    again = addon_from_document("boost", {**document, "credits": {}}, catalog)
    assert catalog.publish_addon(again, LATER) == (catalog, None)
    more = {"seats": {"value": 2, "mode": "increment"}, "sso": {"mode": "override"}}
    changed = addon_from_document("boost", {**document, "entitlements": more}, catalog)
    catalog, second = catalog.publish_addon(changed, LATER)
    assert second is not None
    assert (second.version, second.published_at) == (2, LATER)
    assert [a.version for a in catalog.addon_versions["boost"]] == [1, 2]
    assert catalog.addon_at("boost", 1) == first
    assert catalog.addon_at("boost", 3) is None
    reordered = {
        "sso": {"mode": "override"},
        "seats": {"value": Decimal("2.0"), "mode": "increment"},
    }
    same = addon_from_document("boost", {**document, "entitlements": reordered}, catalog)
    assert catalog.publish_addon(same, LATER) == (catalog, None)


def test_publishing_a_parent_republishes_every_descendant_once_parents_first() -> None:
    catalog = family()
    new_starter = plan("starter", sso=BooleanSpec(), ai_requests=metered(200))
    published_catalog, published = catalog.publish_plans([new_starter], LATER)
    ids = [p.id for p in published]
    assert sorted(ids) == ["enterprise", "solo", "starter", "team"]
    assert len(ids) == len(set(ids))
    assert ids.index("starter") < ids.index("team") < ids.index("enterprise")
    assert ids.index("starter") < ids.index("solo")
    versions = {p.id: (p.version, p.parent_version, p.published_at) for p in published}
    assert versions == {
        "starter": (2, None, LATER),
        "team": (2, 2, LATER),
        "solo": (2, 2, LATER),
        "enterprise": (2, 2, LATER),
    }
    assert published_catalog.plans["other"] == catalog.plans["other"]
    for plan_id in ("team", "solo", "enterprise"):
        republished = published_catalog.plans[plan_id]
        assert same_definition(republished, catalog.plans[plan_id])
        assert republished.entitlements == catalog.plans[plan_id].entitlements
    assert published_catalog.plan_entitlements("team") == {
        "sso": BooleanSpec(),
        "ai-requests": metered(200),
        "seats": seats(10),
    }
    assert published_catalog.plan_entitlements("enterprise")["ai-requests"] == metered(10_000)
    assert published_catalog.plan_entitlements("solo")["ai-requests"] == metered(200)


def test_a_child_changed_in_the_same_call_as_its_parent_gets_one_version() -> None:
    catalog = family()
    new_team = plan("team", "starter", seats=seats(20))
    new_starter = plan("starter", ai_requests=metered(300))
    published_catalog, published = catalog.publish_plans([new_team, new_starter], LATER)
    ids = [p.id for p in published]
    assert sorted(ids) == ["enterprise", "solo", "starter", "team"]
    assert ids.index("starter") < ids.index("team") < ids.index("enterprise")
    assert [p.version for p in published_catalog.plan_versions["team"]] == [1, 2]
    team = published_catalog.plans["team"]
    assert (team.version, team.parent_version) == (2, 2)
    assert team.entitlements == {"seats": seats(20)}
    assert published_catalog.plan_entitlements("team") == {
        "ai-requests": metered(300),
        "seats": seats(20),
    }
    enterprise = published_catalog.plans["enterprise"]
    assert (enterprise.version, enterprise.parent_version) == (2, 2)
    assert published_catalog.plan_entitlements("enterprise") == {
        "ai-requests": metered(10_000),
        "seats": seats(20),
    }


def test_a_child_named_with_an_unchanged_definition_follows_its_parent_once() -> None:
    catalog = family()
    same_team = plan("team", "starter", seats=seats(10))
    new_starter = plan("starter", ai_requests=metered(300))
    _, published = catalog.publish_plans([same_team, new_starter, same_team], LATER)
    assert sorted(p.id for p in published) == ["enterprise", "solo", "starter", "team"]


def test_a_published_version_never_changes_afterwards() -> None:
    catalog = family()
    frozen_copies = {
        plan_id: (catalog.plan_at(plan_id, 1), dict(catalog.plan_entitlements(plan_id, 1)))
        for plan_id in catalog.plans
    }
    steps = [
        [plan("starter", ai_requests=metered(1))],
        [plan("starter", ai_requests=metered(1))],  # the same again
        [plan("team", "other", seats=seats(30))],  # re-parented
        [plan("other", sso=BooleanSpec())],
        [plan("starter")],
        [plan("enterprise", "solo")],
        [plan("solo", "other", ai_requests=metered(None)), plan("other", seats=seats(99))],
    ]
    for step in steps:
        catalog, _ = catalog.publish_plans(step, LATER)
        catalog = catalog.with_archived("plan", "team", True)
        for plan_id, (version_plan, entitlements) in frozen_copies.items():
            assert catalog.plan_at(plan_id, 1) == version_plan
            assert catalog.plan_entitlements(plan_id, 1) == entitlements
    # And every version published along the way is still what it was when published.
    assert catalog.plan_entitlements("team", 1) == {
        "sso": BooleanSpec(),
        "ai-requests": metered(100),
        "seats": seats(10),
    }


def test_every_intermediate_version_keeps_what_it_folded() -> None:
    catalog = family()
    seen: dict[tuple[str, int], dict[str, Any]] = {}
    for limit in (1, 2, 3):
        catalog, published = catalog.publish_plans(
            [plan("starter", ai_requests=metered(limit))], LATER
        )
        for published_plan in published:
            seen[(published_plan.id, published_plan.version)] = dict(
                catalog.plan_entitlements(published_plan.id, published_plan.version)
            )
    catalog, _ = catalog.publish_plans([plan("team", seats=seats(4))], LATER)  # leaves starter
    for (plan_id, version), entitlements in seen.items():
        assert catalog.plan_entitlements(plan_id, version) == entitlements
    assert catalog.plan_entitlements("team", 3)["ai-requests"] == metered(2)
    assert catalog.plan_entitlements("enterprise", 4) == {
        "ai-requests": metered(10_000),
        "seats": seats(10),
    }
    assert catalog.plan_entitlements("team", 5) == {"seats": seats(4)}
    # The re-parented plan's children followed it; starter's no longer republish them.
    after, published = catalog.publish_plans([plan("starter", ai_requests=metered(9))], LATER)
    assert sorted(p.id for p in published) == ["solo", "starter"]
    assert after.plans["team"] == catalog.plans["team"]


def test_a_re_parented_plan_folds_the_latest_version_of_its_new_parent() -> None:
    catalog = family()
    catalog, _ = catalog.publish_plans([plan("other", seats=seats(3))], LATER)
    catalog, published = catalog.publish_plans([plan("team", "other")], LATER)
    team = catalog.plans["team"]
    assert (team.version, team.parent, team.parent_version) == (2, "other", 2)
    assert catalog.plan_entitlements("team") == {"seats": seats(3)}
    assert [p.id for p in published] == ["team", "enterprise"]
    assert catalog.plans["enterprise"].parent_version == 2


# ------------------------------------------------------------------ history documents


def histories_catalog() -> Catalog:
    catalog = family()
    catalog, _ = catalog.publish_plans(
        [plan("starter", ai_requests=metered(200)), plan("enterprise", "solo")],
        datetime(2026, 1, 5, 12, 30, 0, 123456, tzinfo=UTC),
    )
    catalog, _ = catalog.publish_plans([plan("team", "other")], LATER)
    catalog, _ = catalog.publish_plans([plan("other", sso=BooleanSpec())], LATER)
    return catalog.with_archived("plan", "solo", True)


def stored_history(catalog: Catalog, plan_id: str) -> dict[str, Any]:
    """The plan's history document as the store keeps it: JSON text read back exactly."""
    archived = catalog.is_archived("plan", plan_id)
    document: dict[str, Any] = decode(
        encode(plan_history_document(catalog.plan_versions[plan_id], archived))
    )
    return document


def test_a_history_document_names_every_version() -> None:
    catalog = histories_catalog()
    document = stored_history(catalog, "team")
    assert document["status"] == "active"
    assert [
        (entry["version"], entry["parent_version"], entry["definition"]["parent"])
        for entry in document["versions"]
    ] == [(1, 1, "starter"), (2, 2, "starter"), (3, 1, "other"), (4, 2, "other")]
    assert document["versions"][0]["published_at"] == 1_767_225_600_000_000
    assert stored_history(catalog, "solo")["status"] == "archived"


def test_history_documents_rebuild_the_same_catalog_whatever_the_order_of_the_plans() -> None:
    catalog = histories_catalog()
    base = base_catalog()
    documents = {plan_id: stored_history(catalog, plan_id) for plan_id in catalog.plans}
    for order in itertools.permutations(documents):
        histories = {
            plan_id: plan_history_from_document(plan_id, documents[plan_id], base)
            for plan_id in order
        }
        archived = [plan_id for plan_id in order if documents[plan_id]["status"] == "archived"]
        rebuilt = base.with_plan_histories(histories, archived)
        assert rebuilt.plan_versions == catalog.plan_versions
        assert rebuilt.plans == catalog.plans
        assert rebuilt.inherited == catalog.inherited
        assert rebuilt.archived == catalog.archived


def test_stored_objects_load_into_the_same_catalog_whatever_their_order() -> None:
    catalog = histories_catalog()
    plain = [
        ("feature", feature_id, {"name": f.name, "kind": f.kind.value, "unit": None})
        for feature_id, f in catalog.features.items()
    ]
    plain += [("currency", "ai-credits", {"name": "AI credits"})]
    plain += [("product", "coder", {"name": "Coder"})]
    stored = [("plan", plan_id, stored_history(catalog, plan_id)) for plan_id in catalog.plans]
    for order in (stored, list(reversed(stored))):
        loaded = catalog_from_documents([*order, *plain])
        assert loaded.plan_versions == catalog.plan_versions
        assert loaded.inherited == catalog.inherited
        assert loaded.archived == catalog.archived


def test_installing_a_history_again_refolds_only_what_it_names() -> None:
    catalog = histories_catalog()
    again = catalog.with_plan_histories({"team": catalog.plan_versions["team"]}, [])
    assert again.inherited == catalog.inherited
    assert again.plan_versions == catalog.plan_versions
    # Installed without being named archived, a plan is active.
    assert again.with_plan_histories({"solo": catalog.plan_versions["solo"]}).archived == (
        frozenset()
    )


# ------------------------------------------------------------------ archived


def test_archived_follows_with_archived_and_a_publishing_definition_clears_it() -> None:
    catalog = family().with_archived("plan", "team", True)
    assert catalog.is_archived("plan", "team")
    assert not catalog.is_archived("plan", "starter")
    assert not catalog.is_archived("addon", "team")
    unchanged, published = catalog.publish_plans([plan("team", "starter", seats=seats(10))], LATER)
    assert published == []
    assert unchanged.is_archived("plan", "team")
    # Republished for its parent, it keeps its status.
    followed, _ = catalog.publish_plans([plan("starter")], LATER)
    assert followed.plans["team"].version == 2
    assert followed.is_archived("plan", "team")
    changed, _ = catalog.publish_plans([plan("team", "starter", seats=seats(11))], LATER)
    assert not changed.is_archived("plan", "team")
    assert not catalog.with_archived("plan", "team", False).is_archived("plan", "team")
    assert catalog.with_archived("plan", "team", True).archived == catalog.archived


def test_an_archived_addon_is_active_again_only_when_it_publishes() -> None:
    addon = Addon("boost", "coder", "Boost")
    catalog = base_catalog().with_addon(addon, T0).with_archived("addon", "boost", True)
    assert catalog.is_archived("addon", "boost")
    assert catalog.with_addon(addon, LATER).is_archived("addon", "boost")
    renamed = catalog.with_addon(replace(addon, name="Boost+"), LATER)
    assert not renamed.is_archived("addon", "boost")
    assert renamed.addons["boost"].version == 2


# ------------------------------------------------------------------ the version a holding is on


def test_a_subscription_is_on_its_version_until_the_move_and_on_the_new_one_from_it() -> None:
    move_at = day(10)
    held = subscription(version=1, moves=(Move(3, move_at),))
    assert held.plan_version_at(day(9)) == 1
    assert held.plan_version_at(move_at - timedelta(microseconds=1)) == 1
    assert held.plan_version_at(move_at) == 3
    assert held.plan_version_at(day(20)) == 3
    assert subscription(version=2).plan_version_at(day(20)) == 2
    entry = AddonQuantity("boost", 2, Versions(4, (Move(5, move_at),)))
    assert (entry.version_at(day(9)), entry.version_at(move_at)) == (4, 5)
    assert AddonQuantity("boost", 1).version_at(day(20)) == 1


HISTORY = Versions(2, (Move(3, day(5)), Move(1, day(10)), Move(3, day(20))))


def test_a_history_is_on_each_version_from_its_move_until_the_next() -> None:
    micro = timedelta(microseconds=1)
    assert [HISTORY.at(t) for t in (day(1), day(5) - micro, day(5), day(9))] == [2, 2, 3, 3]
    assert [HISTORY.at(t) for t in (day(10) - micro, day(10), day(20) - micro)] == [3, 1, 1]
    assert [HISTORY.at(t) for t in (day(20), day(1, 6))] == [3, 3]
    assert Versions().at(day(1)) == 1
    assert Versions(4).at(day(1, 1, 2030)) == 4


def test_waiting_is_the_last_move_only_while_now_has_not_reached_it() -> None:
    assert Versions().waiting(day(1)) is None
    assert HISTORY.waiting(day(1)) == Move(3, day(20))
    assert HISTORY.waiting(day(12)) == Move(3, day(20))
    assert HISTORY.waiting(day(20) - timedelta(microseconds=1)) == Move(3, day(20))
    assert HISTORY.waiting(day(20)) is None
    assert HISTORY.waiting(day(25)) is None


def test_held_names_every_version_of_the_history_once_in_order() -> None:
    assert Versions().held() == [1]
    assert Versions(4).held() == [4]
    assert HISTORY.held() == [2, 3, 1]
    assert Versions(1, (Move(1, day(5)),)).held() == [1]


def test_moved_appends_the_new_move_last_and_keeps_the_moves_made() -> None:
    assert Versions().moved(2, day(10), day(10)) == Versions(1, (Move(2, day(10)),))
    made = Versions(1, (Move(2, day(5)), Move(3, day(10))))
    assert made.moved(4, day(1, 2), day(15)) == Versions(
        1, (Move(2, day(5)), Move(3, day(10)), Move(4, day(1, 2)))
    )
    # A move made at now is kept: now has reached it.
    assert made.moved(1, day(10), day(10)) == Versions(
        1, (Move(2, day(5)), Move(3, day(10)), Move(1, day(10)))
    )
    assert made.moved(1, day(10), day(10)).at(day(10)) == 1
    assert made == Versions(1, (Move(2, day(5)), Move(3, day(10))))  # a new history, not this


def test_moved_replaces_a_waiting_move() -> None:
    assert HISTORY.moved(4, day(12), day(12)) == Versions(
        2, (Move(3, day(5)), Move(1, day(10)), Move(4, day(12)))
    )
    assert HISTORY.moved(2, day(1, 2), day(12)) == Versions(
        2, (Move(3, day(5)), Move(1, day(10)), Move(2, day(1, 2)))
    )
    # Replaced by one further away, too: the waiting move is gone whatever the new instant.
    waiting = Versions(1, (Move(2, day(1, 2)),))
    assert waiting.moved(3, day(1, 3), day(15)) == Versions(1, (Move(3, day(1, 3)),))
    assert waiting.moved(3, day(1, 3), day(15)).at(day(1, 2)) == 1


def test_moved_folds_moves_older_than_a_year_into_the_first_version() -> None:
    assert timedelta(days=366) == MOVES_KEPT_FOR
    now = day(1, 6, 2027)
    micro = timedelta(microseconds=1)
    history = Versions(
        1,
        (
            Move(2, now - timedelta(days=500)),
            Move(3, now - MOVES_KEPT_FOR),  # exactly a year (of 366 days) old: folded
            Move(4, now - MOVES_KEPT_FOR + micro),  # a microsecond younger: kept
            Move(5, now - timedelta(days=10)),
            Move(6, now + timedelta(days=3)),  # waiting: replaced
        ),
    )
    moved = history.moved(7, now, now)
    assert moved == Versions(
        3, (Move(4, now - MOVES_KEPT_FOR + micro), Move(5, now - timedelta(days=10)), Move(7, now))
    )
    assert moved.held() == [3, 4, 5, 7]
    # Within the year kept, the history reads as before the fold.
    for instant in (now - MOVES_KEPT_FOR + micro, now - timedelta(days=30), now - micro):
        assert moved.at(instant) == history.at(instant), instant
    # Every move older than the year: all folded, the last of them the first version.
    old = Versions(1, (Move(2, now - timedelta(days=800)), Move(5, now - timedelta(days=400))))
    assert old.moved(6, now, now) == Versions(5, (Move(6, now),))


def test_move_instants_lists_every_move_of_the_plan_and_its_addons() -> None:
    assert subscription().move_instants() == []
    addons = (
        AddonQuantity("boost", 1, Versions(1, (Move(2, day(3)), Move(3, day(7))))),
        AddonQuantity("pack", 1),
    )
    held = subscription(moves=(Move(2, day(5)), Move(4, day(12))), addons=addons)
    assert sorted(held.move_instants()) == [day(3), day(5), day(7), day(12)]
    assert sorted(subscription(addons=addons).move_instants()) == [day(3), day(7)]
    assert subscription(moves=(Move(2, day(5)),)).move_instants() == [day(5)]


def test_the_next_change_includes_a_waiting_move() -> None:
    plain = subscription(starts_at=day(1))
    assert Holdings([plain]).next_change_after(day(2)) is None
    moved = subscription(
        starts_at=day(1), moves=(Move(3, day(2)), Move(2, day(15))), ends_at=day(28)
    )
    assert Holdings([moved]).next_change_after(day(1)) == day(2)
    # A move made already is no change to come.
    assert Holdings([moved]).next_change_after(day(2)) == day(15)
    assert Holdings([moved]).next_change_after(day(15)) == day(28)
    addon_moved = subscription(
        starts_at=day(1), addons=(AddonQuantity("boost", 1, Versions(1, (Move(2, day(9)),))),)
    )
    assert Holdings([moved, addon_moved]).next_change_after(day(2)) == day(9)
    assert Holdings([addon_moved]).next_change_after(day(9)) is None


def pricing_catalog() -> Catalog:
    """pro v1: 100 requests, v2: 500 requests and SSO; boost v1 +10 requests, v2 +20."""
    catalog = base_catalog().with_plan(plan("pro", ai_requests=metered(100)), T0)
    catalog = catalog.with_plan(plan("pro", ai_requests=metered(500), sso=BooleanSpec()), T0)
    boost = Addon(
        "boost",
        "coder",
        "Boost",
        {"ai-requests": AddonEntitlement(metered(10), AddonMode.INCREMENT)},
    )
    catalog = catalog.with_addon(boost, T0)
    bigger = {"ai-requests": AddonEntitlement(metered(20), AddonMode.INCREMENT)}
    return catalog.with_addon(replace(boost, entitlements=bigger), T0)


def limit_at(catalog: Catalog, held: Subscription, now: datetime) -> int | None:
    resolution = resolve(catalog, Holdings([held]), AI, now)
    assert resolution.offer is not None
    spec = resolution.offer.spec
    assert isinstance(spec, MeteredSpec)
    return spec.limit


def test_resolution_reads_the_version_the_subscription_is_on_at_now() -> None:
    catalog = pricing_catalog()
    move_at = day(15)
    held = subscription(version=1, moves=(Move(2, move_at),))
    assert limit_at(catalog, held, day(14)) == 100 * UNIT
    assert limit_at(catalog, held, move_at) == 500 * UNIT
    assert resolve(catalog, Holdings([held]), SSO, day(14)).offer is None
    assert resolve(catalog, Holdings([held]), SSO, move_at).offer is not None
    # Pinned to version 1 with no move, it stays there whatever the latest is.
    assert limit_at(catalog, subscription(version=1), day(28)) == 100 * UNIT
    # A move back to an older version works the same way.
    back = subscription(version=2, moves=(Move(1, move_at),))
    assert limit_at(catalog, back, day(14)) == 500 * UNIT
    assert limit_at(catalog, back, move_at) == 100 * UNIT
    # After several moves, the one last reached decides.
    twice = subscription(version=1, moves=(Move(2, day(10)), Move(1, move_at)))
    assert [limit_at(catalog, twice, t) for t in (day(9), day(10), move_at, day(28))] == [
        100 * UNIT,
        500 * UNIT,
        100 * UNIT,
        100 * UNIT,
    ]


def test_resolution_reads_the_addon_version_each_entry_is_on_at_now() -> None:
    catalog = pricing_catalog()
    entry = AddonQuantity("boost", 3, Versions(1, (Move(2, day(20)),)))
    held = subscription(version=1, moves=(Move(2, day(10)),), addons=(entry,))
    assert limit_at(catalog, held, day(9)) == (100 + 3 * 10) * UNIT
    assert limit_at(catalog, held, day(10)) == (500 + 3 * 10) * UNIT
    assert limit_at(catalog, held, day(20)) == (500 + 3 * 20) * UNIT


# ------------------------------------------------------------------ field_diff


def test_field_diff_names_nested_paths_and_whole_values() -> None:
    old = {
        "name": "Pro",
        "parent": None,
        "trial_days": 14,
        "burn_order": ["priority", "expiry"],
        "entitlements": {"sso": {}, "seats": {"value": 5}, "ai-requests": {"limit": 100}},
        "credits": {},
    }
    new = {
        "name": "Pro",
        "parent": "starter",
        "trial_days": None,
        "burn_order": ["expiry", "priority"],
        "entitlements": {"seats": {"value": 6}, "ai-requests": {"limit": 100}, "audit": {}},
        "credits": {"ai-credits": {"amount": 10}},
    }
    found = field_diff(old, new)
    assert {path: (d.from_, d.to) for path, d in found.items()} == {
        "parent": (None, "starter"),
        "trial_days": (14, None),
        "burn_order": (["priority", "expiry"], ["expiry", "priority"]),
        "entitlements.sso": ({}, None),
        "entitlements.seats.value": (5, 6),
        "entitlements.audit": (None, {}),
        "credits.ai-credits": (None, {"amount": 10}),
    }


def test_field_diff_of_equal_definitions_is_empty_and_of_a_new_one_is_every_field() -> None:
    document = {"name": "Pro", "entitlements": {"sso": {}}, "credits": {}}
    assert field_diff(document, dict(document)) == {}
    created = field_diff(None, document)
    assert list(created) == ["name", "entitlements", "credits"]
    assert created["entitlements"].from_ is None
    assert created["entitlements"].to == {"sso": {}}


def test_field_diff_reports_a_field_dropped_or_emptied() -> None:
    found = field_diff({"unit": None, "spec": {"limit": 1}}, {"spec": {}})
    assert {path: (d.from_, d.to) for path, d in found.items()} == {
        "unit": (None, None),
        "spec.limit": (1, None),
    }


# ------------------------------------------------------------------ _versions


def versioned_catalog() -> Catalog:
    catalog = base_catalog()
    for n in range(1, 5):
        catalog = catalog.with_plan(plan("pro", seats=seats(n)), T0)
        catalog = catalog.with_addon(Addon("boost", "coder", f"Boost {n}"), T0)
    return catalog


def test_a_migration_moves_every_older_version_to_the_latest_by_default() -> None:
    catalog = versioned_catalog()
    request = MigrationRequest(at="now")
    assert _versions(catalog, CatalogKind.PLAN, "pro", request) == (4, {1, 2, 3})
    assert _versions(catalog, CatalogKind.ADDON, "boost", request) == (4, {1, 2, 3})
    older = MigrationRequest(at="now", to_version=2)
    assert _versions(catalog, CatalogKind.PLAN, "pro", older) == (2, {1})
    named = MigrationRequest(at="period_end", from_versions=[3, 1], to_version=2)
    assert _versions(catalog, CatalogKind.PLAN, "pro", named) == (2, {1, 3})
    down = MigrationRequest(at="now", from_versions=[4], to_version=1)
    assert _versions(catalog, CatalogKind.PLAN, "pro", down) == (1, {4})


@pytest.mark.parametrize(
    ("request_fields", "field", "words"),
    [
        ({"to_version": 0}, "to_version", "has no version 0"),
        ({"to_version": 5}, "to_version", "has no version 5 (its latest is 4)"),
        ({"from_versions": [1, 1]}, "from_versions", "twice"),
        ({"from_versions": [0, 2, 9]}, "from_versions", "has no version 0, 9"),
        ({"from_versions": [1, 4]}, "from_versions", "names version 4, the version to move to"),
        ({"from_versions": [2], "to_version": 2}, "from_versions", "names version 2"),
    ],
)
def test_a_migration_naming_versions_that_do_not_fit_is_refused(
    request_fields: dict[str, Any], field: str, words: str
) -> None:
    request = MigrationRequest(at="now", **request_fields)
    with pytest.raises(InvalidRequest) as raised:
        _versions(versioned_catalog(), CatalogKind.PLAN, "pro", request)
    assert words in raised.value.message
    assert raised.value.details == {"field": field}


def test_a_migration_of_an_unknown_plan_or_addon_is_not_found() -> None:
    catalog = versioned_catalog()
    with pytest.raises(NotFound):
        _versions(catalog, CatalogKind.PLAN, "boost", MigrationRequest(at="now"))
    with pytest.raises(NotFound):
        _versions(catalog, CatalogKind.ADDON, "pro", MigrationRequest(at="now"))


# ------------------------------------------------------------------ _moved and _period_end


def billing_catalog() -> Catalog:
    """pro v1 and v2 billed monthly, v3 yearly; annual v1 billed yearly; boost v1..v3."""
    catalog = base_catalog()
    for n, period in ((1, ResetPeriod.MONTH), (2, ResetPeriod.MONTH), (3, ResetPeriod.YEAR)):
        catalog = catalog.with_plan(replace(plan("pro", seats=seats(n)), billing_period=period))
        catalog = catalog.with_addon(Addon("boost", "coder", f"Boost {n}"))
    return catalog.with_plan(replace(plan("annual"), billing_period=ResetPeriod.YEAR))


def move(
    held: Subscription,
    sources: set[int],
    target: int,
    at: MigrateAt,
    now: datetime,
    kind: CatalogKind = CatalogKind.PLAN,
    object_id: str = "pro",
) -> Subscription | None:
    return _moved(billing_catalog(), kind, object_id, held, sources, target, at, now)


def test_a_now_migration_moves_the_plan_at_once() -> None:
    now = day(15, 3)
    held = subscription(starts_at=day(31))
    moved = move(held, {1}, 3, "now", now)
    assert moved is not None
    assert moved.plan_versions == Versions(1, (Move(3, now, mid_period=True),))
    assert moved.plan_versions.waiting(now) is None
    assert moved.plan_version_at(now) == 3
    assert moved.plan_version_at(now - timedelta(microseconds=1)) == 1
    # Nothing else changes: anchor, add-ons, dates.
    assert replace(moved, plan_versions=held.plan_versions) == held


def test_a_period_end_migration_moves_at_the_end_of_the_billing_period() -> None:
    # Anchored on Jan 31: the monthly periods end on Feb 28, Mar 31, Apr 30 (clamped, 09:00).
    held = subscription(starts_at=datetime(2026, 1, 31, 9, tzinfo=UTC))
    moved = move(held, {1}, 2, "period_end", day(15, 3))
    assert moved is not None
    end_of_march = datetime(2026, 3, 31, 9, tzinfo=UTC)
    assert moved.plan_versions == Versions(1, (Move(2, end_of_march),))
    assert moved.plan_versions.waiting(day(15, 3)) == Move(2, end_of_march)
    in_february = move(held, {1}, 2, "period_end", day(10, 2))
    assert in_february is not None
    end_of_february = datetime(2026, 2, 28, 9, tzinfo=UTC)
    assert in_february.plan_versions == Versions(1, (Move(2, end_of_february),))


def test_the_period_end_of_a_yearly_plan_is_its_anniversary() -> None:
    held = subscription("annual", starts_at=day(15, 6, 2025))
    assert _period_end(billing_catalog(), held, day(1, 2)) == day(15, 6, 2026)
    on_v3 = subscription(version=3, starts_at=day(15, 6, 2025))
    assert _period_end(billing_catalog(), on_v3, day(1, 2)) == day(15, 6, 2026)


def test_the_period_end_follows_the_billing_period_of_the_version_held_now() -> None:
    catalog = billing_catalog()
    monthly = subscription(version=2, starts_at=day(15, 6, 2025))
    assert _period_end(catalog, monthly, day(1, 2)) == day(15, 2)


def test_the_period_end_of_a_subscription_not_started_yet_ends_its_first_period() -> None:
    starts = day(20, 4)
    held = subscription(starts_at=starts)
    assert _period_end(billing_catalog(), held, day(1, 3)) == day(20, 5)
    # A replacement keeps its predecessor's anchor: the first period ends on the anchor's day.
    replacing = subscription(starts_at=starts, anchor_at=day(5, 1))
    assert _period_end(billing_catalog(), replacing, day(1, 3)) == day(5, 5)
    moved = move(held, {1}, 2, "period_end", day(1, 3))
    assert moved is not None
    assert moved.plan_versions == Versions(1, (Move(2, day(20, 5)),))


def test_a_subscription_on_none_of_the_versions_is_left_alone() -> None:
    now = day(15, 3)
    assert move(subscription(version=2), {1}, 3, "now", now) is None
    assert move(subscription(version=3), {1, 2}, 3, "period_end", now) is None


def test_a_subscription_is_chosen_by_the_version_it_is_on_at_now() -> None:
    now = day(15, 3)
    moved_already = subscription(version=1, moves=(Move(2, day(1, 3)),))
    assert move(moved_already, {1}, 3, "now", now) is None
    moved = move(moved_already, {2}, 3, "now", now)
    assert moved is not None
    assert moved.plan_version_at(now) == 3
    assert moved.plan_version_at(day(2, 3)) == 2
    # The move already made stays in the history, before the new one.
    assert moved.plan_versions == Versions(1, (Move(2, day(1, 3)), Move(3, now, mid_period=True)))
    assert moved.plan_version_at(day(28, 2)) == 1


def test_a_waiting_move_is_replaced() -> None:
    now = day(15, 3)
    waiting = subscription(version=1, moves=(Move(2, day(1, 4)),))
    moved = move(waiting, {1}, 3, "now", now)
    assert moved is not None
    assert moved.plan_versions == Versions(1, (Move(3, now, mid_period=True),))
    later = move(waiting, {1}, 3, "period_end", now)
    assert later is not None
    assert later.plan_versions == Versions(1, (Move(3, day(1, 4)),))
    assert later.plan_version_at(day(31, 3)) == 1
    # Behind a move already made, only the waiting one is replaced.
    made_and_waiting = subscription(version=1, moves=(Move(2, day(1, 3)), Move(1, day(1, 4))))
    replaced = move(made_and_waiting, {2}, 3, "period_end", now)
    assert replaced is not None
    assert replaced.plan_versions == Versions(1, (Move(2, day(1, 3)), Move(3, day(1, 4))))


def test_an_addon_migration_moves_that_entry_only() -> None:
    now = day(15, 3)
    entries = (AddonQuantity("pack", 2, Versions(1)), AddonQuantity("boost", 3, Versions(1)))
    held = subscription(addons=entries, moves=(Move(2, day(1, 4)),))
    moved = move(held, {1}, 3, "now", now, CatalogKind.ADDON, "boost")
    assert moved is not None
    assert moved.addons == (
        AddonQuantity("pack", 2, Versions(1)),
        AddonQuantity("boost", 3, Versions(1, (Move(3, now, mid_period=True),))),
    )
    assert moved.plan_versions == Versions(1, (Move(2, day(1, 4)),))
    at_end = move(held, {1}, 2, "period_end", now, CatalogKind.ADDON, "boost")
    assert at_end is not None
    assert at_end.addons[1].versions == Versions(1, (Move(2, day(1, 4)),))
    assert move(held, {2}, 3, "now", now, CatalogKind.ADDON, "boost") is None
    assert (
        move(subscription(addons=entries[:1]), {1}, 3, "now", now, CatalogKind.ADDON, "boost")
        is None
    )
    waiting = subscription(addons=(AddonQuantity("boost", 1, Versions(1, (Move(2, day(1, 4)),))),))
    replaced = move(waiting, {1}, 3, "now", now, CatalogKind.ADDON, "boost")
    assert replaced is not None
    assert replaced.addons == (
        AddonQuantity("boost", 1, Versions(1, (Move(3, now, mid_period=True),))),
    )
    # An entry moved already is chosen by the version it is on now, and keeps that move.
    made = subscription(addons=(AddonQuantity("boost", 1, Versions(1, (Move(2, day(1, 3)),))),))
    assert move(made, {1}, 3, "now", now, CatalogKind.ADDON, "boost") is None
    again = move(made, {2}, 3, "now", now, CatalogKind.ADDON, "boost")
    assert again is not None
    assert again.addons[0].versions == Versions(
        1, (Move(2, day(1, 3)), Move(3, now, mid_period=True))
    )


# ------------------------------------------------------------------ _addon_holdings


def patched(
    held: tuple[AddonQuantity, ...], *requested: AddonRequest, now: datetime
) -> tuple[AddonQuantity, ...]:
    catalog = billing_catalog()
    pro = catalog.plan_at("pro", 1)
    assert pro is not None
    return _addon_holdings(catalog, pro, requested, held, now)


def test_an_entry_keeps_its_history_unless_a_patch_names_another_version() -> None:
    now = day(15, 3)
    # On version 2 since March 1st, a move to version 3 waiting for April 1st.
    history = Versions(1, (Move(2, day(1, 3)), Move(3, day(1, 4))))
    held = (AddonQuantity("boost", 2, history),)
    kept = (AddonQuantity("boost", 5, history),)
    assert patched(held, AddonRequest("boost", 5), now=now) == kept
    assert patched(held, AddonRequest("boost", 5, 2), now=now) == kept
    # Another version: a move at now, the waiting one replaced, the one made kept.
    assert patched(held, AddonRequest("boost", 2, 1), now=now) == (
        AddonQuantity("boost", 2, Versions(1, (Move(2, day(1, 3)), Move(1, now, mid_period=True)))),
    )
    assert patched(held, AddonRequest("boost", 2, 3), now=now) == (
        AddonQuantity("boost", 2, Versions(1, (Move(2, day(1, 3)), Move(3, now, mid_period=True)))),
    )
    # Moves older than a year are folded into the first version on the way.
    old = (AddonQuantity("boost", 1, Versions(1, (Move(2, now - timedelta(days=400)),))),)
    assert patched(old, AddonRequest("boost", 1, 3), now=now) == (
        AddonQuantity("boost", 1, Versions(2, (Move(3, now, mid_period=True),))),
    )
    assert patched(old, AddonRequest("boost", 1), now=now) == old


def test_a_new_entry_starts_its_history_on_the_version_named_or_the_latest() -> None:
    now = day(15, 3)
    assert patched((), AddonRequest("boost", 1), now=now) == (
        AddonQuantity("boost", 1, Versions(3)),
    )
    assert patched((), AddonRequest("boost", 4, 2), now=now) == (
        AddonQuantity("boost", 4, Versions(2)),
    )


# ------------------------------------------------------------------ recurring credits


def credit_catalog(
    *blocks: RecurringCredits, addon_blocks: tuple[RecurringCredits, ...] = ()
) -> Catalog:
    catalog = base_catalog()
    for credits in blocks:
        catalog = catalog.with_plan(replace(plan("pro"), credits={"ai-credits": credits}), T0)
    for credits in addon_blocks:
        boost = Addon("boost", "coder", "Boost", credits={"ai-credits": credits})
        catalog = catalog.with_addon(boost, T0)
    return catalog


def owed(
    catalog: Catalog, held: Subscription, now: datetime
) -> list[tuple[int, datetime, datetime | None]]:
    """The blocks due at ``now`` (credits, effective_at, expires_at), none granted before."""
    grants = recurring_grants(catalog, "acme", Holdings([held]), "ai-credits", now, lambda _: False)
    return sorted((g.amount // UNIT, g.effective_at, g.expires_at) for g, _ in grants)


def owed_ids(catalog: Catalog, held: Subscription, now: datetime) -> set[str]:
    grants = recurring_grants(catalog, "acme", Holdings([held]), "ai-credits", now, lambda _: False)
    return {grant.id for grant, _ in grants}


def test_a_now_migration_changes_the_credits_from_the_next_period() -> None:
    catalog = credit_catalog(block(100), block(500))
    held = subscription(starts_at=day(1))
    assert owed(catalog, held, day(5)) == [(100, day(1), day(1, 2))]
    moved = _moved(catalog, CatalogKind.PLAN, "pro", held, {1}, 2, "now", day(10))
    assert moved is not None
    assert owed(catalog, moved, day(10)) == [(100, day(1), day(1, 2))]
    assert owed(catalog, moved, day(31)) == [(100, day(1), day(1, 2))]
    # The block made before the move is the block after it: it is not made twice.
    assert owed_ids(catalog, moved, day(25)) == owed_ids(catalog, held, day(5))
    assert owed(catalog, moved, day(1, 2)) == [(500, day(1, 2), day(1, 3))]
    assert owed(catalog, moved, day(15, 3)) == [(500, day(1, 3), day(1, 4))]


def test_a_period_end_migration_changes_the_credits_at_the_period_end() -> None:
    catalog = credit_catalog(block(100), block(500))
    held = subscription(starts_at=day(1))
    moved = _moved(catalog, CatalogKind.PLAN, "pro", held, {1}, 2, "period_end", day(10))
    assert moved is not None
    assert moved.plan_versions.waiting(day(10)) == Move(2, day(1, 2))
    assert owed(catalog, moved, day(31)) == [(100, day(1), day(1, 2))]
    assert owed(catalog, moved, day(1, 2)) == [(500, day(1, 2), day(1, 3))]


def test_a_move_to_a_yearly_block_grants_from_the_next_year() -> None:
    """Each block follows the version the subscription was on when that block's period began:
    the year under way began on the monthly version, so the yearly block starts next year."""
    catalog = credit_catalog(block(100), block(1200, ResetPeriod.YEAR))
    held = subscription(starts_at=day(1))
    moved = _moved(catalog, CatalogKind.PLAN, "pro", held, {1}, 2, "now", day(10))
    assert moved is not None
    assert owed(catalog, moved, day(20)) == [(100, day(1), day(1, 2))]
    assert owed(catalog, moved, day(5, 2)) == []
    assert owed(catalog, moved, day(1, 1, 2027)) == [(1200, day(1, 1, 2027), day(1, 1, 2028))]


def test_a_move_from_a_yearly_block_keeps_the_year_under_way_and_grants_monthly_after() -> None:
    catalog = credit_catalog(block(1200, ResetPeriod.YEAR), block(100))
    held = subscription(starts_at=day(1))
    moved = _moved(catalog, CatalogKind.PLAN, "pro", held, {1}, 2, "now", day(10, 3))
    assert moved is not None
    year = (1200, day(1), day(1, 1, 2027))
    assert owed(catalog, moved, day(20, 3)) == [year]
    assert owed(catalog, moved, day(5, 4)) == [(100, day(1, 4), day(1, 5)), year]
    assert owed(catalog, moved, day(5, 1, 2027)) == [(100, day(1, 1, 2027), day(1, 2, 2027))]


def test_two_now_migrations_in_one_period_still_grant_the_block_it_began_on() -> None:
    """v1 grants 100 a month, v2 500, v3 nothing. Moved to v2 on Jan 10 and to v3 on Jan 20,
    the subscription began January on v1: January's block is v1's, whenever the pool is first
    touched in January (API.md: "recurring credits follow the new version from the next
    period that grants them")."""
    catalog = credit_catalog(block(100), block(500), block(0))
    held = subscription(starts_at=day(1))
    first = _moved(catalog, CatalogKind.PLAN, "pro", held, {1}, 2, "now", day(10))
    assert first is not None
    assert owed(catalog, first, day(15)) == [(100, day(1), day(1, 2))]
    second = _moved(catalog, CatalogKind.PLAN, "pro", first, {2}, 3, "now", day(20))
    assert second is not None
    assert owed(catalog, second, day(25)) == [(100, day(1), day(1, 2))]


def test_a_second_move_never_grants_a_block_for_a_period_begun_on_another_version() -> None:
    """v1 grants 100 a month, v2 1200 a year (from next year, as the year began on v1), v3
    100 a month. A second move in February must not make v2's block for the year under way."""
    catalog = credit_catalog(block(100), block(1200, ResetPeriod.YEAR), block(100))
    held = subscription(starts_at=day(1))
    first = _moved(catalog, CatalogKind.PLAN, "pro", held, {1}, 2, "now", day(10))
    assert first is not None
    assert owed(catalog, first, day(5, 2)) == []
    second = _moved(catalog, CatalogKind.PLAN, "pro", first, {2}, 3, "period_end", day(5, 2))
    assert second is not None
    assert second.plan_versions == Versions(
        1, (Move(2, day(10), mid_period=True), Move(3, day(1, 3)))
    )
    assert owed(catalog, second, day(6, 2)) == []


def test_an_addon_migration_changes_its_credits_from_the_next_period() -> None:
    catalog = credit_catalog(block(0), addon_blocks=(block(10), block(20)))
    held = subscription(starts_at=day(1), addons=(AddonQuantity("boost", 3),))
    moved = _moved(catalog, CatalogKind.ADDON, "boost", held, {1}, 2, "now", day(10))
    assert moved is not None
    assert owed(catalog, moved, day(20)) == [(30, day(1), day(1, 2))]
    assert owed(catalog, moved, day(1, 2)) == [(60, day(1, 2), day(1, 3))]


def test_two_now_migrations_of_an_addon_in_one_period_grant_the_block_it_began_on() -> None:
    """boost v1 grants 10 a month, v2 20, v3 nothing; the entry, 3 of them, moved to v2 on
    Jan 10 and to v3 on Jan 20: January's block is v1's, February's v3's (none)."""
    catalog = credit_catalog(block(0), addon_blocks=(block(10), block(20), block(0)))
    held = subscription(starts_at=day(1), addons=(AddonQuantity("boost", 3),))
    first = _moved(catalog, CatalogKind.ADDON, "boost", held, {1}, 2, "now", day(10))
    assert first is not None
    second = _moved(catalog, CatalogKind.ADDON, "boost", first, {2}, 3, "now", day(20))
    assert second is not None
    assert second.addons[0].versions == Versions(
        1, (Move(2, day(10), mid_period=True), Move(3, day(20), mid_period=True))
    )
    assert owed(catalog, second, day(25)) == [(30, day(1), day(1, 2))]
    assert owed(catalog, second, day(1, 2)) == []


def test_a_move_made_mid_period_at_a_periods_first_instant_counts_from_the_next_period() -> None:
    began = day(1, 3)
    now_move = Versions(1, (Move(2, began, mid_period=True),))
    at_period_end = Versions(1, (Move(2, began),))
    # Both are on version 2 from that instant on...
    assert now_move.at(began) == at_period_end.at(began) == 2
    # ...but the period that began at it was sold on version 1 unless the move was made for it.
    assert now_move.at_period_start(began) == 1
    assert at_period_end.at_period_start(began) == 2
    assert now_move.at_period_start(began + timedelta(microseconds=1)) == 2
