"""How fast events written through the API reach a webhook receiver, against a direct sender.

The script starts ``allotment serve`` on a fresh SQLite file in a temporary directory
(``ALLOTMENT_ADMIN_KEY`` set, ``ALLOTMENT_TEST_CLOCK`` unset, so the service runs on the real
clock) and, in this process, a receiver: a ``ThreadingHTTPServer`` on 127.0.0.1 that answers
every ``POST`` with 204 and records, for each delivery, its arrival time (``time.time()``, once
the body is read), the event's ``id``, ``seq``, ``customer`` and ``created_at``, and whether its
signature verified with ``standardwebhooks.Webhook(secret).verify``. A delivery whose signature
does not verify is answered 204 all the same (and counted), so that it is not retried.

It registers one endpoint for ``customer.created`` and ``customer.updated``
(``POST /v1/webhook-endpoints``) pointing at the receiver. Each round then:

1. **allotment**: ``--events`` writes (default 2,000), ``PUT /v1/customers/c{i}`` over
   ``--customers`` customers (default 100) round-robin, each with a new name, so each makes one
   ``customer.created`` or ``customer.updated`` event; 32 in flight, each writer with its own
   ``httpx.AsyncClient`` (one client sharing 32 connections spends milliseconds of CPU per
   request in its pool, and the writes would then measure it). The round waits until every
   event reached the receiver, then until the server's
   ``allotment_webhook_deliveries_succeeded_total`` counted them all.
2. **baselines**: as many signed ``POST``s of event-shaped bodies (an id, ``seq``, ``customer``
   round-robin, ``created_at`` when signed), sent straight to the same receiver in ``seq``
   order by one ``httpx.AsyncClient``, first with 16 in flight (the service's attempts per
   process), then with 4 (its attempts per endpoint, what one endpoint gets): the ceiling of
   the receiver and of HTTP on this machine, with this process both sending and receiving.

Figures per round and sender: the time from the first write (or send) to the last receipt,
delivered events per second over it, and the p50 and p99 of (receipt time - the event's
``created_at``). For allotment also how long the writes took and the drain after the last write
was answered. The table gives each round and the medians of the rounds. Under it, where the
time went: how many events had arrived by the last write and the rate of each phase, pauses
at the receiver, CPU seconds of the server and of this process, and the server's store work
(batches, jobs and commit time from ``/metrics``) while writing and after.

Checks, each round: every event arrived exactly once by event id (the expected ids are those
``GET /v1/events`` lists after the round's start), each customer's events arrived in
increasing ``seq`` order, every signature verified, and the server counted as many succeeded
deliveries as events and no failed attempt. For the baselines, which do not wait per customer,
the order is shown, not checked. A failed check makes the exit status 1.

    uv run python bench/webhook_delivery.py [--events 2000] [--customers 100] [--rounds 3]

The server handling, time limits and machine line are shared with ``bench/check_throughput.py``.
The server is stopped at the end whatever happens, every step has a time limit, and everything
listens on 127.0.0.1 only. This is a measurement, never a test: nothing in the test suite times
anything.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import itertools
import json
import math
import os
import resource
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from check_throughput import (
    HOST,
    REQUEST_TIMEOUT,
    BenchError,
    Server,
    allotment_command,
    describe_tree,
    free_port,
    machine_description,
    process_cpu_seconds,
    run_within,
    running,
    start_server,
    wait_ready,
)
from standardwebhooks import Webhook, WebhookVerificationError

ADMIN_KEY = "bench-admin-key-" + os.urandom(8).hex()
WRITERS = 32  # API writes in flight, one AsyncClient (one connection) each
BASELINE_IN_FLIGHT = (16, 4)  # direct POSTs in flight: the service's attempts per process, per
# endpoint (IN_FLIGHT and PER_ENDPOINT in service/webhook_delivery.py)
EVENT_TYPES = ("customer.created", "customer.updated")
BASELINE_SECRET = "whsec_" + "YmVuY2gtYmFzZWxpbmUtc2VjcmV0LWtleQ=="  # any key will do
POLL_SECONDS = 0.005
METRICS_POLL_SECONDS = 0.05
IDLE_GAP = 0.1  # a pause between two arrivals longer than this is counted as the receiver idle
COUNTED_TIMEOUT = 30.0  # after the last receipt, for the server to record every success


def delivery_timeout(events: int) -> float:
    """Seconds a round may wait for its deliveries (far above any expected figure)."""
    return 60.0 + 0.1 * events


# --- Receiver --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Arrival:
    at: float  # time.time() once the body was read
    event_id: str
    seq: int
    customer: str | None
    created_at: float  # the event's created_at, as a Unix time
    verified: bool


@dataclass
class Receiver:
    """What the HTTP server thread records; read by the benchmark under ``lock``."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    webhook: Webhook | None = None
    arrivals: list[Arrival] = field(default_factory=list)
    ids: set[str] = field(default_factory=set)
    unreadable: int = 0  # bodies that were not an event, over the whole run
    connections: set[tuple[str, int]] = field(default_factory=set)

    def reset(self, secret: str) -> None:
        with self.lock:
            self.webhook = Webhook(secret)
            self.arrivals = []
            self.ids = set()
            self.connections = set()

    def distinct(self) -> int:
        with self.lock:
            return len(self.ids)

    def handle(self, body: bytes, headers: dict[str, str], peer: tuple[str, int]) -> None:
        at = time.time()
        with self.lock:
            webhook = self.webhook
            self.connections.add(peer)
        try:
            verified = True
            try:
                if webhook is None:
                    raise WebhookVerificationError("no secret yet")
                event = webhook.verify(body, headers)
            except WebhookVerificationError:
                verified = False
                event = json.loads(body)
            arrival = Arrival(
                at,
                str(event["id"]),
                int(event["seq"]),
                event.get("customer"),
                datetime.fromisoformat(event["created_at"]).timestamp(),
                verified,
            )
        except (ValueError, KeyError, TypeError):
            with self.lock:
                self.unreadable += 1
            return
        with self.lock:  # appended in arrival order: each group's next one waits for the 204
            self.arrivals.append(arrival)
            self.ids.add(arrival.event_id)


