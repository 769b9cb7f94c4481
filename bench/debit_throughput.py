"""Throughput of credit debits: Allotment against one durable transaction per request.

The script starts Allotment (``allotment serve``) on a fresh SQLite file in a temporary
directory, seeds one hot customer with a grant far larger than the run can spend, and drives
``POST /v1/customers/{id}/credits/{currency}/debits`` with wrk, every request with its own
idempotency key (a random prefix per wrk run, the wrk thread's number and a counter), so every
request is a new debit that must be durable before it is answered. In the same run it starts
two baselines from ``bench/naive_debit_server.py`` (one SQLite transaction and one fsync per
request, same SQLite settings, same uvicorn options) and runs the same load against them:

- ``naive``: the transaction runs in one worker thread that owns the connection;
- ``inline`` (``--inline``): the transaction runs inline on the event loop, with no thread, as
  lean as an in-house team would write it.

With ``--before TREE`` it also starts the ``allotment serve`` of another checkout (a git
worktree of an earlier commit, synced with ``uv sync``) and measures it in the same rounds, so
that one run compares the code before and after a change. The targets are measured one after
the other, never at once: on a two-core machine wrk takes one core and the server the other.

After every measured run the answers are checked against the database: wrk must see no
non-2xx response, the debits the run added to the ledger must be the 2xx responses wrk counted
(plus at most the requests still in flight when wrk stopped) and the balance must be the grant
minus every debit in the ledger.

Then, without HTTP, it opens Allotment's services in this process on another fresh file and
awaits many ``CreditService.debit`` coroutines at once (and, for comparison, one at a time),
reporting debits per second and the store's average batch size: what group commit buys. That
part measures the allotment this interpreter imports, whatever ``--tree`` says.

    uv run python bench/debit_throughput.py [--duration 10] [--connections 64] [--rounds 1]
        [--before /tmp/allotment-before]

The servers, ``Server`` handling, wrk output parsing and machine description are shared with
``bench/check_throughput.py``. Both servers are stopped at the end whatever happens, every step
has a time limit, and everything listens on 127.0.0.1 only. This is a measurement, never a
test: nothing in the test suite times anything.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import check_throughput
import httpx
from check_throughput import (
    HOST,
    REQUEST_TIMEOUT,
    BenchError,
    Row,
    Server,
    Tree,
    WrkResult,
    add_load_options,
    check_load_options,
    describe_tree,
    free_port,
    lua_key_counter,
    lua_string,
    machine_description,
    pinned,
    run_within,
    running,
    start_server,
    start_tree,
    tree_labels,
    trees,
    wait_ready,
)
from check_throughput import (
    summarize as summarize_rounds,
)
from check_throughput import (
    table as rate_table,
)

from allotment.api.services import Services
from allotment.config import Settings
from allotment.domain.catalog import CreditCategory
from allotment.domain.quantities import MICROS_PER_UNIT
from allotment.service.catalog import CatalogKind
from allotment.service.credits import DebitRequest, GrantRequest

try:
    from allotment.storage.sqlite.store import SqliteStore
except ImportError:  # a tree measured as "before" that predates the storage port
    from allotment.storage.sqlite_store import SqliteStore  # type: ignore[no-redef]

T = TypeVar("T")

ADMIN_KEY = "bench-admin-key-" + os.urandom(8).hex()
BENCH_DIR = Path(__file__).resolve().parent
CUSTOMER = "bench-hot"
CURRENCY = "bench-credits"
POOL_PATH = f"/v1/customers/{CUSTOMER}/credits/{CURRENCY}"
DEBIT_PATH = f"{POOL_PATH}/debits"
GRANT = 10**9  # units: no run comes near spending it, so no debit is ever refused
DEBIT = 1  # units per debit
SETTLE_TIMEOUT = 10.0  # for the requests still in flight when wrk stops to be committed
# Allotment's debits/s against each baseline: at least twice the naive server's (the first
# issue), three times the inline one's (the change log's issue).
TARGETS = {"naive": 2.0, "inline": 3.0}

BASELINES = ("naive", "inline")
LABELS = {
    "allotment": "allotment POST .../debits",
    "naive": "naive: one transaction per request, in a worker thread",
    "inline": "inline: one transaction per request, on the event loop",
}


def is_allotment(name: str) -> bool:
    """Whether target ``name`` is an ``allotment serve`` (under test or before), not a baseline."""
    return name not in BASELINES


# --- Seeding and the ledger ------------------------------------------------------------------


def call(client: httpx.Client, method: str, path: str, body: Any, expect: int) -> Any:
    response = client.request(method, path, json=body)
    if response.status_code != expect:
        raise BenchError(f"{method} {path}: {response.status_code} {response.text}")
    return response.json(parse_float=Decimal) if response.content else None


def seed_allotment(client: httpx.Client) -> None:
    call(client, "PUT", f"/v1/currencies/{CURRENCY}", {"name": "Bench credits"}, 201)
    call(client, "PUT", f"/v1/customers/{CUSTOMER}", {"name": "Hot customer"}, 201)
    grant = {"amount": GRANT, "category": "paid", "idempotency_key": "bench-seed"}
    answer = call(client, "POST", f"{POOL_PATH}/grants", grant, 201)
    if answer["remaining"] != GRANT:
        raise BenchError(f"the seed grant answered {answer}")


def seed_naive(client: httpx.Client) -> None:
    answer = call(client, "POST", f"{POOL_PATH}/grants", {"amount": GRANT}, 201)
    if answer["balance"] != GRANT:
        raise BenchError(f"the naive seed grant answered {answer}")


def check_sample_debits(client: httpx.Client, name: str) -> None:
    """Two debits and a replay by hand, before the load: the answers say what they should."""
    body = {"amount": DEBIT, "idempotency_key": f"bench-sample-{name}", "enforce": True}
    first = call(client, "POST", DEBIT_PATH, body, 200)
    again = call(client, "POST", DEBIT_PATH, body, 200)
    other = call(client, "POST", DEBIT_PATH, {**body, "idempotency_key": "bench-sample-2"}, 200)
    expected = GRANT - DEBIT
    if not first["applied"] or first["balance"] != expected:
        raise BenchError(f"{name}: the first debit answered {first}")
    if again.get("replayed") is not True or again["balance"] != expected:
        raise BenchError(f"{name}: the replayed debit answered {again}")
    if not other["applied"] or other["balance"] != expected - DEBIT:
        raise BenchError(f"{name}: the second debit answered {other}")


def ledger_debits(name: str, database: Path) -> tuple[int, int]:
    """The number of debit entries of the hot pool and the sum of their amounts, in units."""
    uri = f"file:{database}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=10.0)) as connection:
        if is_allotment(name):
            count, total = connection.execute(
                "SELECT COUNT(*), COALESCE(SUM(amount), 0) FROM ledger_entries"
                " WHERE type = 'debit' AND customer = ? AND currency = ?",
                (CUSTOMER, CURRENCY),
            ).fetchone()
            return int(count), -int(total) // MICROS_PER_UNIT
        count, total = connection.execute(
            "SELECT COUNT(*), COALESCE(SUM(amount), 0) FROM ledger"
            " WHERE customer = ? AND currency = ?",
            (CUSTOMER, CURRENCY),
        ).fetchone()
        return int(count), -int(total)


def settled_ledger(name: str, database: Path) -> tuple[int, int]:
    """The ledger once the requests in flight when wrk stopped are done: two equal readings."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    last = ledger_debits(name, database)
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = ledger_debits(name, database)
        if now == last:
            return now
        last = now
    raise BenchError(f"{name}: the ledger was still growing {SETTLE_TIMEOUT:g}s after wrk stopped")


