"""The snapshot cache keeps the customers most recently used: when full, the least recently
looked up or installed leaves, one at a time."""

from __future__ import annotations

import pytest

from allotment.config import Settings
from allotment.domain.customers import Customer
from allotment.domain.holdings import Holdings
from allotment.service.snapshots import CustomerSnapshot, SnapshotCache


def snapshot(customer: str) -> CustomerSnapshot:
    return CustomerSnapshot(Customer(customer, None), Holdings())


def cached(cache: SnapshotCache, *customers: str) -> list[str]:
    return [customer for customer in customers if cache.lookup(customer) is not False]


def test_a_full_cache_drops_the_least_recently_used_customer_only() -> None:
    cache = SnapshotCache(max_customers=3)
    for customer in ("a", "b", "c"):
        cache.install(customer, snapshot(customer))
    assert cache.lookup("a") is not False  # a is now the most recent; b the least
    cache.install("d", snapshot("d"))
    assert len(cache) == 3
    assert cache.evictions == 1
    assert cache.lookup("b") is False
    assert cached(cache, "a", "c", "d") == ["a", "c", "d"]


def test_installing_again_counts_as_a_use_and_absence_is_cached_too() -> None:
    cache = SnapshotCache(max_customers=2)
    cache.install("a", snapshot("a"))
    cache.install("ghost", None)  # known not to exist
    cache.install("a", snapshot("a"))  # reloaded: a is the most recent
    cache.install("b", snapshot("b"))
    assert cache.lookup("ghost") is False
    assert cached(cache, "a", "b") == ["a", "b"]
    cache.install("ghost", None)
    assert cache.lookup("ghost") is None
    assert cache.evictions == 2


def test_a_customer_dropped_by_the_projector_is_a_miss_not_an_error() -> None:
    cache = SnapshotCache(max_customers=2)
    cache.install("a", snapshot("a"))
    cache.invalidate("a")
    assert cache.lookup("a") is False
    assert cache.evictions == 0


def test_the_size_is_configured_and_at_least_one() -> None:
    assert Settings.from_environment({"ALLOTMENT_CACHE_CUSTOMERS": "250"}).cache_customers == 250
    assert Settings().cache_customers == 100_000
    for value in ("0", "-5", "many", "1" * 12):
        with pytest.raises(ValueError, match=r"ALLOTMENT_CACHE_CUSTOMERS|at least one"):
            Settings.from_environment({"ALLOTMENT_CACHE_CUSTOMERS": value})
    with pytest.raises(ValueError, match="at least one"):
        SnapshotCache(max_customers=0)


def test_freezing_is_on_unless_turned_off() -> None:
    assert Settings().gc_freeze is True
    for value, expected in (("0", False), ("no", False), ("TRUE", True), ("1", True)):
        assert Settings.from_environment({"ALLOTMENT_GC_FREEZE": value}).gc_freeze is expected
    with pytest.raises(ValueError, match="ALLOTMENT_GC_FREEZE"):
        Settings.from_environment({"ALLOTMENT_GC_FREEZE": "sometimes"})