class _ReceiverServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # socketserver's 5 drops SYNs of 16 connections opened at once
    receiver: Receiver


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the senders reuse their connections
    server: _ReceiverServer

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        peer = (str(self.client_address[0]), int(self.client_address[1]))
        self.server.receiver.handle(body, dict(self.headers.items()), peer)
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def receiving(receiver: Receiver) -> Iterator[str]:
    """The receiver's HTTP server on a free port of 127.0.0.1 (yields its URL), shut down at
    the end."""
    httpd = _ReceiverServer((HOST, 0), _Handler)
    httpd.receiver = receiver
    thread = threading.Thread(target=httpd.serve_forever, name="receiver", daemon=True)
    thread.start()
    try:
        yield f"http://{HOST}:{httpd.server_address[1]}/hooks"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)


# --- Rounds ----------------------------------------------------------------------------------


@dataclass
class Measured:
    sender: str  # "allotment", or "baseline, N in flight"
    round: int
    events: int
    started: float  # time.time() of the first write or send
    writes_done: float | None  # allotment: when the last write was answered
    arrivals: list[Arrival]
    connections: int
    own_cpu: float  # CPU seconds of this process (writers or sender, and the receiver)
    server_cpu: float | None = None  # CPU seconds of the server, from the first write on
    server_cpu_writing: float | None = None  # of which until the last write was answered
    store_writing: StoreUse | None = None  # the server's store work until the last write
    store_after: StoreUse | None = None  # and from then until every success was recorded
    checks: list[tuple[str, str]] = field(default_factory=list)  # (what, ok/FAILED/note)

    @property
    def last(self) -> float:
        return max(a.at for a in self.arrivals)

    @property
    def total(self) -> float:
        return self.last - self.started

    @property
    def rate(self) -> float:
        return len({a.event_id for a in self.arrivals}) / self.total

    @property
    def writes(self) -> float | None:
        return None if self.writes_done is None else self.writes_done - self.started

    @property
    def drain(self) -> float | None:
        return None if self.writes_done is None else self.last - self.writes_done

    def lag_ms(self, q: float) -> float:
        return quantile([1000 * (a.at - a.created_at) for a in self.arrivals], q)

    def idle(self) -> tuple[int, float]:
        """Pauses between consecutive arrivals longer than ``IDLE_GAP``: how many, in all."""
        times = sorted(a.at for a in self.arrivals)
        gaps = [b - a for a, b in itertools.pairwise(times) if b - a > IDLE_GAP]
        return len(gaps), sum(gaps)

    def arrived_by_last_write(self) -> int:
        assert self.writes_done is not None
        return sum(1 for a in self.arrivals if a.at <= self.writes_done)