# --- wrk -------------------------------------------------------------------------------------


def write_wrk_script(path: Path, key: str) -> None:
    """A script sending one debit per request, each with an idempotency key never used before.

    The key is ``<prefix>-<thread>-<counter>``: the prefix is random and passed per wrk run
    (``wrk ... -- PREFIX``), the thread's number is set in ``setup`` and the counter counts the
    thread's requests.
    """
    lines = [
        "-- Generated by bench/debit_throughput.py: POST debits, a new idempotency key each.",
        "local headers = {",
        f'  ["Authorization"] = {lua_string("Bearer " + key)},',
        '  ["Content-Type"] = "application/json",',
        "}",
        *lua_key_counter(),
        "request = function()",
        "  counter = counter + 1",
        "  local body = string.format(",
        f'    \'{{"amount":{DEBIT},"idempotency_key":"%s-%d-%d","enforce":true}}\',',
        "    prefix, thread_number, counter)",
        f'  return wrk.format("POST", {lua_string(DEBIT_PATH)}, headers, body)',
        "end",
    ]
    path.write_text("\n".join(lines) + "\n")


def run_wrk(
    args: argparse.Namespace,
    target: str,
    server: Server,
    script: Path,
    duration: float,
    cpu: int | None,
) -> WrkResult:
    """One wrk run of the debit script, its idempotency keys under a fresh random prefix."""
    return check_throughput.run_wrk(
        args.wrk,
        target,
        server,
        script,
        duration=duration,
        connections=args.connections,
        cpu=cpu,
        path=DEBIT_PATH,
        script_args=["k" + os.urandom(6).hex()],
    )


