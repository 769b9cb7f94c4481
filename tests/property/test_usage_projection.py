"""Counters and cached usage are projections: after any sequence of reports they equal the sum
of the events, whatever the order of deltas, sets, enforcement, backdating and clock moves."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from allotment.api.services import Services
from allotment.config import Settings
from allotment.domain.errors import InvalidRequest
from allotment.domain.quantities import MICROS_PER_UNIT, to_json_number
from allotment.domain.timefmt import to_epoch_micros
from allotment.service.catalog import CatalogKind
from allotment.service.customers import SubscriptionRequest
from allotment.service.usage import UsageBehavior, UsageReport

_customers = itertools.count()

report = st.tuples(
    st.just("report"),
    st.integers(min_value=0, max_value=60),
    st.booleans(),
    st.sampled_from([UsageBehavior.DELTA, UsageBehavior.DELTA, UsageBehavior.SET]),
    st.one_of(st.none(), st.integers(min_value=0, max_value=2 * 86400)),
)
advance = st.tuples(st.just("advance"), st.integers(min_value=1, max_value=2 * 86400))
check = st.tuples(st.just("check"))
operations = st.lists(st.one_of(report, report, advance, check), min_size=1, max_size=25)


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    database: Path = tmp_path_factory.mktemp("projection") / "allotment.db"
    opened = Services.open(Settings(database_path=database, test_clock=True))

    async def seed() -> None:
        await opened.catalog.put(CatalogKind.FEATURE, "calls", {"name": "Calls", "kind": "metered"})
        await opened.catalog.put(CatalogKind.PRODUCT, "api", {"name": "API"})
        await opened.catalog.put(
            CatalogKind.PLAN,
            "daily",
            {
                "product": "api",
                "name": "Daily",
                "entitlements": {"calls": {"limit": 100, "reset": "day"}},
            },
        )

    asyncio.run(seed())
    yield opened
    opened.close()


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=operations)
def test_counters_and_cache_equal_the_sum_of_events(services: Services, steps: list[tuple]) -> None:  # type: ignore[type-arg]
    customer = f"c{next(_customers)}"
    clock = services.test_clock
    assert clock is not None

    async def opened() -> datetime:
        current = await services.entitlements.check(customer, "calls", None, None)
        assert current.usage_period_start is not None
        return datetime.fromisoformat(current.usage_period_start)

    async def run() -> None:
        await services.customers.put_customer(customer, name=None, metadata=None, billing_id=None)
        await services.customers.subscribe(customer, SubscriptionRequest(plan="daily"))
        for index, step in enumerate(steps):
            if step[0] == "advance":
                clock.advance(step[1])
            elif step[0] == "check":
                await services.entitlements.check(customer, "calls", None, None)
            else:
                _, amount, enforce, behavior, back = step
                timestamp = None if back is None else clock.now() - timedelta(seconds=back)
                report = UsageReport(
                    customer=customer,
                    feature="calls",
                    amount=amount * MICROS_PER_UNIT,
                    idempotency_key=f"k{index}",
                    enforce=enforce,
                    behavior=behavior,
                    timestamp=timestamp,
                )
                if enforce and timestamp is not None and timestamp < await opened():
                    # Enforced usage is decided in the current window only.
                    with pytest.raises(InvalidRequest):
                        await services.usage.report(report)
                else:
                    await services.usage.report(report)
        answer = await services.entitlements.check(customer, "calls", None, None)
        assert answer.usage_period_start is not None
        assert answer.usage_period_end is not None
        start = datetime.fromisoformat(answer.usage_period_start)
        end = datetime.fromisoformat(answer.usage_period_end)
        with sqlite3.connect(services.settings.database_path) as db:
            (from_events,) = db.execute(
                "SELECT COALESCE(SUM(amount), 0) FROM usage_events WHERE customer = ?"
                " AND timestamp >= ? AND timestamp < ?",
                (customer, to_epoch_micros(start), to_epoch_micros(end)),
            ).fetchone()
            counters = db.execute(
                "SELECT period_start, period_end, used FROM usage_counters WHERE customer = ?",
                (customer,),
            ).fetchall()
            for window_start, window_end, used in counters:
                (rebuilt,) = db.execute(
                    "SELECT COALESCE(SUM(amount), 0) FROM usage_events WHERE customer = ?"
                    " AND timestamp >= ? AND timestamp < ?",
                    (customer, window_start, window_end),
                ).fetchone()
                assert used == rebuilt
        assert answer.current_usage == to_json_number(from_events)
        snapshot = services.runtime.snapshots.lookup(customer)
        assert snapshot is not None
        assert not isinstance(snapshot, bool)
        for (_, window_start, window_end), used in snapshot.windows.items():
            assert (window_start, window_end, used) in counters

    asyncio.run(run())