def cpu_seconds() -> float:
    """User plus system CPU time of this process (every thread)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


async def write_events(url: str, events: int, customers: int, round_: int) -> tuple[float, float]:
    """The round's writes, ``WRITERS`` in flight, taken in order; (first sent, last answered).

    Each writer has its own ``AsyncClient``: one client sharing 32 connections spends
    milliseconds of CPU per request in its pool, and the writes would measure that."""
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    next_index = 0
    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(
                httpx.AsyncClient(base_url=url, headers=headers, timeout=REQUEST_TIMEOUT)
            )
            for _ in range(WRITERS)
        ]

        async def writer(client: httpx.AsyncClient) -> None:
            nonlocal next_index
            while next_index < events:
                index = next_index
                next_index += 1
                customer = f"c{index % customers}"
                body = {"name": f"Customer {customer}, round {round_}, write {index}"}
                answer = await client.put(f"/v1/customers/{customer}", json=body)
                if answer.status_code not in (200, 201):
                    raise BenchError(f"PUT {customer}: {answer.status_code} {answer.text}")

        started = time.time()
        await asyncio.gather(*(writer(client) for client in clients))
        return started, time.time()


def baseline_id(round_: int, in_flight: int, index: int) -> str:
    return f"evt_base{round_}x{in_flight}x{index:08d}"


async def send_direct(url: str, events: int, customers: int, round_: int, in_flight: int) -> float:
    """Signed event-shaped POSTs straight to the receiver from one ``AsyncClient``,
    ``in_flight`` at once, each signed and stamped as it is sent; when the first was sent."""
    webhook = Webhook(BASELINE_SECRET)
    limits = httpx.Limits(max_connections=in_flight, max_keepalive_connections=in_flight)
    next_index = 0
    started = time.time()
    async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT, limits=limits) as client:

        async def sender() -> None:
            nonlocal next_index
            while next_index < events:
                index = next_index
                next_index += 1
                customer = f"c{index % customers}"
                event_id = baseline_id(round_, in_flight, index)
                now = datetime.now(UTC)
                stamp = now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
                event = {
                    "id": event_id,
                    "seq": index + 1,
                    "type": "customer.updated",
                    "created_at": stamp,
                    "customer": customer,
                    "data": {  # shaped like the customer an allotment event holds
                        "id": customer,
                        "name": f"Customer {customer}, round {round_}, write {index}",
                        "metadata": {},
                        "billing_id": None,
                        "status": "active",
                        "created_at": stamp,
                        "updated_at": stamp,
                        "archived_at": None,
                    },
                }
                body = json.dumps(event, separators=(",", ":")).encode()
                headers = {
                    "webhook-id": event_id,
                    "webhook-timestamp": str(int(now.timestamp())),
                    "webhook-signature": webhook.sign(event_id, now, body),
                    "content-type": "application/json",
                }
                answer = await client.post(url, content=body, headers=headers)
                if answer.status_code != 204:
                    raise BenchError(f"the receiver answered {answer.status_code}")

        started = time.time()
        await asyncio.gather(*(sender() for _ in range(in_flight)))
    return started


def wait_for(
    condition: Callable[[], bool],
    timeout: float,
    what: str,
    server: Server | None = None,
    interval: float = POLL_SECONDS,
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if server is not None and server.process.poll() is not None:
            raise BenchError(f"{server.name} died:\n{server.log_tail()}")
        if time.monotonic() > deadline:
            raise BenchError(f"{what} within {timeout:.0f}s")
        time.sleep(interval)


def metrics(client: httpx.Client) -> dict[str, float]:
    """Every sample of ``/metrics`` without labels, by name."""
    found = {}
    for line in client.get("/metrics").text.splitlines():
        name, _, value = line.partition(" ")
        if value and not line.startswith("#") and "{" not in name:
            found[name] = float(value)
    return found


def metric(client: httpx.Client, name: str) -> float:
    found = metrics(client)
    if name not in found:
        raise BenchError(f"/metrics has no {name}")
    return found[name]


@dataclass(frozen=True, slots=True)
class StoreUse:
    """The server's store work between two reads of ``/metrics``."""

    batches: float
    jobs: float
    batch_seconds: float  # batches holding the database, commits included
    commit_seconds: float

    @classmethod
    def between(cls, before: dict[str, float], after: dict[str, float]) -> StoreUse:
        def grew(name: str) -> float:
            return after.get(name, 0.0) - before.get(name, 0.0)

        return cls(
            grew("allotment_store_batches_committed_total"),
            grew("allotment_store_jobs_committed_total"),
            grew("allotment_store_batch_duration_seconds_sum"),
            grew("allotment_store_commit_duration_seconds_sum"),
        )

    def describe(self, per: int, what: str) -> str:
        mean = 1000 * self.commit_seconds / self.batches if self.batches else 0.0
        return (
            f"{self.batches:,.0f} batches committed ({self.batches / per:.1f} per {what}), "
            f"{self.jobs:,.0f} jobs ({self.jobs / per:.1f} per {what}), batches holding the "
            f"database {self.batch_seconds:.2f} s, commits {self.commit_seconds:.2f} s "
            f"(mean {mean:.2f} ms)"
        )