# --- Measuring over HTTP ---------------------------------------------------------------------


@dataclass
class Target:
    name: str
    server: Server
    database: Path


@dataclass
class Verified:
    """What one measured run wrote, against what wrk saw."""

    target: str
    wrk_2xx: int
    ledger_added: int
    ledger_total: int
    balance: Decimal

    @property
    def in_flight(self) -> int:
        return self.ledger_added - self.wrk_2xx


@dataclass
class Measured:
    result: WrkResult
    verified: Verified


def measure(
    args: argparse.Namespace, target: Target, script: Path, wrk_cpu: int | None
) -> Measured:
    """One warm-up and one measured wrk run, then the ledger and balance are checked."""
    name, server = target.name, target.server
    if args.warmup > 0:
        warm = run_wrk(args, name, server, script, args.warmup, wrk_cpu)
        if warm.non_2xx or warm.socket_errors:
            raise BenchError(f"{name} warm-up: {warm.non_2xx} non-2xx:\n{warm.output}")
    before, _ = settled_ledger(name, target.database)
    result = run_wrk(args, name, server, script, args.duration, wrk_cpu)
    if args.show_wrk:
        print(result.output, file=sys.stderr)
    if result.non_2xx or result.socket_errors:
        raise BenchError(
            f"{name}: {result.non_2xx} non-2xx responses, "
            f"{result.socket_errors} socket errors:\n{result.output}"
        )
    after, spent = settled_ledger(name, target.database)
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=REQUEST_TIMEOUT) as client:
        answer = call(client, "GET", POOL_PATH, None, 200)
    verified = Verified(
        name, result.requests - result.non_2xx, after - before, after, answer["balance"]
    )
    problems = []
    # Every 2xx was committed before it was answered; wrk does not count the responses still in
    # flight when it stops, which the server may still have committed.
    if not verified.wrk_2xx <= verified.ledger_added <= verified.wrk_2xx + args.connections:
        problems.append(
            f"the ledger gained {verified.ledger_added} debits, wrk counted {verified.wrk_2xx} 2xx"
        )
    if spent != after * DEBIT:
        problems.append(f"{after} debit entries sum to {spent}, expected {after * DEBIT}")
    if verified.balance != GRANT - spent:
        problems.append(f"balance {verified.balance}, expected {GRANT} - {spent} = {GRANT - spent}")
    if problems:
        raise BenchError(f"{name}: {'; '.join(problems)}")
    return Measured(result, verified)


def run_http(
    args: argparse.Namespace, workdir: Path, compared: Sequence[Tree]
) -> dict[str, list[Measured]]:
    server_cpu, wrk_cpu = (1, 0) if args.pin else (None, None)
    servers: list[Server] = []
    with running(servers):
        env = {k: v for k, v in os.environ.items() if not k.startswith("ALLOTMENT_")}
        env["ALLOTMENT_ADMIN_KEY"] = ADMIN_KEY
        headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
        targets: list[Target] = []

        for tree in compared:
            database = workdir / f"{tree.name}.db"
            allotment = start_tree(tree, database, workdir, server_cpu, env, servers)
            with httpx.Client(
                base_url=allotment.url, headers=headers, timeout=REQUEST_TIMEOUT
            ) as api:
                seed_allotment(api)
                check_sample_debits(api, tree.name)
            targets.append(Target(tree.name, allotment, database))

        for name in BASELINES:
            naive_port = free_port()
            naive_database = workdir / f"{name}.db"
            naive_command = [sys.executable, str(BENCH_DIR / "naive_debit_server.py")]
            naive_command += ["--db", str(naive_database), "--host", HOST]
            naive_command += ["--port", str(naive_port), "--log-level", "warning"]
            if name == "inline":
                naive_command += ["--inline"]
            else:
                naive_command += ["--threads", str(args.naive_threads)]
            naive = start_server(
                name, pinned(naive_command, server_cpu), naive_port, workdir / f"{name}.log", env
            )
            servers.append(naive)
            wait_ready(naive, "GET", "/livez")
            with httpx.Client(base_url=naive.url, timeout=REQUEST_TIMEOUT) as client:
                seed_naive(client)
                check_sample_debits(client, name)
            targets.append(Target(name, naive, naive_database))
        print("seeded every server and checked sample debits", file=sys.stderr)

        script = workdir / "debit.lua"
        write_wrk_script(script, ADMIN_KEY)
        results: dict[str, list[Measured]] = {target.name: [] for target in targets}
        for round_number in range(1, args.rounds + 1):
            for target in targets:
                measured = measure(args, target, script, wrk_cpu)
                for each in servers:
                    if each.process.poll() is not None:
                        raise BenchError(f"{each.name} died:\n{each.log_tail()}")
                results[target.name].append(measured)
                result, verified = measured.result, measured.verified
                print(
                    f"round {round_number} {target.name}: {result.requests_per_second:,.0f} "
                    f"debits/s, p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms, "
                    f"server {result.server_cpu_us_per_request:.1f} us CPU/request "
                    f"({result.server_busy:.0%} busy), wrk {result.wrk_busy:.0%} busy; "
                    f"{verified.wrk_2xx} 2xx, ledger +{verified.ledger_added}, "
                    f"balance {verified.balance}",
                    file=sys.stderr,
                )
    return results


