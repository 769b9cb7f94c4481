"""What the size of a credit pool costs: debits and reads on a small pool against large ones.

The script opens Allotment's services in this process (no HTTP) on fresh SQLite files and
builds one pool on each, of one shape at three sizes:

- ``small``: 10 live grants, 45 used-up ones, 100 ledger entries: the baseline of the run;
- ``history``: 10 live grants and a long history: 49,995 used-up grants, 100,000 entries;
- ``large``: 10,000 live grants, 45,000 used-up ones, 100,000 entries.

(``--large N`` scales the last two: N live grants and 10 N entries.) Each pool is built through
the service's own jobs, in a few batches (``CreditService.settled_pool``, ``Pool.include``,
``Pool.debit`` and ``CreditService.save`` inside ``Runtime.run``): the used-up grants
(priority 0, one credit each) burn first and are drained by one debit per batch, and every live
grant (priority 100, expiring in 30 days or more, at its own instant) holds far more than the
run spends; the write-ahead log is checkpointed, and ``--warmup`` unmeasured debits follow.
All three stay open, and in each of ``--rounds`` rounds every pool is measured in turn, so that
noise on the shared machine and the process's drift hit them alike:

1. ``CreditService.debit`` awaited ``--debits`` times with ``--concurrency`` in flight: debits
   per second, CPU time per debit (of the whole process: the idle stores' threads poll the log
   every 10 ms), latency;
2. the pool read (``CreditService.balance``, ``GET .../credits/{currency}``), the first ledger
   page (``CreditService.ledger`` with limit 100, ``GET .../ledger?limit=100``) and revenue
   (``CreditService.revenue``, ``GET .../revenue``), each awaited ``--reads`` times one at a
   time (after a tenth as many unmeasured): p50 and p99 over the rounds.

Before it reports, it checks the answers: the balance is what the grants held less every debit,
the ledger holds exactly the entries built and debited, and revenue is what was consumed and
what remains times the cost basis. The target is that each figure of a large pool is within
1.5x of the small one's; the pool read lists every live grant (API.md), so the large pool's
answer is 1,000 times longer than the small one's, and its figure is also given per grant
listed. This is a measurement, never a test: nothing in the test suite times anything.

    uv run python bench/pool_scale.py [--large 10000] [--rounds 3] [--debits 2000]
        [--concurrency 64] [--reads 200]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sqlite3
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from check_throughput import BenchError, describe_tree, machine_description, run_within
from debit_throughput import run_until_complete

from allotment.api.services import Services
from allotment.config import Settings
from allotment.domain.catalog import CreditCategory
from allotment.domain.credits import EntryContext, Grant
from allotment.domain.identifiers import new_id
from allotment.domain.quantities import MICROS_PER_UNIT
from allotment.service.catalog import CatalogKind
from allotment.service.credits import DebitRequest
from allotment.service.ports import UnitOfWork

CUSTOMER = "bench-pool"
CURRENCY = "bench-credits"
UNIT = MICROS_PER_UNIT
LIVE_CREDITS = 10_000  # each live grant: far more than a run spends from the first one
COST_BASIS = 10_000  # 0.01 of money per credit, in micro-units
BUILD_CHUNK = 5_000  # grants per building job
TARGET = 1.5  # the large pool's figures within 1.5x of the small one's
SMALL_LIVE = 10


@dataclass(frozen=True)
class Shape:
    name: str
    live: int
    depleted: int

    @property
    def entries(self) -> int:
        # A grant entry per grant, and one debit entry per used-up grant.
        return self.live + 2 * self.depleted


@dataclass
class Measured:
    shape: Shape
    debits: int
    seconds: float
    cpu_seconds: float
    debit_ms: list[float]
    reads_ms: dict[str, list[float]] = field(default_factory=dict)

    @property
    def per_second(self) -> float:
        return self.debits / self.seconds if self.seconds else 0.0

    @property
    def cpu_us_per_debit(self) -> float:
        return 1e6 * self.cpu_seconds / self.debits if self.debits else 0.0


READS = ("pool read", "ledger page", "revenue")


def quantile(samples: Sequence[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --- Building --------------------------------------------------------------------------------


def grant(index: int, now: datetime, *, live: bool) -> Grant:
    return Grant(
        id=new_id("grant"),
        amount=(LIVE_CREDITS if live else 1) * UNIT,
        category=CreditCategory.PAID,
        cost_basis=COST_BASIS,
        priority=100 if live else 0,
        effective_at=now,
        expires_at=now + timedelta(days=30, seconds=index) if live else None,
        created_at=now,
    )


async def build(services: Services, shape: Shape) -> None:
    """The pool, through the service's jobs: used-up grants first (drained by one debit per
    chunk), then the live ones."""
    await services.catalog.put(CatalogKind.CURRENCY, CURRENCY, {"name": "Bench credits"})
    await services.customers.put_customer(CUSTOMER, name="Pool", metadata=None, billing_id=None)
    credits, runtime = services.credits, services.runtime

    def job(count: int, start: int, live: bool) -> Callable[[UnitOfWork], None]:
        def run(uow: UnitOfWork) -> None:
            now = runtime.clock.now()
            pool = credits.settled_pool(uow, CUSTOMER, CURRENCY, now)
            for index in range(start, start + count):
                pool.include(grant(index, now, live=live))
            pool.settle(now)
            if not live:
                context = EntryContext(idempotency_key=f"build-{start}")
                pool.debit(count * UNIT, pool.burn_order, now, context)
            credits.save(uow, CUSTOMER, CURRENCY, pool, now)

        return run

    for live, total in ((False, shape.depleted), (True, shape.live)):
        for start in range(0, total, BUILD_CHUNK):
            await runtime.run(job(min(BUILD_CHUNK, total - start), start, live))


# --- Measuring -------------------------------------------------------------------------------


async def debit_many(services: Services, tag: str, count: int, concurrency: int) -> list[float]:
    latencies: list[float] = []
    next_index = 0

    async def worker() -> None:
        nonlocal next_index
        while next_index < count:
            index = next_index
            next_index += 1
            request = DebitRequest(amount=UNIT, idempotency_key=f"{tag}-{index}")
            started = time.perf_counter()
            answer = await services.credits.debit(CUSTOMER, CURRENCY, request)
            latencies.append(1000 * (time.perf_counter() - started))
            if not answer.applied:
                raise BenchError(f"debit {tag}-{index} answered {answer!r}")

    await asyncio.gather(*(worker() for _ in range(min(concurrency, count))))
    return latencies


async def read_many(read: Callable[[], Awaitable[Any]], count: int) -> list[float]:
    latencies = []
    for _ in range(count):
        started = time.perf_counter()
        await read()
        latencies.append(1000 * (time.perf_counter() - started))
    return latencies


async def open_pool(path: Path, shape: Shape, args: argparse.Namespace) -> Services:
    """Services on a fresh file, with the pool built and warmed by unmeasured debits."""
    services = Services.open(Settings(database_path=path))
    started = time.perf_counter()
    await build(services, shape)
    print(
        f"{shape.name}: built {shape.live:,} live and {shape.depleted:,} used-up grants, "
        f"{shape.entries:,} entries in {time.perf_counter() - started:.1f}s",
        file=sys.stderr,
    )
    # Fold what building wrote into the database file, so that no measured debit pays for a
    # checkpoint of the build's write-ahead log.
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    await debit_many(services, "warm", args.warmup, args.concurrency)
    return services


async def measure_round(
    services: Services, measured: Measured, args: argparse.Namespace, tag: str
) -> None:
    """One round on one pool: the debits, then each read; added to ``measured``."""
    cpu, started = time.process_time(), time.perf_counter()
    measured.debit_ms += await debit_many(services, tag, args.debits, args.concurrency)
    measured.seconds += time.perf_counter() - started
    measured.cpu_seconds += time.process_time() - cpu
    measured.debits += args.debits
    credits = services.credits
    reads: dict[str, Callable[[], Awaitable[Any]]] = {
        "pool read": lambda: credits.balance(CUSTOMER, CURRENCY),
        "ledger page": lambda: credits.ledger(CUSTOMER, CURRENCY, None, 100),
        "revenue": lambda: credits.revenue(CUSTOMER, CURRENCY),
    }
    for name, read in reads.items():
        await read_many(read, max(1, args.reads // 10))  # unmeasured: the first of each
        measured.reads_ms.setdefault(name, []).extend(await read_many(read, args.reads))


async def measure(
    workdir: Path, shapes: Sequence[Shape], args: argparse.Namespace
) -> list[Measured]:
    """Every pool open at once, measured in turn, round after round: noise on the shared
    machine and the process's own drift hit them all alike."""
    opened: list[Services] = []
    try:
        for shape in shapes:
            opened.append(await open_pool(workdir / f"{shape.name}.db", shape, args))
        results = [Measured(shape, 0, 0.0, 0.0, []) for shape in shapes]
        prefix = "d" + os.urandom(4).hex()
        for number in range(1, args.rounds + 1):
            for services, measured in zip(opened, results, strict=True):
                await measure_round(services, measured, args, f"{prefix}-{number}")
                print(
                    f"round {number}, {measured.shape.name}: {measured.per_second:,.0f} "
                    f"debits/s, {measured.cpu_us_per_debit:,.0f} us CPU/debit so far",
                    file=sys.stderr,
                )
        for services, shape in zip(opened, shapes, strict=True):
            await verify(services, shape, args.warmup + args.rounds * args.debits)
    finally:
        for services in opened:
            services.close()
    return results


