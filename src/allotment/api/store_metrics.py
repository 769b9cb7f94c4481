"""The metrics of one application: its check latency, its store, its cache and its change feed,
read from plain attributes when ``/metrics`` is scraped.

Nothing here runs on the request path. The figures are kept where the work happens (the store's
thread counts its batches, the check path its cache hits and its latency, the feed its readers)
as ints and :class:`~allotment.service.stats.Distribution` s; this collector turns them into
Prometheus metrics at scrape time. It belongs to one application, on a registry of its own
beside the process's ``REGISTRY``, so tests that build many apps never mix their figures.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from allotment.api.services import Services
from allotment.service.stats import CacheStats, Distribution


@dataclass(slots=True)
class CheckFigures:
    """Kept by the check path on the event loop: plain ints, read at scrape time."""

    seconds: Distribution
    hits: int = 0  # checks answered from cached snapshots alone
    misses: int = 0  # checks that loaded a snapshot or window, or ran in a store job, first


class ServiceCollector(Collector):
    def __init__(self, services: Services, checks: CheckFigures) -> None:
        self._services = services
        self._checks = checks
        self.log_head: int | None = None  # the log's newest revision, read just before a scrape
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(self)

    def collect(self) -> Iterator[Metric]:
        services, checks = self._services, self._checks
        store = services.runtime.store
        stats = store.stats
        yield _histogram(
            "allotment_check_duration_seconds",
            "Time to answer POST /v1/check, from its first byte read to its answer sent.",
            checks.seconds,
        )
        yield _counter(
            "allotment_snapshot_cache_hits",
            "Checks answered from the cached customer snapshots alone.",
            checks.hits,
        )
        yield _counter(
            "allotment_snapshot_cache_misses",
            "Checks that first loaded a snapshot or usage window, or ran in a store job.",
            checks.misses,
        )
        delivered = services.delivery.stats
        yield _counter(
            "allotment_webhook_deliveries_succeeded",
            "Webhook deliveries a receiver answered with a 2xx.",
            delivered.succeeded,
        )
        yield _counter(
            "allotment_webhook_attempts_failed",
            "Webhook attempts that failed (each is retried until the last).",
            delivered.failed_attempts,
        )
        yield _counter(
            "allotment_webhook_deliveries_failed",
            "Webhook deliveries that failed their last attempt.",
            delivered.failed,
        )
        yield _counter(
            "allotment_webhook_endpoints_disabled",
            "Webhook endpoints disabled after failing every attempt for days.",
            delivered.endpoints_disabled,
        )
        snapshots = services.runtime.snapshots
        yield _gauge(
            "allotment_snapshot_cache_customers",
            "Customers whose snapshot (or absence) is cached.",
            len(snapshots),
        )
        yield _gauge(
            "allotment_snapshot_cache_capacity",
            "Customers the snapshot cache holds at most (ALLOTMENT_CACHE_CUSTOMERS).",
            snapshots.max_customers,
        )
        yield _counter(
            "allotment_snapshot_cache_evictions",
            "Customers dropped from the full snapshot cache, the least recently used first.",
            snapshots.evictions,
        )
        yield _counter(
            "allotment_store_batches_committed",
            "Store transactions committed (jobs / batches is the mean batch size).",
            stats.batches,
        )
        yield _counter(
            "allotment_store_jobs_committed", "Jobs run in committed store batches.", stats.jobs
        )
        yield _histogram(
            "allotment_store_batch_duration_seconds",
            "Time a store batch held the database: from taking the write lock to committed.",
            stats.batch_seconds,
        )
        yield _histogram(
            "allotment_store_commit_duration_seconds",
            "Time of a store batch's COMMIT alone (with synchronous=FULL, mostly the fsync).",
            stats.commit_seconds,
        )
        yield from _cache_metrics(stats.caches)
        retried = CounterMetricFamily(
            "allotment_store_jobs_retried",
            "Jobs run again after meeting another process's transaction, by what they met"
            " (PostgreSQL: DeadlockDetected, SerializationFailure, UniqueViolation,"
            " LockNotAvailable).",
            labels=["reason"],
        )
        for reason, count in sorted(stats.retries.items()):
            retried.add_metric([reason], count)
        yield retried
        yield _counter(
            "allotment_store_batches_cut",
            "Store batches committed early, so that a job would not wait for a hold while the"
            " batch held others (PostgreSQL).",
            stats.batches_cut,
        )
        yield _gauge(
            "allotment_store_queue_depth",
            "Jobs waiting for the store's thread when scraped.",
            store.queue_depth(),
        )
        handed_over = store.last_seq
        yield _gauge(
            "allotment_change_log_handed_over_revision",
            "The newest change-log revision this process has applied to its cache and feed.",
            handed_over,
        )
        if self.log_head is not None:
            yield _gauge(
                "allotment_change_log_newest_revision",
                "The newest revision in the change log, read from the database when scraped.",
                self.log_head,
            )
            yield _gauge(
                "allotment_change_log_lag_revisions",
                "Revisions in the change log this process has not applied yet.",
                max(0, self.log_head - handed_over),
            )
        yield _gauge(
            "allotment_stream_readers", "Open GET /v1/stream connections.", services.feed.readers
        )
        if services.freezer is not None:
            yield _counter(
                "allotment_gc_freezes",
                "Times the objects the caches hold were frozen out of garbage collection.",
                services.freezer.freezes,
            )


def _cache_metrics(caches: Mapping[str, CacheStats]) -> Iterator[Metric]:
    """The store's caches beside its tables, each named by the label ``cache``."""
    label = ["cache"]
    size = GaugeMetricFamily(
        "allotment_store_cache_entries", "Entries kept in memory beside the tables.", labels=label
    )
    capacity = GaugeMetricFamily(
        "allotment_store_cache_capacity",
        "Entries the cache holds at most (ALLOTMENT_CACHE_POOLS, ALLOTMENT_CACHE_COUNTERS).",
        labels=label,
    )
    hits = CounterMetricFamily(
        "allotment_store_cache_hits", "Lookups the cache answered.", labels=label
    )
    misses = CounterMetricFamily(
        "allotment_store_cache_misses", "Lookups that read the tables.", labels=label
    )
    evictions = CounterMetricFamily(
        "allotment_store_cache_evictions",
        "Entries dropped to make room, the least recently used first.",
        labels=label,
    )
    for name, cache in caches.items():
        size.add_metric([name], cache.size)
        capacity.add_metric([name], cache.capacity)
        hits.add_metric([name], cache.hits)
        misses.add_metric([name], cache.misses)
        evictions.add_metric([name], cache.evictions)
    yield from (size, capacity, hits, misses, evictions)


def _counter(name: str, documentation: str, value: int) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=value)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _histogram(name: str, documentation: str, distribution: Distribution) -> HistogramMetricFamily:
    buckets, count, total = distribution.cumulative()
    family = HistogramMetricFamily(name, documentation)
    family.add_metric([], [*((repr(bound), n) for bound, n in buckets), ("+Inf", count)], total)
    return family
