"""Two services on one PostgreSQL database, as two API processes are: each with its own store
(its connection, its thread, its batches) and its own cache. Requests race across both at every
limit, and nothing is overspent, lost, or answered twice for one idempotency key."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import psycopg

from allotment.api.services import Services
from allotment.config import Settings
from allotment.domain.catalog import CreditCategory, Enforcement
from allotment.domain.periods import ResetPeriod
from allotment.domain.quantities import MICROS_PER_UNIT
from allotment.service.catalog import CatalogKind
from allotment.service.credits import DebitRequest, GrantRequest
from allotment.service.customers import SubscriptionRequest
from allotment.service.usage import UsageReport
from tests.postgres_server import PostgresServer, transaction_pooler

T = TypeVar("T")
UNIT = MICROS_PER_UNIT
LIMIT = 8


@asynccontextmanager
async def two_processes(url: str) -> AsyncIterator[tuple[Services, Services]]:
    first = Services.open(Settings(database_url=url))
    second = Services.open(Settings(database_url=url))
    try:
        yield first, second
    finally:
        first.close()
        second.close()


CUSTOMERS = [f"customer-{n}" for n in range(12)]


async def seed(services: Services) -> None:
    """Customers on a plan with a small hard limit: every customer's limit is a boundary the
    two processes cross at once."""
    catalog = services.catalog
    await catalog.put(CatalogKind.FEATURE, "calls", {"name": "Calls", "kind": "metered"})
    await catalog.put(CatalogKind.CURRENCY, "credits", {"name": "Credits"})
    await catalog.put(CatalogKind.PRODUCT, "app", {"name": "App"})
    plan = {
        "product": "app",
        "name": "Hard",
        "entitlements": {"calls": {"limit": LIMIT, "reset": "month", "enforcement": "hard"}},
    }
    await catalog.put(CatalogKind.PLAN, "hard", plan)
    for customer in CUSTOMERS:
        await services.customers.put_customer(
            customer, name=customer, metadata=None, billing_id=None
        )
        await services.customers.subscribe(customer, SubscriptionRequest(plan="hard"))


async def alternate(
    both: tuple[Services, Services], count: int, call: Callable[[Services, int], Awaitable[T]]
) -> list[T]:
    """``count`` calls at once, every other one through each service."""
    return await asyncio.gather(*(call(both[n % 2], n) for n in range(count)))


def rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as db:
        return db.execute(sql).fetchall()


async def at_the_edge(
    both: tuple[Services, Services],
    step: Callable[[Services, str, int], Awaitable[bool]],
    before: int,
    racing: int,
) -> list[bool]:
    """Every customer brought to ``before`` steps through one process, one at a time; then
    ``racing`` steps of every customer at once, alternately through each process: each process's
    batch decides for every customer while the other's is open, the race a missing hold loses."""
    for customer in CUSTOMERS:
        for n in range(before):
            assert await step(both[0], customer, n)
    calls = [
        step(both[n % 2], customer, before + n) for n in range(racing) for customer in CUSTOMERS
    ]
    return await asyncio.gather(*calls)


def test_enforced_usage_from_two_processes_never_passes_the_limit(
    migrated_postgres_url: str,
) -> None:
    url = migrated_postgres_url

    async def scenario() -> list[bool]:
        async with two_processes(url) as both:
            await seed(both[0])

            async def report(services: Services, customer: str, n: int) -> bool:
                outcome = await services.usage.report(
                    UsageReport(customer, "calls", UNIT, f"u{n}", enforce=True)
                )
                return outcome.recorded

            return await at_the_edge(both, report, LIMIT - 1, 4)

    raced = asyncio.run(scenario())
    assert raced.count(True) == len(CUSTOMERS)  # one of each customer's four
    by_customer = dict(rows(url, "SELECT customer, SUM(amount) FROM usage_events GROUP BY 1"))
    assert by_customer == dict.fromkeys(CUSTOMERS, LIMIT * UNIT)
    counters = dict(rows(url, "SELECT customer, used FROM usage_counters"))
    assert counters == by_customer


def test_debits_from_two_processes_never_overspend_a_pool(migrated_postgres_url: str) -> None:
    url = migrated_postgres_url
    credits = 5

    async def scenario() -> list[bool]:
        async with two_processes(url) as both:
            await seed(both[0])
            for customer in CUSTOMERS:
                grant = GrantRequest(credits * UNIT, CreditCategory.PAID, "g")
                await both[1].credits.grant(customer, "credits", grant)

            async def debit(services: Services, customer: str, n: int) -> bool:
                outcome = await services.credits.debit(
                    customer, "credits", DebitRequest(UNIT, f"d{n}")
                )
                return outcome.applied

            return await at_the_edge(both, debit, credits - 1, 4)

    raced = asyncio.run(scenario())
    assert raced.count(True) == len(CUSTOMERS)
    spent = rows(
        url, "SELECT customer, SUM(amount) FROM ledger_entries WHERE type = 'debit' GROUP BY 1"
    )
    assert dict(spent) == dict.fromkeys(CUSTOMERS, -credits * UNIT)
    assert rows(url, "SELECT DISTINCT remaining FROM credit_grants") == [(0,)]


