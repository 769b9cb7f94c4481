"""The scale benchmark: each figure at a small and a large size of what grows, side by side.

The script opens Allotment's services in this process (no HTTP) on fresh SQLite files in a
temporary directory and, for each row, builds a small and a large database of one shape through
the service's own interfaces: its methods, and where those are too slow for the large size,
batched jobs on the storage port inside ``Runtime.run`` (pools as ``pool_scale.py`` builds them,
usage events through ``record_usage``, entities and budgets, customers and subscriptions). Then,
in each of ``--rounds`` rounds, it measures the small and the large one in turn (the order
reversed every other round, so that noise on the shared machine hits both) and reports the
median of the rounds. Writes under load (debits, enforced reports) run in ``CHUNKS`` chunks per
round, the two sizes' chunks in turn (``chunks_in_turn``), and the grants and entries rows'
reads of a fraction of a millisecond one of each in turn (``read_in_turn``): the machine
changes pace by up to 2x from one moment to the next, and each size is sampled over the same
stretch of it. The other figures (the entities row's restart, checks and PUTs, the events row's
PUTs, the checks from memory) are still taken one size after the other, in rounds. Each row runs
in a fresh process of its own (``--one-process``: all in this one), so that no row's garbage,
caches or frozen objects weigh on another's figures:

- ``grants``, live credit grants in one pool, 10 -> 10,000: debits per second and CPU per debit;
  the pool read (``CreditService.balance``) p50, also per live grant listed, since it lists
  every one; the first ledger page (``CreditService.ledger``, limit 100) p50;
- ``entries``, ledger entries in one pool, 100 -> 100,000: revenue (``CreditService.revenue``),
  the two sizes read in turn rather than one round after the other (``read_in_turn``), every
  thread of the row on one CPU (``on_one_cpu``);
- ``entities``, entities with a budget each, all read, 10 -> 10,000: enforced usage with an
  entity (rotating over every leaf) per second, CPU per report; after a restart, checking every
  entity once (total, per entity, CPU per entity); a leaf's PUT; the first check after a
  restart;
- ``events``, usage events in a window, 1,000 -> 1,000,000: a budget PUT that changes its reset
  (month -> day, a window projected from the events; day -> month, a window known);
- ``keys``, idempotency keys, 1,000 -> 200,000: enforced reports per second, CPU and p50, and
  the bytes per million reports once retention has pruned (as ``usage_growth.py`` measures);
- ``customers``, cached customers, 200 -> 100,000 (and 150,000): CPU per check answered from
  memory; and GC pauses at 100,000 with the freezer on, as ``allotment serve`` runs it.

Answers are checked before anything is reported (balances, ledgers and revenue as
``pool_scale.py`` checks them, every budget counter against the usage reported, the budget PUT's
usage, the events and keys stored, every check granted), and any mismatch stops the run. The
target (the scale issue): every figure of the large size within 1.5x of the small one's. Figures
that are the whole of a work that grows with the size (a pool read lists every live grant,
checking every entity) are given per unit too and only that is held to the target. This is a
measurement, never a test: nothing in the test suite times anything.

    uv run --locked python bench/scale.py [--rows grants,entries,entities,events,keys,customers]
        [--rounds 3] [--large-entities 10000] [--large-events 1000000] [--budget 1200]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import gc
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from check_throughput import BenchError, describe_tree, machine_description
from debit_throughput import run_until_complete
from gc_pauses import FEATURE as CUSTOMERS_FEATURE
from gc_pauses import RELOAD_EVERY, PauseClock, churn, percentile
from gc_pauses import seed as seed_customers
from pool_scale import CURRENCY as POOL_CURRENCY
from pool_scale import CUSTOMER as POOL_CUSTOMER
from pool_scale import Shape, debit_many, open_pool, quantile
from pool_scale import verify as verify_pool
from usage_growth import prune_past_retention, report_usage, table_bytes

from allotment.api.services import Services
from allotment.config import DEFAULT_CACHE_CUSTOMERS, Settings
from allotment.domain.budgets import Budget, BudgetKind
from allotment.domain.catalog import Enforcement
from allotment.domain.customers import Customer
from allotment.domain.entities import Entity
from allotment.domain.holdings import Subscription
from allotment.domain.identifiers import new_id
from allotment.domain.periods import ResetPeriod
from allotment.domain.quantities import MICROS_PER_UNIT
from allotment.domain.timefmt import whole_second
from allotment.service.answers import CheckAnswer
from allotment.service.entity_views import EntityBudgetView
from allotment.service.ports import UnitOfWork, UsageEvent
from allotment.service.runtime import record_usage
from allotment.service.usage import UsageReport

ROWS = ("grants", "entries", "entities", "events", "keys", "customers")
TARGET = 1.5  # every figure of the large size within 1.5x of the small one's
UNIT = MICROS_PER_UNIT
MIB = 1024 * 1024

# What usage_growth.report_usage seeds: a metered feature on a plan, customers customer-0 ...
USAGE_FEATURE = "calls"
USAGE_CUSTOMER = "customer-0"
KEY_CUSTOMERS = 100  # the keys row spreads its reports over this many, as usage_growth does
CHUNKS = 4  # a round's writes, in this many chunks, the sizes' chunks in turn

BUDGET_LIMIT = 10**9 * UNIT  # far more than any run reports
GROUP_SIZE = 100  # the entities row: a group entity per 99 leaves, two levels deep
OTHERS = "others"  # the events row: the group of agents whose events are off the measured path
MEASURED_EVENTS = 100  # events of each measured entity, at both sizes
ENTITY_CHUNK = 1_000  # entities per building job
EVENT_CHUNK = 20_000  # usage events per building job
CUSTOMER_CHUNK = 2_000  # customers per building job
SEEDED_CUSTOMERS = 256  # customers made through the services before the batched ones
WARM_CONCURRENCY = 256  # checks in flight while loading the snapshot cache

# When the whole run started (epoch seconds): a row's own process inherits it from the run's.
STARTED = float(os.environ.get("ALLOTMENT_SCALE_STARTED", time.time()))


def elapsed() -> float:
    return time.time() - STARTED


def say(text: str) -> None:
    print(f"[{elapsed():6.0f}s] {text}", file=sys.stderr, flush=True)


# --- Figures ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Line:
    """One figure of the table: the medians of the rounds at each size."""

    what: str
    figure: str
    small: float
    large: float
    unit: str
    higher_is_better: bool = False
    unjudged: str = ""  # why the ratio is not held to the target (the work grows by design)

    @property
    def ratio(self) -> float:
        """Times worse at the large size: large/small, or small/large for rates."""
        worse, better = (
            (self.small, self.large) if self.higher_is_better else (self.large, self.small)
        )
        return worse / better if better else float("inf")


@dataclass
class Report:
    lines: list[Line] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    gc_rows: list[dict[str, Any]] = field(default_factory=list)
    done: list[str] = field(default_factory=list)


class Rounds:
    """Each figure's value per size and round; the table shows their median."""

    def __init__(self) -> None:
        self._values: dict[tuple[str, str], list[float]] = defaultdict(list)

    def add(self, size: str, figure: str, value: float) -> None:
        self._values[(size, figure)].append(value)

    def median(self, size: str, figure: str) -> float:
        return statistics.median(self._values[(size, figure)])

    def line(
        self,
        what: str,
        key: str,
        figure: str,
        unit: str,
        *,
        large: str = "large",
        rate: bool = False,
        unjudged: str = "",
    ) -> Line:
        """The line of figure ``key``: the small size against ``large``; ``rate`` when higher
        is better."""
        small_value, large_value = self.median("small", key), self.median(large, key)
        return Line(what, figure, small_value, large_value, unit, rate, unjudged)