def listed_events(client: httpx.Client, after: int) -> list[dict[str, Any]]:
    """Every event ``GET /v1/events`` lists after ``after``."""
    found: list[dict[str, Any]] = []
    cursor: str | None = str(after)
    while cursor is not None:
        answer = client.get("/v1/events", params={"after": cursor, "limit": 1000})
        if answer.status_code != 200:
            raise BenchError(f"GET /v1/events: {answer.status_code} {answer.text}")
        page = answer.json()
        found += page["data"]
        cursor = page["next"]
    return found


def verdict(ok: bool) -> str:
    return "ok" if ok else "FAILED"


def check_arrivals(
    measured: Measured,
    expected_ids: set[str],
    counted: tuple[int, int] | None,
    order_promised: bool,
) -> None:
    """Fill ``measured.checks``: exactly once, each customer in seq order (a note only when
    the sender does not promise it), signatures, and the server's own count if given."""
    seen = Counter(a.event_id for a in measured.arrivals)
    missing = len(expected_ids - seen.keys())
    unexpected = len(seen.keys() - expected_ids)
    duplicated = sum(n - 1 for n in seen.values() if n > 1)
    measured.checks.append(
        (
            f"{len(seen)}/{len(expected_ids)} events arrived exactly once by id ({missing} "
            f"missing, {duplicated} duplicate arrivals, {unexpected} unexpected)",
            verdict(not missing and not unexpected and not duplicated),
        )
    )
    last: dict[str | None, int] = {}
    out_of_order = 0
    for arrival in measured.arrivals:
        if arrival.seq <= last.get(arrival.customer, -1):
            out_of_order += 1
        last[arrival.customer] = max(arrival.seq, last.get(arrival.customer, -1))
    text = (
        f"{len(last)} customers' events arrived in increasing seq order "
        f"({out_of_order} arrivals out of order)"
    )
    if order_promised:
        measured.checks.append((text, verdict(not out_of_order)))
    else:
        text += ": this sender does not wait per customer, so this is not checked"
        measured.checks.append((text, "note"))
    failed = sum(1 for a in measured.arrivals if not a.verified)
    measured.checks.append(
        (
            f"{len(measured.arrivals) - failed}/{len(measured.arrivals)} signatures verified "
            f"({failed} failed)",
            verdict(not failed and bool(measured.arrivals)),
        )
    )
    if counted is not None:
        succeeded, failed_attempts = counted
        measured.checks.append(
            (
                f"the server counted {succeeded} deliveries succeeded and {failed_attempts} "
                "attempts failed",
                verdict(succeeded == len(expected_ids) and not failed_attempts),
            )
        )


