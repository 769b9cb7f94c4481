"""The contract of what catalog versions store: a subscription's history of plan versions (its
first version and its moves, made or waiting) and its add-on entries' histories; the live
subscriptions of one plan or one product, of every customer; and a catalog object's stored
document, read back as written."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from allotment.domain.holdings import AddonQuantity, Move, Subscription, Versions
from allotment.service.ports import UnitOfWork
from tests.contract.kit import T0, ContractStore, at, catalog, run, subscription

MICRO = timedelta(microseconds=1)

# ---------------------------------------------------------------- subscriptions' versions


def test_a_subscription_round_trips_its_versions_and_moves(store: ContractStore) -> None:
    plan_history = Versions(
        3,
        (
            Move(4, at(days=-300) + MICRO),
            Move(2, at(days=-20), mid_period=True),
            Move(1, at(days=-20)),  # two moves at one instant: both kept, in their order
            Move(5, at(days=31) + MICRO),
        ),
    )
    extra_history = Versions(
        4, (Move(5, at(days=1), mid_period=True), Move(6, at(days=10, seconds=1)))
    )
    sub = subscription(
        "sub_1",
        plan_versions=plan_history,
        addons=(
            AddonQuantity("extra", 2, extra_history),
            AddonQuantity("seats", 1, Versions(2)),
            AddonQuantity("boost", 7),
        ),
    )
    run(store, lambda uow: uow.holdings.save_subscription(sub))
    stored = run(store, lambda uow: uow.holdings.get_subscription("acme", "sub_1"))
    assert stored == sub
    assert stored is not None
    assert stored.plan_versions == plan_history
    assert [a.versions for a in stored.addons] == [extra_history, Versions(2), Versions(1)]
    loaded = run(store, lambda uow: uow.holdings.load("acme", catalog()))
    assert list(loaded.subscriptions) == [sub]
    listed = run(store, lambda uow: uow.holdings.list_subscriptions("acme", None, 10))
    assert list(listed.items) == [sub]


def test_a_subscription_without_a_move_reads_none(store: ContractStore) -> None:
    sub = subscription("sub_1")
    run(store, lambda uow: uow.holdings.save_subscription(sub))
    stored = run(store, lambda uow: uow.holdings.get_subscription("acme", "sub_1"))
    assert stored is not None
    assert stored.plan_versions == Versions(1, ())
    assert [a.versions for a in stored.addons] == [Versions(1, ())]


def test_an_update_changes_the_versions_and_moves(store: ContractStore) -> None:
    sub = subscription("sub_1", addons=(AddonQuantity("extra", 2),))
    run(store, lambda uow: uow.holdings.save_subscription(sub))
    waiting = replace(
        sub,
        plan_versions=Versions(1, (Move(2, at(days=30)),)),
        addons=(AddonQuantity("extra", 2, Versions(1, (Move(3, at(days=5)),))),),
    )
    run(store, lambda uow: uow.holdings.save_subscription(waiting))
    assert run(store, lambda uow: uow.holdings.get_subscription("acme", "sub_1")) == waiting
    # Another move after the first: the history grows.
    longer = replace(
        waiting,
        plan_versions=Versions(1, (Move(2, at(days=30)), Move(3, at(days=40)))),
        addons=(
            AddonQuantity("extra", 2, Versions(1, (Move(3, at(days=5)), Move(1, at(days=6))))),
        ),
    )
    run(store, lambda uow: uow.holdings.save_subscription(longer))
    assert run(store, lambda uow: uow.holdings.get_subscription("acme", "sub_1")) == longer
    # Folded: the history shrinks, its first version changes.
    folded = replace(
        longer,
        plan_versions=Versions(2, (Move(4, at(days=400)),)),
        addons=(AddonQuantity("extra", 2, Versions(3)),),
    )
    run(store, lambda uow: uow.holdings.save_subscription(folded))
    assert run(store, lambda uow: uow.holdings.get_subscription("acme", "sub_1")) == folded
    # And down to no move at all.
    plain = replace(folded, plan_versions=Versions(4))
    run(store, lambda uow: uow.holdings.save_subscription(plain))
    assert run(store, lambda uow: uow.holdings.get_subscription("acme", "sub_1")) == plain
    back = replace(plain, plan_versions=Versions(4, (Move(1, at(days=60)),)))
    run(store, lambda uow: uow.holdings.save_subscription(back))
    assert run(store, lambda uow: uow.holdings.get_subscription("acme", "sub_1")) == back
    # What an update may not change stays as it was made.
    moved_plan = replace(back, plan="team", anchor_at=at(days=1), plan_versions=Versions(9))
    run(store, lambda uow: uow.holdings.save_subscription(moved_plan))
    assert run(store, lambda uow: uow.holdings.get_subscription("acme", "sub_1")) == replace(
        back, plan_versions=Versions(9)
    )


# ---------------------------------------------------------------- live subscriptions


NOW = at(days=10)


def _fleet() -> list[Subscription]:
    """Subscriptions of three customers on two plans of coder and one of docs, some over."""
    return [
        subscription("sub_z", "umbrella", plan="starter"),
        subscription("sub_a", "acme", plan="starter", ends_at=at(days=20)),
        subscription("sub_ended", "acme", plan="starter", ends_at=NOW),
        subscription("sub_canceled", "initech", plan="starter", canceled_at=at(days=9)),
        subscription(
            "sub_trial_over", "initech", plan="starter", is_trial=True, trial_ends_at=at(days=3)
        ),
        subscription(
            "sub_trial", "umbrella", plan="starter", is_trial=True, trial_ends_at=at(days=14)
        ),
        subscription("sub_team", "acme", plan="team"),
        subscription("sub_later", "initech", plan="starter", starts_at=at(days=40)),
        subscription("sub_docs", "acme", product="docs", plan="reader"),
        subscription("sub_cancel_later", "umbrella", plan="team", canceled_at=at(days=11)),
        subscription("sub_just_over", "initech", plan="team", ends_at=NOW - MICRO),
        subscription(
            "sub_m",
            "acme",
            plan="starter",
            plan_versions=Versions(1, (Move(3, at(days=2)), Move(2, at(days=30)))),
        ),
    ]


def _save_fleet(store: ContractStore) -> list[Subscription]:
    fleet = _fleet()

    def save(uow: UnitOfWork) -> None:
        for sub in fleet:
            uow.holdings.save_subscription(sub)

    run(store, save)
    return fleet


def test_live_on_plan_reads_that_plans_subscriptions_not_over_oldest_first(
    store: ContractStore,
) -> None:
    fleet = {s.id: s for s in _save_fleet(store)}
    # An update does not move a subscription in the order.
    changed = replace(fleet["sub_z"], plan_versions=Versions(3, (Move(1, at(days=5)),)))
    run(store, lambda uow: uow.holdings.save_subscription(changed))
    fleet["sub_z"] = changed
    live = run(store, lambda uow: uow.holdings.live_on_plan("starter", NOW))
    assert [s.id for s in live] == ["sub_z", "sub_a", "sub_trial", "sub_later", "sub_m"]
    assert live == [fleet[s.id] for s in live]
    team = run(store, lambda uow: uow.holdings.live_on_plan("team", NOW))
    assert [s.id for s in team] == ["sub_team", "sub_cancel_later"]
    assert run(store, lambda uow: uow.holdings.live_on_plan("nothing", NOW)) == []


def test_live_on_plan_follows_now(store: ContractStore) -> None:
    _save_fleet(store)
    early = run(store, lambda uow: uow.holdings.live_on_plan("starter", at(days=1)))
    assert [s.id for s in early] == [
        "sub_z",
        "sub_a",
        "sub_ended",
        "sub_canceled",
        "sub_trial_over",
        "sub_trial",
        "sub_later",
        "sub_m",
    ]
    # The instant a subscription ends, it is over; a microsecond before, it is not.
    just_before = run(store, lambda uow: uow.holdings.live_on_plan("starter", at(days=9) - MICRO))
    assert "sub_canceled" in [s.id for s in just_before]
    at_cancel = run(store, lambda uow: uow.holdings.live_on_plan("starter", at(days=9)))
    assert "sub_canceled" not in [s.id for s in at_cancel]
    late = run(store, lambda uow: uow.holdings.live_on_plan("starter", at(days=50)))
    assert [s.id for s in late] == ["sub_z", "sub_later", "sub_m"]


def test_live_in_product_reads_every_plan_of_the_product(store: ContractStore) -> None:
    _save_fleet(store)
    live = run(store, lambda uow: uow.holdings.live_in_product("coder", NOW))
    assert [s.id for s in live] == [
        "sub_z",
        "sub_a",
        "sub_trial",
        "sub_team",
        "sub_later",
        "sub_cancel_later",
        "sub_m",
    ]
    docs = run(store, lambda uow: uow.holdings.live_in_product("docs", NOW))
    assert [s.id for s in docs] == ["sub_docs"]
    assert run(store, lambda uow: uow.holdings.live_in_product("nothing", NOW)) == []
    after = run(store, lambda uow: uow.holdings.live_in_product("coder", at(days=12)))
    assert [s.id for s in after] == [
        "sub_z",
        "sub_a",
        "sub_trial",
        "sub_team",
        "sub_later",
        "sub_m",
    ]


def test_live_subscriptions_read_what_the_job_wrote(store: ContractStore) -> None:
    def write_then_read(uow: UnitOfWork) -> list[str]:
        uow.holdings.save_subscription(subscription("sub_1", "acme"))
        uow.holdings.save_subscription(subscription("sub_2", "umbrella", ends_at=at(days=1)))
        return [s.id for s in uow.holdings.live_on_plan("starter", T0)]

    assert run(store, write_then_read) == ["sub_1", "sub_2"]


# ---------------------------------------------------------------- stored documents


def test_a_stored_document_reads_back_exactly_as_it_was_written(store: ContractStore) -> None:
    document = (
        b'{"status": "active", "versions": [{"version": 1, "published_at": 1772442000000000,'
        b' "parent_version": null, "definition": {"product": "coder", "name": "Caf\xc3\xa9",'
        b' "entitlements": {"calls": {"limit": 0.000001}, "seats": {"value": 999999999999.999999}'
        b"}}}]}"
    )
    run(store, lambda uow: uow.catalog.save_object("plan", "team", document, T0))
    assert run(store, lambda uow: uow.catalog.stored_document("plan", "team")) == document
    assert run(store, lambda uow: uow.catalog.stored_document("addon", "team")) is None
    assert run(store, lambda uow: uow.catalog.stored_document("plan", "other")) is None
    feature = b'{"name": "Calls", "kind": "metered"}'
    run(store, lambda uow: uow.catalog.save_object("feature", "calls", feature, T0))
    assert run(store, lambda uow: uow.catalog.stored_document("feature", "calls")) == feature


def test_a_stored_document_reads_the_last_write(store: ContractStore) -> None:
    first = b'{"status": "active", "versions": []}'
    second = b'{"status": "archived", "versions": []}'
    run(store, lambda uow: uow.catalog.save_object("addon", "boost", first, T0))
    run(store, lambda uow: uow.catalog.save_object("addon", "boost", second, at(days=1)))
    assert run(store, lambda uow: uow.catalog.stored_document("addon", "boost")) == second

    def write_then_read(uow: UnitOfWork) -> tuple[bytes | None, bytes | None]:
        before = uow.catalog.stored_document("addon", "pack")
        uow.catalog.save_object("addon", "pack", first, T0)
        return before, uow.catalog.stored_document("addon", "pack")

    assert run(store, write_then_read) == (None, first)