def in_turn(number: int, sizes: Sequence[str]) -> list[str]:
    """The sizes in order in odd rounds, reversed in even ones."""
    return list(sizes) if number % 2 else list(reversed(sizes))


class Stopwatch:
    """Wall and CPU time since it was made: the process's CPU (the store's thread included) by
    default, or the calling thread's."""

    def __init__(self, cpu: Callable[[], float] = time.process_time) -> None:
        self._cpu = cpu
        self._wall0, self._cpu0 = time.perf_counter(), cpu()

    def read(self) -> tuple[float, float]:
        return time.perf_counter() - self._wall0, self._cpu() - self._cpu0


async def many(count: int, concurrency: int, one: Callable[[int], Awaitable[None]]) -> list[float]:
    """``one(0)`` ... ``one(count - 1)`` awaited with ``concurrency`` in flight; each latency
    in milliseconds."""
    latencies: list[float] = []
    indexes = iter(range(count))

    async def worker() -> None:
        for index in indexes:
            started = time.perf_counter()
            await one(index)
            latencies.append(1000 * (time.perf_counter() - started))

    await asyncio.gather(*(worker() for _ in range(min(concurrency, count))))
    return latencies


@dataclass
class Taken:
    """What one size's chunks of a round took: wall and CPU seconds, and each request's
    latency in milliseconds."""

    seconds: float = 0.0
    cpu: float = 0.0
    latencies: list[float] = field(default_factory=list)


async def chunks_in_turn(
    number: int, runs: dict[str, Callable[[int], Awaitable[list[float]]]]
) -> dict[str, Taken]:
    """Round ``number`` of each size's work in ``CHUNKS`` chunks (``runs[size](chunk)``, which
    answers its latencies), the sizes' chunks in turn, the order reversed every chunk.

    The shared machine changes pace by up to 2x from one moment to the next, the CPU a request
    takes included. Measured one size after the other, each size's second or so could land on a
    different side of such a change (the same code once measured 0.74x, small against large);
    in turn, both sizes are sampled over the same stretch of time."""
    taken = {size: Taken() for size in runs}
    for chunk in range(CHUNKS):
        for size in in_turn(number + chunk, list(runs)):
            clock = Stopwatch()
            latencies = await runs[size](chunk)
            seconds, cpu = clock.read()
            taken[size].seconds += seconds
            taken[size].cpu += cpu
            taken[size].latencies += latencies
    return taken


def checkpoint(path: Path) -> None:
    """Fold what building wrote into the database file, so that no measurement pays for the
    checkpoint of the build's write-ahead log."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def granted(answer: object, where: str, budgets: int | None = None) -> CheckAnswer:
    if not isinstance(answer, CheckAnswer) or not answer.has_access:
        raise BenchError(f"{where}: expected a grant, got {answer!r}")
    if budgets is not None and len(answer.budgets) != budgets:
        raise BenchError(f"{where}: expected {budgets} budget(s) on the path: {answer!r}")
    return answer


# --- Building through the storage port -------------------------------------------------------


async def add_entities(
    services: Services,
    customer: str,
    placed: Sequence[tuple[str, str | None]],
    *,
    kind: str,
    budgeted: bool,
) -> None:
    """Entities ``(id, parent)``, parents first, each with a hard monthly budget on the usage
    feature when ``budgeted``: a job per ``ENTITY_CHUNK``, as ``EntityService.put`` and
    ``BudgetService.put`` save them (their checks of the tree cost a pass over it each)."""
    runtime = services.runtime

    def job(chunk: Sequence[tuple[str, str | None]]) -> Callable[[UnitOfWork], None]:
        def run(uow: UnitOfWork) -> None:
            now = runtime.clock.now()
            for entity_id, parent in chunk:
                uow.entities.save(customer, Entity(entity_id, parent, kind, entity_id, now))
                if budgeted:
                    budget = Budget(
                        entity=entity_id,
                        target=USAGE_FEATURE,
                        kind=BudgetKind.FEATURE,
                        limit=BUDGET_LIMIT,
                        reset=ResetPeriod.MONTH,
                        enforcement=Enforcement.HARD,
                        created_at=whole_second(now),
                    )
                    uow.budgets.save(customer, budget)
            runtime.customer_changed(uow, customer)

        return run

    for start in range(0, len(placed), ENTITY_CHUNK):
        await runtime.run(job(placed[start : start + ENTITY_CHUNK]))


async def put_budget(services: Services, entity: str, reset: ResetPeriod) -> EntityBudgetView:
    view, _ = await services.budgets.put(
        USAGE_CUSTOMER,
        entity,
        USAGE_FEATURE,
        limit=BUDGET_LIMIT,
        reset=reset,
        enforcement=Enforcement.HARD,
    )
    return view


async def seed_usage_catalog(path: Path, customers: int) -> None:
    """``usage_growth.py``'s catalog and customers, with no report (it closes its services)."""
    await report_usage(path, 0, customers, 1)


# --- Row: live grants in one pool ------------------------------------------------------------


async def pool_read(services: Services) -> object:
    return await services.credits.balance(POOL_CUSTOMER, POOL_CURRENCY)


async def ledger_page(services: Services) -> object:
    return await services.credits.ledger(POOL_CUSTOMER, POOL_CURRENCY, None, 100)


