"""Garbage-collection pauses with many customers cached, with and without freezing what the
caches hold.

Every cached customer is a snapshot of some tens of Python objects (holdings, resolutions, usage
windows, views). CPython's full collection walks every tracked object, so its pause grows with the
cache: the scale issue measured about 1 s at 100,000 customers, and one such pause under load put a
p99 at 715 ms. ``gc.freeze()`` moves every object tracked so far to a permanent generation that
collections skip; ``allotment serve`` freezes what its caches hold as they grow (``api/memory.py``).

The script builds a service in this process on a fresh SQLite file, seeds one plan with a metered
feature and ``--customers`` customers subscribed to it (through the services, 256 at a time), and
checks each once so that its snapshot is cached: the warm-up. It then makes ``--checks`` operations
round-robin over every customer: nine in ten checks from memory, one in ten a check of a customer
whose snapshot was just dropped, as the projector drops it after a write, so that it is loaded again
(churn). A ``gc.callbacks`` hook times every collection. It runs twice, each in a fresh process:
``plain`` (``ALLOTMENT_GC_FREEZE`` off: CPython's collector as it is) and ``frozen``
(``ALLOTMENT_GC_FREEZE`` on, as ``allotment serve`` runs by default). It prints, per mode and phase,
the collections of each generation, the pause percentiles and the largest.

    uv run --locked python bench/gc_pauses.py --customers 100000

This is a measurement, never a test.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from allotment.api.services import Services
from allotment.config import Settings
from allotment.service.catalog import CatalogKind
from allotment.service.customers import SubscriptionRequest

FEATURE = "ai-requests"
SEED_CONCURRENCY = 256
RELOAD_EVERY = 10  # one operation in ten reloads a customer's snapshot


class PauseClock:
    """Times every collection through ``gc.callbacks``."""

    def __init__(self) -> None:
        self.pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses[info["generation"]].append(time.perf_counter() - self._started)


async def seed(services: Services, customers: int) -> None:
    await services.catalog.put(CatalogKind.FEATURE, FEATURE, {"name": "AI", "kind": "metered"})
    await services.catalog.put(CatalogKind.PRODUCT, "bench", {"name": "Bench"})
    plan = {
        "product": "bench",
        "name": "Bench",
        "entitlements": {FEATURE: {"limit": 1_000_000, "reset": "month"}},
    }
    await services.catalog.put(CatalogKind.PLAN, "bench", plan)
    queue = iter(range(customers))

    async def worker() -> None:
        for index in queue:
            customer = f"c{index:06d}"
            await services.customers.put_customer(
                customer, name=customer, metadata=None, billing_id=None
            )
            await services.customers.subscribe(customer, SubscriptionRequest(plan="bench"))
            await services.entitlements.check(customer, FEATURE, None, None)

    await asyncio.gather(*(worker() for _ in range(SEED_CONCURRENCY)))


def percentile(values: list[float], share: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def churn(services: Services, customers: int, operations: int, reload_every: int) -> float:
    """``operations`` checks round-robin, every ``reload_every``-th of a customer whose snapshot
    was just dropped (loaded again in a store job, as after a write): the seconds taken."""
    check = services.entitlements.check_cached
    snapshots = services.runtime.snapshots
    started = time.perf_counter()
    for n in range(operations):
        customer = f"c{n % customers:06d}"
        if n % reload_every == 0:
            snapshots.invalidate(customer)  # as the projector does on a customer's change
            answer = await services.entitlements.check(customer, FEATURE, None, None)
        else:
            answer = check(customer, FEATURE, None, None)
        assert getattr(answer, "has_access", False), answer
    return time.perf_counter() - started


def measure(mode: str, customers: int, checks: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="allotment-gc-bench-") as tmp:
        settings = Settings(database_path=Path(tmp) / "gc.db", gc_freeze=mode == "frozen")
        services = Services.open(settings)
        clock = PauseClock()
        gc.callbacks.append(clock)
        try:

            async def run() -> tuple[float, dict[int, list[float]], float]:
                started = time.perf_counter()
                await seed(services, customers)
                seeded = time.perf_counter() - started
                warm = {g: list(p) for g, p in clock.pauses.items()}
                for pauses in clock.pauses.values():
                    pauses.clear()
                took = await churn(services, customers, checks, RELOAD_EVERY)
                return seeded, warm, took

            seeded, warm, took = asyncio.run(run())
            cached = len(services.runtime.snapshots)
            # What the next collection of the youngest generation would walk.
            young = len(gc.get_objects(generation=0))
        finally:
            gc.callbacks.remove(clock)
            services.close()
    load = clock.pauses

    def pauses(found: dict[int, list[float]]) -> tuple[str, float, float]:
        every = [p for generation in found.values() for p in generation]
        counts = "/".join(str(len(found[g])) for g in (0, 1, 2))
        return counts, 1000 * percentile(found[2], 0.99), 1000 * max(every, default=0.0)

    warm_counts, warm_full_p99, warm_max = pauses(warm)
    load_counts, load_full_p99, load_max = pauses(load)
    every_load = [p for generation in load.values() for p in generation]
    return {
        "mode": mode,
        "customers cached": cached,
        "warm-up s": round(seeded, 1),
        "warm-up collections (gen 0/1/2)": warm_counts,
        "warm-up full p99 ms": round(warm_full_p99, 1),
        "warm-up largest ms": round(warm_max, 1),
        "load collections (gen 0/1/2)": load_counts,
        "load p99 ms": round(1000 * percentile(every_load, 0.99), 2),
        "load full p99 ms": round(load_full_p99, 1),
        "load largest ms": round(load_max, 1),
        "young objects at end": young,
        "operations/s": round(checks / took),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument(
        "--checks", type=int, default=1_000_000, help="operations timed per mode, after warm-up"
    )
    parser.add_argument("--mode", choices=("plain", "frozen"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode is not None:  # one measurement, in a process of its own
        print(json.dumps(measure(args.mode, args.customers, args.checks)))
        return 0
    rows = []
    for mode in ("plain", "frozen"):
        command = [sys.executable, __file__, "--mode", mode]
        command += ["--customers", str(args.customers), "--checks", str(args.checks)]
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(output.strip().splitlines()[-1]))
        print(f"{mode}: {rows[-1]}", file=sys.stderr)
    columns = list(rows[0])
    print("| " + " | ".join(columns) + " |")
    print("|" + "|".join("---" if c == "mode" else "---:" for c in columns) + "|")
    for row in rows:
        print(
            "| "
            + " | ".join(f"{row[c]:,}" if isinstance(row[c], int) else str(row[c]) for c in columns)
            + " |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
