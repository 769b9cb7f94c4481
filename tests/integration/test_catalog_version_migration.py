"""Migration 0012 on a database that already holds plans, add-ons and subscriptions (written as
revision 0011 stored them): each plan and add-on becomes version 1 of itself, published when it
was last written, with every digit of its numbers; every subscription and add-on entry is on
version 1, with no move (``plan_moves`` null); a move written afterwards is stored as
``[[version, epoch_micros], ...]``; and the way down gives back the plain definitions as they
were."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest
import sqlalchemy as sa
from alembic import command

import allotment.bootstrap
from allotment.config import Settings
from allotment.domain.catalog import (
    AddonEntitlement,
    AddonMode,
    BooleanSpec,
    Catalog,
    CreditCategory,
    CreditCost,
    Enforcement,
    MeteredSpec,
    NumericSpec,
    RecurringCredits,
)
from allotment.domain.holdings import AddonQuantity, Move, Subscription, Versions
from allotment.domain.periods import ResetPeriod
from allotment.domain.timefmt import from_epoch_micros
from allotment.service.catalog import history_change
from allotment.service.ports import Store, UnitOfWork
from allotment.storage.migrate import alembic_config, sqlalchemy_url, sqlite_url

encode = msgspec.json.Encoder(decimal_format="number").encode
decode = msgspec.json.Decoder(float_hook=Decimal).decode

CREATED, UPDATED = 1_767_225_600_000_000, 1_769_904_000_123_456  # 2026-01-01, 2026-02-01
WAITING = 1_772_323_200_000_000  # 2026-03-01: a move not reached yet
MICRO, LARGEST = Decimal("0.000001"), Decimal("999999999999.999999")

# What revision 0011 stored: each object's definition, as the catalog's PUT wrote it.
PLAIN: list[tuple[str, str, dict[str, Any], int]] = [
    ("feature", "calls", {"name": "Calls", "kind": "metered", "unit": None}, CREATED),
    ("feature", "seats", {"name": "Seats", "kind": "numeric", "unit": "seat"}, CREATED),
    ("feature", "sso", {"name": "SSO", "kind": "boolean", "unit": None}, CREATED),
    (
        "currency",
        "credits",
        {"name": "Credits", "unit": None, "burn_order": ["priority", "expiry"]},
        CREATED,
    ),
    ("product", "coder", {"name": "Coder"}, CREATED),
    # The child is stored before its parent, as a re-parented older plan would be.
    (
        "plan",
        "team",
        {
            "product": "coder",
            "name": "Team",
            "parent": "starter",
            "trial_days": 14,
            "billing_period": "year",
            "entitlements": {
                "seats": {"value": 10},
                "calls": {
                    "limit": None,
                    "reset": "month",
                    "enforcement": "soft",
                    "credit_cost": {"currency": "credits", "per_unit": MICRO},
                },
            },
            "credits": {},
        },
        UPDATED + 7,
    ),
    (
        "plan",
        "starter",
        {
            "product": "coder",
            "name": "Starter",
            "parent": None,
            "trial_days": None,
            "billing_period": "month",
            "entitlements": {
                "sso": {},
                "calls": {"limit": MICRO, "reset": "day", "enforcement": "hard"},
                "seats": {"value": LARGEST},
            },
            "credits": {
                "credits": {
                    "amount": LARGEST,
                    "every": "month",
                    "category": "promotional",
                    "cost_basis": Decimal("123456.789012"),
                    "overdraft_limit": None,
                }
            },
        },
        UPDATED,
    ),
    (
        "addon",
        "boost",
        {
            "product": "coder",
            "name": "Boost",
            "entitlements": {
                "calls": {
                    "limit": LARGEST,
                    "reset": "month",
                    "enforcement": "hard",
                    "mode": "increment",
                },
                "seats": {"value": Decimal("0.5"), "mode": "override"},
            },
            "credits": {
                "credits": {
                    "amount": MICRO,
                    "every": "week",
                    "category": "paid",
                    "cost_basis": 0,
                    "overdraft_limit": 5,
                }
            },
        },
        UPDATED + 1,
    ),
]
VERSIONED = {(kind, object_id) for kind, object_id, _, _ in PLAIN if kind in ("plan", "addon")}

SUBSCRIPTION = {
    "id": "sub_1",
    "customer": "acme",
    "product": "coder",
    "plan": "team",
    "addons": '[{"id":"boost","quantity":3},{"id":"extra","quantity":1}]',
    "is_trial": False,
    "starts_at": CREATED,
    "trial_ends_at": None,
    "ends_at": None,
    "canceled_at": None,
    "anchor_at": CREATED,
    "created_at": CREATED,
}


def write_0011(url: str) -> None:
    """The database at revision 0011 with a customer, the catalog above and a subscription."""
    command.upgrade(alembic_config(url), "0011")
    engine = sa.create_engine(sqlalchemy_url(url))
    try:
        with engine.begin() as db:
            for kind, object_id, document, updated_at in PLAIN:
                db.execute(
                    sa.text(
                        "INSERT INTO catalog_objects (kind, id, document, created_at, updated_at)"
                        " VALUES (:kind, :id, :document, :created, :updated)"
                    ),
                    {
                        "kind": kind,
                        "id": object_id,
                        "document": encode(document).decode(),
                        "created": CREATED,
                        "updated": updated_at,
                    },
                )
            db.execute(
                sa.text(
                    "INSERT INTO customers (id, name, metadata, billing_id, created_at, updated_at)"
                    " VALUES ('acme', 'Acme', '{}', NULL, :at, :at)"
                ),
                {"at": CREATED},
            )
            columns = ", ".join(SUBSCRIPTION)
            values = ", ".join(f":{column}" for column in SUBSCRIPTION)
            db.execute(
                sa.text(f"INSERT INTO subscriptions ({columns}) VALUES ({values})"), SUBSCRIPTION
            )
            trial = {**SUBSCRIPTION, "id": "sub_2", "plan": "starter", "addons": "[]"}
            db.execute(
                sa.text(f"INSERT INTO subscriptions ({columns}) VALUES ({values})"),
                {**trial, "is_trial": True, "trial_ends_at": UPDATED},
            )
    finally:
        engine.dispose()


def stored_rows(url: str) -> dict[tuple[str, str], str]:
    engine = sa.create_engine(sqlalchemy_url(url))
    try:
        with engine.connect() as db:
            rows = db.execute(sa.text("SELECT kind, id, document FROM catalog_objects")).all()
    finally:
        engine.dispose()
    return {(kind, object_id): str(document) for kind, object_id, document in rows}


def subscription_columns(url: str) -> set[str]:
    engine = sa.create_engine(sqlalchemy_url(url))
    try:
        inspector = sa.inspect(engine)
        columns = {column["name"] for column in inspector.get_columns("subscriptions")}
        indexes = {index["name"] for index in inspector.get_indexes("subscriptions")}
    finally:
        engine.dispose()
    return columns | {f"index:{name}" for name in indexes if name}


def subscription_rows(url: str) -> dict[str, tuple[int, Any, Any]]:
    """Each subscription's ``plan_version``, ``plan_moves`` and ``addons`` as stored (the JSON
    columns decoded)."""
    engine = sa.create_engine(sqlalchemy_url(url))
    try:
        with engine.connect() as db:
            rows = db.execute(
                sa.text("SELECT id, plan_version, plan_moves, addons FROM subscriptions")
            ).all()
    finally:
        engine.dispose()
    return {
        row[0]: (row[1], None if row[2] is None else decode(row[2]), decode(row[3])) for row in rows
    }


def open_store(url: str) -> Store:
    return allotment.bootstrap.open_store(Settings(database_url=url))


def check_upgraded(url: str) -> Catalog:
    """Everything the upgraded database reads: version 1 of each plan and add-on, exactly."""
    store = open_store(url)
    try:
        catalog = store.run_blocking(lambda uow: uow.catalog.load())
        subscription = store.run_blocking(
            lambda uow: uow.holdings.get_subscription("acme", "sub_1")
        )
        trial = store.run_blocking(lambda uow: uow.holdings.get_subscription("acme", "sub_2"))
        live = store.run_blocking(
            lambda uow: uow.holdings.live_on_plan("team", from_epoch_micros(UPDATED))
        )
        in_product = store.run_blocking(
            lambda uow: uow.holdings.live_in_product("coder", from_epoch_micros(CREATED))
        )
        documents = store.run_blocking(
            lambda uow: {key: uow.catalog.stored_document(*key) for key in VERSIONED}
        )
    finally:
        store.close()

    assert list(catalog.plans) == ["team", "starter"]
    starter, team = catalog.plans["starter"], catalog.plans["team"]
    assert (starter.version, starter.parent_version, starter.published_at) == (
        1,
        None,
        from_epoch_micros(UPDATED),
    )
    assert (team.version, team.parent, team.parent_version, team.published_at) == (
        1,
        "starter",
        1,
        from_epoch_micros(UPDATED + 7),
    )
    assert catalog.plan_versions == {"team": (team,), "starter": (starter,)}
    assert dict(starter.entitlements) == {
        "sso": BooleanSpec(),
        "calls": MeteredSpec(1, ResetPeriod.DAY, Enforcement.HARD),
        "seats": NumericSpec(999_999_999_999_999_999),
    }
    assert dict(starter.credits) == {
        "credits": RecurringCredits(
            999_999_999_999_999_999,
            ResetPeriod.MONTH,
            CreditCategory.PROMOTIONAL,
            123_456_789_012,
            None,
        )
    }
    assert starter.billing_period is ResetPeriod.MONTH
    assert (team.trial_days, team.billing_period) == (14, ResetPeriod.YEAR)
    calls = MeteredSpec(None, ResetPeriod.MONTH, Enforcement.SOFT, CreditCost("credits", 1))
    assert catalog.plan_entitlements("team", 1) == {
        "sso": BooleanSpec(),
        "calls": calls,
        "seats": NumericSpec(10_000_000),
    }
    boost = catalog.addons["boost"]
    assert (boost.version, boost.published_at) == (1, from_epoch_micros(UPDATED + 1))
    assert catalog.addon_versions == {"boost": (boost,)}
    assert dict(boost.entitlements) == {
        "calls": AddonEntitlement(MeteredSpec(999_999_999_999_999_999), AddonMode.INCREMENT),
        "seats": AddonEntitlement(NumericSpec(500_000), AddonMode.OVERRIDE),
    }
    assert dict(boost.credits) == {
        "credits": RecurringCredits(1, ResetPeriod.WEEK, CreditCategory.PAID, 0, 5_000_000)
    }
    assert catalog.archived == frozenset()
    assert catalog.features["seats"].unit == "seat"
    assert catalog.currencies["credits"].burn_order == ("priority", "expiry")

    # The stored definitions are the ones written, digit for digit.
    written = {(kind, object_id): document for kind, object_id, document, _ in PLAIN}
    for key, document in documents.items():
        assert document is not None
        history = decode(document)
        assert history["status"] == "active"
        [entry] = history["versions"]
        assert entry["version"] == 1
        assert entry["definition"] == decode(encode(written[key]))
        assert encode(written[key]) in document
    assert b"999999999999.999999" in (documents[("plan", "starter")] or b"")

    assert subscription is not None
    assert (subscription.plan, subscription.plan_versions) == ("team", Versions(1, ()))
    assert subscription.addons == (
        AddonQuantity("boost", 3, Versions(1, ())),
        AddonQuantity("extra", 1, Versions(1, ())),
    )
    assert trial is not None
    assert (trial.is_trial, trial.plan_versions, trial.addons) == (True, Versions(1, ()), ())
    # As stored: version 1 and no move; the add-on entries as 0011 wrote them.
    assert subscription_rows(url) == {
        "sub_1": (1, None, [{"id": "boost", "quantity": 3}, {"id": "extra", "quantity": 1}]),
        "sub_2": (1, None, []),
    }
    assert [s.id for s in live] == ["sub_1"]
    assert [s.id for s in in_product] == ["sub_1", "sub_2"]
    return catalog


def publish_a_second_version(url: str, catalog: Catalog) -> None:
    """After the upgrade: starter publishes version 2 (so team follows with its version 2), the
    subscription has moved to team's version 2 and waits for a move back, and its entry of
    ``extra`` has moved to version 2."""
    starter = catalog.plans["starter"]
    new_entitlements = {**starter.entitlements, "calls": MeteredSpec(7, ResetPeriod.DAY)}
    staged, published = catalog.publish_plans(
        [replace(starter, entitlements=new_entitlements)],
        from_epoch_micros(UPDATED + 100),
    )
    assert [p.id for p in published] == ["starter", "team"]
    moves = (Move(2, from_epoch_micros(UPDATED + 100)), Move(1, from_epoch_micros(WAITING)))
    extra_moves = (Move(2, from_epoch_micros(CREATED + 5)),)
    store = open_store(url)
    try:

        def write(uow: UnitOfWork) -> Subscription:
            for plan in published:
                change = history_change(staged, "plan", plan.id)
                uow.catalog.save_object(
                    "plan", plan.id, encode(change.document), from_epoch_micros(UPDATED + 100)
                )
            held = uow.holdings.get_subscription("acme", "sub_1")
            assert held is not None
            boost, extra = held.addons
            moved = replace(
                held,
                plan_versions=Versions(1, moves),
                addons=(boost, replace(extra, versions=Versions(1, extra_moves))),
            )
            uow.holdings.save_subscription(moved)
            return moved

        moved = store.run_blocking(write)
        reloaded = store.run_blocking(lambda uow: uow.catalog.load())
        stored = store.run_blocking(lambda uow: uow.holdings.get_subscription("acme", "sub_1"))
    finally:
        store.close()
    assert stored == moved
    assert subscription_rows(url)["sub_1"] == (
        1,
        [[2, UPDATED + 100], [1, WAITING]],
        [
            {"id": "boost", "quantity": 3, "version": 1},
            {"id": "extra", "quantity": 1, "version": 1, "moves": [[2, CREATED + 5]]},
        ],
    )
    assert [p.version for p in reloaded.plan_versions["starter"]] == [1, 2]
    assert (
        reloaded.plan_entitlements("team", 1)["calls"]
        == catalog.plan_entitlements("team", 1)["calls"]
    )


def check_downgraded(url: str, before: dict[tuple[str, str], str]) -> None:
    command.downgrade(alembic_config(url), "0011")
    after = stored_rows(url)
    assert after == before
    columns = subscription_columns(url)
    assert not {"plan_version", "plan_moves"} & columns
    assert "index:subscriptions_by_plan" not in columns
    assert "index:subscriptions_by_product" not in columns


def migrate_and_back(url: str) -> None:
    write_0011(url)
    plain = stored_rows(url)
    written = {(kind, object_id): document for kind, object_id, document, _ in PLAIN}
    assert plain[("plan", "starter")] == encode(written[("plan", "starter")]).decode()
    command.upgrade(alembic_config(url), "head")
    columns = subscription_columns(url)
    assert {"plan_version", "plan_moves"} <= columns
    assert not {"pending_version", "pending_at"} & columns
    assert {"index:subscriptions_by_plan", "index:subscriptions_by_product"} <= columns
    check_upgraded(url)
    # Down: every plain definition exactly as it was written, the new columns gone.
    check_downgraded(url, plain)
    # And up again reads the same.
    command.upgrade(alembic_config(url), "head")
    catalog = check_upgraded(url)
    # A plan with a later version goes down as its latest definition.
    publish_a_second_version(url, catalog)
    command.downgrade(alembic_config(url), "0011")
    latest = stored_rows(url)
    starter = decode(latest[("plan", "starter")])
    assert starter["entitlements"]["calls"]["limit"] == Decimal("0.000007")
    assert starter["entitlements"]["seats"]["value"] == LARGEST
    assert latest[("plan", "team")] == plain[("plan", "team")]
    assert latest[("addon", "boost")] == plain[("addon", "boost")]


@pytest.mark.sqlite_file
def test_0012_on_sqlite_keeps_every_definition_and_goes_back(tmp_path: Path) -> None:
    migrate_and_back(sqlite_url(tmp_path / "allotment.db"))


def test_0012_on_postgresql_keeps_every_definition_and_goes_back(postgres_url: str) -> None:
    migrate_and_back(postgres_url)
