"""The change log is enough to follow the service: after any sequence of operations,

- replaying the log from empty through the projector gives the live catalog and keys;
- a second process that only follows the log holds, for every customer it still caches, the
  same usage windows, budget windows, holds and pool figures as the process that wrote;
- every figure the writing process caches equals what the store's truth gives now.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from allotment.api.services import Services
from allotment.config import Settings
from allotment.domain.budgets import Budget
from allotment.domain.catalog import CreditCategory, Enforcement
from allotment.domain.changes import LoggedChange
from allotment.domain.customers import Scope
from allotment.domain.errors import AllotmentError
from allotment.domain.periods import ResetPeriod
from allotment.domain.quantities import MICROS_PER_UNIT
from allotment.domain.timefmt import from_epoch_micros
from allotment.service.catalog import CatalogKind
from allotment.service.credits import DebitRequest, GrantRequest
from allotment.service.customers import SubscriptionRequest
from allotment.service.projector import CacheState, apply
from allotment.service.reservations import ReservationRequest
from allotment.service.snapshots import CustomerSnapshot
from allotment.service.usage import UsageReport

CUSTOMERS = ("acme", "umbrella")
UNIT = MICROS_PER_UNIT
_databases = itertools.count()

customer = st.sampled_from(CUSTOMERS)
entity = st.sampled_from([None, "agent", "team"])
operation = st.one_of(
    st.tuples(st.just("usage"), customer, st.integers(0, 4), entity, st.booleans()),
    st.tuples(st.just("tokens"), customer, st.integers(1, 6), entity),
    st.tuples(st.just("debit"), customer, st.integers(1, 30), entity),
    st.tuples(st.just("grant"), customer, st.integers(10, 100)),
    st.tuples(st.just("reserve"), customer, st.integers(1, 3), entity),
    st.tuples(st.just("end_hold"), st.booleans(), st.integers(0, 3)),
    st.tuples(st.just("check"), customer, st.sampled_from(["calls", "tokens"]), entity),
    st.tuples(st.just("plan"), st.integers(5, 50)),
    st.tuples(st.just("override"), customer, st.integers(1, 40)),
    st.tuples(st.just("budget"), customer, st.integers(1, 20)),
    st.tuples(st.just("key"), st.booleans()),
    st.tuples(st.just("advance"), st.integers(60, 20 * 24 * 3600)),
)


def _plan(limit: int) -> dict[str, Any]:
    return {
        "product": "app",
        "name": "Plan",
        "entitlements": {
            "calls": {"limit": limit, "reset": "day", "enforcement": "hard"},
            "tokens": {
                "limit": None,
                "credit_cost": {"currency": "credits", "per_unit": Decimal(1)},
            },
        },
    }


async def _set_up(services: Services) -> None:
    await services.catalog.put(CatalogKind.CURRENCY, "credits", {"name": "Credits"})
    await services.catalog.put(CatalogKind.FEATURE, "calls", {"name": "C", "kind": "metered"})
    await services.catalog.put(CatalogKind.FEATURE, "tokens", {"name": "T", "kind": "metered"})
    await services.catalog.put(CatalogKind.PRODUCT, "app", {"name": "App"})
    await services.catalog.put(CatalogKind.PLAN, "plan", _plan(10))
    for name in CUSTOMERS:
        await services.customers.put_customer(name, name=None, metadata=None, billing_id=None)
        await services.customers.subscribe(name, SubscriptionRequest(plan="plan"))
        await services.entities.put(name, "team", parent=None, kind=None, name=None)
        await services.entities.put(name, "agent", parent="team", kind=None, name=None)
        await services.budgets.put(
            name, "team", "credits", limit=40 * UNIT, reset=ResetPeriod.DAY,
            enforcement=Enforcement.HARD,
        )  # fmt: skip
        start = GrantRequest(200 * UNIT, CreditCategory.PAID, "start")
        await services.credits.grant(name, "credits", start)


async def _warm(services: Services) -> None:
    for name in CUSTOMERS:
        for feature in ("calls", "tokens"):
            for on in (None, "agent"):
                await services.entitlements.check(name, feature, on, None)


async def _run(services: Services, operations: list[tuple[Any, ...]]) -> None:
    counter = itertools.count()
    holds: list[str] = []
    keys: list[str] = []
    for op in operations:
        key = f"k{next(counter)}"
        # A refused request changes nothing, which the comparisons also check.
        with contextlib.suppress(AllotmentError):
            await _one(services, op, key, holds, keys)


async def _one(
    services: Services, op: tuple[Any, ...], key: str, holds: list[str], keys: list[str]
) -> None:
    match op:
        case ("usage", name, amount, on, enforce):
            await services.usage.report(
                UsageReport(name, "calls", amount * UNIT, key, entity=on, enforce=enforce)
            )
        case ("tokens", name, amount, on):
            await services.usage.report(
                UsageReport(name, "tokens", amount * UNIT, key, entity=on, enforce=True)
            )
        case ("debit", name, amount, on):
            await services.credits.debit(name, "credits", DebitRequest(amount * UNIT, key, on))
        case ("grant", name, amount):
            request = GrantRequest(amount * UNIT, CreditCategory.PAID, key)
            await services.credits.grant(name, "credits", request)
        case ("reserve", name, amount, on):
            answer = await services.reservations.reserve(
                ReservationRequest(name, "calls", amount * UNIT, key, entity=on)
            )
            if answer.granted and answer.id is not None:
                holds.append(answer.id)
        case ("end_hold", commit, amount):
            if holds:
                held = holds.pop(0)
                if commit:
                    await services.reservations.commit(held, amount * UNIT)
                else:
                    await services.reservations.release(held)
        case ("check", name, feature, on):
            await services.entitlements.check(name, feature, on, None)
        case ("plan", limit):
            await services.catalog.put(CatalogKind.PLAN, "plan", _plan(limit))
        case ("override", name, limit):
            await services.customers.put_override(name, "calls", {"limit": limit})
        case ("budget", name, limit):
            await services.budgets.put(
                name, "agent", "calls", limit=limit * UNIT, reset=ResetPeriod.HOUR,
                enforcement=Enforcement.HARD,
            )  # fmt: skip
        case ("key", revoke):
            if revoke and keys:
                await services.keys.revoke(keys.pop(0))
            else:
                created = await services.keys.create(key, Scope.SERVER, None)
                keys.append(created.id)
        case ("advance", seconds):
            assert services.test_clock is not None
            services.test_clock.advance(seconds)


_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def _followed(services: Services) -> int:
    return services.runtime.store.last_seq


def _snapshots(services: Services) -> dict[str, CustomerSnapshot]:
    found = {}
    for name in CUSTOMERS:
        cached = services.runtime.snapshots.lookup(name)
        if isinstance(cached, CustomerSnapshot):
            found[name] = cached
    return found


def _assert_same_figures(writer: CustomerSnapshot, follower: CustomerSnapshot) -> None:
    for key in writer.windows.keys() & follower.windows.keys():
        assert writer.windows[key] == follower.windows[key], key
    for key in writer.budget_windows.keys() & follower.budget_windows.keys():
        assert writer.budget_windows[key] == follower.budget_windows[key], key
    assert writer.holds.keys() == follower.holds.keys()
    for currency in writer.pools.keys() & follower.pools.keys():
        mine, theirs = writer.pools[currency], follower.pools[currency]
        assert (mine.balance, mine.overdraft_limit, mine.valid_until) == (
            theirs.balance,
            theirs.overdraft_limit,
            theirs.valid_until,
        )


def _assert_equals_truth(services: Services, name: str, snapshot: CustomerSnapshot) -> None:
    def read(uow: Any) -> list[tuple[Any, int, int]]:
        differences = []
        for (feature, start, end), used in snapshot.windows.items():
            stored = uow.usage.window_usage(
                name, feature, from_epoch_micros(start), None if end is None else
                from_epoch_micros(end),
            )  # fmt: skip
            differences.append(((feature, start, end), used, stored))
        for key, used in snapshot.budget_windows.items():
            entity, kind, target, start, end = key
            # A window's usage depends on its entity, kind and target only.
            budget = Budget(entity, target, kind, 0, ResetPeriod.HOUR, Enforcement.HARD, _EPOCH)
            stored = uow.budgets.usages(name, [(budget, start, end)])[0]
            differences.append((key, used, stored))
        return differences

    for key, cached, stored in services.runtime.store.run_blocking(read):
        assert cached == stored, key


def _replayed(services: Services) -> CacheState:
    async def every_change() -> list[LoggedChange]:
        found: list[LoggedChange] = []
        while True:
            page = await services.runtime.store.read_log(found[-1].seq if found else 0, 1000)
            if not page:
                return found
            found += page

    logged = asyncio.run(every_change())
    assert [entry.seq for entry in logged] == list(range(1, len(logged) + 1))
    state = CacheState()
    for entry in logged:
        apply(state, entry.change)
    return state


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations=st.lists(operation, min_size=1, max_size=40))
def test_the_log_alone_rebuilds_what_the_writer_caches(
    tmp_path_factory: Any, operations: list[tuple[Any, ...]]
) -> None:
    database: Path = tmp_path_factory.mktemp("replay") / f"db{next(_databases)}.sqlite"
    options = Settings(database_path=database, test_clock=True)
    writer = Services.open(options)
    asyncio.run(_set_up(writer))
    follower = Services.open(options)
    try:
        asyncio.run(_warm(writer))
        asyncio.run(_warm(follower))
        asyncio.run(_run(writer, operations))
        asyncio.run(_warm(writer))
        deadline = time.monotonic() + 10
        while _followed(follower) < _followed(writer):
            assert time.monotonic() < deadline, "the follower did not catch up with the log"
            time.sleep(0.005)

        replayed = _replayed(writer)
        assert replayed.catalog.current == writer.runtime.catalog.current
        assert replayed.keys == writer.runtime.cache.keys
        assert follower.runtime.catalog.current == writer.runtime.catalog.current
        assert follower.runtime.cache.keys == writer.runtime.cache.keys

        written, followed = _snapshots(writer), _snapshots(follower)
        for name, snapshot in written.items():
            _assert_equals_truth(writer, name, snapshot)
            if name in followed:
                _assert_same_figures(snapshot, followed[name])
    finally:
        follower.close()
        writer.close()