def allotment_round(
    server: Server,
    admin: httpx.Client,
    receiver: Receiver,
    secret: str,
    args: argparse.Namespace,
    round_: int,
    after: int,
) -> Measured:
    receiver.reset(secret)
    before = metrics(admin)
    succeeded = before["allotment_webhook_deliveries_succeeded_total"]
    failed = before["allotment_webhook_attempts_failed_total"]
    own_cpu, server_cpu = cpu_seconds(), process_cpu_seconds(server.process.pid)
    started, writes_done = asyncio.run(
        write_events(server.url, args.events, args.customers, round_)
    )
    server_cpu_writing = process_cpu_seconds(server.process.pid) - server_cpu
    at_last_write = metrics(admin)
    wait_for(
        lambda: receiver.distinct() >= args.events,
        delivery_timeout(args.events),
        f"round {round_}: {args.events} deliveries did not arrive",
        server,
    )
    own_cpu, server_cpu = (
        cpu_seconds() - own_cpu,
        process_cpu_seconds(server.process.pid) - server_cpu,
    )
    wait_for(
        lambda: (
            metric(admin, "allotment_webhook_deliveries_succeeded_total") - succeeded >= args.events
        ),
        COUNTED_TIMEOUT,
        f"round {round_}: the server did not record every success",
        server,
        METRICS_POLL_SECONDS,
    )
    recorded = metrics(admin)
    time.sleep(0.2)  # room for a duplicate, if any, to show
    counted = (
        int(metric(admin, "allotment_webhook_deliveries_succeeded_total") - succeeded),
        int(metric(admin, "allotment_webhook_attempts_failed_total") - failed),
    )
    events = listed_events(admin, after)
    if len(events) != args.events or any(e["type"] not in EVENT_TYPES for e in events):
        kinds = Counter(e["type"] for e in events)
        raise BenchError(f"round {round_}: {args.events} writes listed these events: {kinds}")
    with receiver.lock:
        measured = Measured(
            "allotment",
            round_,
            args.events,
            started,
            writes_done,
            list(receiver.arrivals),
            len(receiver.connections),
            own_cpu,
            server_cpu,
            server_cpu_writing,
            StoreUse.between(before, at_last_write),
            StoreUse.between(at_last_write, recorded),
        )
    check_arrivals(measured, {e["id"] for e in events}, counted, order_promised=True)
    return measured


def baseline_round(
    url: str, receiver: Receiver, args: argparse.Namespace, round_: int, in_flight: int
) -> Measured:
    receiver.reset(BASELINE_SECRET)
    own_cpu = cpu_seconds()
    started = asyncio.run(send_direct(url, args.events, args.customers, round_, in_flight))
    wait_for(
        lambda: receiver.distinct() >= args.events,
        delivery_timeout(args.events),
        f"round {round_}: the baseline's POSTs did not all arrive",
    )
    own_cpu = cpu_seconds() - own_cpu
    with receiver.lock:
        measured = Measured(
            f"baseline, {in_flight} in flight",
            round_,
            args.events,
            started,
            None,
            list(receiver.arrivals),
            len(receiver.connections),
            own_cpu,
        )
    expected = {baseline_id(round_, in_flight, index) for index in range(args.events)}
    check_arrivals(measured, expected, None, order_promised=False)
    return measured


@dataclass
class Outcome:
    rounds: list[Measured]
    commit: str
    unreadable: int


def run(args: argparse.Namespace) -> Outcome:
    servers: list[Server] = []
    receiver = Receiver()
    measured: list[Measured] = []
    with (
        tempfile.TemporaryDirectory(prefix="allotment-webhook-bench-") as tmp,
        running(servers),
        receiving(receiver) as hook_url,
    ):
        workdir = Path(tmp)
        env = {k: v for k, v in os.environ.items() if not k.startswith("ALLOTMENT_")}
        env["ALLOTMENT_ADMIN_KEY"] = ADMIN_KEY
        port = free_port()
        serve = [*allotment_command(), "serve", "--db", str(workdir / "bench.db")]
        serve += ["--host", HOST, "--port", str(port), "--log-level", "warning"]
        server = start_server("allotment", serve, port, workdir / "allotment.log", env)
        servers.append(server)
        wait_ready(server, "GET", "/livez")
        headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
        with httpx.Client(base_url=server.url, headers=headers, timeout=REQUEST_TIMEOUT) as admin:
            answer = admin.post(
                "/v1/webhook-endpoints", json={"url": hook_url, "events": list(EVENT_TYPES)}
            )
            if answer.status_code != 201:
                raise BenchError(f"POST /v1/webhook-endpoints: {answer.status_code} {answer.text}")
            secret = answer.json()["secret"]
            after = 0
            for round_ in range(1, args.rounds + 1):
                ours = allotment_round(server, admin, receiver, secret, args, round_, after)
                after = max(a.seq for a in ours.arrivals)
                report_progress(ours)
                measured.append(ours)
                for in_flight in BASELINE_IN_FLIGHT:
                    base = baseline_round(hook_url, receiver, args, round_, in_flight)
                    report_progress(base)
                    measured.append(base)
        if server.process.poll() is not None:
            raise BenchError(f"the server died:\n{server.log_tail()}")
    return Outcome(measured, describe_tree(None), receiver.unreadable)


