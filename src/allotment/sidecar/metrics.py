"""The sidecar's ``GET /metrics``: the SDK client's own figures, read when scraped.

The client already counts what an operator wants to see (cache hits, fallback answers, the
stream's state, the buffer's depth, deliveries) in plain attributes, updated where the work
happens. Copying them into Prometheus counters on every change would put a lock on the check
path for nothing; a collector reads them only when Prometheus asks. Each app has a registry of
its own (the process's figures and this collector), so tests that build several apps never mix
their numbers, and nothing the service's modules register on the global registry leaks in.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from allotment.sdk import Client
from allotment.sdk.buffer import DeliveryState
from allotment.sdk.feed import FeedState

PREFIX = "allotment_sidecar_"


class SidecarCollector(Collector):
    """The figures of one ``Client``, as metrics named ``allotment_sidecar_*``."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def collect(self) -> Iterator[Metric]:
        yield from self._cache()
        yield from self._upstream()
        yield from self._stream()
        yield from self._buffer()

    def _cache(self) -> Iterator[Metric]:
        cache = self._client.cache
        stats = cache.stats
        yield _counter(
            "cache_hits", "Checks answered from the cache, without the service.", stats.hits
        )
        yield _counter(
            "cache_misses",
            "Checks that needed the service (a customer not cached, or its data too old).",
            stats.misses,
        )
        yield _counter("cache_loads", "Customer states read from the service.", stats.loads)
        yield _counter(
            "cache_dropped",
            "Cached entries dropped because a change needs the service.",
            stats.dropped,
        )
        yield _counter(
            "cache_gaps", "Gaps in the change feed's revisions (the cache was cleared).", stats.gaps
        )
        yield _counter(
            "cache_resets", "Resets the change feed sent (the cache was cleared).", stats.resets
        )
        yield _gauge("cached_entries", "Customers (and entities) held in the cache.", len(cache))

    def _upstream(self) -> Iterator[Metric]:
        client = self._client
        yield _counter(
            "fallback_answers",
            "Checks answered from the fallback: the service was unreachable and nothing fresh "
            "enough was cached.",
            client.fallbacks,
        )
        yield _counter(
            "upstream_errors",
            "Reads of a customer's state that failed (unreachable, or refused).",
            client.upstream_errors,
        )

    def _stream(self) -> Iterator[Metric]:
        client, cache = self._client, self._client.cache
        yield _state(
            "stream_state",
            "The change feed's state: 1 for the current one.",
            FeedState,
            client.feed.state,
        )
        yield _counter(
            "stream_connects",
            "Connections the change feed made (reconnects included).",
            client.feed.connects,
        )
        lag = GaugeMetricFamily(
            PREFIX + "stream_lag_seconds",
            "From the last event's writing on the service to its arrival here (none before"
            " the first event).",
        )
        if cache.lag is not None:
            lag.add_metric([], cache.lag)
        yield lag
        revision = GaugeMetricFamily(
            PREFIX + "last_revision",
            "The last revision of the change feed applied (none before the first).",
        )
        if cache.last_seq is not None:
            revision.add_metric([], cache.last_seq)
        yield revision
        age = math.inf if cache.heard_at == 0 else max(0.0, time.time() - cache.heard_at)
        yield _gauge(
            "data_age_seconds",
            "Seconds since the change feed last heard the service (+Inf before it first did).",
            age,
        )

    def _buffer(self) -> Iterator[Metric]:
        client = self._client
        delivery = client.delivery
        yield _gauge(
            "buffered_reports",
            "Usage reports waiting in the buffer for delivery.",
            client.buffer.depth(),
        )
        yield _counter(
            "buffer_refused",
            "Usage reports refused because the buffer was full.",
            client.buffer.refused,
        )
        yield _state(
            "delivery_state",
            "The delivery loop's state: 1 for the current one.",
            DeliveryState,
            delivery.state,
        )
        yield _counter("delivered", "Buffered reports the service accepted.", delivery.delivered)
        yield _counter(
            "delivery_rejected",
            "Buffered reports the service refused for good (dropped).",
            delivery.rejected,
        )
        yield _counter(
            "delivery_failures",
            "Delivery attempts that failed and will be retried.",
            delivery.failures,
        )


def registry_for(client: Client) -> CollectorRegistry:
    """A registry of the client's figures and this process's (CPU, memory, open files)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SidecarCollector(client))
    ProcessCollector(registry=registry)
    return registry


def render(registry: CollectorRegistry) -> bytes:
    """The registry in the Prometheus text format. It reads the buffer's SQLite file, so call
    it off the event loop."""
    return generate_latest(registry)


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(PREFIX + name, documentation, value=value)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(PREFIX + name, documentation, value=value)


def _state(
    name: str, documentation: str, states: type[FeedState] | type[DeliveryState], current: object
) -> GaugeMetricFamily:
    """One sample per possible state, labelled ``state``, 1 for ``current``: an alert can
    test ``allotment_sidecar_stream_state{state="live"} == 0``."""
    family = GaugeMetricFamily(PREFIX + name, documentation, labels=["state"])
    for state in states:
        family.add_metric([state.value], 1 if state is current else 0)
    return family