def test_sibling_agents_on_two_processes_hold_every_budget_on_their_paths(
    migrated_postgres_url: str,
) -> None:
    """Two agents under one team, each with a budget, the team's the smaller sum: reports on
    both agents through both processes lock the team, then the agent (root first), so none
    waits on another in a cycle, and no budget is passed."""
    url = migrated_postgres_url
    team, agent = 6, 4

    async def scenario() -> list[bool]:
        async with two_processes(url) as both:
            await seed(both[0])
            entities, budgets = both[0].entities, both[0].budgets
            limits = {"team": team, "agent-a": agent, "agent-b": agent}
            for customer in CUSTOMERS:
                await entities.put(customer, "team", parent=None, kind=None, name=None)
                for name in ("agent-a", "agent-b"):
                    await entities.put(customer, name, parent="team", kind=None, name=None)
                for name, limit in limits.items():
                    await budgets.put(
                        customer,
                        name,
                        "calls",
                        limit=limit * UNIT,
                        reset=ResetPeriod.MONTH,
                        enforcement=Enforcement.HARD,
                    )

            async def report(services: Services, customer: str, n: int) -> bool:
                entity = "agent-a" if n % 4 < 2 else "agent-b"  # a, a, b, b, then the race
                outcome = await services.usage.report(
                    UsageReport(customer, "calls", UNIT, f"u{n}", entity=entity, enforce=True)
                )
                return outcome.recorded

            return await at_the_edge(both, report, team - 1, 4)

    raced = asyncio.run(scenario())
    assert raced.count(True) == len(CUSTOMERS)
    used = rows(url, "SELECT customer, entity, SUM(amount) FROM usage_events GROUP BY 1, 2")
    for customer in CUSTOMERS:
        by_agent = {entity: total for who, entity, total in used if who == customer}
        assert sum(by_agent.values()) == team * UNIT
        assert all(total <= agent * UNIT for total in by_agent.values())


def test_one_key_at_two_processes_at_once_has_one_outcome(migrated_postgres_url: str) -> None:
    """The same report, with the same key, sent to both processes at once, many times: one is
    recorded, every other answer replays it."""
    url = migrated_postgres_url

    async def scenario() -> list[tuple[bool, bool]]:
        async with two_processes(url) as both:
            await seed(both[0])

            async def report(services: Services, n: int) -> tuple[bool, bool]:
                outcome = await services.usage.report(
                    UsageReport("customer-0", "calls", UNIT, f"key-{n // 8}", enforce=True)
                )
                return outcome.recorded, outcome.replayed

            return await alternate(both, 8 * LIMIT, report)

    answers = asyncio.run(scenario())
    for key in range(LIMIT):
        outcomes = answers[8 * key : 8 * key + 8]
        assert all(recorded for recorded, _ in outcomes)
        assert [replayed for _, replayed in outcomes].count(False) == 1
    assert rows(url, "SELECT COUNT(*), SUM(amount) FROM usage_events") == [(LIMIT, LIMIT * UNIT)]


def test_two_processes_behind_pgbouncer_in_transaction_mode_hold_the_limit_and_follow(
    postgres: PostgresServer, migrated_postgres_url: str
) -> None:
    """Through a pooler that gives each transaction whichever server connection is free: the
    holds (transaction-scoped), the batches and the following of the log all keep working,
    with prepared statements off (PgBouncer before 1.21 cannot keep them)."""
    database = migrated_postgres_url.rpartition("/")[2]
    with transaction_pooler(postgres) as pooler:
        url = f"{pooler}/{database}"

        async def scenario() -> tuple[list[bool], int]:
            settings = Settings(database_url=url, postgres_prepared_statements=False)
            first, second = Services.open(settings), Services.open(settings)
            try:
                both = (first, second)
                await seed(first)

                async def report(services: Services, customer: str, n: int) -> bool:
                    outcome = await services.usage.report(
                        UsageReport(customer, "calls", UNIT, f"u{n}", enforce=True)
                    )
                    return outcome.recorded

                raced = await at_the_edge(both, report, LIMIT - 1, 4)
                # What the first wrote, the second shows without writing: it followed the log.
                for _ in range(500):
                    answer = await second.entitlements.check(CUSTOMERS[0], "calls", None, None)
                    if answer.current_usage == LIMIT:  # in units, as the API answers
                        break
                    await asyncio.sleep(0.01)
                return raced, answer.current_usage
            finally:
                first.close()
                second.close()

        raced, seen = asyncio.run(scenario())
    assert raced.count(True) == len(CUSTOMERS)
    assert seen == LIMIT
    by_customer = dict(
        rows(migrated_postgres_url, "SELECT customer, SUM(amount) FROM usage_events GROUP BY 1")
    )
    assert by_customer == dict.fromkeys(CUSTOMERS, LIMIT * UNIT)
