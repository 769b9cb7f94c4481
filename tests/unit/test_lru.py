"""The store's caches beside its tables keep the entries most recently used, dropping the least
recently used one at a time, and count what they answered."""

from __future__ import annotations

import pytest

from allotment.storage.sqlite.counter_cache import BatchCounters
from allotment.storage.sqlite.lru import Committed


def test_past_its_capacity_the_least_recently_used_entries_leave_one_at_a_time() -> None:
    cache: Committed[str, int] = Committed(capacity=3)
    for key in "abc":
        cache.keep(key, 1)
    cache.used("a")  # b is now the least recently used
    cache.used("zz")  # not there: nothing happens
    cache.keep("d", 1)
    cache.trim()
    assert list(cache) == ["c", "a", "d"]
    assert (cache.stats.size, cache.stats.evictions) == (3, 1)
    cache.keep("c", 2)  # kept again: the most recent
    for key in "efg":
        cache.keep(key, 1)
    cache.trim()
    assert list(cache) == ["e", "f", "g"]
    assert cache.stats.evictions == 4
    with pytest.raises(ValueError, match="at least one"):
        Committed(capacity=0)


def test_window_counters_keep_the_series_batches_used_and_count_hits() -> None:
    a, b, c = (("acme", "usage", f, "") for f in ("f1", "f2", "f3"))
    committed = Committed([(a, {(0, 10): 1}), (b, {(0, 10): 2})], capacity=2)
    batch = BatchCounters(committed, 1_000)
    assert batch.knows(a)  # read: a is used
    assert not batch.knows(c)  # a miss: the store reads c in full
    batch.load(c, {(0, 10): 3})
    batch.publish()
    # b was neither read nor changed: the least recently used, it left for c.
    assert list(committed) == [a, c]
    assert committed[c] == {(0, 10): 3}
    stats = committed.stats
    assert (stats.hits, stats.misses, stats.evictions, stats.size) == (1, 1, 1, 2)


def test_a_batch_marks_each_series_it_read_or_changed_used_once_and_changes_in_place() -> None:
    """What publishing must keep however it marks use: every series the batch read or changed
    leaves after those it did not, and a committed series changes in place."""
    a, b, c, d = (("acme", "usage", f, "") for f in ("f1", "f2", "f3", "f4"))
    committed = Committed([(a, {(0, 10): 1}), (b, {(0, 10): 2}), (c, {(0, 10): 3})], capacity=3)
    windows_of_b = committed[b]
    batch = BatchCounters(committed, 1_000)
    for _ in range(3):  # read again and again by the batch's reports
        assert batch.knows(a)
        assert batch.knows(b)
    batch.add(b, 5, 4)
    batch.publish()
    # a read, b read and changed: both the most recent, c now the least.
    assert list(committed) == [c, a, b]
    assert committed[b] is windows_of_b
    assert windows_of_b == {(0, 10): 6}
    assert committed.stats.hits == 6
    batch.load(d, {})
    batch.publish()
    assert list(committed) == [a, b, d]
