"""The contract of the record repositories: round trips, upserts (and what an update may change),
order, paging with ``next``, deletes."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from allotment.domain.budgets import BudgetKind
from allotment.domain.catalog import Enforcement
from allotment.domain.customers import Scope
from allotment.domain.entities import MAX_ENTITY_DEPTH
from allotment.domain.periods import ResetPeriod
from allotment.domain.reservations import ReservationStatus
from allotment.service.ports import StoredOutcome, UnitOfWork
from tests.contract.kit import (
    T0,
    ContractStore,
    api_key,
    at,
    budget,
    catalog,
    customer,
    entity,
    override,
    promotion,
    reservation,
    run,
    save_reservations,
    spec,
    subscription,
)

# ---------------------------------------------------------------- catalog


def test_catalog_objects_are_created_then_replaced(store: ContractStore) -> None:
    feature = b'{"name": "Calls", "kind": "metered"}'
    renamed = b'{"name": "API calls", "kind": "metered"}'
    created = run(store, lambda uow: uow.catalog.save_object("feature", "calls", feature, T0))
    replaced = run(store, lambda uow: uow.catalog.save_object("feature", "calls", renamed, at(1)))
    loaded = run(store, lambda uow: uow.catalog.load())
    assert (created, replaced) == (True, False)
    assert list(loaded.features) == ["calls"]
    assert loaded.features["calls"].name == "API calls"


def test_an_empty_catalog_loads_empty(store: ContractStore) -> None:
    loaded = run(store, lambda uow: uow.catalog.load())
    assert (loaded.features, loaded.plans, loaded.products) == ({}, {}, {})


def _versions(*definitions: bytes, parent_versions: tuple[int | None, ...] = ()) -> bytes:
    """A plan's stored document: every version's definition, as JSON text."""
    versions = [
        b'{"version": %d, "published_at": 0, "parent_version": %s, "definition": %s}'
        % (number, b"null" if parent is None else b"%d" % parent, definition)
        for number, (definition, parent) in enumerate(
            zip(definitions, parent_versions or (None,) * len(definitions), strict=True), 1
        )
    ]
    return b'{"status": "active", "versions": [%s]}' % b", ".join(versions)


def test_plans_load_after_their_parents_and_list_in_creation_order(store: ContractStore) -> None:
    team_alone = b'{"product": "coder", "name": "Team"}'
    # The older plan is re-parented under the newer one: its version 2 folds starter's 1.
    team_under_starter = b'{"product": "coder", "name": "Team", "parent": "starter"}'

    def define(uow: UnitOfWork) -> None:
        save = uow.catalog.save_object
        save("product", "coder", b'{"name": "Coder"}', T0)
        save("feature", "seats", b'{"name": "Seats", "kind": "numeric"}', T0)
        save("plan", "team", _versions(team_alone), T0)
        starter = (
            b'{"product": "coder", "name": "Starter", "entitlements": {"seats": {"value": 3}}}'
        )
        save("plan", "starter", _versions(starter), T0)
        team = _versions(team_alone, team_under_starter, parent_versions=(None, 1))
        save("plan", "team", team, at(1))
        save("currency", "credits", b'{"name": "Credits"}', T0)

    run(store, define)
    loaded = run(store, lambda uow: uow.catalog.load())
    assert list(loaded.plans) == ["team", "starter"]
    assert loaded.plans["team"].parent == "starter"
    assert loaded.plans["team"].version == 2
    assert loaded.plan_entitlements("team", 1) == {}
    assert loaded.plan_entitlements("team", 2) == loaded.plan_entitlements("starter", 1)
    assert set(loaded.currencies) == {"credits"}


def test_a_stored_document_is_read_back_as_written(store: ContractStore) -> None:
    document = _versions(b'{"product": "coder", "name": "Team"}')
    run(store, lambda uow: uow.catalog.save_object("plan", "team", document, T0))
    assert run(store, lambda uow: uow.catalog.stored_document("plan", "team")) == document
    assert run(store, lambda uow: uow.catalog.stored_document("plan", "other")) is None


# ---------------------------------------------------------------- customers


def test_an_unknown_customer_is_none(store: ContractStore) -> None:
    assert run(store, lambda uow: uow.customers.get("nobody")) is None


def test_a_customer_round_trips(store: ContractStore) -> None:
    acme = customer(
        "acme", metadata={"tier": "gold", "seats": [1, 2]}, billing_id="cus_1", archived_at=at(2)
    )
    run(store, lambda uow: uow.customers.save(acme))
    assert run(store, lambda uow: uow.customers.get("acme")) == acme


def test_saving_a_customer_again_updates_it_but_keeps_its_creation(store: ContractStore) -> None:
    run(store, lambda uow: uow.customers.save(customer("acme")))
    changed = customer(
        "acme",
        name="ACME",
        metadata={"tier": "silver"},
        billing_id="b",
        created_at=at(5),
        updated_at=at(1),
        archived_at=at(1),
    )
    run(store, lambda uow: uow.customers.save(changed))
    stored = run(store, lambda uow: uow.customers.get("acme"))
    assert stored == replace(changed, created_at=T0)


def test_a_customer_read_is_a_copy(store: ContractStore) -> None:
    run(store, lambda uow: uow.customers.save(customer("acme")))
    read = run(store, lambda uow: uow.customers.get("acme"))
    assert read is not None
    read.metadata["tier"] = "changed"  # type: ignore[index]
    again = run(store, lambda uow: uow.customers.get("acme"))
    assert again is not None
    assert again.metadata == {"tier": "gold"}


def test_customers_page_in_creation_order(store: ContractStore) -> None:
    names = [f"c{n:02}" for n in range(7)]
    run(store, lambda uow: [uow.customers.save(customer(name)) for name in reversed(names)])
    run(store, lambda uow: uow.customers.save(customer("c03", name="Updated")))  # does not move
    first = run(store, lambda uow: uow.customers.list(None, 3))
    second = run(store, lambda uow: uow.customers.list(first.next_cursor, 3))
    third = run(store, lambda uow: uow.customers.list(second.next_cursor, 3))
    listed = [c.id for page in (first, second, third) for c in page.items]
    assert listed == list(reversed(names))
    assert first.next_cursor is not None
    assert second.next_cursor is not None
    assert third.next_cursor is None
    assert [c.name for c in second.items if c.id == "c03"] == ["Updated"]


def test_a_page_that_ends_the_list_exactly_has_no_next(store: ContractStore) -> None:
    run(store, lambda uow: [uow.customers.save(customer(f"c{n}")) for n in range(4)])
    page = run(store, lambda uow: uow.customers.list(None, 4))
    assert len(page.items) == 4
    assert page.next_cursor is None
    bigger = run(store, lambda uow: uow.customers.list(None, 10))
    assert (len(bigger.items), bigger.next_cursor) == (4, None)


def test_an_empty_list_has_no_next(store: ContractStore) -> None:
    page = run(store, lambda uow: uow.customers.list(None, 10))
    assert (list(page.items), page.next_cursor) == ([], None)


# ---------------------------------------------------------------- holdings


def test_a_subscription_round_trips_for_its_customer_only(store: ContractStore) -> None:
    sub = subscription("sub_1", trial_ends_at=at(14), is_trial=True)
    run(store, lambda uow: uow.holdings.save_subscription(sub))
    assert run(store, lambda uow: uow.holdings.get_subscription("acme", "sub_1")) == sub
    assert run(store, lambda uow: uow.holdings.get_subscription("umbrella", "sub_1")) is None
    assert run(store, lambda uow: uow.holdings.get_subscription("acme", "sub_2")) is None


def test_a_subscription_update_changes_addons_and_ends_only(store: ContractStore) -> None:
    sub = subscription("sub_1")
    run(store, lambda uow: uow.holdings.save_subscription(sub))
    changed = replace(
        sub,
        plan="team",
        addons=(),
        ends_at=at(30),
        canceled_at=at(3),
        anchor_at=at(1),
        created_at=at(1),
    )
    run(store, lambda uow: uow.holdings.save_subscription(changed))
    stored = run(store, lambda uow: uow.holdings.get_subscription("acme", "sub_1"))
    assert stored == replace(sub, addons=(), ends_at=at(30), canceled_at=at(3))


def test_subscriptions_page_per_customer_in_creation_order(store: ContractStore) -> None:
    def save(uow: UnitOfWork) -> None:
        for n in range(5):
            uow.holdings.save_subscription(subscription(f"sub_a{n}", "acme"))
            uow.holdings.save_subscription(subscription(f"sub_u{n}", "umbrella"))

    run(store, save)
    first = run(store, lambda uow: uow.holdings.list_subscriptions("acme", None, 2))
    rest = run(store, lambda uow: uow.holdings.list_subscriptions("acme", first.next_cursor, 10))
    assert [s.id for s in first.items] == ["sub_a0", "sub_a1"]
    assert [s.id for s in rest.items] == ["sub_a2", "sub_a3", "sub_a4"]
    assert rest.next_cursor is None
    none = run(store, lambda uow: uow.holdings.list_subscriptions("nobody", None, 10))
    assert (list(none.items), none.next_cursor) == ([], None)


def test_holdings_load_subscriptions_live_promotions_and_overrides(store: ContractStore) -> None:
    def save(uow: UnitOfWork) -> None:
        uow.holdings.save_subscription(subscription("sub_2"))
        uow.holdings.save_subscription(subscription("sub_1"))
        uow.holdings.save_subscription(subscription("sub_x", "umbrella"))
        uow.holdings.save_promotion(promotion("pro_1"))
        uow.holdings.save_promotion(promotion("pro_2", revoked_at=at(1)))
        uow.holdings.save_promotion(promotion("pro_3", feature="tokens"))
        uow.holdings.save_override(override("seats"))
        uow.holdings.save_override(override("calls"))
        uow.holdings.save_override(override("calls", "umbrella"))

    run(store, save)
    loaded = run(store, lambda uow: uow.holdings.load("acme", catalog()))
    assert [s.id for s in loaded.subscriptions] == ["sub_2", "sub_1"]
    assert [p.id for p in loaded.promotions] == ["pro_1", "pro_3"]
    assert loaded.promotions[0] == promotion("pro_1")
    assert set(loaded.overrides) == {"calls", "seats"}
    assert loaded.overrides["seats"] == override("seats")
    empty = run(store, lambda uow: uow.holdings.load("nobody", catalog()))
    assert (list(empty.subscriptions), list(empty.promotions), dict(empty.overrides)) == (
        [],
        [],
        {},
    )


def test_a_promotion_update_changes_its_revocation_only(store: ContractStore) -> None:
    pro = promotion("pro_1")
    run(store, lambda uow: uow.holdings.save_promotion(pro))
    changed = replace(pro, revoked_at=at(2), reason="other", ends_at=None)
    run(store, lambda uow: uow.holdings.save_promotion(changed))
    stored = run(store, lambda uow: uow.holdings.get_promotion("acme", "pro_1", catalog()))
    assert stored == replace(pro, revoked_at=at(2))  # revoked ones are still found by id
    assert run(store, lambda uow: uow.holdings.get_promotion("other", "pro_1", catalog())) is None


def test_an_override_is_replaced_keeping_its_creation_and_deleted_once(
    store: ContractStore,
) -> None:
    run(store, lambda uow: uow.holdings.save_override(override("calls")))
    wider = spec("calls", {"limit": 90, "reset": "month"})
    replaced = override("calls", spec=wider, created_at=at(1), updated_at=at(2))
    run(store, lambda uow: uow.holdings.save_override(replaced))
    loaded = run(store, lambda uow: uow.holdings.load("acme", catalog()))
    assert loaded.overrides["calls"] == replace(replaced, created_at=T0)
    assert run(store, lambda uow: uow.holdings.delete_override("acme", "calls")) is True
    assert run(store, lambda uow: uow.holdings.delete_override("acme", "calls")) is False
    assert run(store, lambda uow: uow.holdings.load("acme", catalog())).overrides == {}


# ---------------------------------------------------------------- idempotency records


def test_an_outcome_is_found_under_its_customer_route_and_key(store: ContractStore) -> None:
    outcome = StoredOutcome(b"fp", b'{"ok":true}')
    run(store, lambda uow: uow.outcomes.save("acme", "reservations", "k1", outcome, T0))
    assert run(store, lambda uow: uow.outcomes.find("acme", "reservations", "k1")) == outcome
    for other in (
        ("umbrella", "reservations", "k1"),
        ("acme", "usage", "k1"),
        ("acme", "reservations", "k2"),
    ):
        assert run(store, lambda uow, key=other: uow.outcomes.find(*key)) is None  # type: ignore[misc]


def test_a_second_outcome_under_one_key_fails_its_job_and_keeps_the_first(
    store: ContractStore,
) -> None:
    first, second = StoredOutcome(b"fp1", b"1"), StoredOutcome(b"fp2", b"2")
    run(store, lambda uow: uow.outcomes.save("acme", "reservations", "k", first, T0))
    with pytest.raises(Exception):  # noqa: B017, PT011 - each adapter's own integrity error
        run(store, lambda uow: uow.outcomes.save("acme", "reservations", "k", second, at(1)))
    assert run(store, lambda uow: uow.outcomes.find("acme", "reservations", "k")) == first


def test_usage_records_are_pruned_oldest_first_and_every_other_route_kept(
    store: ContractStore,
) -> None:
    outcome = StoredOutcome(b"fp", b"{}")
    # Ahead of the wall clock: the stores prune usage records older than a week by it.
    base = datetime.now(UTC) + timedelta(days=30)

    def at(days: int) -> datetime:
        return base + timedelta(days=days)

    def save_all(uow: UnitOfWork) -> None:
        for day in (3, 1, 2, 5):  # not in age order
            uow.outcomes.save("acme", "usage", f"u{day}", outcome, at(day))
        uow.outcomes.save("umbrella", "usage", "u0", outcome, at(0))
        for route in ("credits/tokens/debits", "credits/tokens/grants", "reservations"):
            uow.outcomes.save("acme", route, "old", outcome, at(0))

    def usage_keys(uow: UnitOfWork) -> list[str]:
        keys = [("umbrella", "u0")] + [("acme", f"u{day}") for day in (1, 2, 3, 5)]
        return [key for customer, key in keys if uow.outcomes.find(customer, "usage", key)]

    run(store, save_all)
    assert run(store, lambda uow: uow.outcomes.prune_usage(at(0), 10)) == 0  # none before T0
    assert run(store, lambda uow: uow.outcomes.prune_usage(at(4), 2)) == 2  # at most the limit
    assert run(store, usage_keys) == ["u2", "u3", "u5"]  # the oldest two went: u0, then u1
    assert run(store, lambda uow: uow.outcomes.prune_usage(at(4), 10)) == 2
    assert run(store, usage_keys) == ["u5"]
    for route in ("credits/tokens/debits", "credits/tokens/grants", "reservations"):
        kept = run(store, lambda uow, r=route: uow.outcomes.find("acme", r, "old"))  # type: ignore[misc]
        assert kept == outcome, route
    # A key pruned is free again: a report reusing it is recorded as a new one.
    run(store, lambda uow: uow.outcomes.save("acme", "usage", "u1", outcome, at(6)))


# ---------------------------------------------------------------- API keys


def test_a_key_is_found_by_id_and_by_hash(store: ContractStore) -> None:
    key = api_key("key_1", scope=Scope.CLIENT, customer="acme")
    run(store, lambda uow: uow.keys.save(key))
    assert run(store, lambda uow: uow.keys.get("key_1")) == key
    assert run(store, lambda uow: uow.keys.find_by_hash("hash-of-key_1")) == key
    assert run(store, lambda uow: uow.keys.get("key_2")) is None
    assert run(store, lambda uow: uow.keys.find_by_hash("nothing")) is None


def test_a_key_update_changes_name_scope_hash_and_revocation_only(store: ContractStore) -> None:
    key = api_key("key_1", customer="acme")
    run(store, lambda uow: uow.keys.save(key))
    changed = replace(
        key,
        name="renamed",
        scope=Scope.ADMIN,
        key_hash="new-hash",
        revoked_at=at(1),
        customer="umbrella",
        created_at=at(1),
    )
    run(store, lambda uow: uow.keys.save(changed))
    expected = replace(changed, customer="acme", created_at=T0)
    assert run(store, lambda uow: uow.keys.get("key_1")) == expected
    assert run(store, lambda uow: uow.keys.find_by_hash("new-hash")) == expected
    assert run(store, lambda uow: uow.keys.find_by_hash("hash-of-key_1")) is None


def test_a_key_hash_belongs_to_one_key(store: ContractStore) -> None:
    run(store, lambda uow: uow.keys.save(api_key("key_1")))
    with pytest.raises(Exception):  # noqa: B017, PT011 - each adapter's own integrity error
        run(store, lambda uow: uow.keys.save(api_key("key_2", key_hash="hash-of-key_1")))
    assert run(store, lambda uow: uow.keys.get("key_2")) is None
    found = run(store, lambda uow: uow.keys.find_by_hash("hash-of-key_1"))
    assert found is not None
    assert found.id == "key_1"


def test_keys_page_in_creation_order(store: ContractStore) -> None:
    ids = [f"key_{n}" for n in (5, 1, 4, 2, 3)]
    run(store, lambda uow: [uow.keys.save(api_key(key_id)) for key_id in ids])
    run(store, lambda uow: uow.keys.save(api_key("key_4", revoked_at=at(1))))
    first = run(store, lambda uow: uow.keys.list(None, 2))
    second = run(store, lambda uow: uow.keys.list(first.next_cursor, 2))
    third = run(store, lambda uow: uow.keys.list(second.next_cursor, 2))
    assert [k.id for page in (first, second, third) for k in page.items] == ids
    assert [page.next_cursor is None for page in (first, second, third)] == [False, False, True]


# ---------------------------------------------------------------- reservations


def test_a_reservation_round_trips(store: ContractStore) -> None:
    held = reservation(
        "res_1", entity="agent", entity_path=("agent", "team"), currency="credits", credits=40
    )
    run(store, lambda uow: save_reservations(uow, held))
    assert run(store, lambda uow: uow.reservations.get("res_1")) == held
    assert run(store, lambda uow: uow.reservations.get("res_2")) is None


def test_live_reservations_are_the_customers_unended_unexpired_in_creation_order(
    store: ContractStore,
) -> None:
    def save(uow: UnitOfWork) -> None:
        save_reservations(
            uow,
            reservation("res_b", expires_at=at(hours=2)),
            reservation("res_a", expires_at=at(hours=1)),
            reservation("res_c", expires_at=at(hours=3)),
            reservation("res_x", "umbrella"),
        )
        ended = reservation(
            "res_c",
            expires_at=at(hours=3),
            ended_at=at(hours=0.5),
            ended_as=ReservationStatus.RELEASED,
        )
        uow.reservations.save(ended)

    run(store, save)

    def live(hours: float) -> list[str]:
        found = run(store, lambda uow: uow.reservations.live("acme", at(hours=hours)))
        return [r.id for r in found]

    assert live(0) == ["res_b", "res_a"]
    assert live(1) == ["res_b"]  # a hold ends at its expiry instant
    assert live(2) == []


def test_a_reservation_update_ends_it_and_changes_nothing_else(store: ContractStore) -> None:
    held = reservation("res_1", amount=5, entity_path=("agent",), entity="agent")
    run(store, lambda uow: save_reservations(uow, held))
    ended = replace(
        held,
        amount=99,
        expires_at=at(5),
        ended_at=at(hours=0.25),
        ended_as=ReservationStatus.COMMITTED,
        committed_amount=3,
    )
    run(store, lambda uow: uow.reservations.save(ended))
    expected = replace(
        held, ended_at=at(hours=0.25), ended_as=ReservationStatus.COMMITTED, committed_amount=3
    )
    assert run(store, lambda uow: uow.reservations.get("res_1")) == expected


# ---------------------------------------------------------------- entities and budgets


def test_an_entity_is_read_by_id_and_updated_in_place(store: ContractStore) -> None:
    def save(uow: UnitOfWork) -> None:
        for found in (entity("org"), entity("team", "org"), entity("agent", "team")):
            uow.entities.save("acme", found)
        uow.entities.save("umbrella", entity("other"))

    run(store, save)
    moved = entity("team", None, kind="squad", name="Squad", created_at=at(3))
    run(store, lambda uow: uow.entities.save("acme", moved))
    assert run(store, lambda uow: uow.entities.get("acme", "team")) == replace(moved, created_at=T0)
    assert run(store, lambda uow: uow.entities.get("acme", "other")) is None
    assert run(store, lambda uow: uow.entities.get("nobody", "team")) is None


def test_a_path_is_the_entity_and_its_ancestors_nearest_first(store: ContractStore) -> None:
    def save(uow: UnitOfWork) -> None:
        for found in (entity("org"), entity("team", "org"), entity("agent", "team")):
            uow.entities.save("acme", found)
        uow.entities.save("umbrella", entity("team"))  # same ids, another customer
        uow.entities.save("umbrella", entity("agent", "team"))

    run(store, save)
    path = run(store, lambda uow: uow.entities.path("acme", "agent"))
    assert [(e.id, e.parent) for e in path] == [("agent", "team"), ("team", "org"), ("org", None)]
    assert [e.id for e in run(store, lambda uow: uow.entities.path("umbrella", "agent"))] == [
        "agent",
        "team",
    ]
    assert run(store, lambda uow: uow.entities.path("acme", "nobody")) == []
    # After a move, the stored tree answers the new path.
    run(store, lambda uow: uow.entities.save("acme", entity("team")))
    assert [e.id for e in run(store, lambda uow: uow.entities.path("acme", "agent"))] == [
        "agent",
        "team",
    ]


def test_children_and_height_read_below_an_entity(store: ContractStore) -> None:
    def save(uow: UnitOfWork) -> None:
        uow.entities.save("acme", entity("org"))
        for name in ("b", "a", "c"):
            uow.entities.save("acme", entity(name, "org"))
        uow.entities.save("acme", entity("deep", "a"))
        uow.entities.save("umbrella", entity("stranger", "org"))

    run(store, save)
    assert run(store, lambda uow: uow.entities.children("acme", "org")) == ["b", "a", "c"]
    assert run(store, lambda uow: uow.entities.children("acme", "deep")) == []
    assert run(store, lambda uow: uow.entities.height("acme", "org")) == 3
    assert run(store, lambda uow: uow.entities.height("acme", "a")) == 2
    assert run(store, lambda uow: uow.entities.height("acme", "deep")) == 1


def test_height_is_counted_up_to_one_level_past_the_deepest_tree(store: ContractStore) -> None:
    def save(uow: UnitOfWork) -> None:
        uow.entities.save("acme", entity("e0"))
        for n in range(1, MAX_ENTITY_DEPTH + 5):
            uow.entities.save("acme", entity(f"e{n}", f"e{n - 1}"))

    run(store, save)
    assert run(store, lambda uow: uow.entities.height("acme", "e0")) == MAX_ENTITY_DEPTH + 1
    assert len(run(store, lambda uow: uow.entities.path("acme", "e20"))) == MAX_ENTITY_DEPTH + 1


def test_deleting_an_entity_deletes_its_budgets_only(store: ContractStore) -> None:
    def save(uow: UnitOfWork) -> None:
        uow.entities.save("acme", entity("team"))
        uow.entities.save("acme", entity("agent", "team"))
        uow.budgets.save("acme", budget("team"))
        uow.budgets.save("acme", budget("agent"))
        uow.budgets.save("acme", budget("agent", "credits", kind=BudgetKind.CURRENCY))
        uow.budgets.save("umbrella", budget("agent"))

    run(store, save)
    run(store, lambda uow: uow.entities.delete("acme", "agent"))
    assert run(store, lambda uow: uow.entities.get("acme", "agent")) is None
    assert run(store, lambda uow: uow.entities.children("acme", "team")) == []
    both = ["team", "agent"]
    assert [b.entity for b in run(store, lambda uow: uow.budgets.of_entities("acme", both))] == [
        "team"
    ]
    assert [
        b.entity for b in run(store, lambda uow: uow.budgets.of_entities("umbrella", both))
    ] == ["agent"]
    run(store, lambda uow: uow.entities.delete("acme", "agent"))  # gone already: nothing


def test_budgets_read_in_creation_order_and_an_update_changes_limit_reset_enforcement(
    store: ContractStore,
) -> None:
    def save(uow: UnitOfWork) -> None:
        uow.budgets.save("acme", budget("team", "calls"))
        uow.budgets.save("acme", budget("agent", "credits", kind=BudgetKind.CURRENCY))
        uow.budgets.save("acme", budget("team", "tokens"))

    run(store, save)
    changed = budget(
        "team",
        "calls",
        kind=BudgetKind.CURRENCY,
        limit=5,
        reset=ResetPeriod.MONTH,
        enforcement=Enforcement.SOFT,
        created_at=at(9),
    )
    run(store, lambda uow: uow.budgets.save("acme", changed))
    loaded = run(store, lambda uow: uow.budgets.of_entities("acme", ["agent", "team"]))
    assert [(b.entity, b.target) for b in loaded] == [
        ("team", "calls"),
        ("agent", "credits"),
        ("team", "tokens"),
    ]
    assert loaded[0] == replace(changed, kind=BudgetKind.FEATURE, created_at=T0)
    assert run(store, lambda uow: uow.budgets.get("acme", "team", "calls")) == loaded[0]
    assert run(store, lambda uow: uow.budgets.get("acme", "agent", "calls")) is None
    assert [
        b.target for b in run(store, lambda uow: uow.budgets.of_entities("acme", ["team"]))
    ] == [
        "calls",
        "tokens",
    ]
    assert run(store, lambda uow: uow.budgets.of_entities("acme", [])) == []


def test_a_budget_is_deleted_once(store: ContractStore) -> None:
    run(store, lambda uow: uow.budgets.save("acme", budget("team")))
    assert run(store, lambda uow: uow.budgets.delete("acme", "team", "calls")) is True
    assert run(store, lambda uow: uow.budgets.delete("acme", "team", "calls")) is False
    assert run(store, lambda uow: uow.budgets.delete("acme", "team", "tokens")) is False
    assert run(store, lambda uow: uow.budgets.of_entities("acme", ["team"])) == []
    run(store, lambda uow: uow.budgets.save("acme", budget("team")))  # made again
    assert len(run(store, lambda uow: uow.budgets.of_entities("acme", ["team"]))) == 1
