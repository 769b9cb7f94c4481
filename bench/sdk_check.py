"""The Python SDK against a real service: cached checks, buffered usage, and how soon a write
made elsewhere reaches the SDK's answer.

The script starts ``allotment serve`` on a fresh SQLite file in a temporary directory (as
``check_throughput.py`` does), seeds through the HTTP API a plan with three features and
``--customers`` customers on it, makes an SDK ``Client`` on it (a server-scope key, the usage
buffer a file in the temporary directory), waits for its change feed, checks every customer
once, and asserts that the SDK's answers equal the service's own ``POST /v1/check``. Then, in
each of ``--rounds`` rounds:

1. ``client.check(customer, feature)`` and ``client.check(customer, feature, requested=1)``,
   rotating over every customer and the three features, one call at a time: each call timed
   alone with ``time.perf_counter_ns`` (p50, p99) and, to keep the timer's own cost out of the
   rate, in batches of 100 (the mean per call of each batch, calls/s). The baseline, timed the
   same way in the same run: ``dict.get`` on a dict of the answers, keyed as the SDK keys them.
2. ``client.report_usage(...)`` (buffered: an SQLite commit in the buffer file, then return),
   10,000 calls while the client delivers in the background; then the buffer must drain.
3. ``POST /v1/usage`` sent to the service directly (admin key) for a cached customer; from its
   answer, ``client.check`` in this process until it shows the new ``current_usage`` (spinning
   with a 0.2 ms sleep): the write-to-answer lag through the change feed.

At the end every report must have reached the service exactly once and the SDK must agree
with the service again. Each figure printed is the median of the rounds.

    uv run --locked python bench/sdk_check.py [--rounds 3] [--customers 1000] [--json]

The server is stopped and the temporary directory removed whatever happens; every step has a
time limit, and the run a budget. This is a measurement, never a test.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import gc
import json
import logging
import math
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import msgspec
from check_throughput import (
    ADMIN_KEY,
    REQUEST_TIMEOUT,
    BenchError,
    Server,
    Tree,
    call,
    describe_tree,
    free_port,
    machine_description,
    run_within,
    running,
    start_tree,
)

from allotment import Client
from allotment.sdk.cache import HOT_SECONDS

FEATURES = ("sso", "seats", "ai-requests")
SEATS = 10
USAGE_LIMIT = 1_000_000_000  # no run comes near it: nothing is denied for usage
LAG_CUSTOMER = "lag-0001"  # the customer the write-lag samples write to (not in the rotation)
CHECK_TARGET_P50_US = 1.0
ENQUEUE_TARGET_P99_US = 200.0
LAG_TARGET_P99_MS = 20.0
SAMPLE_TIMEOUT = 5.0  # seconds a write may take to show before its sample counts as missed
SPIN_SLEEP = 0.0002
DRAIN_TIMEOUT = 180.0
AGREE_TIMEOUT = 15.0
READY_TIMEOUT = 30.0
# Requests whose answers are compared with the service's: (feature, requested).
SAMPLE_REQUESTS: tuple[tuple[str, int | None], ...] = (
    ("sso", None),
    ("sso", 1),
    ("seats", None),
    ("seats", 1),
    ("seats", 5),
    ("seats", SEATS + 10),  # more than the value: usage_limit_exceeded
    ("ai-requests", None),
    ("ai-requests", 1),
    ("nothing", None),  # no such feature
)

_encode = msgspec.json.Encoder(decimal_format="number").encode


# --- Clean-up that survives anything short of SIGKILL ----------------------------------------

_SERVER_LISTS: list[list[Server]] = []


def _kill_leftovers() -> None:
    """At exit: kill any server still running (the ``finally`` blocks normally stopped them)."""
    for servers in _SERVER_LISTS:
        for server in servers:
            with contextlib.suppress(Exception):
                if server.process.poll() is None:
                    server.process.kill()
                    server.process.wait(5)


atexit.register(_kill_leftovers)


@contextlib.contextmanager
def servers_and_tempdir(prefix: str) -> Iterator[tuple[Path, list[Server]]]:
    """A temporary directory and a list of servers: every server put in the list is stopped
    (SIGINT, then SIGKILL) and the directory removed on the way out, whatever happened, and
    killed at exit should a ``finally`` not have run."""
    servers: list[Server] = []
    _SERVER_LISTS.append(servers)
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp, running(servers):
        yield Path(tmp), servers


# --- Figures ---------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..1) of ``values``."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))]


def median_of(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return statistics.median(finite) if finite else math.nan


@dataclass
class Figures:
    """One measurement's figures in one round (times in microseconds)."""

    p50: float
    p99: float
    p999: float = math.nan
    max: float = math.nan
    per_second: float = math.nan
    extra: dict[str, float] = field(default_factory=dict)

    @classmethod
    def of(cls, samples_ns: Sequence[int | float], per_second: float = math.nan) -> Figures:
        us = [s / 1000 for s in samples_ns]
        return cls(
            percentile(us, 0.50),
            percentile(us, 0.99),
            percentile(us, 0.999),
            max(us) if us else math.nan,
            per_second,
        )