async def verify(services: Services, shape: Shape, debited: int) -> None:
    credits = services.credits
    balance = await credits.balance(CUSTOMER, CURRENCY)
    expected = shape.live * LIVE_CREDITS - debited
    if balance.balance != expected:
        raise BenchError(f"{shape.name}: balance {balance.balance}, expected {expected}")
    entries, after = 0, None
    while True:
        page = await credits.ledger(CUSTOMER, CURRENCY, after, 1000)
        entries += len(page.items)
        if page.next_cursor is None:
            break
        after = page.next_cursor
    if entries != shape.entries + debited:
        raise BenchError(f"{shape.name}: {entries} entries, expected {shape.entries + debited}")
    money = await credits.revenue(CUSTOMER, CURRENCY)
    per_credit = Decimal(COST_BASIS) / UNIT
    consumed = (shape.depleted + debited) * per_credit
    if money.recognized != consumed or money.deferred != expected * per_credit:
        raise BenchError(f"{shape.name}: revenue {money!r}")


# --- Reporting -------------------------------------------------------------------------------


def ratio_text(large: float, small: float) -> str:
    if not small:
        return "n/a"
    ratio = large / small
    return f"{ratio:.2f}x {'meets' if ratio <= TARGET else 'misses'}"


def report(args: argparse.Namespace, pools: Sequence[Measured]) -> None:
    larger = pools[1:]
    print()
    print(f"machine: {machine_description()}")
    print(f"allotment: {describe_tree(None)}, in process, SQLite (WAL, synchronous=FULL)")
    print(
        f"{args.rounds} round(s), each pool in turn; debits: {args.debits:,} of 1 credit per "
        f"round, {args.concurrency} in flight, after {args.warmup:,} unmeasured; reads: "
        f"{args.reads:,} of each per round, one at a time"
    )
    print()
    print("| pool | live grants | used-up grants | ledger entries |")
    print("|---|---:|---:|---:|")
    for m in pools:
        s = m.shape
        print(f"| {s.name} | {s.live:,} | {s.depleted:,} | {s.entries:,} |")
    print()
    names = [m.shape.name for m in larger]
    print(
        "| measurement | "
        + " | ".join(m.shape.name for m in pools)
        + " | "
        + " | ".join(f"{name}/small (target <= {TARGET}x)" for name in names)
        + " |"
    )
    print("|---|" + "---:|" * (len(pools) + len(larger)))

    def row(label: str, values: list[float], unit: str, lower_is_better: bool = True) -> None:
        shown = " | ".join(f"{v:,.0f}{unit}" if v >= 100 else f"{v:.2f}{unit}" for v in values)
        base = values[0]
        ratios = [
            ratio_text(v, base) if lower_is_better else ratio_text(base, v) for v in values[1:]
        ]
        print(f"| {label} | {shown} | {' | '.join(ratios)} |")

    row("debits/s (ratio: time per debit)", [m.per_second for m in pools], "", False)
    row("CPU per debit", [m.cpu_us_per_debit for m in pools], " us")
    for q, label in ((0.5, "p50"), (0.99, "p99")):
        row(f"debit {label}", [quantile(m.debit_ms, q) for m in pools], " ms")
    for name in READS:
        for q, label in ((0.5, "p50"), (0.99, "p99")):
            row(f"{name} {label}", [quantile(m.reads_ms[name], q) for m in pools], " ms")
    print()
    for m in pools:
        per_grant = 1000 * quantile(m.reads_ms["pool read"], 0.5) / m.shape.live
        print(
            f"pool read of {m.shape.name}: {per_grant:.2f} us per live grant listed (p50 over "
            f"{m.shape.live:,} grants)"
        )