# --- Measuring in process --------------------------------------------------------------------


@dataclass
class InProcess:
    concurrency: int
    debits: int
    seconds: float
    cpu_seconds: float
    latencies_ms: list[float]
    batches: int
    jobs: int

    @property
    def per_second(self) -> float:
        return self.debits / self.seconds if self.seconds else 0.0

    @property
    def cpu_us_per_debit(self) -> float:
        return 1e6 * self.cpu_seconds / self.debits if self.debits else 0.0

    @property
    def jobs_per_batch(self) -> float:
        return self.jobs / self.batches if self.batches else 0.0

    def latency(self, quantile: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(quantile * len(ordered)))]


async def debit_in_process(path: Path, debits: int, concurrency: int) -> InProcess:
    """Seed a fresh file, then await ``debits`` debits with ``concurrency`` of them in flight."""
    services = Services.open(Settings(database_path=path))
    try:
        store = services.runtime.store
        if not isinstance(store, SqliteStore):
            raise BenchError(f"expected a SqliteStore, got {type(store).__name__}")
        await services.catalog.put(CatalogKind.CURRENCY, CURRENCY, {"name": "Bench credits"})
        await services.customers.put_customer(
            CUSTOMER, name="Hot customer", metadata=None, billing_id=None
        )
        seed = GrantRequest(
            amount=GRANT * MICROS_PER_UNIT, category=CreditCategory.PAID, idempotency_key="seed"
        )
        await services.credits.grant(CUSTOMER, CURRENCY, seed)
        prefix = "p" + os.urandom(6).hex()

        async def one(key: str, latencies: list[float]) -> None:
            request = DebitRequest(amount=DEBIT * MICROS_PER_UNIT, idempotency_key=key)
            started = time.perf_counter()
            answer = await services.credits.debit(CUSTOMER, CURRENCY, request)
            latencies.append(1000 * (time.perf_counter() - started))
            # A typed outcome, or JSON bytes from a tree measured as "before" that predates them.
            applied = answer.applied if hasattr(answer, "applied") else b'"applied":true' in answer
            if not applied:
                raise BenchError(f"debit {key} answered {answer!r}")

        async def run(tag: str, count: int, latencies: list[float]) -> None:
            next_index = 0

            async def worker() -> None:
                nonlocal next_index
                while next_index < count:
                    index = next_index
                    next_index += 1
                    await one(f"{prefix}-{tag}-{index}", latencies)

            await asyncio.gather(*(worker() for _ in range(min(concurrency, count))))

        await run("warm", min(1000, debits), [])  # unmeasured: imports, caches, first pages
        batches, jobs = store.batches_committed, store.jobs_committed
        latencies: list[float] = []
        cpu = time.process_time()
        started = time.perf_counter()
        await run("load", debits, latencies)
        seconds = time.perf_counter() - started
        cpu_seconds = time.process_time() - cpu
        measured = InProcess(
            concurrency,
            debits,
            seconds,
            cpu_seconds,
            latencies,
            store.batches_committed - batches,
            store.jobs_committed - jobs,
        )
        # The ledger and the balance agree with what was awaited.
        balance = await services.credits.balance(CUSTOMER, CURRENCY)
    finally:
        services.close()
    total = debits + min(1000, debits)
    count, spent = ledger_debits("allotment", path)
    if count != total or spent != total * DEBIT or balance.balance != GRANT - spent:
        raise BenchError(
            f"in process: {count} debit entries summing to {spent} and balance "
            f"{balance.balance} after {total} debits of {DEBIT}"
        )
    return measured