def median_figures(rounds: Sequence[Figures]) -> Figures:
    keys = sorted({k for r in rounds for k in r.extra})
    return Figures(
        median_of([r.p50 for r in rounds]),
        median_of([r.p99 for r in rounds]),
        median_of([r.p999 for r in rounds]),
        median_of([r.max for r in rounds]),
        median_of([r.per_second for r in rounds]),
        {k: median_of([r.extra.get(k, math.nan) for r in rounds]) for k in keys},
    )


def fmt_us(value: float) -> str:
    if math.isnan(value):
        return "-"
    if value >= 10_000:
        return f"{value / 1000:,.1f} ms"
    if value >= 100:
        return f"{value:,.0f} us"
    if value >= 10:
        return f"{value:.1f} us"
    return f"{value:.3f} us"


def fmt_rate(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:,.0f}"


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- Seeding and answers ---------------------------------------------------------------------


def customer_id(index: int) -> str:
    return f"sdk-{index:05d}"


def seed(api: httpx.Client, customers: Sequence[str]) -> None:
    """Three features on one plan, and every customer subscribed to it."""
    call(api, "PUT", "/v1/features/sso", {"name": "SSO", "kind": "boolean"}, 201)
    call(api, "PUT", "/v1/features/seats", {"name": "Seats", "kind": "numeric"}, 201)
    call(api, "PUT", "/v1/features/ai-requests", {"name": "AI requests", "kind": "metered"}, 201)
    call(api, "PUT", "/v1/products/app", {"name": "App"}, 201)
    plan = {
        "product": "app",
        "name": "Team",
        "entitlements": {
            "sso": {},
            "seats": {"value": SEATS},
            "ai-requests": {"limit": USAGE_LIMIT, "reset": "month", "enforcement": "hard"},
        },
    }
    call(api, "PUT", "/v1/plans/team", plan, 201)
    for customer in customers:
        call(api, "PUT", f"/v1/customers/{customer}", {"name": customer}, 201)
        call(api, "POST", f"/v1/customers/{customer}/subscriptions", {"plan": "team"}, 201)


def server_key(api: httpx.Client, name: str) -> str:
    """A new server-scope key: what an app's SDK (or a sidecar) is given."""
    created = call(api, "POST", "/v1/api-keys", {"name": name, "scope": "server"}, 201)
    key: str = created["key"]
    return key


def check_body(customer: str, feature: str, requested: int | None) -> dict[str, Any]:
    body: dict[str, Any] = {"customer": customer, "feature": feature}
    if requested is not None:
        body["requested"] = requested
    return body


def service_check(api: httpx.Client, customer: str, feature: str, requested: int | None) -> Any:
    return call(api, "POST", "/v1/check", check_body(customer, feature, requested), 200)


def wire(result: Any) -> dict[str, Any]:
    """An SDK answer as the service writes it, without the SDK-only ``data_age``."""
    fields: dict[str, Any] = msgspec.json.decode(_encode(result))
    fields.pop("data_age", None)
    return fields


def expect_answer(
    answer: dict[str, Any], feature: str, requested: int | None, usage: int | None = None
) -> list[str]:
    """What is wrong with ``answer`` by the seeded data (an empty list when nothing is)."""
    problems = []
    if feature == "nothing":
        if answer["has_access"] or answer["access_denied_reason"] != "feature_not_found":
            problems.append(f"unknown feature: {answer}")
        return problems
    denied = feature == "seats" and requested is not None and requested > SEATS
    if answer["has_access"] is denied:
        problems.append(f"has_access {answer['has_access']}")
    if denied and answer["access_denied_reason"] != "usage_limit_exceeded":
        problems.append(f"reason {answer['access_denied_reason']}")
    if (answer.get("source") or {}).get("id") != "team":
        problems.append(f"source {answer.get('source')}")
    if feature == "seats" and answer["value"] != SEATS:
        problems.append(f"value {answer['value']}")
    if feature == "ai-requests":
        if answer["usage_limit"] != USAGE_LIMIT:
            problems.append(f"usage_limit {answer['usage_limit']}")
        if usage is not None and answer["current_usage"] != usage:
            problems.append(f"current_usage {answer['current_usage']}, expected {usage}")
    return problems


