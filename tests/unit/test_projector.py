"""The projector: each change does what it says to the cached state, and costs what it touches."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

from allotment.domain.budgets import BudgetKind
from allotment.domain.changes import (
    ApiKeyChanged,
    CatalogChanged,
    CreditsChanged,
    CustomerChanged,
    Spend,
    UsageRecorded,
)
from allotment.domain.customers import ApiKey, Customer, Scope
from allotment.domain.holdings import Holdings
from allotment.domain.timefmt import to_epoch_micros
from allotment.service.projector import CacheState, SnapshotLoaded, apply
from allotment.service.snapshots import CustomerSnapshot

AT = datetime(2026, 12, 6, 12, tzinfo=UTC)
MICROS = to_epoch_micros(AT)
HOUR = 3_600_000_000


class CountingDict(dict[Any, Any]):
    """A dict that counts every read, write and walk made through it."""

    def __init__(self) -> None:
        super().__init__()
        self.touched: Counter[str] = Counter()

    def __getitem__(self, key: Any) -> Any:
        self.touched["read"] += 1
        return super().__getitem__(key)

    def __setitem__(self, key: Any, value: Any) -> None:
        self.touched["write"] += 1
        super().__setitem__(key, value)

    def __iter__(self) -> Any:
        self.touched["walk"] += 1
        return super().__iter__()

    def items(self) -> Any:
        self.touched["walk"] += 1
        return super().items()

    def get(self, key: Any, default: Any = None) -> Any:
        self.touched["read"] += 1
        return super().get(key, default)


def _state_with_a_large_snapshot() -> tuple[CacheState, CustomerSnapshot]:
    state = CacheState()
    snapshot = CustomerSnapshot(Customer("acme", None), Holdings())
    apply(state, SnapshotLoaded("acme", snapshot))
    cache = state.snapshots
    for n in range(2_000):
        cache.install_window("acme", (f"feature-{n}", MICROS - HOUR, MICROS + HOUR), n)
        key = (f"agent-{n}", BudgetKind.FEATURE, "calls", MICROS - HOUR, MICROS + HOUR)
        cache.install_budget_window("acme", key, n)
    cache.install_window("acme", ("calls", MICROS - HOUR, MICROS + HOUR), 5)
    key = ("team", BudgetKind.FEATURE, "calls", MICROS - HOUR, MICROS + HOUR)
    cache.install_budget_window("acme", key, 7)
    return state, snapshot


def test_a_usage_change_touches_only_its_feature_and_its_path() -> None:
    state, snapshot = _state_with_a_large_snapshot()
    windows, budget_windows = CountingDict(), CountingDict()
    windows.update(snapshot.windows)
    budget_windows.update(snapshot.budget_windows)
    snapshot.windows, snapshot.budget_windows = windows, budget_windows

    apply(state, UsageRecorded("acme", "calls", "agent-9", 3, AT, ("agent-9", "team")))

    assert windows[("calls", MICROS - HOUR, MICROS + HOUR)] == 8
    assert budget_windows[("team", BudgetKind.FEATURE, "calls", MICROS - HOUR, MICROS + HOUR)] == 10
    # One window of the feature; one budget window per entity on the path that has one.
    assert windows.touched["walk"] == budget_windows.touched["walk"] == 0
    assert windows.touched["write"] == 1
    assert budget_windows.touched["write"] == 2  # agent-9's window and team's
    assert (
        budget_windows[("agent-9", BudgetKind.FEATURE, "calls", MICROS - HOUR, MICROS + HOUR)] == 12
    )


def test_usage_outside_a_cached_window_changes_nothing() -> None:
    state, snapshot = _state_with_a_large_snapshot()
    later = datetime(2026, 12, 7, tzinfo=UTC)
    apply(state, UsageRecorded("acme", "calls", None, 3, later, ()))
    assert snapshot.windows[("calls", MICROS - HOUR, MICROS + HOUR)] == 5


def test_credits_change_installs_the_pool_and_counts_spend_for_currency_budgets() -> None:
    state, snapshot = _state_with_a_large_snapshot()
    key = ("team", BudgetKind.CURRENCY, "credits", MICROS - HOUR, MICROS + HOUR)
    state.snapshots.install_budget_window("acme", key, 0)
    spend = Spend(("agent-1", "team"), AT, 4)
    apply(state, CreditsChanged("acme", "credits", 96, 0, None, (spend,)))
    assert snapshot.pools["credits"].balance == 96
    assert snapshot.pools["credits"].catalog is state.catalog.current
    assert snapshot.budget_windows[key] == 4


def test_a_customer_change_drops_only_that_customer() -> None:
    state, _ = _state_with_a_large_snapshot()
    other = CustomerSnapshot(Customer("umbrella", None), Holdings())
    apply(state, SnapshotLoaded("umbrella", other))
    apply(state, CustomerChanged("acme"))
    assert state.snapshots.lookup("acme") is False
    assert state.snapshots.lookup("umbrella") is other


def test_a_revoked_key_leaves_the_cache_and_a_catalog_change_is_applied() -> None:
    state = CacheState()
    key = ApiKey("key_1", "k", Scope.SERVER, None, "digest", AT)
    apply(state, ApiKeyChanged(key))
    assert state.keys == {"digest": key}
    apply(state, ApiKeyChanged(ApiKey("key_1", "k", Scope.SERVER, None, "digest", AT, AT)))
    assert state.keys == {}
    apply(state, CatalogChanged("feature", "sso", {"name": "SSO", "kind": "boolean"}))
    assert state.catalog.current.features["sso"].name == "SSO"