def run_until_complete(coroutine: Coroutine[Any, Any, T]) -> T:
    """On uvloop when it is installed, as ``allotment serve`` runs."""
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    try:
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:
        pass
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(coroutine)


def run_in_process(args: argparse.Namespace, workdir: Path) -> list[InProcess]:
    results = []
    for concurrency in args.inprocess_concurrency:
        # One at a time, each debit waits for its own fsync: fewer of them are enough.
        debits = args.inprocess_debits if concurrency > 1 else min(args.inprocess_debits, 2000)
        path = workdir / f"inprocess-{concurrency}.db"
        measured = run_until_complete(debit_in_process(path, debits, concurrency))
        results.append(measured)
        print(
            f"in process, {concurrency} in flight: {measured.per_second:,.0f} debits/s, "
            f"{measured.jobs_per_batch:.1f} jobs per batch, "
            f"{measured.cpu_us_per_debit:.1f} us CPU/debit",
            file=sys.stderr,
        )
    return results


# --- Reporting -------------------------------------------------------------------------------


def summarize(target: str, results: Sequence[WrkResult], how: str, labels: dict[str, str]) -> Row:
    """The best round (by debits/s), or the median of each figure over the rounds."""
    return summarize_rounds(target, results, how, labels)


def table(rows: Sequence[Row]) -> str:
    return rate_table(rows, "debits/s")