def sample_customers(customers: Sequence[str]) -> list[str]:
    n = len(customers)
    picked = sorted({0, min(1, n - 1), n // 2, n - 1, *range(0, n, max(1, n // 10))})
    return [customers[i] for i in picked]


def compare_with_service(
    check: Callable[[str, str, int | None], dict[str, Any]],
    api: httpx.Client,
    customers: Sequence[str],
    usage: Callable[[str], int | None] = lambda customer: None,
    *,
    deadline: float = 0.0,
) -> int:
    """Assert that ``check`` (the SDK's or the sidecar's answer, as the service writes it)
    equals the service's ``POST /v1/check`` and what the data says, for sample customers and
    every request of ``SAMPLE_REQUESTS``, and that an unknown customer is not found. With a
    ``deadline`` (time.monotonic()), a mismatch is retried until then (answers still
    catching up). Returns the number of answers compared."""
    compared = 0
    for customer in [*sample_customers(customers), "nobody-at-all"]:
        for feature, requested in SAMPLE_REQUESTS:
            while True:
                ours = check(customer, feature, requested)
                theirs = service_check(api, customer, feature, requested)
                problems = []
                if ours != theirs:
                    diff = {
                        k: (ours.get(k), theirs.get(k))
                        for k in theirs
                        if ours.get(k) != theirs.get(k)
                    }
                    extra = set(ours) - set(theirs)
                    problems.append(
                        f"differs from the service (ours, theirs): {diff} {extra or ''}"
                    )
                if customer == "nobody-at-all":
                    if theirs["access_denied_reason"] != "customer_not_found":
                        problems.append(f"unknown customer answered {theirs}")
                else:
                    problems += expect_answer(theirs, feature, requested, usage(customer))
                if not problems:
                    break
                if time.monotonic() >= deadline:
                    raise BenchError(
                        f"check {customer}/{feature}/{requested}: {'; '.join(problems)}"
                    )
                time.sleep(0.05)
            compared += 1
    return compared


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Wait until ``condition()``; the seconds it took. BenchError after ``timeout``."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise BenchError(f"not within {timeout:g}s: {what}")
        time.sleep(0.01)
    return time.monotonic() - started


# --- The write-to-answer lag -----------------------------------------------------------------


@dataclass
class LagSamples:
    from_answer_ns: list[int] = field(default_factory=list)
    from_send_ns: list[int] = field(default_factory=list)
    round_trip_ns: list[int] = field(default_factory=list)
    polls: list[int] = field(default_factory=list)
    missed: int = 0
    seen_at_once: int = 0  # samples whose first poll already showed the write


def measure_lag(
    api: httpx.Client,
    customer: str,
    samples: int,
    current_usage: Callable[[], Any],
    tag: str,
    poll_sleep: float = SPIN_SLEEP,
) -> LagSamples:
    """``samples`` times: ``POST /v1/usage`` (amount 1, a new key) for ``customer`` to the
    service, then ``current_usage()`` until it equals the usage the answer reports. Timed from
    the answer's receipt and from the request's sending."""
    found = LagSamples()
    now = time.perf_counter_ns
    for n in range(samples):
        time.sleep(random.uniform(0, 0.005))  # out of step with any interval of the feed
        body = {
            "customer": customer,
            "feature": "ai-requests",
            "amount": 1,
            "idempotency_key": f"{tag}-{n}",
        }
        sent = now()
        response = api.post("/v1/usage", json=body)
        answered = now()
        if response.status_code != 200 or not response.json()["recorded"]:
            raise BenchError(f"POST /v1/usage: {response.status_code} {response.text}")
        expected = response.json()["current_usage"]
        polls = 0
        while True:
            seen = current_usage()
            polls += 1
            if seen == expected:
                done = now()
                found.from_answer_ns.append(done - answered)
                found.from_send_ns.append(done - sent)
                found.round_trip_ns.append(answered - sent)
                found.polls.append(polls)
                found.seen_at_once += polls == 1
                break
            if seen is not None and seen > expected:
                raise BenchError(f"{customer}: current_usage {seen} past the service's {expected}")
            if now() - answered > SAMPLE_TIMEOUT * 1e9:
                found.missed += 1
                say(f"sample {n}: usage {expected} not shown within {SAMPLE_TIMEOUT:g}s ({seen})")
                break
            time.sleep(poll_sleep)
    return found


def lag_figures(found: LagSamples) -> dict[str, Figures]:
    polls = statistics.mean(found.polls) if found.polls else math.nan
    rows = {
        "from_answer": Figures.of(found.from_answer_ns),
        "from_send": Figures.of(found.from_send_ns),
        "round_trip": Figures.of(found.round_trip_ns),
    }
    for figures in rows.values():
        figures.extra = {
            "missed": found.missed,
            "polls": polls,
            "seen_at_once": found.seen_at_once,
            "samples": len(found.from_answer_ns) + found.missed,
        }
    return rows


# --- In-process checks -----------------------------------------------------------------------


BATCH = 100


def rotation(customers: Sequence[str], calls: int) -> list[tuple[str, str]]:
    """``calls`` (customer, feature) pairs: consecutive calls change customer and feature,
    and every pair comes once before any comes twice."""
    pairs = [
        (customer, FEATURES[(index + k) % len(FEATURES)])
        for k in range(len(FEATURES))
        for index, customer in enumerate(customers)
    ]
    return [pairs[i % len(pairs)] for i in range(calls)]


def time_each(
    lookup: Callable[..., Any], pairs: Sequence[tuple[str, str]], requested: int | None, sdk: bool
) -> list[int]:
    """Each call timed alone: ``lookup(customer, feature[, requested=...])`` for the SDK,
    ``lookup((customer, feature, None, requested))`` for the dict."""
    now = time.perf_counter_ns
    out = [0] * len(pairs)
    i = 0
    if sdk and requested is None:
        for customer, feature in pairs:
            t0 = now()
            lookup(customer, feature)
            out[i] = now() - t0
            i += 1
    elif sdk:
        for customer, feature in pairs:
            t0 = now()
            lookup(customer, feature, requested=requested)
            out[i] = now() - t0
            i += 1
    else:
        for customer, feature in pairs:
            t0 = now()
            lookup((customer, feature, None, requested))
            out[i] = now() - t0
            i += 1
    return out


def time_batches(
    lookup: Callable[..., Any],
    batches: Sequence[Sequence[tuple[str, str]]],
    requested: int | None,
    sdk: bool,
) -> list[float]:
    """Each batch of calls timed as one; the mean per call of each batch, in ns."""
    now = time.perf_counter_ns
    out: list[float] = []
    for batch in batches:
        if sdk and requested is None:
            t0 = now()
            for customer, feature in batch:
                lookup(customer, feature)
            t1 = now()
        elif sdk:
            t0 = now()
            for customer, feature in batch:
                lookup(customer, feature, requested=requested)
            t1 = now()
        else:
            t0 = now()
            for customer, feature in batch:
                lookup((customer, feature, None, requested))
            t1 = now()
        out.append((t1 - t0) / len(batch))
    return out


def timer_overhead_ns(count: int = 200_000) -> float:
    """The median of two back-to-back ``perf_counter_ns`` calls: in every per-call figure."""
    now = time.perf_counter_ns
    out = [0] * count
    for i in range(count):
        t0 = now()
        out[i] = now() - t0
    return statistics.median(out)


def measure_checks(
    client: Client, answers: dict[Any, Any], pairs: Sequence[tuple[str, str]]
) -> dict[str, Figures]:
    """Per call and in batches: the SDK's check and the dict, without and with ``requested``.

    Each SDK pass comes right after a pass over every distinct request: its ``span`` is the
    seconds from the start of that pass to the end of the timed one. Below ``HOT_SECONDS``,
    every timed call reused an answer built less than its lifetime before."""
    batches = [pairs[i : i + BATCH] for i in range(0, len(pairs), BATCH)]
    results: dict[str, Figures] = {}
    for requested in (None, 1):
        suffix = "" if requested is None else "_requested"
        for name, lookup, sdk in (
            ("sdk", client.check, True),
            ("dict", answers.get, False),
        ):
            loads = client.cache.stats.loads
            gc.collect()
            warmed = time.monotonic()
            if sdk:
                warm_pass(client, pairs, requested)
            each = time_each(lookup, pairs, requested, sdk)
            span_each = time.monotonic() - warmed
            warmed = time.monotonic()
            if sdk:
                warm_pass(client, pairs, requested)
            per_call = time_batches(lookup, batches, requested, sdk)
            span_batches = time.monotonic() - warmed
            total_ns = sum(t * len(b) for t, b in zip(per_call, batches, strict=True))
            figures = Figures.of(each)
            figures.extra["batch_p50"] = percentile(per_call, 0.5) / 1000
            figures.extra["batch_p99"] = percentile(per_call, 0.99) / 1000
            figures.per_second = len(pairs) / (total_ns / 1e9)
            if sdk:
                figures.extra["span"] = max(span_each, span_batches)
                figures.extra["loads"] = client.cache.stats.loads - loads
            results[name + suffix] = figures
        results["sdk_expired" + suffix] = measure_expired(client, pairs, requested)
    return results


def measure_expired(
    client: Client, pairs: Sequence[tuple[str, str]], requested: int | None
) -> Figures:
    """The first check of each distinct request once its built answer has aged out (they live
    ``HOT_SECONDS``): the answer is built again from the cached entry, under the cache's lock.
    In an app this is the first check of each (customer, feature) in every second."""
    distinct = list(dict.fromkeys(pairs))
    time.sleep(HOT_SECONDS + 0.1)
    still_built = sum(
        client.cache.hot((customer, feature, None, requested)) is not None
        for customer, feature in distinct
    )
    loads = client.cache.stats.loads
    gc.collect()
    each = time_each(client.check, distinct, requested, True)
    figures = Figures.of(each, len(each) / (sum(each) / 1e9))
    figures.extra["still_built"] = still_built
    figures.extra["loads"] = client.cache.stats.loads - loads
    return figures


def warm_pass(client: Client, pairs: Sequence[tuple[str, str]], requested: int | None) -> None:
    """Every distinct request once, unmeasured, so that the timed pass starts hot."""
    for customer, feature in dict.fromkeys(pairs):
        client.check(customer, feature, requested=requested)


# --- report_usage ----------------------------------------------------------------------------


def measure_enqueue(
    client: Client, customers: Sequence[str], reports: int, tag: str
) -> tuple[Figures, dict[str, int]]:
    """``reports`` buffered usage reports (ai-requests, amount 1), each timed alone, rotating
    over ``customers``; then the buffer must drain. The reports made per customer."""
    now = time.perf_counter_ns
    out = [0] * reports
    made: dict[str, int] = {}
    report = client.report_usage
    order = [customers[i % len(customers)] for i in range(reports)]
    keys = [f"{tag}-{i}" for i in range(reports)]
    waiting_before = _depth(client)
    gc.collect()
    started = now()
    for i, customer in enumerate(order):
        t0 = now()
        report(customer, "ai-requests", 1, idempotency_key=keys[i])
        out[i] = now() - t0
    elapsed = now() - started
    left = _depth(client)
    for customer in order:
        made[customer] = made.get(customer, 0) + 1
    drained = wait_for(lambda: client.buffer.depth() == 0, DRAIN_TIMEOUT, "the buffer drained")
    figures = Figures.of(out, reports / (elapsed / 1e9))
    figures.extra = {
        "waiting_at_end": left,
        "delivered_during": reports + waiting_before - left,
        "drain_s": drained,
        "refused": client.buffer.refused,
    }
    return figures, made


def _depth(client: Client) -> int:
    depth: int = client.buffer.depth()
    return depth


def measure_enqueue_alone(workdir: Path, customers: Sequence[str], reports: int) -> Figures:
    """For comparison: the same calls on a client whose upstream is a closed port, so that
    nothing is delivered (its delivery thread backs off) and no feed is followed: what the
    buffer's commit costs without a delivery thread competing for its lock and the GIL."""
    port = free_port()  # nothing listens there
    path = workdir / f"alone-{uuid.uuid4().hex[:8]}.db"
    sdk_log = logging.getLogger("allotment.sdk")
    level = sdk_log.level
    sdk_log.setLevel(logging.ERROR)  # its failed deliveries are expected: not worth a warning
    try:
        return _enqueue_alone(port, path, customers, reports)
    finally:
        sdk_log.setLevel(level)


def _enqueue_alone(port: int, path: Path, customers: Sequence[str], reports: int) -> Figures:
    with Client(
        f"http://127.0.0.1:{port}", api_key="nobody", buffer_path=path, follow=False
    ) as client:
        now = time.perf_counter_ns
        out = [0] * reports
        report = client.report_usage
        order = [customers[i % len(customers)] for i in range(reports)]
        gc.collect()
        started = now()
        for i, customer in enumerate(order):
            t0 = now()
            report(customer, "ai-requests", 1, idempotency_key=f"alone-{i}")
            out[i] = now() - t0
        elapsed = now() - started
        figures = Figures.of(out, reports / (elapsed / 1e9))
        figures.extra["waiting_at_end"] = client.buffer.depth()
        return figures


# --- Main ------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="The Python SDK: cached checks, buffered usage and write-to-answer lag."
    )
    parser.add_argument("--rounds", type=int, default=3, help="measurements of each figure")
    parser.add_argument("--customers", type=int, default=1000, help="seeded customers")
    parser.add_argument("--calls", type=int, default=200_000, help="checks per timed pass")
    parser.add_argument("--reports", type=int, default=10_000, help="usage reports per round")
    parser.add_argument("--samples", type=int, default=500, help="write-lag samples per round")
    parser.add_argument("--budget", type=float, help="seconds the whole run may take")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = parser.parse_args(argv)
    for name in ("rounds", "customers", "calls", "reports", "samples"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    machine = machine_description()
    budget = args.budget or (
        240
        + args.customers * 0.05
        + args.rounds * (args.calls * 4 * 2e-5 + args.reports * 0.01 + args.samples * 0.1 + 60)
    )
    results = run_within(budget, lambda: run(args))
    if results is None:
        return 1
    results["machine"] = machine
    results["tree"] = describe_tree(None)
    if args.json:
        print(json.dumps(_jsonable(results), indent=2))
    else:
        report(args, results)
    return 0


def _jsonable(value: Any) -> Any:
    """``value`` with figures as dicts and NaN as null, for ``json.dumps``."""
    if isinstance(value, Figures):
        value = dict(value.__dict__)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def run(args: argparse.Namespace) -> dict[str, Any]:
    customers = [customer_id(i) for i in range(args.customers)]
    with servers_and_tempdir("allotment-sdk-bench-") as (workdir, servers):
        env = {k: v for k, v in os.environ.items() if not k.startswith("ALLOTMENT_")}
        env["ALLOTMENT_ADMIN_KEY"] = ADMIN_KEY
        service = start_tree(
            Tree("allotment", None, ""), workdir / "bench.db", workdir, None, env, servers
        )
        admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
        with httpx.Client(base_url=service.url, headers=admin, timeout=REQUEST_TIMEOUT) as api:
            started = time.monotonic()
            seed(api, [*customers, LAG_CUSTOMER])
            say(f"seeded {args.customers + 1} customers in {time.monotonic() - started:.1f}s")
            key = server_key(api, "sdk-bench")
            client = Client(
                service.url,
                api_key=key,
                buffer_path=workdir / "buffer.db",
                max_cached=max(10_000, 2 * args.customers),
            )
            try:
                return measure(args, client, api, service, customers, workdir)
            finally:
                client.close(timeout=5)


def measure(
    args: argparse.Namespace,
    client: Client,
    api: httpx.Client,
    service: Server,
    customers: list[str],
    workdir: Path,
) -> dict[str, Any]:
    if not client.wait_until_ready(READY_TIMEOUT):
        raise BenchError(f"the SDK's change feed was not live within {READY_TIMEOUT:g}s")
    started = time.monotonic()
    for customer in [*customers, LAG_CUSTOMER]:
        for feature in FEATURES:
            client.check(customer, feature)
    loads = client.cache.stats.loads
    say(
        f"warmed {len(customers) + 1} customers in {time.monotonic() - started:.1f}s "
        f"({loads} loads)"
    )
    if loads != len(customers) + 1:
        raise BenchError(f"warming {len(customers) + 1} customers made {loads} loads")

    def sdk_answer(customer: str, feature: str, requested: int | None) -> dict[str, Any]:
        return wire(client.check(customer, feature, requested=requested))

    compared = compare_with_service(sdk_answer, api, customers, lambda c: 0)
    say(f"verified {compared} SDK answers against the service's POST /v1/check")

    pairs = rotation(customers, args.calls)
    answers: dict[Any, Any] = {}
    for requested in (None, 1):
        for customer, feature in dict.fromkeys(pairs):
            answers[(customer, feature, None, requested)] = client.check(
                customer, feature, requested=requested
            )
    overhead = timer_overhead_ns()
    say(f"perf_counter_ns back to back: {overhead:.0f} ns (in every per-call figure)")

    rounds: dict[str, list[Figures]] = {}
    made_total: dict[str, int] = {}
    lag_posts = 0
    for number in range(1, args.rounds + 1):
        figures = measure_checks(client, answers, pairs)
        for name, value in figures.items():
            rounds.setdefault(name, []).append(value)
        sdk, base = figures["sdk"], figures["dict"]
        say(
            f"round {number} check: SDK p50 {fmt_us(sdk.p50)} p99 {fmt_us(sdk.p99)} "
            f"{fmt_rate(sdk.per_second)}/s (span {sdk.extra['span']:.2f}s); dict p50 "
            f"{fmt_us(base.p50)} {fmt_rate(base.per_second)}/s"
        )
        loads = client.cache.stats.loads
        enqueue, made = measure_enqueue(client, customers, args.reports, f"enqueue-{number}")
        for customer, count in made.items():
            made_total[customer] = made_total.get(customer, 0) + count
        rounds.setdefault("enqueue", []).append(enqueue)
        say(
            f"round {number} report_usage: p50 {fmt_us(enqueue.p50)} p99 {fmt_us(enqueue.p99)} "
            f"p99.9 {fmt_us(enqueue.p999)}, {enqueue.extra['delivered_during']:.0f} delivered "
            f"during the calls, drained {enqueue.extra['drain_s']:.1f}s after"
        )
        alone = measure_enqueue_alone(workdir, customers, args.reports)
        rounds.setdefault("enqueue_alone", []).append(alone)
        say(
            f"round {number} report_usage, nothing delivering: p50 {fmt_us(alone.p50)} "
            f"p99 {fmt_us(alone.p99)} p99.9 {fmt_us(alone.p999)}"
        )
        found = measure_lag(
            api,
            LAG_CUSTOMER,
            args.samples,
            lambda: client.check(LAG_CUSTOMER, "ai-requests").current_usage,
            f"lag-{number}",
        )
        lag_posts += args.samples
        for name, value in lag_figures(found).items():
            rounds.setdefault("lag_" + name, []).append(value)
        lag = lag_figures(found)["from_answer"]
        say(
            f"round {number} write->SDK: p50 {fmt_us(lag.p50)} p99 {fmt_us(lag.p99)} "
            f"({found.missed} missed, {found.seen_at_once} seen at the first poll)"
        )
        if service.process.poll() is not None:
            raise BenchError(f"the service died:\n{service.log_tail()}")
        if client.cache.stats.loads != loads:
            say(
                f"note: the cache read {client.cache.stats.loads - loads} states again in round "
                f"{number}"
            )

    # Every report reached the service once, and the SDK agrees with it again.
    usage = dict(made_total)
    wrong = []
    for customer in customers:
        answer = service_check(api, customer, "ai-requests", None)
        if answer["current_usage"] != usage.get(customer, 0):
            wrong.append((customer, answer["current_usage"], usage.get(customer, 0)))
    lag_usage = service_check(api, LAG_CUSTOMER, "ai-requests", None)["current_usage"]
    if wrong or lag_usage != lag_posts:
        raise BenchError(
            f"usage on the service differs from the reports made: {wrong[:10]} "
            f"({len(wrong)} customers); {LAG_CUSTOMER}: {lag_usage}, expected {lag_posts}"
        )
    deadline = time.monotonic() + AGREE_TIMEOUT
    compared += compare_with_service(
        sdk_answer, api, customers, lambda c: usage.get(c, 0), deadline=deadline
    )
    say(
        f"after the rounds: the service counted every report once ({sum(usage.values())} "
        f"buffered, {lag_posts} direct), and {compared} SDK answers in all equal the service's"
    )
    stats = client.cache.stats
    if client.fallbacks:
        raise BenchError(f"the SDK answered {client.fallbacks} checks from its fallback")
    return {
        "rounds": args.rounds,
        "customers": args.customers,
        "calls": args.calls,
        "reports": args.reports,
        "samples": args.samples,
        "timer_overhead_ns": overhead,
        "compared_answers": compared,
        "cache": {
            "loads": stats.loads,
            "hits": stats.hits,
            "misses": stats.misses,
            "dropped": stats.dropped,
            "gaps": stats.gaps,
            "resets": stats.resets,
            "fallbacks": client.fallbacks,
            "upstream_errors": client.upstream_errors,
        },
        "median": {name: median_figures(values) for name, values in rounds.items()},
        "each_round": rounds,
    }


def report(args: argparse.Namespace, results: dict[str, Any]) -> None:
    m: dict[str, Figures] = results["median"]
    print()
    print(f"machine: {results['machine']}")
    print(f"tree: {results['tree']}")
    print(
        f"{args.customers} customers x {len(FEATURES)} features, {args.calls:,} checks per "
        f"timed pass, {args.reports:,} reports and {args.samples} write samples per round; "
        f"median of {args.rounds} round(s)"
    )
    print()
    print("| measurement | p50 | p99 | p99.9 | per call, batches of 100 (p50) | calls/s | target |")
    print("|---|---:|---:|---:|---:|---:|---|")

    def verdict(value: float, target: float) -> str:
        return "meets" if value <= target else "misses"

    def row(label: str, f: Figures, target: str, batch: bool = True) -> None:
        batch_p50 = fmt_us(f.extra.get("batch_p50", math.nan)) if batch else "-"
        print(
            f"| {label} | {fmt_us(f.p50)} | {fmt_us(f.p99)} | {fmt_us(f.p999)} | {batch_p50} "
            f"| {fmt_rate(f.per_second)} | {target} |"
        )

    sdk, sdk_r = m["sdk"], m["sdk_requested"]
    row(
        "SDK `client.check(c, f)`",
        sdk,
        f"p50 <= 1 us: {verdict(sdk.p50, CHECK_TARGET_P50_US)}",
    )
    row(
        "SDK `client.check(c, f, requested=1)`",
        sdk_r,
        f"p50 <= 1 us: {verdict(sdk_r.p50, CHECK_TARGET_P50_US)}",
    )
    row(
        "SDK `client.check(c, f)`, built answer aged out",
        m["sdk_expired"],
        "",
        batch=False,
    )
    row(
        "SDK `client.check(c, f, requested=1)`, built answer aged out",
        m["sdk_expired_requested"],
        "",
        batch=False,
    )
    row("baseline `dict.get((c, f, None, None))`", m["dict"], "")
    row("baseline `dict.get((c, f, None, 1))`", m["dict_requested"], "")
    enq = m["enqueue"]
    row(
        "SDK `client.report_usage(...)` (buffered)",
        enq,
        f"p99 <= 200 us: {verdict(enq.p99, ENQUEUE_TARGET_P99_US)}",
        batch=False,
    )
    alone = m["enqueue_alone"]
    row(
        "`report_usage`, nothing delivering (upstream a closed port)",
        alone,
        f"p99 <= 200 us: {verdict(alone.p99, ENQUEUE_TARGET_P99_US)}",
        batch=False,
    )
    lag = m["lag_from_answer"]
    row(
        "write -> SDK check, from the POST's answer",
        lag,
        f"p99 <= 20 ms: {verdict(lag.p99, LAG_TARGET_P99_MS * 1000)}",
        batch=False,
    )
    send = m["lag_from_send"]
    row(
        "write -> SDK check, from the POST's sending",
        send,
        f"p99 <= 20 ms: {verdict(send.p99, LAG_TARGET_P99_MS * 1000)}",
        batch=False,
    )
    row("`POST /v1/usage` round trip (reference)", m["lag_round_trip"], "", batch=False)
    print()
    print(
        f"SDK check / dict.get, p50 per call: {sdk.p50 / m['dict'].p50:.1f}x; in batches: "
        f"{sdk.extra['batch_p50'] / m['dict'].extra['batch_p50']:.1f}x; calls/s "
        f"{sdk.per_second / m['dict'].per_second:.2f} of the dict's"
    )
    print(
        f"per-call figures include the timer: perf_counter_ns back to back takes "
        f"{results['timer_overhead_ns']:.0f} ns here; calls/s come from the batches"
    )
    span = max(sdk.extra["span"], sdk_r.extra["span"])
    reuse = "every timed call" if span < HOT_SECONDS else "not every call"
    print(
        f"each timed SDK pass ended within {span:.2f}s of building every answer (they are "
        f"reused for {HOT_SECONDS:g}s): {reuse} reused an answer already built; "
        f"{sdk.extra['loads'] + sdk_r.extra['loads']:.0f} states read again during the passes"
    )
    expired = m["sdk_expired"]
    print(
        f"aged-out rows: the first check of each of the {len(FEATURES) * args.customers:,} "
        f"distinct requests after sleeping {HOT_SECONDS + 0.1:g}s "
        f"({expired.extra['still_built']:.0f} built answers still kept then, "
        f"{expired.extra['loads']:.0f} states read again)"
    )
    delivery = args.reports / (args.reports / enq.per_second + enq.extra["drain_s"])
    print(
        f"report_usage: max {fmt_us(enq.max)}, {enq.per_second:,.0f} calls/s; "
        f"{enq.extra['delivered_during']:.0f} of {args.reports:,} delivered during the calls, "
        f"the rest within {enq.extra['drain_s']:.1f}s after (delivery about {delivery:,.0f} "
        f"reports/s); refused {enq.extra['refused']:.0f}; nothing delivering: max "
        f"{fmt_us(alone.max)}"
    )
    print(
        f"write lag: max {fmt_us(lag.max)}; {lag.extra['polls']:.1f} polls per sample, "
        f"{lag.extra['seen_at_once']:.0f} of {lag.extra['samples']:.0f} seen at the first poll, "
        f"{lag.extra['missed']:.0f} missed"
    )
    cache = results["cache"]
    print(
        f"SDK cache: {cache['loads']} loads, {cache['dropped']} dropped, {cache['gaps']} gaps, "
        f"{cache['resets']} resets, {cache['fallbacks']} fallbacks, "
        f"{cache['upstream_errors']} upstream errors; {results['compared_answers']} answers "
        "compared with the service's"
    )
    if args.rounds > 1:
        each = results["each_round"]
        print(
            "each round, SDK check p50: "
            + ", ".join(fmt_us(f.p50) for f in each["sdk"])
            + "; report_usage p99: "
            + ", ".join(fmt_us(f.p99) for f in each["enqueue"])
            + " (nothing delivering: "
            + ", ".join(fmt_us(f.p99) for f in each["enqueue_alone"])
            + ")"
            + "; write lag p99: "
            + ", ".join(fmt_us(f.p99) for f in each["lag_from_answer"])
        )


if __name__ == "__main__":
    sys.exit(main())
