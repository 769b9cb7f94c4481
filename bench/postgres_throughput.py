"""Writes per second on PostgreSQL, against the embedded SQLite file, in one process and two.

Each row opens Allotment's services (no HTTP) on a fresh database: a SQLite file, or a new
PostgreSQL database on the server ``--server-url`` names (a URL of its maintenance database, as a
user that may create databases; without it a throwaway server is started from PostgreSQL's
programs, as the tests do: ``tests/postgres_server.py``). It seeds ``--customers`` customers on
a plan with a monthly limit no run reaches, each granted more credits than a run spends, then
each process awaits ``--writes`` writes, ``--concurrency`` in flight: enforced usage reports
(each with a new idempotency key) or debits of one credit. Rows:

- ``sqlite, 1 process``: the baseline, measured in the same run;
- ``postgres, 1 process``;
- ``postgres, 2 processes``: two processes (``multiprocessing``, each its own services, store,
  connections and cache) on one database, each writing for its own half of the customers;
- ``postgres, 2 processes, one customer``: both writing for the same customer, so that every
  write of both meets on that customer's locks and rows.

Reported per row: writes per second over all processes, p50 and p99 of one write's latency,
the CPU of this machine per write (every process's, PostgreSQL's server processes included:
the whole machine's busy time from ``/proc/stat``), and writes per commit (the stores'
transactions: a hot customer's writes share their process's commits). After each row the
writes are counted in the database (events or ledger entries) and must be exactly the writes
made.

    uv run python bench/postgres_throughput.py [--writes 5000] [--concurrency 64]
        [--customers 100] [--kind usage|debits] [--server-url postgresql://...]

This is a measurement, never a test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
from check_throughput import describe_tree, machine_description
from debit_throughput import run_until_complete

from allotment.api.services import Services
from allotment.config import Settings
from allotment.domain.catalog import CreditCategory
from allotment.domain.quantities import MICROS_PER_UNIT
from allotment.service.catalog import CatalogKind
from allotment.service.credits import DebitRequest, GrantRequest
from allotment.service.customers import SubscriptionRequest
from allotment.service.usage import UsageReport

UNIT = MICROS_PER_UNIT


@dataclass(frozen=True)
class Measured:
    writes: int
    seconds: float
    latencies: list[float]
    commits: int  # the store's transactions committed while measuring


def settings_for(database: str) -> Settings:
    if database.startswith("postgresql://"):
        return Settings(database_url=database)
    return Settings(database_path=Path(database))


async def seed(database: str, customers: int, writes: int) -> None:
    services = Services.open(settings_for(database))
    try:
        catalog = services.catalog
        await catalog.put(CatalogKind.FEATURE, "calls", {"name": "Calls", "kind": "metered"})
        await catalog.put(CatalogKind.CURRENCY, "credits", {"name": "Credits"})
        await catalog.put(CatalogKind.PRODUCT, "app", {"name": "App"})
        plan = {
            "product": "app",
            "name": "Scale",
            "entitlements": {"calls": {"limit": 10**11, "reset": "month", "enforcement": "hard"}},
        }
        await catalog.put(CatalogKind.PLAN, "scale", plan)
        for n in range(customers):
            customer = f"customer-{n}"
            await services.customers.put_customer(
                customer, name=customer, metadata=None, billing_id=None
            )
            await services.customers.subscribe(customer, SubscriptionRequest(plan="scale"))
            grant = GrantRequest(4 * writes * UNIT, CreditCategory.PAID, f"seed-{n}")
            await services.credits.grant(customer, "credits", grant)
    finally:
        services.close()


async def write(
    database: str, kind: str, customers: list[str], writes: int, concurrency: int, tag: str
) -> Measured:
    services = Services.open(settings_for(database))
    try:
        # Warm each customer's cache first, outside the measurement.
        for customer in customers:
            await services.entitlements.check(customer, "calls", None, None)
        latencies: list[float] = []
        next_index = 0

        async def worker() -> None:
            nonlocal next_index
            while next_index < writes:
                index = next_index
                next_index += 1
                customer = customers[index % len(customers)]
                began = time.perf_counter()
                if kind == "usage":
                    report = UsageReport(customer, "calls", UNIT, f"{tag}-{index}", enforce=True)
                    if not (await services.usage.report(report)).recorded:
                        raise SystemExit(f"report {index} was not recorded")
                else:
                    debit = DebitRequest(UNIT, f"{tag}-{index}")
                    if not (await services.credits.debit(customer, "credits", debit)).applied:
                        raise SystemExit(f"debit {index} was not applied")
                latencies.append(time.perf_counter() - began)

        stats = services.runtime.store.stats
        batches = stats.batches
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - started
        return Measured(writes, seconds, latencies, stats.batches - batches)
    finally:
        services.close()


def write_in_process(
    database: str,
    kind: str,
    customers: list[str],
    writes: int,
    concurrency: int,
    tag: str,
    ready: object,
) -> Measured:
    ready.wait()  # type: ignore[attr-defined]  # a multiprocessing barrier
    return run_until_complete(write(database, kind, customers, writes, concurrency, tag))


def busy_jiffies() -> int:
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    idle = int(fields[3]) + int(fields[4])  # idle and iowait
    return sum(int(value) for value in fields[:8]) - idle


def measure(
    database: str, kind: str, customers: list[list[str]], writes: int, concurrency: int
) -> tuple[list[Measured], float]:
    """Each process's measurement, and the machine's busy CPU seconds over the run."""
    context = multiprocessing.get_context("spawn")
    ready = context.Manager().Barrier(len(customers) + 1)
    tick = os.sysconf("SC_CLK_TCK")
    with context.Pool(len(customers)) as pool:
        pending = [
            pool.apply_async(
                write_in_process,
                (database, kind, mine, writes, concurrency, f"{os.urandom(4).hex()}-{n}", ready),
            )
            for n, mine in enumerate(customers)
        ]
        time.sleep(2.0)  # let the processes start and open their services
        busy = busy_jiffies()
        ready.wait()
        results = [item.get(timeout=900) for item in pending]
        return results, (busy_jiffies() - busy) / tick


def count_writes(database: str, kind: str) -> int:
    table = "usage_events" if kind == "usage" else "ledger_entries WHERE type = 'debit'"
    if database.startswith("postgresql://"):
        with psycopg.connect(database) as db:
            row = db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()
    else:
        import sqlite3

        with sqlite3.connect(database) as db:
            row = db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()
    assert row is not None
    return int(row[0])


@contextlib.contextmanager
def postgres_server(url: str | None) -> Iterator[str]:
    if url is not None:
        yield url
        return
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.postgres_server import throwaway_server

    with throwaway_server(durable=True) as server:
        yield server.url


def new_postgres_database(server_url: str, name: str) -> str:
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = server_url.rpartition("/")
    return f"{base}/{name}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writes", type=int, default=5000, help="writes per process")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--customers", type=int, default=100)
    parser.add_argument("--kind", choices=("usage", "debits"), default="usage")
    parser.add_argument("--server-url", help="a PostgreSQL server's maintenance database URL")
    args = parser.parse_args()
    if min(args.writes, args.concurrency, args.customers) < 2:
        parser.error("--writes, --concurrency and --customers must be at least 2")
    everyone = [f"customer-{n}" for n in range(args.customers)]
    halves = [everyone[0::2], everyone[1::2]]
    rows = []
    with (
        tempfile.TemporaryDirectory(prefix="allotment-pg-") as tmp,
        postgres_server(args.server_url) as server,
    ):
        plans = [
            ("sqlite, 1 process", str(Path(tmp) / "bench.db"), [everyone]),
            ("postgres, 1 process", "postgres", [everyone]),
            ("postgres, 2 processes", "postgres", halves),
            ("postgres, 2 processes, one customer", "postgres", [everyone[:1], everyone[:1]]),
        ]
        for index, (name, where, customers) in enumerate(plans):
            database = where
            if where == "postgres":
                database = new_postgres_database(server, f"allotment_bench_{index}")
            print(f"{name}: seeding ...", file=sys.stderr)
            run_until_complete(seed(database, args.customers, args.writes))
            results, busy = measure(database, args.kind, customers, args.writes, args.concurrency)
            made = sum(result.writes for result in results)
            counted = count_writes(database, args.kind)
            if counted != made:
                raise SystemExit(f"{name}: {made} writes made, {counted} in the database")
            seconds = max(result.seconds for result in results)
            latencies = sorted(value for result in results for value in result.latencies)
            p99 = latencies[int(0.99 * (len(latencies) - 1))]
            commits = sum(result.commits for result in results)
            rows.append(
                (
                    name,
                    made / seconds,
                    statistics.median(latencies),
                    p99,
                    busy / made * 1e6,
                    made / max(commits, 1),
                )
            )
            print(f"{name}: {made / seconds:,.0f}/s", file=sys.stderr)
    baseline = rows[0][1]
    print(machine_description())
    print(f"tree: {describe_tree(None)}")
    what = "enforced usage reports" if args.kind == "usage" else "debits of one credit"
    print(
        f"{args.writes:,} {what} per process, {args.concurrency} in flight per process, "
        f"{args.customers} customers\n"
    )
    print(
        "| database | writes/s | of SQLite's | p50 | p99 | machine CPU per write |"
        " writes per commit |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, rate, p50, p99, cpu, per_commit in rows:
        print(
            f"| {name} | {rate:,.0f} | {rate / baseline:.2f} | {p50 * 1e3:.1f} ms | "
            f"{p99 * 1e3:.1f} ms | {cpu:,.0f} µs | {per_commit:.1f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
