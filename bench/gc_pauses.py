"""Garbage-collection pauses with many customers cached, with and without freezing what
warm-up loaded.

Every cached customer is a snapshot of some tens of Python objects (holdings, resolutions,
usage windows, views). CPython's full collection walks every tracked object, so its pause grows
with the cache: the scale issue measured about 1 s at 100,000 customers, and one such pause
under load put a p99 at 715 ms. ``gc.freeze()`` moves every object tracked so far to a permanent
generation that collections skip; ``allotment serve`` freezes what its caches hold as they grow
(``api/memory.py``).

The script builds a service in this process on a fresh SQLite file, seeds one plan with a
metered feature and ``--customers`` customers subscribed to it (through the services, in
batches), and checks each once so that its snapshot and usage window are cached. It then
answers ``--checks`` checks from memory, round-robin over every customer, while a
``gc.callbacks`` hook times each collection, first as CPython leaves things (``plain``), then
after ``freeze_cached`` (``frozen``), in two fresh processes. It prints, per mode, the
collections seen, the pause percentiles of full (generation 2) and of all collections, the
largest, and the check rate.

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

from allotment.api.memory import freeze_cached
from allotment.api.services import Services
from allotment.config import Settings
from allotment.service.catalog import CatalogKind
from allotment.service.customers import SubscriptionRequest

FEATURE = "ai-requests"
SEED_CONCURRENCY = 256


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


def measure(mode: str, customers: int, checks: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="allotment-gc-bench-") as tmp:
        services = Services.open(Settings(database_path=Path(tmp) / "gc.db"))
        try:
            started = time.perf_counter()
            asyncio.run(seed(services, customers))
            seeded = time.perf_counter() - started
            cached = len(services.runtime.snapshots)
            if mode == "frozen":
                freeze_cached()
            clock = PauseClock()
            gc.callbacks.append(clock)
            check = services.entitlements.check_cached
            ids = [f"c{index:06d}" for index in range(customers)]
            started = time.perf_counter()
            for n in range(checks):
                answer = check(ids[n % customers], FEATURE, None, None)
                assert getattr(answer, "has_access", False), answer
            took = time.perf_counter() - started
            gc.callbacks.remove(clock)
        finally:
            services.close()
    every = [p for pauses in clock.pauses.values() for p in pauses]
    return {
        "mode": mode,
        "customers cached": cached,
        "seeded in s": round(seeded, 1),
        "collections (gen 0/1/2)": "/".join(str(len(clock.pauses[g])) for g in (0, 1, 2)),
        "full p50 ms": round(1000 * percentile(clock.pauses[2], 0.5), 2),
        "full p99 ms": round(1000 * percentile(clock.pauses[2], 0.99), 2),
        "all p99 ms": round(1000 * percentile(every, 0.99), 3),
        "largest ms": round(1000 * max(every, default=0.0), 2),
        "checks/s": round(checks / took),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--checks", type=int, default=2_000_000, help="checks timed per mode")
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
