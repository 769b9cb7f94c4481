"""What the size of a customer's entity tree costs its requests: nothing. Counted, never timed.

One customer gets a tree of a few entities, another the same shape with thousands of agents,
each agent with a budget. Every request on an agent is then counted through the storage port:
the calls made to the entity and budget repositories and the rows they hand over. Both trees
must read the same: the agent's path (its depth), the budgets on it, and nothing else. On
SQLite, the query plans of the path read and of a budget window's projection are checked too.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from functools import partialmethod
from pathlib import Path
from typing import Any

import pytest

from allotment.api.services import Services
from allotment.config import Settings
from allotment.domain.budgets import Budget, BudgetKind
from allotment.domain.catalog import Enforcement
from allotment.domain.entities import Entity
from allotment.domain.periods import ResetPeriod
from allotment.domain.quantities import MICROS_PER_UNIT
from allotment.domain.timefmt import whole_second
from allotment.service.answers import CheckAnswer
from allotment.service.catalog import CatalogKind
from allotment.service.customers import SubscriptionRequest
from allotment.service.migrations import MigrationRequest
from allotment.service.ports import UnitOfWork
from allotment.service.usage import UsageReport

UNIT = MICROS_PER_UNIT
FEATURE = "calls"
SMALL, LARGE = 3, 3_000  # agents per team, under two teams of one department


@pytest.fixture
def database(tmp_path: Path) -> Path:
    return tmp_path / "tree.db"


@pytest.fixture
def open_services(database: Path) -> Iterator[Callable[[], Services]]:
    opened: list[Services] = []

    def open_one() -> Services:
        services = Services.open(Settings(database_path=database))
        opened.append(services)
        return services

    yield open_one
    for services in opened:
        services.close()


def build(services: Services, customer: str, agents_per_team: int) -> None:
    """dept > team-0, team-1 > agents, a hard budget on every entity, written through the port
    in one job (the service's writes are what the tests count, not what they build with)."""

    async def setup() -> None:
        catalog = services.catalog
        await catalog.put(CatalogKind.FEATURE, FEATURE, {"name": "Calls", "kind": "metered"})
        await catalog.put(CatalogKind.PRODUCT, "app", {"name": "App"})
        plan = {"product": "app", "name": "Plan", "entitlements": {FEATURE: {"limit": 10**9}}}
        await catalog.put(CatalogKind.PLAN, "plan", plan)
        await services.customers.put_customer(customer, name=None, metadata=None, billing_id=None)
        await services.customers.subscribe(customer, SubscriptionRequest(plan="plan"))

    asyncio.run(setup())
    runtime = services.runtime

    def job(uow: UnitOfWork) -> None:
        now = runtime.clock.now()

        def add(entity_id: str, parent: str | None) -> None:
            uow.entities.save(customer, Entity(entity_id, parent, None, None, now))
            budget = Budget(
                entity_id,
                FEATURE,
                BudgetKind.FEATURE,
                10**6 * UNIT,
                ResetPeriod.MONTH,
                Enforcement.HARD,
                whole_second(now),  # as the service anchors budgets
            )
            uow.budgets.save(customer, budget)

        add("dept", None)
        for team in ("team-0", "team-1"):
            add(team, "dept")
            for n in range(agents_per_team):
                add(f"{team}-agent-{n}", team)
        runtime.customer_changed(uow, customer)

    runtime.store.run_blocking(job)


class PortReads:
    """Calls to the entity and budget repositories, and the rows they handed over."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.rows = 0

    def reset(self) -> None:
        self.calls.clear()
        self.rows = 0


READS = {
    "entities": ("get", "path", "children", "height"),
    "budgets": ("get", "of_entities", "usages", "usage"),
}


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> Callable[[Services], PortReads]:
    def attach(services: Services) -> PortReads:
        counted = PortReads()
        for repository, methods in READS.items():
            cls = services.runtime.store.run_blocking(
                lambda uow, r=repository: type(getattr(uow, r))
            )
            for name in methods:
                original = getattr(cls, name)

                def call(
                    self: Any, *args: Any, _name: str = f"{repository}.{name}", _f: Any = original
                ) -> Any:
                    counted.calls[_name] += 1
                    result = _f(self, *args)
                    if isinstance(result, list):
                        counted.rows += len(result)
                    elif result is not None:
                        counted.rows += 1
                    return result

                monkeypatch.setattr(cls, name, partialmethod(call, _f=getattr(cls, name)))
        return counted

    return attach


def report(services: Services, customer: str, entity: str, key: str) -> None:
    outcome = asyncio.run(
        services.usage.report(
            UsageReport(customer, FEATURE, UNIT, key, entity=entity, enforce=True)
        )
    )
    assert outcome.answer.has_access


def check(services: Services, customer: str, entity: str) -> Any:
    return asyncio.run(services.entitlements.check(customer, FEATURE, entity, UNIT))


@pytest.mark.parametrize("agents", [SMALL, LARGE], ids=["small", "large"])
def test_usage_and_checks_for_an_agent_read_its_path_once_then_nothing(
    open_services: Callable[[], Services], reads: Callable[[Services], PortReads], agents: int
) -> None:
    services = open_services()
    build(services, "acme", agents)
    check(services, "acme", "team-1-agent-0")  # the customer's snapshot, not its tree
    counted = reads(services)

    agent = f"team-0-agent-{agents - 1}"
    report(services, "acme", agent, "u1")
    # The agent's path (agent, team, department) and their three budgets; a window each.
    assert counted.calls == {"entities.path": 1, "budgets.of_entities": 1, "budgets.usages": 1}
    assert counted.rows == 3 + 3 + 3

    counted.reset()
    report(services, "acme", agent, "u2")
    answer = check(services, "acme", agent)
    assert [b.entity for b in answer.budgets] == [agent, "team-0", "dept"]
    assert answer.budgets[0].usage == 2
    # No tree read: the report reads its windows' figures inside its job, and so does the
    # check, whose windows the snapshot does not hold yet; it fills them in.
    assert counted.calls == {"budgets.usages": 2}

    counted.reset()
    check(services, "acme", agent)
    assert counted.calls == {}  # from memory

    counted.reset()
    sibling = f"team-0-agent-{agents // 2}"
    answer = check(services, "acme", sibling)
    assert answer.has_access
    # Its team and department are in memory already; the store reads the path again whole
    # (one query of depth rows), never the tree, and the three windows in one call.
    assert counted.calls == {"entities.path": 1, "budgets.of_entities": 1, "budgets.usages": 1}
    assert counted.rows == 3 + 3 + 3


@pytest.mark.parametrize("agents", [SMALL, LARGE], ids=["small", "large"])
def test_entity_and_budget_writes_read_what_they_touch(
    open_services: Callable[[], Services], reads: Callable[[Services], PortReads], agents: int
) -> None:
    services = open_services()
    build(services, "acme", agents)
    counted = reads(services)
    entities, budgets = services.entities, services.budgets
    leaf = "team-1-agent-0"

    view, created = asyncio.run(entities.put("acme", leaf, parent="team-1", kind="agent", name="A"))
    assert (created, view.name, view.children) == (False, "A", [])
    # Renamed in place: the entity, its children (none) and its own budget with its window.
    assert counted.calls == {
        "entities.get": 1,
        "entities.children": 1,
        "budgets.of_entities": 1,
        "budgets.usages": 1,
    }
    assert counted.rows == 1 + 0 + 1 + 1

    counted.reset()
    asyncio.run(entities.put("acme", leaf, parent="team-0", kind="agent", name="A"))
    # Moved: the new parent's path and the height of the leaf's subtree as well.
    assert counted.calls["entities.path"] == counted.calls["entities.height"] == 1
    assert counted.rows == 1 + 2 + 1 + 0 + 1 + 1

    counted.reset()
    asyncio.run(
        budgets.put(
            "acme",
            "team-0",
            FEATURE,
            limit=5 * UNIT,
            reset=ResetPeriod.DAY,
            enforcement=Enforcement.HARD,
        )
    )
    assert counted.calls == {"entities.get": 1, "budgets.get": 1, "budgets.usages": 1}

    counted.reset()
    team = asyncio.run(entities.get("acme", "team-1"))
    assert len(team.children) == agents - 1  # what it answers, no more
    assert counted.calls == {
        "entities.get": 1,
        "entities.children": 1,
        "budgets.of_entities": 1,
        "budgets.usages": 1,
    }

    counted.reset()
    asyncio.run(entities.delete("acme", leaf))
    assert counted.calls == {
        "entities.get": 1,
        "entities.children": 1,
        "budgets.of_entities": 1,
        "budgets.usages": 1,
    }


@pytest.mark.parametrize("agents", [SMALL, LARGE], ids=["small", "large"])
def test_the_first_check_after_a_restart_reads_the_path_not_the_tree(
    open_services: Callable[[], Services], reads: Callable[[Services], PortReads], agents: int
) -> None:
    services = open_services()
    build(services, "acme", agents)
    report(services, "acme", "team-1-agent-1", "u1")
    services.close()

    restarted = open_services()
    counted = reads(restarted)
    answer = check(restarted, "acme", "team-1-agent-1")
    assert [b.usage for b in answer.budgets] == [1, 1, 1]
    # One job: the customer, the path, its budgets and their windows.
    assert counted.calls == {"entities.path": 1, "budgets.of_entities": 1, "budgets.usages": 1}
    assert counted.rows == 3 + 3 + 3
    counted.reset()
    check(restarted, "acme", "team-1-agent-1")
    assert counted.calls == {}


def test_an_unknown_entity_is_read_once_then_known_absent(
    open_services: Callable[[], Services], reads: Callable[[Services], PortReads]
) -> None:
    services = open_services()
    build(services, "acme", SMALL)
    check(services, "acme", "dept")
    counted = reads(services)
    for _ in range(3):
        answer = check(services, "acme", "ghost")
        assert answer.access_denied_reason == "entity_not_found"
    assert counted.calls == {"entities.path": 1}
    assert counted.rows == 0

    asyncio.run(services.entities.put("acme", "ghost", parent="dept", kind=None, name=None))
    counted.reset()
    assert check(services, "acme", "ghost").has_access  # created since: read again
    assert counted.calls["entities.path"] == 1


@pytest.mark.sqlite_file
def test_the_path_and_a_window_projection_use_their_indexes(
    open_services: Callable[[], Services], database: Path
) -> None:
    services = open_services()
    build(services, "acme", SMALL)
    with sqlite3.connect(database) as db:
        from allotment.storage.sqlite.budgets import _PATH

        plan = " ".join(row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {_PATH}", ("acme", "x")))
        assert "SCAN entities" not in plan, plan
        projection = " ".join(
            row[3]
            for row in db.execute(
                "EXPLAIN QUERY PLAN SELECT COALESCE(SUM(amount), 0) FROM entity_consumption"
                " WHERE customer = ? AND kind = ? AND target = ? AND entity = ? AND second >= ?"
                " AND second < ?",
                ("acme", "feature", FEATURE, "dept", 0, 1),
            )
        )
        assert "SEARCH entity_consumption USING PRIMARY KEY" in projection, projection
        children = " ".join(
            row[3]
            for row in db.execute(
                "EXPLAIN QUERY PLAN SELECT id FROM entities WHERE customer = ? AND parent = ?"
                " ORDER BY seq",
                ("acme", "dept"),
            )
        )
        assert "entities_by_parent" in children, children


def test_agents_checked_together_after_a_restart_are_all_cached(
    open_services: Callable[[], Services], reads: Callable[[Services], PortReads]
) -> None:
    """Cold checks of one customer in one batch share the snapshot the first of them loaded,
    so the paths and windows each of them read all stay in it."""
    services = open_services()
    build(services, "acme", 10)
    services.close()
    restarted = open_services()
    agents = [f"team-{n % 2}-agent-{n // 2}" for n in range(12)]

    async def together() -> list[Any]:
        entitlements = restarted.entitlements
        return await asyncio.gather(*(entitlements.check("acme", FEATURE, a, UNIT) for a in agents))

    assert all(answer.has_access for answer in asyncio.run(together()))
    counted = reads(restarted)
    for agent in agents:
        cached = restarted.entitlements.check_cached("acme", FEATURE, agent, UNIT)
        assert isinstance(cached, CheckAnswer), (agent, cached)
    assert counted.calls == {}


def test_the_entitlements_list_reads_the_entitys_path_once(
    open_services: Callable[[], Services], reads: Callable[[Services], PortReads]
) -> None:
    services = open_services()
    build(services, "acme", SMALL)

    async def more_features() -> None:
        for name in ("tokens", "images"):
            kind = {"name": name, "kind": "metered"}
            await services.catalog.put(CatalogKind.FEATURE, name, kind)
        plan = {
            "product": "app",
            "name": "Plan",
            "entitlements": {f: {"limit": 10**9} for f in (FEATURE, "tokens", "images")},
        }
        await services.catalog.put(CatalogKind.PLAN, "plan", plan)
        await services.migrations.migrate(CatalogKind.PLAN, "plan", MigrationRequest("now"))

    asyncio.run(more_features())
    counted = reads(services)
    listed = asyncio.run(services.entitlements.entitlements("acme", "team-0-agent-1"))
    assert len(listed.entitlements) == 3
    assert counted.calls["entities.path"] == counted.calls["budgets.of_entities"] == 1


def test_moving_a_team_moves_the_checks_of_its_cached_agents(
    open_services: Callable[[], Services],
) -> None:
    services = open_services()
    build(services, "acme", SMALL)
    agent = "team-0-agent-0"
    assert [b.entity for b in check(services, "acme", agent).budgets] == [agent, "team-0", "dept"]
    entities, budgets = services.entities, services.budgets

    async def move() -> None:
        await entities.put("acme", "ops", parent=None, kind=None, name=None)
        await budgets.put(
            "acme", "ops", FEATURE, limit=UNIT // 2, reset=ResetPeriod.DAY,
            enforcement=Enforcement.HARD,
        )  # fmt: skip
        await entities.put("acme", "team-0", parent="ops", kind=None, name=None)

    asyncio.run(move())
    answer = check(services, "acme", agent)
    assert [b.entity for b in answer.budgets] == [agent, "team-0", "ops"]
    assert answer.access_denied_reason == "budget_exceeded"  # ops allows half a unit
    # Removed and made again: the agent is gone, then back without its budget.
    asyncio.run(entities.delete("acme", agent))
    assert check(services, "acme", agent).access_denied_reason == "entity_not_found"
    asyncio.run(entities.put("acme", agent, parent="team-1", kind=None, name=None))
    assert [b.entity for b in check(services, "acme", agent).budgets] == ["team-1", "dept"]


@pytest.mark.sqlite_file
def test_a_budget_window_off_a_whole_second_is_refused(
    open_services: Callable[[], Services],
) -> None:
    services = open_services()
    build(services, "acme", SMALL)
    now = services.runtime.clock.now()
    off = Budget("dept", FEATURE, BudgetKind.FEATURE, UNIT, ResetPeriod.DAY, Enforcement.HARD, now)
    start = whole_second(now) + timedelta(microseconds=1)
    with pytest.raises(ValueError, match="whole seconds"):
        services.runtime.store.run_blocking(
            lambda uow: uow.budgets.usage("acme", off, start, start + timedelta(days=1))
        )
