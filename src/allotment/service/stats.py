"""Figures the service keeps about its own work, for ``/metrics`` to read when it is scraped.

They are plain attributes, changed by one thread each (the event loop for checks, the store's
thread for batches), never metric objects: a Prometheus ``Histogram.observe`` takes a lock and
walks its buckets in Python, about 0.65 µs, where :meth:`Distribution.observe` costs 0.14 µs
(``docs/benchmarks.md``), and nothing on the request path waits for a scrape.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass, field

# From a check answered from memory (tens of µs) to a write held up by a busy disk.
LATENCY_BOUNDS: tuple[float, ...] = (
    0.000025,
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)


class Distribution:
    """How many observations fell at or below each bound (the last slot: above every bound),
    and their sum: a Prometheus histogram without its locks.

    One thread observes; a scrape on another reads :meth:`cumulative`, which copies the counts
    in one step (the copy holds the GIL), so the buckets it reports are consistent with each
    other; the sum may miss an observation made meanwhile.
    """

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: Sequence[float] = LATENCY_BOUNDS) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        # bisect_left: a value equal to a bound counts in that bound's bucket, as Prometheus's
        # "le" (less or equal) says.
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def cumulative(self) -> tuple[list[tuple[float, int]], int, float]:
        """(every bound with the observations at or below it, the count, the sum)."""
        counts = list(self.counts)
        buckets = []
        running = 0
        for bound, count in zip(self.bounds, counts, strict=False):
            running += count
            buckets.append((bound, running))
        return buckets, running + counts[-1], self.total


@dataclass(slots=True)
class CacheStats:
    """One cache's figures, kept by the thread that uses it and read when scraped."""

    capacity: int  # entries it holds at most
    size: int = 0
    hits: int = 0  # lookups it answered
    misses: int = 0  # lookups that went to the database
    evictions: int = 0  # entries dropped to make room, the least recently used first


@dataclass(slots=True)
class StoreStats:
    """What a store has committed, kept by its thread."""

    batches: int = 0  # transactions committed; jobs / batches is the mean batch size
    jobs: int = 0  # jobs run in them (on SQLite, one that raised counts with its batch)
    # From taking the write lock to the end of COMMIT: what a batch holds the database for.
    batch_seconds: Distribution = field(default_factory=Distribution)
    # The COMMIT statement alone: with synchronous=FULL, mostly the fsync.
    commit_seconds: Distribution = field(default_factory=Distribution)
    # What an adapter keeps in memory beside its tables, by name (none on the memory adapter).
    caches: dict[str, CacheStats] = field(default_factory=dict)
    # Where other processes write beside this one (PostgreSQL): jobs run again after meeting
    # another transaction, by what they met, and batches committed early so that a job would
    # not wait for a hold while the batch held others.
    retries: dict[str, int] = field(default_factory=dict)
    batches_cut: int = 0
