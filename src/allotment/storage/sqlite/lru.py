"""What committed batches leave in memory beside the tables, bounded.

The store's thread keeps credit pools and window counters as the last batch that used them
left them, so that the next one reads nothing back. Both are bounded by configuration: past the
bound, the entry least recently used leaves, one at a time, and is read from its table again
when next needed. Only the store's thread touches them.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import TypeVar

from allotment.service.stats import CacheStats

K = TypeVar("K")
V = TypeVar("V")


class Committed(OrderedDict[K, V]):
    """Entries in the order of their last use, the oldest first, with their figures."""

    def __init__(self, entries: Iterable[tuple[K, V]] = (), *, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("a cache must hold at least one entry")
        super().__init__(entries)
        self.stats = CacheStats(capacity)

    def keep(self, key: K, value: V) -> None:
        """Store ``value`` as the most recently used entry."""
        self[key] = value
        self.move_to_end(key)

    def used(self, key: K) -> None:
        """``key`` was used: it leaves last."""
        # One look-up rather than ``in`` and then a move: this runs for every entry a batch read.
        try:  # noqa: SIM105
            self.move_to_end(key)
        except KeyError:
            pass

    def trim(self) -> None:
        """Drop the least recently used entries past the capacity."""
        stats = self.stats
        while len(self) > stats.capacity:
            self.popitem(last=False)
            stats.evictions += 1
        stats.size = len(self)