def report_progress(measured: Measured) -> None:
    print(
        f"round {measured.round} {measured.sender}: {measured.rate:,.0f} events/s over "
        f"{measured.total:.2f}s, lag p50 {measured.lag_ms(0.5):,.0f} ms, p99 "
        f"{measured.lag_ms(0.99):,.0f} ms",
        file=sys.stderr,
    )


# --- Reporting -------------------------------------------------------------------------------


def delivery_settings() -> str:
    """The delivery loop's limits, from the allotment this interpreter imports."""
    try:
        from allotment.service import webhook_delivery as delivery
    except ImportError:
        return "unknown"
    interval = inspect.signature(delivery.WebhookDelivery.run).parameters["interval"].default
    return (
        f"wakes every {interval:g} s (and when an attempt ends), at most {delivery.IN_FLIGHT} "
        f"attempts in flight per process and {delivery.PER_ENDPOINT} per endpoint, one per "
        "(endpoint, customer) group at a time"
    )


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def row(
    label: str, sender: str, figures: dict[str, float | None], events: int, customers: int
) -> str:
    return (
        f"| {label} | {sender} | {events:,} | {customers} | {seconds(figures['writes'])} "
        f"| {seconds(figures['drain'])} | {seconds(figures['total'])} "
        f"| {figures['rate']:,.0f} | {figures['p50']:,.1f} | {figures['p99']:,.1f} |"
    )


def figures_of(measured: Measured) -> dict[str, float | None]:
    return {
        "writes": measured.writes,
        "drain": measured.drain,
        "total": measured.total,
        "rate": measured.rate,
        "p50": measured.lag_ms(0.5),
        "p99": measured.lag_ms(0.99),
    }


def median_figures(rounds: Sequence[Measured]) -> dict[str, float | None]:
    each = [figures_of(m) for m in rounds]
    median: dict[str, float | None] = {}
    for name in each[0]:
        values = [value for f in each if (value := f[name]) is not None]
        median[name] = statistics.median(values) if values else None
    return median


def notes(measured: Measured) -> str:
    """Where the time of one round went."""
    busy = f"this process {measured.own_cpu:.2f} s CPU"
    if measured.server_cpu is not None:
        busy = f"server {measured.server_cpu:.2f} s CPU, " + busy
    shares = f"{busy} over {measured.total:.2f} s"
    if measured.writes_done is None or measured.writes is None or measured.drain is None:
        return f"{measured.connections} connections reached the receiver; {shares}"
    by_writes = measured.arrived_by_last_write()
    left = measured.events - by_writes
    drained = f"{left / measured.drain:,.0f}/s" if measured.drain > 0 else "-"
    gaps, idle = measured.idle()
    return (
        f"writes {measured.events / measured.writes:,.0f}/s; by the last write's answer "
        f"{by_writes:,} had arrived ({by_writes / measured.writes:,.0f}/s while writing), the "
        f"other {left:,} in {measured.drain:.2f} s after it ({drained}); the receiver waited "
        f"more than {1000 * IDLE_GAP:g} ms between arrivals {gaps} times ({idle:.2f} s in all); "
        f"{measured.connections} connections reached the receiver; {shares}"
    )


