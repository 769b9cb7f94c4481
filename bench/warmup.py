"""A restart's warm-up against the writes that keep coming: what the cold checks cost them.

After a restart the snapshot cache is empty, and the first check of each customer reads it from
the store. When every customer is checked at once (a fleet of clients reconnecting), those reads
queue for the store's one thread; the question is whether the writes that arrive meanwhile wait
behind all of them. The store's queue has a lane for such fills (``storage/jobs.py``): each
batch takes every waiting write and at most ``FILLS_PER_BATCH`` fills.

The script seeds ``--customers`` customers on a fresh SQLite file (one plan with a metered
feature, through the services), closes the service and opens it again on the same file: every
cache is cold. Then, in this process:

1. ``idle``: ``--writers`` tasks send enforced usage reports (a new idempotency key each) to one
   customer for ``--idle-seconds``, with nothing else running: the write latency of the day;
2. ``warm-up``: the same writers keep going while ``--concurrency`` tasks check every customer
   once (cold, each read from the store); it ends when every customer has been checked.

It prints the write latency (p50, p99, max) in each phase, the writes per second, and how long
the warm-up took (checks per second). ``--fills-per-batch N`` sets the lane's share (the batch
size, 512, takes fills like writes: no lane). The script imports the allotment of the
interpreter that runs it: run it from a worktree of another commit to measure that commit (one
without the lane ignores ``--fills-per-batch``).

    uv run --locked python bench/warmup.py [--customers 20000] [--concurrency 256] [--writers 8]

This is a measurement, never a test.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from gc_pauses import FEATURE, percentile, seed

from allotment.api.services import Services
from allotment.config import Settings
from allotment.domain.quantities import MICROS_PER_UNIT
from allotment.service.usage import UsageReport

HOT = "c000000"


class Writers:
    """Enforced usage reports to one customer, one after another per task, timed."""

    def __init__(self, services: Services, tasks: int, tag: str) -> None:
        self._services = services
        self._tasks = tasks
        self._tag = tag
        self._stop = asyncio.Event()
        self.latencies_ms: list[float] = []
        self._sent = 0

    async def _one(self) -> None:
        report = self._services.usage.report
        while not self._stop.is_set():
            self._sent += 1
            request = UsageReport(
                HOT, FEATURE, MICROS_PER_UNIT, f"{self._tag}-{self._sent}", enforce=True
            )
            started = time.perf_counter()
            outcome = await report(request)
            self.latencies_ms.append(1000 * (time.perf_counter() - started))
            if not outcome.answer.has_access:
                raise RuntimeError(f"a usage report was refused: {outcome.answer!r}")

    async def run_until(self, done: asyncio.Future[None] | float) -> float:
        started = time.perf_counter()
        tasks = [asyncio.create_task(self._one()) for _ in range(self._tasks)]
        if isinstance(done, float):
            await asyncio.sleep(done)
        else:
            await done
        self._stop.set()
        await asyncio.gather(*tasks)
        return time.perf_counter() - started


async def check_everyone(services: Services, customers: int, concurrency: int) -> None:
    queue = iter(range(customers))

    async def worker() -> None:
        for index in queue:
            answer = await services.entitlements.check(f"c{index:06d}", FEATURE, None, None)
            if not answer.has_access:
                raise RuntimeError(f"a check was refused: {answer!r}")

    await asyncio.gather(*(worker() for _ in range(concurrency)))


def row(phase: str, latencies: Sequence[float], seconds: float, extra: str) -> str:
    return (
        f"| {phase} | {len(latencies) / seconds:,.0f} | {percentile(list(latencies), 0.5):.1f} |"
        f" {percentile(list(latencies), 0.99):.1f} | {max(latencies, default=0.0):.1f} | {extra} |"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=256, help="checks in flight")
    parser.add_argument("--writers", type=int, default=8, help="usage reports in flight")
    parser.add_argument("--idle-seconds", type=float, default=5.0)
    parser.add_argument("--fills-per-batch", type=int, help="the fill lane's share of a batch")
    args = parser.parse_args()

    from allotment.storage.sqlite import store

    if args.fills_per_batch is not None and hasattr(store, "FILLS_PER_BATCH"):
        store.FILLS_PER_BATCH = args.fills_per_batch
    lane = getattr(store, "FILLS_PER_BATCH", None)

    with tempfile.TemporaryDirectory(prefix="allotment-warmup-bench-") as tmp:
        database = Path(tmp) / "warmup.db"
        started = time.perf_counter()
        services = Services.open(Settings(database_path=database))
        try:
            asyncio.run(seed(services, args.customers))
        finally:
            services.close()
        print(
            f"seeded {args.customers:,} customers in {time.perf_counter() - started:.0f}s",
            file=sys.stderr,
        )

        services = Services.open(Settings(database_path=database))  # every cache cold
        try:

            async def measure() -> list[str]:
                idle = Writers(services, args.writers, "idle")
                await services.entitlements.check(HOT, FEATURE, None, None)
                idle_seconds = await idle.run_until(args.idle_seconds)
                busy = Writers(services, args.writers, "busy")
                storm_started = time.perf_counter()
                storm = asyncio.ensure_future(
                    check_everyone(services, args.customers, args.concurrency)
                )
                busy_seconds = await busy.run_until(storm)
                storm_seconds = time.perf_counter() - storm_started
                checks = f"{args.customers / storm_seconds:,.0f} cold checks/s"
                return [
                    row("idle", idle.latencies_ms, idle_seconds, "-"),
                    row("warm-up", busy.latencies_ms, busy_seconds, checks),
                ]

            rows = asyncio.run(measure())
        finally:
            services.close()

    print(f"fill lane: {lane if lane is not None else 'none (this tree has no lane)'}")
    print(f"customers: {args.customers:,}, checks in flight: {args.concurrency}")
    print()
    print("| phase | writes/s | write p50 ms | write p99 ms | write max ms | warm-up |")
    print("|---|---:|---:|---:|---:|---|")
    for line in rows:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
