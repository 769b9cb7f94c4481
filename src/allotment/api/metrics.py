"""Prometheus metrics, and the ASGI wrapper that counts and times every request.

``REGISTRY`` holds the process's figures: requests by route, decisions, and the process, platform
and garbage-collector collectors of prometheus_client. Each application adds its own
(``store_metrics.py``) on a registry of its own; ``/metrics`` answers both.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from allotment.api.logs import log_access, sampled
from allotment.api.request_ids import REQUEST_ID

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)  # CPU seconds, memory, open files, start time
PlatformCollector(registry=REGISTRY)  # the Python version and implementation
GCCollector(registry=REGISTRY)  # collections and objects collected, by generation

REQUESTS = Counter(
    "allotment_http_requests",
    "HTTP requests answered, by route and status.",
    ["route", "method", "status"],
    registry=REGISTRY,
)
REQUEST_SECONDS = Histogram(
    "allotment_http_request_duration_seconds",
    "Time to answer HTTP requests other than checks (allotment_check_duration_seconds), by route.",
    ["route"],
    registry=REGISTRY,
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
WORKER = Info(
    "allotment_worker",
    "Which worker of `serve --workers N` answered this scrape (its index and process id); absent"
    " from a lone server.",
    registry=REGISTRY,
)
DECISIONS = Counter(
    "allotment_decisions",
    "Access decisions made by check and usage, by route and outcome.",
    ["route", "outcome"],
    registry=REGISTRY,
)

_decision_children: dict[tuple[str, str], Any] = {}


def count_decision(route: str, outcome: str) -> None:
    """Count one decision; the labelled child is looked up once, since checks are the hot path."""
    child = _decision_children.get((route, outcome))
    if child is None:
        child = _decision_children[(route, outcome)] = DECISIONS.labels(route, outcome)
    child.inc()


_request_children: dict[tuple[str, str, int], Any] = {}


def count_request(route: str, method: str, status: int) -> None:
    """Count a request answered outside Starlette (the check path), children cached."""
    child = _request_children.get((route, method, status))
    if child is None:
        child = _request_children[(route, method, status)] = REQUESTS.labels(
            route, method, str(status)
        )
    child.inc()


_seconds_children: dict[str, Any] = {}


def observe_seconds(route: str, seconds: float) -> None:
    """Time a request answered outside Starlette, the labelled child looked up once."""
    child = _seconds_children.get(route)
    if child is None:
        child = _seconds_children[route] = REQUEST_SECONDS.labels(route)
    child.observe(seconds)


class RequestMetrics:
    """Counts and times requests by the name of the endpoint that answered them, and writes
    the access log's line for the sampled ones."""

    def __init__(self, app: ASGIApp, access_sample: float = 0.0) -> None:
        self._app = app
        self._access_sample = access_sample

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self._app(scope, receive, send_and_note)
        finally:
            endpoint = scope.get("endpoint")
            route = getattr(endpoint, "__name__", "unmatched")
            seconds = time.perf_counter() - started
            REQUESTS.labels(route, scope["method"], str(status)).inc()
            REQUEST_SECONDS.labels(route).observe(seconds)
            if self._access_sample and sampled(self._access_sample):
                template = getattr(scope.get("route"), "path", "unmatched")
                path, method = scope["path"], scope["method"]
                log_access(method, template, path, status, seconds, REQUEST_ID.get())