def store_notes(measured: Measured) -> list[str]:
    """The server's store work while the writes went on, and after."""
    if (
        measured.store_writing is None
        or measured.store_after is None
        or measured.server_cpu is None
        or measured.server_cpu_writing is None
    ):
        return []
    by_writes = measured.arrived_by_last_write()
    after = measured.server_cpu - measured.server_cpu_writing
    left = max(1, measured.events - by_writes)
    return [
        f"  server CPU: {measured.server_cpu_writing:.2f} s while writing "
        f"({1000 * measured.server_cpu_writing / measured.events:.2f} ms per write), "
        f"{after:.2f} s after the last write ({1000 * after / left:.2f} ms per delivery left)",
        f"  store while writing ({measured.events:,} writes, {by_writes:,} deliveries): "
        + measured.store_writing.describe(measured.events, "write"),
        f"  store after the last write until every success was recorded "
        f"({measured.events - by_writes:,} deliveries): "
        + measured.store_after.describe(max(1, measured.events - by_writes), "delivery"),
    ]


def report(args: argparse.Namespace, outcome: Outcome) -> bool:
    print()
    print(f"machine: {machine_description()}")
    print(
        f"allotment at {outcome.commit}: one `allotment serve` on a fresh SQLite file, one "
        "webhook endpoint on a receiver in the benchmark process (ThreadingHTTPServer, 204, "
        f"signatures verified); {args.events:,} events per round from PUT /v1/customers over "
        f"{args.customers} customers round-robin, {WRITERS} writes in flight (an AsyncClient "
        "each); baseline: as many signed POSTs sent straight to the receiver by one "
        f"AsyncClient, {' and '.join(map(str, BASELINE_IN_FLIGHT))} in flight; {args.rounds} "
        "round(s), allotment then the baselines in each"
    )
    print(f"delivery loop: {delivery_settings()}")
    print()
    print(
        "| round | sender | events | customers | writes s | drain after the last write s "
        "| first write to last receipt s | delivered events/s | lag p50 ms | lag p99 ms |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for measured in outcome.rounds:
        figures = figures_of(measured)
        print(row(str(measured.round), measured.sender, figures, args.events, args.customers))
    senders = list(dict.fromkeys(m.sender for m in outcome.rounds))
    medians = {}
    for sender in senders:
        medians[sender] = median_figures([m for m in outcome.rounds if m.sender == sender])
        print(row("median", sender, medians[sender], args.events, args.customers))
    print()
    ours = medians["allotment"]["rate"]
    for sender in senders[1:]:
        base = medians[sender]["rate"]
        if ours and base:
            print(
                f"allotment/{sender}, delivered events/s (medians): {ours / base:.2f} "
                f"(the direct sender {base / ours:.1f}x as fast)"
            )
    print(
        "lag = receipt time - the event's created_at (allotment: the instant of its write, "
        "by the service's clock; baseline: when it was signed and sent)"
    )
    print()
    for measured in outcome.rounds:
        print(f"round {measured.round} {measured.sender}: {notes(measured)}")
        for line in store_notes(measured):
            print(line)
    print()
    passed = True
    for measured in outcome.rounds:
        for text, status in measured.checks:
            passed = passed and status != "FAILED"
            print(f"round {measured.round} {measured.sender}: {status}: {text}")
    if outcome.unreadable:
        passed = False
        print(f"FAILED: {outcome.unreadable} bodies the receiver could not read as an event")
    print(f"checks: {'all passed' if passed else 'some FAILED'}")
    return passed


# --- Main ------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Webhook delivery throughput and lag, against a direct sender."
    )
    parser.add_argument("--events", type=int, default=2000, help="events per round")
    parser.add_argument("--customers", type=int, default=100, help="customers, round-robin")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (the table adds medians)")
    parser.add_argument(
        "--budget", type=float, help="seconds the whole run may take (default: from the sizes)"
    )
    args = parser.parse_args(argv)
    if args.events < 1 or args.customers < 1 or args.rounds < 1:
        parser.error("--events, --customers and --rounds must be positive")
    if args.budget is None:
        phases = 1 + len(BASELINE_IN_FLIGHT)
        args.budget = 120 + args.rounds * (phases * delivery_timeout(args.events) + COUNTED_TIMEOUT)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    outcome = run_within(args.budget, lambda: run(args))
    if outcome is None:
        return 1
    return 0 if report(args, outcome) else 1


if __name__ == "__main__":
    sys.exit(main())