def verification_table(results: dict[str, list[Measured]], labels: dict[str, str]) -> str:
    lines = [
        "| round | target | wrk 2xx | ledger debits added | in flight at stop | balance |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for name, measured_runs in results.items():
        for number, measured in enumerate(measured_runs, 1):
            v = measured.verified
            lines.append(
                f"| {number} | {labels[name]} | {v.wrk_2xx:,} | {v.ledger_added:,} "
                f"| {v.in_flight} | {v.balance:,} = {GRANT:,} - {GRANT - v.balance:,} |"
            )
    return "\n".join(lines)


def in_process_table(results: Sequence[InProcess]) -> str:
    lines = [
        "| in flight | debits | debits/s | p50 | p99 | CPU/debit | batches | debits per batch |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
        *(
            f"| {r.concurrency} | {r.debits:,} | {r.per_second:,.0f} | {r.latency(0.5):.2f} ms "
            f"| {r.latency(0.99):.2f} ms | {r.cpu_us_per_debit:.1f} us | {r.batches:,} "
            f"| {r.jobs_per_batch:.1f} |"
            for r in results
        ),
    ]
    return "\n".join(lines)


def report(
    args: argparse.Namespace,
    results: dict[str, list[Measured]],
    in_process: Sequence[InProcess],
    compared: Sequence[Tree],
) -> None:
    labels = {**LABELS, **tree_labels(compared, "POST .../debits")}
    print()
    print(f"machine: {machine_description()}")
    if results:
        names = list(results)
        print(
            f"load: wrk -t1 -c{args.connections} -d{args.duration:g}s --latency, one hot "
            f"customer, debits of {DEBIT} with a new idempotency key each, {args.rounds} "
            f"round(s), {', '.join(names)} alternating"
            + (", pinned (wrk on CPU 0, server on CPU 1)" if args.pin else "")
        )
        print()
        wrk_results = {name: [m.result for m in results[name]] for name in names}
        hows = ("median", "best") if args.rounds > 1 else ("median",)
        for how in hows:
            rows = {name: summarize(name, wrk_results[name], how, labels) for name in names}
            if args.rounds > 1:
                print(f"{how} of {args.rounds} rounds:\n")
            print(table(list(rows.values())))
            print()
            for tree in compared:
                row = rows[tree.name]
                for baseline in BASELINES:
                    ratio = row.requests_per_second / rows[baseline].requests_per_second
                    target = TARGETS[baseline]
                    meets = "meets" if ratio >= target else "misses"
                    print(
                        f"{tree.name}/{baseline}: debits/s {ratio:.2f} ({meets} the "
                        f"{target:.2f} target); server CPU per request {row.server_cpu_us:.1f} "
                        f"us against {rows[baseline].server_cpu_us:.1f} us"
                    )
            if "before" in rows:
                now, then = rows["allotment"], rows["before"]
                change = now.requests_per_second / then.requests_per_second
                print(
                    f"allotment/before: debits/s {change:.2f}; server CPU per request "
                    f"{now.server_cpu_us:.1f} us against {then.server_cpu_us:.1f} us"
                )
            print()
        if args.rounds > 1:
            pairs = [(tree.name, baseline) for tree in compared for baseline in BASELINES]
            if len(compared) > 1:
                pairs.append(("allotment", "before"))
            for numerator, denominator in pairs:
                ratios = [
                    a.requests_per_second / n.requests_per_second
                    for a, n in zip(wrk_results[numerator], wrk_results[denominator], strict=True)
                ]
                listed = ", ".join(f"{r:.2f}" for r in ratios)
                print(
                    f"{numerator}/{denominator}, debits/s of each round: {listed} "
                    f"(median {statistics.median(ratios):.2f})"
                )
            print()
        print("checked after each measured run (every response was 2xx):\n")
        print(verification_table(results, labels))
        print()
        for name in names:
            row = summarize(name, wrk_results[name], "median", labels)
            if row.wrk_busy > 0.9:
                print(
                    f"note: wrk used {row.wrk_busy:.0%} of a CPU against the {row.target}: "
                    "the load generator may be what limits that figure"
                )
    if in_process:
        print(
            f"in process (no HTTP, allotment at {describe_tree(None)}): CreditService.debit "
            "awaited on one event loop, each on a fresh SQLite file (WAL, synchronous=FULL):\n"
        )
        print(in_process_table(in_process))
        serial = next((r for r in in_process if r.concurrency == 1), None)
        if serial is not None:
            best = max(in_process, key=lambda r: r.per_second)
            if best is not serial and serial.per_second:
                print(
                    f"\ngroup commit: {best.per_second / serial.per_second:.1f}x the debits/s "
                    f"of one at a time ({best.concurrency} in flight)"
                )


# --- Main ------------------------------------------------------------------------------------


def concurrency_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"not a list of whole numbers: {text!r}") from error
    if any(value < 1 for value in values):
        raise argparse.ArgumentTypeError("every concurrency must be at least 1")
    return values


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Credit debits per second: Allotment against one transaction per request."
    )
    add_load_options(parser, connections=64)
    parser.add_argument(
        "--inprocess-debits",
        type=int,
        default=20_000,
        help="debits per in-process measurement (2000 at most one at a time); 0 skips them",
    )
    parser.add_argument(
        "--inprocess-concurrency",
        type=concurrency_list,
        default=[1, 64, 256],
        help="debits in flight for each in-process measurement (default 1,64,256)",
    )
    parser.add_argument(
        "--naive-threads",
        type=int,
        default=1,
        help="worker threads of the naive server, one SQLite connection each (default 1)",
    )
    parser.add_argument("--skip-http", action="store_true", help="only the in-process measurements")
    args = parser.parse_args(argv)
    check_load_options(parser, args, needs_wrk=not args.skip_http)
    if args.naive_threads < 1:
        parser.error("--naive-threads must be positive")
    if args.inprocess_debits < 0:
        parser.error("--inprocess-debits must not be negative")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    compared = trees(args)
    targets = len(compared) + len(BASELINES)
    # A budget for the whole run: start-ups, every wrk run, the stops and the in-process runs.
    budget = 180 + args.rounds * targets * (args.duration + args.warmup + 45)
    budget += len(args.inprocess_concurrency) * (60 + args.inprocess_debits / 200)

    def measure() -> tuple[dict[str, list[Measured]], list[InProcess]]:
        with tempfile.TemporaryDirectory(prefix="allotment-debit-bench-") as tmp:
            workdir = Path(tmp)
            results: dict[str, list[Measured]] = {}
            if not args.skip_http:
                results = run_http(args, workdir, compared)
            in_process = run_in_process(args, workdir) if args.inprocess_debits else []
        return results, in_process

    outcome = run_within(budget, measure)
    if outcome is None:
        return 1
    results, in_process = outcome
    report(args, results, in_process, compared)
    return 0


if __name__ == "__main__":
    sys.exit(main())