# --- Main ------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Debits and reads on a small credit pool against large ones."
    )
    parser.add_argument(
        "--large",
        type=int,
        default=10_000,
        help="live grants of the large pool, a tenth of the entries of the large ones "
        "(default 10000)",
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds, each measuring every pool (default 3)"
    )
    parser.add_argument(
        "--debits", type=int, default=2000, help="measured debits per pool and round"
    )
    parser.add_argument("--warmup", type=int, default=200, help="unmeasured debits per pool")
    parser.add_argument("--concurrency", type=int, default=64, help="debits in flight")
    parser.add_argument(
        "--reads", type=int, default=200, help="measured reads of each kind per pool and round"
    )
    parser.add_argument(
        "--budget", type=float, default=1800, help="seconds the whole run may take (default 1800)"
    )
    args = parser.parse_args(argv)
    if args.large < SMALL_LIVE:
        parser.error(f"--large must be at least {SMALL_LIVE}")
    for name in ("rounds", "debits", "concurrency", "reads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be positive")
    if args.warmup < 0:
        parser.error("--warmup must not be negative")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    entries = 10 * args.large
    shapes = (
        Shape("small", SMALL_LIVE, SMALL_LIVE * 9 // 2),
        Shape("history", SMALL_LIVE, (entries - SMALL_LIVE) // 2),
        Shape("large", args.large, args.large * 9 // 2),
    )

    def run() -> list[Measured]:
        with tempfile.TemporaryDirectory(prefix="allotment-pool-bench-") as tmp:
            return run_until_complete(measure(Path(tmp), shapes, args))

    measured = run_within(args.budget, run)
    if measured is None:
        return 1
    report(args, measured)
    return 0


if __name__ == "__main__":
    sys.exit(main())
