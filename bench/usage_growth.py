"""How much a database grows per usage report (or debit), before and after what retention prunes.

The script opens Allotment's services in this process (no HTTP) on a fresh SQLite file, seeds a
metered feature, a plan and ``--customers`` customers, then awaits ``--reports`` enforced usage
reports (each with a new idempotency key, ``--concurrency`` in flight, spread over the
customers), as ``POST /v1/usage`` makes them. It then measures, with SQLite's ``dbstat``, the
bytes each table and its indexes hold, and again after deleting what retention would drop once
it passed: usage reports' idempotency records (``ALLOTMENT_USAGE_KEY_RETENTION_DAYS``) and the
change log's entries (``ALLOTMENT_CHANGE_LOG_RETENTION_HOURS``). It reports both per million
reports. SQLite does not give the freed pages back to the file (they hold the next rows), so
what counts for growth is the bytes the tables still hold. ``--writes debits`` makes credit
debits of one unit instead (each customer granted enough first), whose idempotency records are
kept forever.

    uv run python bench/usage_growth.py [--reports 200000] [--customers 100] [--concurrency 64]
        [--writes usage|debits]

The target (the scale issue): under 200 MiB per million usage reports once keys past retention
are pruned. This is a measurement, never a test.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

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

MIB = 1024 * 1024
TARGET_MIB_PER_MILLION = 200


CURRENCY = "credits"


async def report_usage(
    path: Path, reports: int, customers: int, concurrency: int, writes: str = "usage"
) -> float:
    """Seed and write; the seconds the writes took."""
    services = Services.open(Settings(database_path=path))
    try:
        await services.catalog.put(
            CatalogKind.FEATURE, "calls", {"name": "Calls", "kind": "metered"}
        )
        await services.catalog.put(CatalogKind.CURRENCY, CURRENCY, {"name": "Credits"})
        await services.catalog.put(CatalogKind.PRODUCT, "app", {"name": "App"})
        plan = {
            "product": "app",
            "name": "Scale",
            "entitlements": {"calls": {"limit": 10**11, "reset": "month"}},
        }
        await services.catalog.put(CatalogKind.PLAN, "scale", plan)
        for n in range(customers):
            customer = f"customer-{n}"
            await services.customers.put_customer(
                customer, name=customer, metadata=None, billing_id=None
            )
            await services.customers.subscribe(customer, SubscriptionRequest(plan="scale"))
            if writes == "debits":
                seed = GrantRequest(
                    amount=reports * MICROS_PER_UNIT,
                    category=CreditCategory.PAID,
                    idempotency_key=f"seed-{n}",
                )
                await services.credits.grant(customer, CURRENCY, seed)
        prefix = os.urandom(4).hex()
        next_index = 0

        async def worker() -> None:
            nonlocal next_index
            while next_index < reports:
                index = next_index
                next_index += 1
                if writes == "debits":
                    debit = DebitRequest(
                        amount=MICROS_PER_UNIT, idempotency_key=f"{prefix}-{index}"
                    )
                    answer = await services.credits.debit(
                        f"customer-{index % customers}", CURRENCY, debit
                    )
                    if not answer.applied:
                        raise SystemExit(f"debit {index} was not applied: {answer}")
                    continue
                report = UsageReport(
                    customer=f"customer-{index % customers}",
                    feature="calls",
                    amount=MICROS_PER_UNIT,
                    idempotency_key=f"{prefix}-{index}",
                    enforce=True,
                )
                outcome = await services.usage.report(report)
                if not outcome.recorded:
                    raise SystemExit(f"report {index} was not recorded: {outcome}")
                if index % 50_000 == 0 and index:
                    print(f"  {index:,} {writes}", file=sys.stderr)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started
    finally:
        services.close()


def table_bytes(path: Path) -> dict[str, int]:
    """Bytes each table holds, its indexes included."""
    with sqlite3.connect(path) as db:
        owners = dict(db.execute("SELECT name, tbl_name FROM sqlite_schema WHERE tbl_name != ''"))
        sizes: dict[str, int] = defaultdict(int)
        for name, size in db.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name"):
            sizes[owners.get(name, name)] += size
    return dict(sizes)


def prune_past_retention(path: Path) -> tuple[int, int]:
    """What pruning does once retention has passed for everything: (records, log entries)."""
    with sqlite3.connect(path) as db:
        records = db.execute("DELETE FROM idempotency_records WHERE route = 'usage'").rowcount
        entries = db.execute(
            "DELETE FROM change_log WHERE seq < (SELECT MAX(seq) FROM change_log)"
        ).rowcount
    return records, entries


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reports", type=int, default=200_000)
    parser.add_argument("--customers", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--writes", choices=("usage", "debits"), default="usage")
    args = parser.parse_args()
    if args.reports < 1 or args.customers < 1 or args.concurrency < 1:
        parser.error("--reports, --customers and --concurrency must be positive")
    with tempfile.TemporaryDirectory(prefix="allotment-growth-") as tmp:
        path = Path(tmp) / "growth.db"
        print(f"making {args.reports:,} {args.writes} writes ...", file=sys.stderr)
        seconds = run_until_complete(
            report_usage(path, args.reports, args.customers, args.concurrency, args.writes)
        )
        before = table_bytes(path)
        records, entries = prune_past_retention(path)
        after = table_bytes(path)
    per_million = 1_000_000 / args.reports
    print(machine_description())
    print(f"tree: {describe_tree(None)}")
    what = "enforced usage reports" if args.writes == "usage" else "debits of one credit"
    print(
        f"{args.reports:,} {what} over {args.customers} customers in "
        f"{seconds:.1f} s ({args.reports / seconds:,.0f}/s); then {records:,} usage records and "
        f"{entries:,} change-log entries dropped, as retention does once it has passed\n"
    )
    print(f"| table (with its indexes) | MiB per million {args.writes} | after pruning |")
    print("|---|---:|---:|")
    small_before = small_after = 0
    for name in sorted(before, key=lambda table: -before[table]):
        if before[name] * per_million / MIB < 1:  # empty tables' first pages, mostly
            small_before += before[name]
            small_after += after.get(name, 0)
            continue
        print(
            f"| {name} | {before[name] * per_million / MIB:,.1f} | "
            f"{after.get(name, 0) * per_million / MIB:,.1f} |"
        )
    print(
        f"| every other table | {small_before * per_million / MIB:,.1f} | "
        f"{small_after * per_million / MIB:,.1f} |"
    )
    total_before = sum(before.values()) * per_million / MIB
    total_after = sum(after.values()) * per_million / MIB
    print(f"| **all** | **{total_before:,.1f}** | **{total_after:,.1f}** |")
    summary = (
        f"\nafter pruning: {total_after:,.1f} MiB per million {args.writes}; before: "
        f"{total_before:,.1f} MiB"
    )
    if args.writes == "usage":
        verdict = "meets" if total_after < TARGET_MIB_PER_MILLION else "misses"
        summary += f" ({verdict} the target of under {TARGET_MIB_PER_MILLION} MiB)"
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
