"""The server freezes the objects its caches hold once the snapshot cache has taken in enough
new customers, so that full collections skip them."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from allotment.api.memory import FREEZE_AT_LEAST, CacheFreezer
from allotment.domain.customers import Customer
from allotment.domain.holdings import Holdings
from allotment.service.snapshots import CustomerSnapshot, SnapshotCache


@pytest.fixture(autouse=True)
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


def install(cache: SnapshotCache, count: int, start: int = 0) -> None:
    for index in range(start, start + count):
        customer = f"c{index}"
        cache.install(customer, CustomerSnapshot(Customer(customer, None), Holdings()))


def test_a_freeze_comes_once_enough_new_customers_came_in_and_freezes_them() -> None:
    cache = SnapshotCache(max_customers=100_000)
    freezer = CacheFreezer(cache)
    install(cache, FREEZE_AT_LEAST - 1)
    assert not freezer.freeze_if_due()
    assert gc.get_freeze_count() == 0
    install(cache, 1, start=FREEZE_AT_LEAST)
    assert freezer.freeze_if_due()
    frozen = gc.get_freeze_count()
    assert frozen > FREEZE_AT_LEAST  # each snapshot is several tracked objects
    assert not freezer.freeze_if_due()  # nothing new since
    assert freezer.freezes == 1


def test_a_full_cache_freezes_again_as_it_churns() -> None:
    cache = SnapshotCache(max_customers=FREEZE_AT_LEAST)
    freezer = CacheFreezer(cache)
    install(cache, FREEZE_AT_LEAST)
    assert freezer.freeze_if_due()
    install(cache, FREEZE_AT_LEAST, start=FREEZE_AT_LEAST)  # replaces every one of them
    assert len(cache) == FREEZE_AT_LEAST
    assert freezer.freeze_if_due()
    assert freezer.freezes == 2