async def row_grants(args: argparse.Namespace, workdir: Path, report: Report) -> None:
    what = f"live credit grants in one pool: 10 -> {args.large_grants:,}"
    shapes = {
        "small": Shape("grants small", 10, 45),
        "large": Shape("grants large", args.large_grants, 45),
    }
    opened: dict[str, Services] = {}
    rounds = Rounds()
    try:
        for size, shape in shapes.items():
            opened[size] = await open_pool(workdir / f"grants-{size}.db", shape, args)
        prefix = "g" + os.urandom(4).hex()
        per_chunk = max(1, args.debits // CHUNKS)
        debited = per_chunk * CHUNKS
        for number in range(1, args.rounds + 1):

            def debits(
                services: Services, number: int = number
            ) -> Callable[[int], Awaitable[list[float]]]:
                async def run_chunk(chunk_index: int) -> list[float]:
                    tag = f"{prefix}-{number}-{chunk_index}"
                    return await debit_many(services, tag, per_chunk, args.concurrency)

                return run_chunk

            taken = await chunks_in_turn(
                number, {size: debits(services) for size, services in opened.items()}
            )
            reads: dict[str, dict[str, list[float]]] = {}
            for name, read in (("pool read", pool_read), ("ledger", ledger_page)):
                each = {
                    size: functools.partial(read, services) for size, services in opened.items()
                }
                await read_in_turn(each, max(1, args.reads // 10))  # unmeasured
                reads[name] = await read_in_turn(each, args.reads)
            for size, took in taken.items():
                pool_p50 = quantile(reads["pool read"][size], 0.5)
                rounds.add(size, "debits/s", debited / took.seconds)
                rounds.add(size, "cpu", 1e6 * took.cpu / debited)
                rounds.add(size, "pool read", pool_p50)
                rounds.add(size, "per grant", 1000 * pool_p50 / shapes[size].live)
                rounds.add(size, "ledger", quantile(reads["ledger"][size], 0.5))
                say(
                    f"grants round {number}, {size}: {debited / took.seconds:,.0f} debits/s, "
                    f"{1e6 * took.cpu / debited:,.0f} us CPU/debit, pool read p50 "
                    f"{pool_p50:.2f} ms"
                )
        for size, shape in shapes.items():
            await verify_pool(opened[size], shape, args.warmup + args.rounds * debited)
    finally:
        for services in opened.values():
            services.close()
    times = f"{args.large_grants // 10:,}x the grants listed: see per grant"
    report.lines += [
        rounds.line(what, "debits/s", "debits/s (ratio: small/large)", "/s", rate=True),
        rounds.line(what, "cpu", "CPU per debit", "us"),
        rounds.line(
            what, "pool read", "pool read p50 (lists every live grant)", "ms", unjudged=times
        ),
        rounds.line(what, "per grant", "pool read p50 per live grant listed", "us"),
        rounds.line(what, "ledger", "ledger page (limit 100) p50", "ms"),
    ]


# --- Row: ledger entries in one pool ---------------------------------------------------------


@contextlib.contextmanager
def on_one_cpu() -> Iterator[None]:
    """This thread, and the threads it starts meanwhile (the stores'), on one CPU.

    Half of a read of a tenth of a millisecond is the hand-over to a store's thread and back. How
    long that takes depends on where the operating system runs that thread: two services whose
    reads run the very same statements (two pools of the same shape) differed by 1.3x, steadily,
    when their threads were free to move, and by under 5 % on one CPU."""
    if not hasattr(os, "sched_setaffinity"):  # Linux only: elsewhere, where they fall
        yield
        return
    allowed = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(allowed)})
    try:
        yield
    finally:
        os.sched_setaffinity(0, allowed)


async def read_in_turn(
    reads: Mapping[str, Callable[[], Awaitable[object]]], count: int
) -> dict[str, list[float]]:
    """Each read ``count`` times, one of each in turn (the order reversed every other turn);
    each one's latencies in milliseconds.

    What a read of a tenth of a millisecond costs moves by 2x with what else the shared machine
    runs, the CPU time of the store's batch included: a round of one size after the other could
    land each on a different side of such a move. Taken in turn, both sizes are sampled over the
    same stretch of time."""
    latencies: dict[str, list[float]] = {name: [] for name in reads}
    for turn in range(count):
        for name in in_turn(turn + 1, list(reads)):
            started = time.perf_counter()
            await reads[name]()
            latencies[name].append(1000 * (time.perf_counter() - started))
    return latencies


async def row_entries(args: argparse.Namespace, workdir: Path, report: Report) -> None:
    entries = args.large_entries
    what = f"ledger entries in one pool: 100 -> {entries:,}"
    # 10 live grants at both sizes; the history grows: a grant and a debit entry per used-up one.
    shapes = {
        "small": Shape("entries small", 10, 45),
        "large": Shape("entries large", 10, (entries - 10) // 2),
    }
    opened: dict[str, Services] = {}
    rounds = Rounds()
    try:
        with on_one_cpu():  # this thread and the stores' threads, started here
            for size, shape in shapes.items():
                opened[size] = await open_pool(workdir / f"entries-{size}.db", shape, args)
            revenue = {
                size: functools.partial(services.credits.revenue, POOL_CUSTOMER, POOL_CURRENCY)
                for size, services in opened.items()
            }
            for number in range(1, args.rounds + 1):
                await read_in_turn(revenue, max(1, args.reads // 10))  # unmeasured
                latencies = await read_in_turn(revenue, args.reads)
                for size in shapes:
                    latency = quantile(latencies[size], 0.5)
                    rounds.add(size, "revenue", latency)
                    say(f"entries round {number}, {size}: revenue p50 {latency:.3f} ms")
            for size, shape in shapes.items():
                await verify_pool(opened[size], shape, args.warmup)
    finally:
        for services in opened.values():
            services.close()
    report.lines.append(rounds.line(what, "revenue", "revenue p50", "ms"))


# --- Row: entities with a budget each --------------------------------------------------------


@dataclass
class Tree:
    """Groups (roots) and leaves under them round-robin: two levels at every size, so that
    every leaf's path holds two budgets (its own and its group's)."""

    groups: list[str]
    leaves: list[str]
    parent: dict[str, str]

    @classmethod
    def of(cls, entities: int) -> Tree:
        count = max(1, -(-entities // GROUP_SIZE))
        groups = [f"group-{n:04d}" for n in range(count)]
        leaves = [f"agent-{n:06d}" for n in range(entities - count)]
        parent = {leaf: groups[n % count] for n, leaf in enumerate(leaves)}
        return cls(groups, leaves, parent)

    @property
    def everyone(self) -> list[str]:
        return self.groups + self.leaves


@dataclass
class EntityDatabase:
    path: Path
    tree: Tree
    services: Services
    reported: Counter[str] = field(default_factory=Counter)
    next_leaf: int = 0


async def build_entities(path: Path, entities: int) -> EntityDatabase:
    started = time.perf_counter()
    await seed_usage_catalog(path, 1)
    services = Services.open(Settings(database_path=path))
    tree = Tree.of(entities)
    try:
        for group in tree.groups:  # through the services: a handful
            await services.entities.put(USAGE_CUSTOMER, group, parent=None, kind="team", name=group)
            await put_budget(services, group, ResetPeriod.MONTH)
        placed = [(leaf, tree.parent[leaf]) for leaf in tree.leaves]
        await add_entities(services, USAGE_CUSTOMER, placed, kind="agent", budgeted=True)
        sample = await services.entities.get(USAGE_CUSTOMER, tree.leaves[-1])
        if sample.parent != tree.parent[tree.leaves[-1]] or len(sample.budgets) != 1:
            raise BenchError(f"entity {tree.leaves[-1]} was not built as meant: {sample!r}")
    except BaseException:
        services.close()
        raise
    checkpoint(path)
    say(
        f"entities: built {len(tree.groups):,} groups and {len(tree.leaves):,} leaves, each with "
        f"a budget, in {time.perf_counter() - started:.1f}s"
    )
    return EntityDatabase(path, tree, services)


async def check_everyone(
    database: EntityDatabase, concurrency: int, expect: Callable[[str, CheckAnswer], None]
) -> None:
    tree, check = database.tree, database.services.entitlements.check
    everyone = tree.everyone

    async def one(index: int) -> None:
        entity = everyone[index]
        answer = await check(USAGE_CUSTOMER, USAGE_FEATURE, entity, UNIT)
        expect(entity, granted(answer, f"check of {entity}", 2 if entity in tree.parent else 1))

    await many(len(everyone), concurrency, one)


async def entity_restart(
    database: EntityDatabase, size: str, number: int, args: argparse.Namespace, rounds: Rounds
) -> str:
    """A restart, the first check of a leaf after it, and every entity checked once: added to
    ``rounds``; what to say of them."""
    tree = database.tree
    # A restart: the first check of an entity loads the customer (tree and budgets) anew.
    database.services.close()
    database.services = services = Services.open(Settings(database_path=database.path))
    leaf = tree.leaves[number % len(tree.leaves)]
    started = time.perf_counter()
    answer = await services.entitlements.check(USAGE_CUSTOMER, USAGE_FEATURE, leaf, UNIT)
    first = 1000 * (time.perf_counter() - started)
    granted(answer, f"first check of {leaf}", 2)
    rounds.add(size, "first check", first)

    # Every entity once, on a cache that holds none of their budget windows yet.
    clock = Stopwatch()
    await check_everyone(database, args.concurrency, lambda entity, answer: None)
    checking, checking_cpu = clock.read()
    everyone = len(tree.everyone)
    rounds.add(size, "check all", 1000 * checking)
    rounds.add(size, "check each", 1e6 * checking / everyone)
    rounds.add(size, "check each cpu", 1e6 * checking_cpu / everyone)
    return f"first check {first:.1f} ms, every entity {1000 * checking:,.0f} ms"


def entity_reports(
    database: EntityDatabase, number: int, per_chunk: int, args: argparse.Namespace
) -> Callable[[int], Awaitable[list[float]]]:
    """A chunk of enforced reports, the leaves taken in rotation from where the last left off."""
    tree = database.tree

    async def run_chunk(chunk_index: int) -> list[float]:
        prefix = f"e{os.urandom(4).hex()}-{number}-{chunk_index}"
        start = database.next_leaf
        database.next_leaf += per_chunk
        services = database.services

        async def one(index: int) -> None:
            entity = tree.leaves[(start + index) % len(tree.leaves)]
            report = UsageReport(
                customer=USAGE_CUSTOMER,
                feature=USAGE_FEATURE,
                amount=UNIT,
                idempotency_key=f"{prefix}-{index}",
                entity=entity,
                enforce=True,
            )
            outcome = await services.usage.report(report)
            if not outcome.recorded or len(outcome.answer.budgets) != 2:
                raise BenchError(f"usage for {entity} was not recorded as meant: {outcome!r}")
            database.reported[entity] += 1

        return await many(per_chunk, args.concurrency, one)

    return run_chunk


async def entity_puts(
    database: EntityDatabase, size: str, number: int, args: argparse.Namespace, rounds: Rounds
) -> float:
    """``--writes`` leaf PUTs that change its name, one at a time: their p50."""
    tree, services = database.tree, database.services
    puts = []
    for k in range(args.writes):
        leaf = tree.leaves[(number * args.writes + k) % len(tree.leaves)]
        name = f"agent {number}-{k}"
        started = time.perf_counter()
        view, created = await services.entities.put(
            USAGE_CUSTOMER, leaf, parent=tree.parent[leaf], kind="agent", name=name
        )
        puts.append(1000 * (time.perf_counter() - started))
        if created or view.name != name:
            raise BenchError(f"PUT of entity {leaf} answered {view!r}")
    rounds.add(size, "put", quantile(puts, 0.5))
    return quantile(puts, 0.5)


async def verify_budgets(database: EntityDatabase, concurrency: int) -> None:
    """Every budget's usage is what was reported for its entity (a group: for its leaves)."""
    tree, reported = database.tree, database.reported
    expected: Counter[str] = Counter()
    for leaf, count in reported.items():
        expected[leaf] += count
        expected[tree.parent[leaf]] += count
    if sum(reported.values()) == 0:
        raise BenchError("no usage was reported for any entity")

    def expect(entity: str, answer: CheckAnswer) -> None:
        usages = [budget.usage for budget in answer.budgets]
        meant = [expected[entity]] + (
            [expected[tree.parent[entity]]] if entity in tree.parent else []
        )
        if usages != meant:
            raise BenchError(f"budgets of {entity}: usage {usages}, reported {meant}")

    await check_everyone(database, concurrency, expect)


async def row_entities(args: argparse.Namespace, workdir: Path, report: Report) -> None:
    sizes = {"small": 10, "large": args.large_entities}
    what = f"entities with a budget each, all read: 10 -> {args.large_entities:,}"
    databases: dict[str, EntityDatabase] = {}
    rounds = Rounds()
    try:
        for size, entities in sizes.items():
            databases[size] = await build_entities(workdir / f"entities-{size}.db", entities)
        # The same number of reports at both sizes, enough to report once for every large leaf.
        per_chunk = -(-max(args.reports, len(databases["large"].tree.leaves)) // CHUNKS)
        reports = per_chunk * CHUNKS
        for number in range(1, args.rounds + 1):
            said: dict[str, str] = {}
            for size in in_turn(number, ("small", "large")):
                said[size] = await entity_restart(databases[size], size, number, args, rounds)
            taken = await chunks_in_turn(
                number,
                {
                    size: entity_reports(database, number, per_chunk, args)
                    for size, database in databases.items()
                },
            )
            for size in in_turn(number, ("small", "large")):
                took = taken[size]
                rounds.add(size, "reports/s", reports / took.seconds)
                rounds.add(size, "report cpu", 1e6 * took.cpu / reports)
                rounds.add(size, "report p50", quantile(took.latencies, 0.5))
                put = await entity_puts(databases[size], size, number, args, rounds)
                say(
                    f"entities round {number}, {size}: {said[size]}; "
                    f"{reports / took.seconds:,.0f} reports/s, {1e6 * took.cpu / reports:,.0f} us "
                    f"CPU/report; leaf PUT p50 {put:.2f} ms"
                )
        for database in databases.values():
            await verify_budgets(database, args.concurrency)
    finally:
        for database in databases.values():
            database.services.close()
    grows = f"{args.large_entities // 10:,}x the entities: see per entity"
    report.lines += [
        rounds.line(
            what, "reports/s", "enforced usage reports/s (ratio: small/large)", "/s", rate=True
        ),
        rounds.line(what, "report cpu", "CPU per enforced report", "us"),
        rounds.line(what, "report p50", "enforced report p50", "ms"),
        rounds.line(
            what,
            "check all",
            "check every entity once after a restart: total",
            "ms",
            unjudged=grows,
        ),
        rounds.line(what, "check each", "check every entity once: per entity", "us"),
        rounds.line(what, "check each cpu", "check every entity once: CPU per entity", "us"),
        rounds.line(what, "put", "leaf entity PUT (new name) p50", "ms"),
        rounds.line(what, "first check", "first check of an entity after a restart", "ms"),
    ]
    report.notes.append(
        f"entities: one customer; groups of up to {GROUP_SIZE - 1} leaves (1 group and 9 leaves; "
        f"{len(Tree.of(args.large_entities).groups):,} groups and "
        f"{len(Tree.of(args.large_entities).leaves):,} leaves), a hard monthly budget on every "
        f"entity. Each round: restart (close, open on the same file) and time the first check "
        f"of a leaf; check every entity once ({args.concurrency} in flight); {reports:,} "
        f"enforced reports rotating over the leaves ({args.concurrency} in flight; in {CHUNKS} "
        f"chunks, the sizes' chunks in turn); "
        f"{args.writes} leaf PUTs one at a time."
    )


# --- Row: usage events in a window -----------------------------------------------------------


@dataclass
class EventDatabase:
    path: Path
    services: Services
    events: int
    measured: list[str]


async def build_events(path: Path, events: int, args: argparse.Namespace) -> EventDatabase:
    """One customer; a measured entity per round, each with a monthly budget and
    ``MEASURED_EVENTS`` events (reported through the service); every other event in batches,
    spread over ``--agents`` agents of the group ``others``, off the measured entities' paths."""
    started = time.perf_counter()
    measured = [f"measured-{n}" for n in range(1, args.rounds + 1)]
    bulk = events - MEASURED_EVENTS * len(measured)
    if bulk < 0:
        raise BenchError(f"{events:,} events cannot hold {len(measured)} x {MEASURED_EVENTS}")
    await seed_usage_catalog(path, 1)
    services = Services.open(Settings(database_path=path))
    try:
        await services.entities.put(USAGE_CUSTOMER, OTHERS, parent=None, kind="team", name=None)
        agents = [f"agent-{n:05d}" for n in range(args.agents)]
        placed = [(agent, OTHERS) for agent in agents]
        await add_entities(services, USAGE_CUSTOMER, placed, kind="agent", budgeted=False)
        for entity in measured:
            await services.entities.put(
                USAGE_CUSTOMER, entity, parent=None, kind="agent", name=None
            )
            await put_budget(services, entity, ResetPeriod.MONTH)
        prefix = os.urandom(4).hex()

        async def one(index: int) -> None:
            report = UsageReport(
                customer=USAGE_CUSTOMER,
                feature=USAGE_FEATURE,
                amount=UNIT,
                idempotency_key=f"{prefix}-{index}",
                entity=measured[index // MEASURED_EVENTS],
            )
            if not (await services.usage.report(report)).recorded:
                raise BenchError(f"usage for {report.entity} was not recorded")

        await many(MEASURED_EVENTS * len(measured), args.concurrency, one)
        runtime = services.runtime

        def job(start: int, count: int) -> Callable[[UnitOfWork], None]:
            def run(uow: UnitOfWork) -> None:
                now = runtime.clock.now()
                uow.hold_usage(USAGE_CUSTOMER)
                for index in range(start, start + count):
                    agent = agents[index % len(agents)]
                    path = (agent, OTHERS)
                    uow.hold_budgets(USAGE_CUSTOMER, path)
                    event = UsageEvent(
                        USAGE_CUSTOMER, USAGE_FEATURE, agent, UNIT, now, now, f"bulk-{index}", path
                    )
                    record_usage(uow, event)

            return run

        for start in range(0, bulk, EVENT_CHUNK):
            await runtime.run(job(start, min(EVENT_CHUNK, bulk - start)))
            if start and start % 200_000 == 0:
                say(f"  {start:,} events")
        answer = await services.entitlements.check(USAGE_CUSTOMER, USAGE_FEATURE, None, None)
        if granted(answer, "the customer's check").current_usage != events:
            raise BenchError(f"the customer's usage is {answer.current_usage}, not {events:,}")
    except BaseException:
        services.close()
        raise
    checkpoint(path)
    say(f"events: built {events:,} usage events in {time.perf_counter() - started:.1f}s")
    return EventDatabase(path, services, events, measured)


async def row_events(args: argparse.Namespace, workdir: Path, report: Report) -> None:
    sizes = {"small": args.small_events, "large": args.large_events}
    what = f"usage events in a window: {args.small_events:,} -> {args.large_events:,}"
    databases: dict[str, EventDatabase] = {}
    rounds = Rounds()
    try:
        for size, events in sizes.items():
            databases[size] = await build_events(workdir / f"events-{size}.db", events, args)
        for number in range(1, args.rounds + 1):
            for size in in_turn(number, ("small", "large")):
                database = databases[size]
                entity = database.measured[number - 1]  # its day window never read before
                figures = []
                for reset, key in ((ResetPeriod.DAY, "to day"), (ResetPeriod.MONTH, "to month")):
                    started = time.perf_counter()
                    view = await put_budget(database.services, entity, reset)
                    figures.append(1000 * (time.perf_counter() - started))
                    rounds.add(size, key, figures[-1])
                    if view.reset != reset or view.usage != MEASURED_EVENTS:
                        raise BenchError(f"budget of {entity} answered {view!r}")
                say(
                    f"events round {number}, {size}: budget PUT month -> day {figures[0]:.2f} "
                    f"ms, day -> month {figures[1]:.2f} ms"
                )
    finally:
        for database in databases.values():
            database.services.close()
    report.lines += [
        rounds.line(what, "to day", "budget PUT month -> day (a new window)", "ms"),
        rounds.line(what, "to month", "budget PUT day -> month (a known window)", "ms"),
    ]
    report.notes.append(
        f"events: one customer, every event of amount 1 in the current window; the measured "
        f"entity (a fresh one each round, with its own monthly budget) has {MEASURED_EVENTS} "
        f"events at both sizes, reported through the service; the rest are spread over "
        f"{args.agents:,} agents under another group, none on the measured entity's path. Each "
        f"round changes the measured budget's reset to day (a window never read, projected from "
        f"the events) and back to month (a window known)."
    )


# --- Row: idempotency keys -------------------------------------------------------------------


async def row_keys(args: argparse.Namespace, workdir: Path, report: Report) -> None:
    sizes = {"small": args.small_keys, "large": args.large_keys}
    what = f"idempotency keys: {args.small_keys:,} -> {args.large_keys:,}"
    # Every measured report stores a key too: at most the small size's count per round.
    per_chunk = max(1, min(args.reports, args.small_keys) // CHUNKS)
    per_round = per_chunk * CHUNKS
    base = workdir / "keys-seeded.db"
    await seed_usage_catalog(base, KEY_CUSTOMERS)
    prune_past_retention(base)
    seeded = sum(table_bytes(base).values())
    paths = {size: workdir / f"keys-{size}.db" for size in sizes}
    for size, keys in sizes.items():
        seconds = await report_usage(paths[size], keys, KEY_CUSTOMERS, args.concurrency)
        checkpoint(paths[size])
        say(f"keys: {keys:,} enforced reports in {seconds:.1f}s ({keys / seconds:,.0f}/s)")
    opened = {size: Services.open(Settings(database_path=paths[size])) for size in sizes}
    rounds = Rounds()
    prefix = "k" + os.urandom(4).hex()
    try:
        for services in opened.values():
            # Unmeasured: the pages the reports write go into SQLite's cache (the large file's
            # indexes are read from the operating system at first), as a running service has.
            # Its keys sort with the measured ones (round 0), so their pages are the ones warmed.
            warm = functools.partial(warm_key, services, f"{prefix}-0")
            await many(args.warmup, args.concurrency, warm)
        for number in range(1, args.rounds + 1):

            def reports(
                services: Services, number: int = number
            ) -> Callable[[int], Awaitable[list[float]]]:
                async def run_chunk(chunk_index: int) -> list[float]:
                    tag = f"{prefix}-{number}-{chunk_index}"

                    async def one(index: int) -> None:
                        outcome = await services.usage.report(key_report(f"{tag}-{index}", index))
                        if not outcome.recorded or outcome.replayed:
                            raise BenchError(f"report {tag}-{index}: {outcome!r}")

                    return await many(per_chunk, args.concurrency, one)

                return run_chunk

            taken = await chunks_in_turn(
                number, {size: reports(services) for size, services in opened.items()}
            )
            for size, took in taken.items():
                rounds.add(size, "reports/s", per_round / took.seconds)
                rounds.add(size, "cpu", 1e6 * took.cpu / per_round)
                rounds.add(size, "p50", quantile(took.latencies, 0.5))
                say(
                    f"keys round {number}, {size}: {per_round / took.seconds:,.0f} reports/s, "
                    f"{1e6 * took.cpu / per_round:,.0f} us CPU/report, p50 "
                    f"{quantile(took.latencies, 0.5):.2f} ms"
                )
        for size, services in opened.items():  # a replay is answered from its key
            outcome = await services.usage.report(key_report(f"{prefix}-1-0-0", 0))
            if not (outcome.recorded and outcome.replayed):
                raise BenchError(f"{size}: the replay of {prefix}-1-0-0 answered {outcome!r}")
    finally:
        for services in opened.values():
            services.close()
    for size, keys in sizes.items():
        total = keys + args.warmup + args.rounds * per_round
        with contextlib.closing(sqlite3.connect(paths[size])) as db:
            (stored,) = db.execute("SELECT COUNT(*) FROM usage_events").fetchone()
        if stored != total:
            raise BenchError(f"keys {size}: {stored:,} usage events stored, {total:,} reported")
        prune_past_retention(paths[size])
        grown = sum(table_bytes(paths[size]).values()) - seeded
        rounds.add(size, "MiB", grown * 1_000_000 / total / MIB)
    report.lines += [
        rounds.line(what, "reports/s", "enforced reports/s (ratio: small/large)", "/s", rate=True),
        rounds.line(what, "cpu", "CPU per enforced report", "us"),
        rounds.line(what, "p50", "enforced report p50", "ms"),
        rounds.line(what, "MiB", "MiB per million reports, once retention pruned", "MiB"),
    ]
    report.notes.append(
        f"keys: reports as usage_growth.py makes them ({KEY_CUSTOMERS} customers, a new key "
        f"each, {args.concurrency} in flight); {args.warmup:,} unmeasured, then each round "
        f"{per_round:,} measured reports in {CHUNKS} chunks, the sizes' chunks in turn, so "
        f"the small size holds {args.small_keys + args.warmup:,} to "
        f"{args.small_keys + args.warmup + args.rounds * per_round:,} keys as it is measured. "
        f"Bytes: what the "
        f"tables hold (dbstat) after deleting the usage keys and the change log as retention "
        f"does, less a database seeded alike with no report, per million reports made."
    )


async def warm_key(services: Services, tag: str, index: int) -> None:
    outcome = await services.usage.report(key_report(f"{tag}-{index}", index))
    if not outcome.recorded or outcome.replayed:
        raise BenchError(f"warm-up report {tag}-{index}: {outcome!r}")


def key_report(key: str, index: int) -> UsageReport:
    return UsageReport(
        customer=f"customer-{index % KEY_CUSTOMERS}",
        feature=USAGE_FEATURE,
        amount=UNIT,
        idempotency_key=key,
        enforce=True,
    )


# --- Row: cached customers -------------------------------------------------------------------


def customer_id(index: int) -> str:
    return f"c{index:06d}"  # as gc_pauses.seed names them


async def build_customers(path: Path, customers: int) -> None:
    """``gc_pauses.py``'s catalog and its first customers through the services, then the rest
    in batched jobs that save each customer and its subscription as the services do."""
    started = time.perf_counter()
    services = Services.open(Settings(database_path=path))
    try:
        await seed_customers(services, min(customers, SEEDED_CUSTOMERS))
        runtime = services.runtime

        def job(start: int, stop: int) -> Callable[[UnitOfWork], None]:
            def run(uow: UnitOfWork) -> None:
                now = runtime.clock.now()
                starts_at = whole_second(now)
                for index in range(start, stop):
                    customer = customer_id(index)
                    uow.customers.save(Customer(customer, customer, {}, None, now, now))
                    subscription = Subscription(
                        id=new_id("sub"),
                        customer=customer,
                        product="bench",
                        plan="bench",
                        addons=(),
                        is_trial=False,
                        starts_at=starts_at,
                        trial_ends_at=None,
                        ends_at=None,
                        canceled_at=None,
                        anchor_at=starts_at,
                        created_at=now,
                    )
                    uow.holdings.save_subscription(subscription)
                    runtime.customer_changed(uow, customer)

            return run

        for start in range(SEEDED_CUSTOMERS, customers, CUSTOMER_CHUNK):
            await runtime.run(job(start, min(customers, start + CUSTOMER_CHUNK)))
    finally:
        services.close()
    checkpoint(path)
    say(f"customers: built {customers:,} in {time.perf_counter() - started:.1f}s")


async def warm(services: Services, customers: int) -> None:
    """Check every customer once, so that its snapshot is cached."""
    check = services.entitlements.check

    async def one(index: int) -> None:
        granted(await check(customer_id(index), CUSTOMERS_FEATURE, None, None), "warm-up")

    await many(customers, WARM_CONCURRENCY, one)
    if len(services.runtime.snapshots) != customers:
        raise BenchError(f"{len(services.runtime.snapshots):,} cached, not {customers:,}")


def open_cache(path: Path, customers: int) -> Services:
    """Services whose snapshot cache holds ``customers`` (``ALLOTMENT_CACHE_CUSTOMERS``)."""
    size = max(DEFAULT_CACHE_CUSTOMERS, customers)
    return Services.open(Settings(database_path=path, cache_customers=size))


def checks_from_memory(services: Services, customers: int, count: int) -> tuple[float, float]:
    """``count`` checks round-robin over the cached customers, each answered from memory:
    the seconds and the thread's CPU seconds they took."""
    ids = [customer_id(index) for index in range(customers)]
    check = services.entitlements.check_cached
    clock = Stopwatch(time.thread_time)
    for n in range(count):
        answer = check(ids[n % customers], CUSTOMERS_FEATURE, None, None)
        if type(answer) is not CheckAnswer or not answer.has_access:
            raise BenchError(f"check of {ids[n % customers]} from memory answered {answer!r}")
    return clock.read()


def pause_row(phase: str, cached: int, pauses: dict[int, list[float]]) -> dict[str, Any]:
    every = [pause for found in pauses.values() for pause in found]
    full = pauses[2]
    row: dict[str, Any] = {
        "phase": phase,
        "customers cached": f"{cached:,}",
        "collections (gen 0/1/2)": " / ".join(f"{len(pauses[g]):,}" for g in (0, 1, 2)),
    }
    for name, found in (("all", every), ("full", full)):
        for label, share in (("p50", 0.5), ("p99", 0.99)):
            row[f"{name} {label}"] = (
                f"{1000 * percentile(found, share):.2f} ms" if found else "none"
            )
        row[f"{name} max"] = f"{1000 * max(found):.2f} ms" if found else "none"
    return row


async def row_customers(args: argparse.Namespace, workdir: Path, report: Report) -> None:
    small, large, more = args.small_customers, args.large_customers, args.more_customers
    sizes = {"small": small, "large": large} | ({"more": more} if more else {})
    path = workdir / "customers.db"
    await build_customers(path, max(sizes.values()))
    gc.collect()
    opened: dict[str, Services] = {}
    try:
        # GC pauses first, with only the large cache in the process, freezing as serve does.
        opened["large"] = services = open_cache(path, large)
        if services.freezer is None:
            raise BenchError("the freezer is off: ALLOTMENT_GC_FREEZE is not as serve runs it")
        clock = PauseClock()
        gc.callbacks.append(clock)
        try:
            started = time.perf_counter()
            await warm(services, large)
            warmed = time.perf_counter() - started
            report.gc_rows.append(
                pause_row(f"warm-up: {large:,} loaded in {warmed:.0f}s", large, clock.pauses)
            )
            clock.pauses = {0: [], 1: [], 2: []}
            took = await churn(services, large, args.gc_checks, RELOAD_EVERY)
            report.gc_rows.append(
                pause_row(
                    f"load: {args.gc_checks:,} checks, 1 in {RELOAD_EVERY} reloaded "
                    f"({args.gc_checks / took:,.0f}/s)",
                    len(services.runtime.snapshots),
                    clock.pauses,
                )
            )
        finally:
            gc.callbacks.remove(clock)
        say(f"customers: GC pauses measured; {services.freezer.freezes} freezes")
        for size in sizes:
            if size != "large":
                opened[size] = open_cache(path, sizes[size])
                await warm(opened[size], sizes[size])
        rounds = Rounds()
        for number in range(1, args.rounds + 1):
            for size in in_turn(number, list(sizes)):
                count = max(args.checks, sizes[size])
                seconds, cpu = checks_from_memory(opened[size], sizes[size], count)
                rounds.add(size, "checks/s", count / seconds)
                rounds.add(size, "cpu", 1e6 * cpu / count)
                say(
                    f"customers round {number}, {sizes[size]:,} cached: {count / seconds:,.0f} "
                    f"checks/s, {1e6 * cpu / count:.2f} us CPU/check"
                )
    finally:
        for services in opened.values():
            services.close()
        opened.clear()
        gc.collect()
    for size in sizes:
        if size == "small":
            continue
        what = f"cached customers: {small:,} -> {sizes[size]:,}"
        report.lines += [
            rounds.line(
                what,
                "checks/s",
                "checks from memory/s (ratio: small/large)",
                "/s",
                large=size,
                rate=True,
            ),
            rounds.line(what, "cpu", "CPU per check from memory", "us", large=size),
        ]
    report.notes.append(
        f"customers: one database of {max(sizes.values()):,} customers on one plan; a service "
        f"per size with every customer checked once (its snapshot cached, the cache sized to hold "
        f"them all); then max({args.checks:,}, cached) checks per round round-robin, answered "
        f"from memory (check_cached), CPU of the calling thread."
    )


# --- Reporting -------------------------------------------------------------------------------


def shown(value: float, unit: str) -> str:
    if value >= 100:
        text = f"{value:,.0f}"
    elif value >= 10:
        text = f"{value:.1f}"
    elif value >= 0.1:
        text = f"{value:.2f}"
    else:
        text = f"{value:.3f}"
    return text + ("" if unit == "/s" else f" {unit}")


def print_report(args: argparse.Namespace, report: Report, seconds: float) -> None:
    print(f"machine: {machine_description()}")
    print(f"allotment: {describe_tree(None)}, in process, SQLite (WAL, synchronous=FULL)")
    apart = not (args.one_process or len(args.rows) == 1)
    print(
        f"rows: {', '.join(report.done) or 'none'}"
        f"{', each in a fresh process' if apart else ''}; {args.rounds} round(s), small and "
        f"large in turn (order reversed every other round; writes in {CHUNKS} chunks, reads one "
        f"at a time, the sizes' in turn), medians of the rounds; run took "
        f"{seconds:.0f}s"
    )
    print()
    print("| what grows | figure | small | large | large/small (times worse) | target 1.5x |")
    print("|---|---|---:|---:|---:|---|")
    for line in report.lines:
        ratio = line.ratio
        if line.unjudged:
            verdict = f"n/a: {line.unjudged}"
        else:
            verdict = "within" if ratio <= TARGET else "**over**"
        print(
            f"| {line.what} | {line.figure} | {shown(line.small, line.unit)} | "
            f"{shown(line.large, line.unit)} | {ratio:.2f}x | {verdict} |"
        )
    judged = [line for line in report.lines if not line.unjudged]
    over = [line for line in judged if line.ratio > TARGET]
    print()
    print(f"{len(judged) - len(over)} of {len(judged)} judged figures within {TARGET}x.")
    for note in report.notes:
        print(f"- {note}")
    if report.gc_rows:
        print()
        print("GC pauses with the large cache (freezer on, as allotment serve runs it):")
        print()
        columns = list(report.gc_rows[0])
        print("| " + " | ".join(columns) + " |")
        print("|---|" + "---:|" * (len(columns) - 1))
        for row in report.gc_rows:
            print("| " + " | ".join(str(row[c]) for c in columns) + " |")


# --- Main ------------------------------------------------------------------------------------

RUNNERS: dict[str, Callable[[argparse.Namespace, Path, Report], Awaitable[None]]] = {
    "grants": row_grants,
    "entries": row_entries,
    "entities": row_entities,
    "events": row_events,
    "keys": row_keys,
    "customers": row_customers,
}


def row_list(text: str) -> list[str]:
    rows = [row.strip() for row in text.split(",") if row.strip()]
    unknown = [row for row in rows if row not in ROWS]
    if unknown or not rows:
        raise argparse.ArgumentTypeError(f"rows are among {', '.join(ROWS)}: not {unknown}")
    return [row for row in ROWS if row in rows]


# Whole-number options: (name, default, what it is). All must be positive but --warmup and
# --more-customers, which may be 0.
COUNTS = (
    ("rounds", 3, "rounds, each measuring every size in turn"),
    ("large-grants", 10_000, "live grants of the large pool (small: 10)"),
    ("large-entries", 100_000, "ledger entries of the large pool (small: 100)"),
    ("large-entities", 10_000, "entities of the large tree (small: 10)"),
    ("small-events", 1_000, "usage events of the small database"),
    ("large-events", 1_000_000, "usage events of the large database"),
    ("small-keys", 1_000, "idempotency keys of the small database"),
    ("large-keys", 200_000, "idempotency keys of the large database"),
    ("small-customers", 200, "cached customers, small size"),
    ("large-customers", 100_000, "cached customers, large size (GC pauses measured there)"),
    ("more-customers", 150_000, "a third size of cached customers (cache sized for it); 0: none"),
    ("debits", 2_000, "debits per pool and round"),
    ("warmup", 200, "unmeasured debits per pool, and reports per keys database"),
    ("concurrency", 64, "requests in flight"),
    ("reads", 200, "pool reads of each kind per round"),
    ("reports", 2_000, "enforced reports per round (entities: at least one per large leaf; keys: "
     "at most --small-keys)"),
    ("writes", 20, "leaf entity PUTs per round"),
    ("agents", 1_000, "agents the events row spreads its other events over"),
    ("checks", 100_000, "checks from memory per round (at least one per cached customer)"),
    ("gc-checks", 200_000, "operations timed for the GC pauses under load"),
)  # fmt: skip


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=row_list, default=list(ROWS), help=",".join(ROWS))
    parser.add_argument(
        "--budget", type=float, default=1200, help="seconds the run may take (default 1200)"
    )
    parser.add_argument(
        "--one-process",
        action="store_true",
        help="run every row in this process (default: each row in a fresh process of its own)",
    )
    parser.add_argument("--json", type=Path, help=argparse.SUPPRESS)  # a row's own process
    for name, default, meaning in COUNTS:
        parser.add_argument(
            f"--{name}", type=int, default=default, help=f"{meaning} (default {default})"
        )
    args = parser.parse_args(argv)
    for name, _, _ in COUNTS:
        if getattr(args, name.replace("-", "_")) < (
            0 if name in {"warmup", "more-customers"} else 1
        ):
            parser.error(f"--{name} is too small")
    if args.large_grants < 10 or args.large_entries < 100 or args.large_entities < 10:
        parser.error("the large sizes must be at least the small ones (10, 100, 10)")
    if "events" in args.rows and args.small_events < MEASURED_EVENTS * args.rounds:
        parser.error(f"--small-events must hold {MEASURED_EVENTS} events per round")
    for name in ("debits", "reports", "small-keys"):  # each round's writes go in CHUNKS chunks
        if getattr(args, name.replace("-", "_")) < CHUNKS:
            parser.error(f"--{name} must be at least {CHUNKS}")
    if args.large_customers < args.small_customers:
        parser.error("--large-customers must be at least --small-customers")
    return args


def run_here(args: argparse.Namespace, report: Report) -> str:
    """Every row of ``args.rows`` in this process: the failure, or ''."""

    async def run_rows(workdir: Path) -> None:
        # Not check_throughput.run_within: under uvloop its SIGALRM handler's exception is
        # raised in a loop callback, which logs it and runs on. A timeout cancels the row at its
        # next await; its finally blocks close its services.
        async with asyncio.timeout(max(1.0, args.budget - elapsed())):
            for row in args.rows:
                started = time.perf_counter()
                say(f"row {row} ...")
                await RUNNERS[row](args, workdir, report)
                report.done.append(row)
                say(f"row {row} done in {time.perf_counter() - started:.0f}s")

    try:
        with tempfile.TemporaryDirectory(prefix="allotment-scale-") as tmp:
            run_until_complete(run_rows(Path(tmp)))
    except TimeoutError:
        return f"the run took longer than its {args.budget:.0f}s budget (--budget)"
    except (BenchError, sqlite3.Error) as error:
        return f"{type(error).__name__}: {error}"
    return ""


def run_apart(argv: Sequence[str], args: argparse.Namespace, report: Report) -> str:
    """Each row in a fresh process of its own (as gc_pauses.py measures each mode), so that no
    row's garbage, caches or frozen objects weigh on another's figures: the failure, or ''."""
    environment = {**os.environ, "ALLOTMENT_SCALE_STARTED": str(STARTED)}
    with tempfile.TemporaryDirectory(prefix="allotment-scale-rows-") as tmp:
        for row in args.rows:
            found = Path(tmp) / f"{row}.json"
            command = [sys.executable, __file__, *argv, "--rows", row, "--json", str(found)]
            try:  # the row stops itself at the budget; this is for a row that cannot
                done = subprocess.run(
                    command,
                    stdout=subprocess.DEVNULL,
                    env=environment,
                    timeout=max(1.0, args.budget - elapsed()) + 60,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                return f"row {row} was still running well past the budget, and was killed"
            if found.exists():
                part = json.loads(found.read_text())
                report.lines += [Line(**line) for line in part["lines"]]
                report.notes += part["notes"]
                report.gc_rows += part["gc_rows"]
                report.done += part["done"]
            if done.returncode != 0:
                return f"row {row} failed (exit {done.returncode}): see stderr"
    return ""


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    report = Report()
    if args.one_process or args.json is not None or len(args.rows) == 1:
        failure = run_here(args, report)
    else:
        failure = run_apart(argv, args, report)
    if failure:
        print(f"benchmark failed: {failure}", file=sys.stderr)
    if args.json is not None:  # a row's own process: its figures for the run's report
        args.json.write_text(json.dumps(asdict(report)))
    print_report(args, report, elapsed())
    if failure:
        missing = [row for row in args.rows if row not in report.done]
        print(f"\nINCOMPLETE: {failure}; rows not measured: {', '.join(missing)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
