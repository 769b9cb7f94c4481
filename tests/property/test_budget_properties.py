"""Budgets through the real HTTP API, in process, on a fresh SQLite file per example.

(a) Roll-up: without moves, the usage a budget shows (in the entity's document, in checks and in
    usage answers) is the usage reported on the entity's whole subtree in the budget's window,
    and an enforced report is refused exactly when a hard budget on its path would be passed.
(b) A refused request (enforced usage, reservation or debit denied by a budget) changes nothing
    that can be observed: no figure of any check, entity or credit pool, and no row of the
    tables that hold the truth and its projections.
(c) budget_counters is a projection: every row equals the sum recomputed from usage_events and
    debit ledger_entries by entity path and window, and dropping every row and reading again
    through the API gives the same figures. Entities move and leaves are removed on the way; each
    event keeps the entity path it had when it was written.

Quantities go out as decimal text and come back parsed as ``Decimal``, so every figure is
compared exactly, in micro-units.
"""

from __future__ import annotations

import itertools
import json
import sqlite3
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from allotment.domain.periods import Period, ResetPeriod, period_containing
from allotment.domain.quantities import MICROS_PER_UNIT, to_decimal
from tests.conftest import ADMIN_KEY, Api, open_api

UNIT = MICROS_PER_UNIT
CUSTOMER = "acme"
ENTITIES = f"/v1/customers/{CUSTOMER}/entities"
POOL = f"/v1/customers/{CUSTOMER}/credits/cr"
PRICE = Decimal("1.5")  # credits per unit of "tokens"
# Ids that are prefixes, suffixes and case variants of one another: an entity must match a
# stored path on whole, case-sensitive ids only.
ENTITY_IDS = ("a", "A", "ab", "ba", "aa", "b", "a-b")
MAX_ENTITIES = len(ENTITY_IDS)
MAX_DEPTH = 4
EXAMPLES = settings(max_examples=20, deadline=None)


# ---------------------------------------------------------------------------- plumbing


class Client:
    """Speaks to the API in exact decimals: quantities out as text, numbers in as Decimal."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.database = api.database

    def send(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
        response = self.api.client.request(method, path, json=body, headers=headers)
        document = json.loads(response.text, parse_float=Decimal) if response.content else None
        return response.status_code, document

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        status, document = self.send(method, path, body)
        assert status in (200, 201), (method, path, body, status, document)
        return document

    def now(self) -> datetime:
        return instant(self.ok("GET", "/v1/test/clock")["now"])

    def advance(self, seconds: int) -> datetime:
        return instant(self.ok("POST", "/v1/test/clock", {"advance_seconds": seconds})["now"])

    def check(self, feature: str, entity: str | None = None, **extra: Any) -> Any:
        body = {"customer": CUSTOMER, "feature": feature, **extra}
        if entity is not None:
            body["entity"] = entity
        return self.ok("POST", "/v1/check", body)

    def usage(self, body: dict[str, Any]) -> Any:
        return self.ok("POST", "/v1/usage", {"customer": CUSTOMER, **body})

    def ledger(self) -> list[Any]:
        entries: list[Any] = []
        after = ""
        while True:
            page = self.ok("GET", f"{POOL}/ledger?limit=500{after}")
            entries.extend(page["data"])
            if page["next"] is None:
                return entries
            after = f"&after={page['next']}"


def micros(value: int | Decimal) -> int:
    scaled = Decimal(value).scaleb(6)
    assert scaled == scaled.to_integral_value(), value
    return int(scaled)


def qty(amount: int) -> str:
    return str(to_decimal(amount))


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text)


@contextmanager
def database_file(path: Path) -> Iterator[sqlite3.Connection]:
    """The service's database read (or written) directly, committed and closed afterwards."""
    db = sqlite3.connect(path)
    try:
        with db:
            yield db
    finally:
        db.close()


def define(client: Client) -> None:
    """calls: unlimited, free. tokens: unlimited, 1.5 credits a unit. A large paid grant, so
    that only budgets ever refuse."""
    client.ok("PUT", "/v1/currencies/cr", {"name": "Credits"})
    client.ok("PUT", "/v1/features/calls", {"name": "Calls", "kind": "metered"})
    client.ok("PUT", "/v1/features/tokens", {"name": "Tokens", "kind": "metered"})
    client.ok("PUT", "/v1/products/p", {"name": "P"})
    priced = {"limit": None, "credit_cost": {"currency": "cr", "per_unit": str(PRICE)}}
    client.ok(
        "PUT",
        "/v1/plans/plan",
        {
            "product": "p",
            "name": "Plan",
            "entitlements": {"calls": {"limit": None}, "tokens": priced},
        },
    )
    client.ok("PUT", f"/v1/customers/{CUSTOMER}", {"name": "Acme"})
    client.ok("POST", f"/v1/customers/{CUSTOMER}/subscriptions", {"plan": "plan"})
    client.ok(
        "POST",
        f"{POOL}/grants",
        {"amount": "1000000", "category": "paid", "idempotency_key": "seed"},
    )


@contextmanager
def fresh_client() -> Iterator[Client]:
    """A new service on a new database file, with the catalog and the customer defined."""
    with tempfile.TemporaryDirectory() as directory:
        opened = open_api(Path(directory) / "allotment.db", test_clock=True)
        try:
            client = Client(next(opened))
            define(client)
            yield client
        finally:
            opened.close()


# ---------------------------------------------------------------------------- the tree


@st.composite
def trees(draw: st.DrawFn) -> dict[str, str | None]:
    """Entities in creation order, each under an earlier one or a root; depth <= 4."""
    size = draw(st.integers(min_value=1, max_value=MAX_ENTITIES))
    parents: dict[str, str | None] = {}
    depth: dict[str, int] = {}
    for entity in ENTITY_IDS[:size]:
        options: list[str | None] = [None, *(e for e in parents if depth[e] < MAX_DEPTH)]
        parent = draw(st.sampled_from(options))
        parents[entity] = parent
        depth[entity] = 1 if parent is None else depth[parent] + 1
    return parents


def path_of(parents: dict[str, str | None], entity: str) -> tuple[str, ...]:
    path = [entity]
    parent = parents[entity]
    while parent is not None:
        path.append(parent)
        parent = parents[parent]
    return tuple(path)


def subtree_of(parents: dict[str, str | None], entity: str) -> list[str]:
    return [e for e in parents if entity in path_of(parents, e)]


def plant(client: Client, parents: dict[str, str | None], customer: str = CUSTOMER) -> None:
    for entity, parent in parents.items():  # parents come before their children
        client.ok("PUT", f"/v1/customers/{customer}/entities/{entity}", {"parent": parent})


NEIGHBOUR = "globex"


def neighbour(client: Client, parents: dict[str, str | None]) -> None:
    """Another customer with the same entity ids, budgets on its first entity and consumption
    by it: none of it may count for the customer under test."""
    client.ok("PUT", f"/v1/customers/{NEIGHBOUR}", {"name": "Globex"})
    client.ok("POST", f"/v1/customers/{NEIGHBOUR}/subscriptions", {"plan": "plan"})
    plant(client, parents, NEIGHBOUR)
    tree, first = f"/v1/customers/{NEIGHBOUR}/entities", next(iter(parents))
    for target in ("calls", "tokens", "cr"):
        client.ok("PUT", f"{tree}/{first}/budgets/{target}", {"limit": "1", "reset": "never"})
    for feature in ("calls", "tokens"):
        body = {"customer": NEIGHBOUR, "feature": feature, "amount": "7", "entity": first}
        client.ok("POST", "/v1/usage", {**body, "idempotency_key": f"n-{feature}"})
    debit = {"amount": "3", "entity": first, "idempotency_key": "n-debit", "enforce": False}
    client.ok("POST", f"/v1/customers/{NEIGHBOUR}/credits/cr/debits", debit)
    client.ok("GET", f"{tree}/{first}")  # projects its windows, for the recount below


def pick(entities: Sequence[str], index: int | None) -> str | None:
    return None if index is None or not entities else entities[index % len(entities)]


# ---------------------------------------------------------------------------- strategies


def weighted(*choices: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """One of the strategies, each drawn as often as its weight says."""
    pool = [strategy for weight, strategy in choices for _ in range(weight)]
    return st.sampled_from(pool).flatmap(lambda strategy: strategy)


amounts = st.one_of(
    st.integers(min_value=0, max_value=20).map(lambda units: units * UNIT),
    st.integers(min_value=1, max_value=20 * UNIT),
)
positive_amounts = st.one_of(  # a debit of nothing is 400
    st.integers(min_value=1, max_value=20).map(lambda units: units * UNIT),
    st.integers(min_value=1, max_value=20 * UNIT),
)
limits = st.one_of(
    st.integers(min_value=0, max_value=60).map(lambda units: units * UNIT),
    st.integers(min_value=0, max_value=60 * UNIT),
)
resets = st.sampled_from(
    [ResetPeriod.HOUR, ResetPeriod.DAY, ResetPeriod.WEEK, ResetPeriod.MONTH, ResetPeriod.NEVER]
)
seconds = st.one_of(
    st.sampled_from([1, 59, 3599, 3600, 86_399, 86_400, 7 * 86_400]),
    st.integers(min_value=1, max_value=3 * 86_400),
)
entity_index = st.integers(min_value=0, max_value=MAX_ENTITIES - 1)
maybe_entity = weighted((1, st.none()), (4, entity_index))
backdating = st.one_of(st.none(), st.none(), st.integers(min_value=1, max_value=2 * 86_400))


@dataclass(frozen=True)
class Report:
    feature: str
    entity: int | None
    amount: int
    enforce: bool
    back: int | None  # seconds before now; None: no timestamp
    behavior: str = "delta"


@dataclass(frozen=True)
class Debit:
    entity: int | None
    amount: int
    enforce: bool


@dataclass(frozen=True)
class Reserve:
    feature: str
    entity: int | None
    amount: int
    ttl: int


@dataclass(frozen=True)
class End:
    index: int
    commit: int | None  # None: release


@dataclass(frozen=True)
class Advance:
    seconds: int


@dataclass(frozen=True)
class SetBudget:
    entity: int
    target: str
    limit: int
    reset: ResetPeriod
    enforcement: str


@dataclass(frozen=True)
class DropBudget:
    entity: int
    target: str


@dataclass(frozen=True)
class Move:
    entity: int
    parent: int | None


@dataclass(frozen=True)
class Remove:
    entity: int


@dataclass(frozen=True)
class Observe:
    pass


def budgets_on(
    targets: Sequence[str], limit: st.SearchStrategy[int] = limits, hard_weight: int = 3
) -> st.SearchStrategy[SetBudget]:
    return st.builds(
        SetBudget,
        entity=entity_index,
        target=st.sampled_from(targets),
        limit=limit,
        reset=resets,
        enforcement=st.sampled_from(["hard"] * hard_weight + ["soft"]),
    )


# ---------------------------------------------------------------------------- (a) roll-up


@dataclass
class Recorded:
    at: datetime
    path: tuple[str, ...]
    amount: int


@dataclass
class ModelBudget:
    entity: str
    limit: int
    reset: ResetPeriod
    enforcement: str
    created_at: datetime

    def window(self, at: datetime) -> Period:
        return period_containing(self.created_at, self.reset, at)


@dataclass
class RollUpModel:
    parents: dict[str, str | None]
    budgets: dict[str, ModelBudget] = field(default_factory=dict)  # by entity; target "calls"
    events: list[Recorded] = field(default_factory=list)

    def used(self, budget: ModelBudget, window: Period) -> int:
        return sum(
            event.amount
            for event in self.events
            if budget.entity in event.path and window.contains(event.at)
        )

    def on_path(self, entity: str) -> list[ModelBudget]:
        path = path_of(self.parents, entity)
        return [self.budgets[e] for e in path if e in self.budgets]


# Small limits and mostly enforced reports, so that budgets do refuse.
calls_budgets = budgets_on(
    ["calls"],
    st.one_of(
        st.integers(min_value=0, max_value=30).map(lambda units: units * UNIT),
        st.integers(min_value=0, max_value=30 * UNIT),
    ),
)
report_calls = st.builds(
    Report,
    feature=st.just("calls"),
    entity=maybe_entity,
    amount=amounts,
    enforce=st.sampled_from([True, True, False]),
    back=backdating,
)
roll_up_steps = st.lists(
    weighted(
        (6, report_calls),
        (2, st.builds(Advance, seconds=seconds)),
        (2, calls_budgets),
        (1, st.just(Observe())),
    ),
    min_size=3,
    max_size=18,
)


def same_instant(text: str | None, expected: datetime | None) -> bool:
    return (text is None and expected is None) or (
        text is not None and expected is not None and instant(text) == expected
    )


def assert_entity_documents(client: Client, model: RollUpModel, now: datetime) -> None:
    for entity in model.parents:
        document = client.ok("GET", f"{ENTITIES}/{entity}")
        shown = {b["target"]: b for b in document["budgets"]}
        budget = model.budgets.get(entity)
        assert set(shown) == ({"calls"} if budget else set()), (entity, document)
        if budget is None:
            continue
        view, window = shown["calls"], budget.window(now)
        assert micros(view["usage"]) == model.used(budget, window), (entity, view, model)
        assert micros(view["reserved"]) == 0
        assert micros(view["limit"]) == budget.limit
        assert (view["reset"], view["enforcement"], view["kind"]) == (
            budget.reset.value,
            budget.enforcement,
            "feature",
        )
        assert instant(view["usage_period_start"]) == window.start
        assert same_instant(view["usage_period_end"], window.end), (view, window)
        assert instant(view["created_at"]) == budget.created_at


def assert_budget_views(
    model: RollUpModel, entity: str, views: list[Any], at: datetime, context: Any
) -> None:
    """The ``budgets`` of a check or usage answer for ``entity``: those on its path, nearest
    first, each with that entity's own usage in its window containing ``at``."""
    expected = model.on_path(entity)
    assert [v["entity"] for v in views] == [b.entity for b in expected], (context, views)
    for view, budget in zip(views, expected, strict=True):
        window = budget.window(at)
        assert view["target"] == "calls"
        assert micros(view["usage"]) == model.used(budget, window), (context, view, budget)
        assert micros(view["reserved"]) == 0
        assert micros(view["limit"]) == budget.limit
        assert view["enforcement"] == budget.enforcement
        assert same_instant(view["usage_period_end"], window.end), (context, view, window)


def observe_roll_up(client: Client, model: RollUpModel) -> None:
    now = client.now()
    assert_entity_documents(client, model, now)
    for entity in model.parents:
        answer = client.check("calls", entity)
        # Calls are unlimited: without a request, only a hard budget with nothing left denies.
        full = [
            b
            for b in model.on_path(entity)
            if b.enforcement == "hard" and model.used(b, b.window(now)) >= b.limit
        ]
        assert answer["has_access"] is (not full), (entity, answer, full)
        assert_budget_views(model, entity, answer["budgets"], now, ("check", entity))


@EXAMPLES
@given(
    parents=trees(), initial=st.lists(calls_budgets, min_size=1, max_size=4), steps=roll_up_steps
)
def test_budget_usage_is_the_usage_of_the_subtree_in_the_window(
    parents: dict[str, str | None], initial: list[SetBudget], steps: list[Any]
) -> None:
    entities = list(parents)
    model = RollUpModel(parents)
    keys = itertools.count()
    refusals_seen = 0
    with fresh_client() as client:
        plant(client, parents)
        now = client.now()
        for step in [*initial, *steps]:
            if isinstance(step, Advance):
                now = client.advance(step.seconds)
            elif isinstance(step, Observe):
                observe_roll_up(client, model)
            elif isinstance(step, SetBudget):
                entity = pick(entities, step.entity)
                assert entity is not None
                body = {
                    "limit": qty(step.limit),
                    "reset": step.reset.value,
                    "enforcement": step.enforcement,
                }
                document = client.ok("PUT", f"{ENTITIES}/{entity}/budgets/calls", body)
                created_at = instant(document["created_at"])
                existing = model.budgets.get(entity)
                if existing is None:
                    # Anchored at creation, on the whole second.
                    assert created_at == now.replace(microsecond=0)
                else:
                    assert created_at == existing.created_at  # replacing keeps the anchor
                model.budgets[entity] = ModelBudget(
                    entity, step.limit, step.reset, step.enforcement, created_at
                )
            else:
                assert isinstance(step, Report)
                entity = pick(entities, step.entity)
                at = now if step.back is None else now - timedelta(seconds=step.back)
                body: dict[str, Any] = {
                    "feature": "calls",
                    "amount": qty(step.amount),
                    "idempotency_key": f"u{next(keys)}",
                    "enforce": step.enforce,
                }
                if entity is not None:
                    body["entity"] = entity
                if step.back is not None:
                    body["timestamp"] = at.isoformat()
                path = () if entity is None else path_of(parents, entity)
                if step.enforce and step.back is not None:
                    # Enforced, it may not be dated before the current window of the limit or
                    # of a budget on its path: 400, nothing recorded.
                    opened = [b.window(now).start for b in model.on_path(entity)] if entity else []
                    opened.append(instant(client.check("calls")["usage_period_start"]))
                    if at < max(opened):
                        status, refusal = client.send(
                            "POST", "/v1/usage", {"customer": CUSTOMER, **body}
                        )
                        assert status == 400, (step, refusal)
                        assert refusal["error"]["details"] == {"field": "timestamp"}
                        continue
                # A positive amount enforced is refused when a hard budget on the path would
                # pass its limit in the window the report is dated in.
                passed = [
                    b
                    for b in (model.on_path(entity) if entity else [])
                    if b.enforcement == "hard"
                    and model.used(b, b.window(at)) + step.amount > b.limit
                ]
                denied = step.amount > 0 and bool(passed)
                refused = step.enforce and denied
                answer = client.usage(body)
                assert answer["recorded"] is (not refused), (step, answer, passed)
                # Without enforce the report is recorded and answers the decision it would get.
                assert answer["has_access"] is (not denied), (step, answer, passed)
                if denied:
                    assert answer["access_denied_reason"] == "budget_exceeded"
                if refused:
                    refusals_seen += 1
                else:
                    model.events.append(Recorded(at, path, step.amount))
                if entity is not None:
                    # The answer shows the budgets' current windows, backdated or not.
                    assert_budget_views(model, entity, answer["budgets"], now, (step, answer))
                else:
                    assert answer["budgets"] == []
        observe_roll_up(client, model)
    event("enforced reports refused by a budget: " + ("some" if refusals_seen else "none"))


# ---------------------------------------------------------------------------- (b), (c) runs

targets = ["calls", "tokens", "cr"]
report_any = st.builds(
    Report,
    feature=st.sampled_from(["calls", "tokens"]),
    entity=maybe_entity,
    amount=amounts,
    enforce=st.booleans(),
    back=backdating,
    behavior=st.sampled_from(["delta", "delta", "delta", "set"]),
)
debit = st.builds(Debit, entity=maybe_entity, amount=positive_amounts, enforce=st.booleans())
reserve = st.builds(
    Reserve,
    feature=st.sampled_from(["calls", "tokens"]),
    entity=maybe_entity,
    amount=amounts,
    ttl=st.sampled_from([30, 3600]),
)
end = st.builds(
    End,
    index=st.integers(min_value=0, max_value=20),
    commit=st.one_of(st.none(), amounts),
)
advance = st.builds(Advance, seconds=seconds)
set_budget = budgets_on(targets)
initial_budgets = st.lists(set_budget, min_size=1, max_size=6)
drop_budget = st.builds(DropBudget, entity=entity_index, target=st.sampled_from(targets))
move = st.builds(Move, entity=entity_index, parent=st.one_of(st.none(), entity_index))
remove = st.builds(Remove, entity=entity_index)


def mixed_steps(*extra: st.SearchStrategy[Any]) -> st.SearchStrategy[list[Any]]:
    return st.lists(
        weighted(
            (5, report_any),
            (3, debit),
            (3, reserve),
            (2, end),
            (2, advance),
            (3, set_budget),
            (1, drop_budget),
            *((1, strategy) for strategy in extra),
        ),
        min_size=4,
        max_size=22,
    )


@dataclass
class Run:
    """What a run of steps left behind: the tree now, the holds made, and for every request
    that wrote (by idempotency key) the entity path it was written with."""

    client: Client
    parents: dict[str, str | None]
    holds: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)
    paths: dict[str, str | None] = field(default_factory=dict)
    keys: Iterator[int] = field(default_factory=itertools.count)

    def key(self, prefix: str) -> str:
        return f"{prefix}{next(self.keys)}"

    def path_text(self, entity: str | None) -> str | None:
        if entity is None:
            return None
        return "/" + "/".join(path_of(self.parents, entity)) + "/"

    def step(self, step: Any) -> None:
        client, entities = self.client, list(self.parents)
        if isinstance(step, Advance):
            client.advance(step.seconds)
        elif isinstance(step, SetBudget | DropBudget):
            entity = pick(entities, step.entity)
            if entity is None:
                return
            route = f"{ENTITIES}/{entity}/budgets/{step.target}"
            if isinstance(step, DropBudget):
                status, _ = client.send("DELETE", route)
                assert status in (200, 404)
                return
            body = {
                "limit": qty(step.limit),
                "reset": step.reset.value,
                "enforcement": step.enforcement,
            }
            client.ok("PUT", route, body)
        elif isinstance(step, Report):
            entity = pick(entities, step.entity)
            key = self.key("u")
            body: dict[str, Any] = {
                "feature": step.feature,
                "amount": qty(step.amount),
                "idempotency_key": key,
                "enforce": step.enforce,
                "behavior": step.behavior,
            }
            if step.behavior == "set":
                entity = None  # "set" is the customer's usage: it names no entity
            if entity is not None:
                body["entity"] = entity
            if step.back is not None:
                body["timestamp"] = (client.now() - timedelta(seconds=step.back)).isoformat()
            status, answer = client.send("POST", "/v1/usage", {"customer": CUSTOMER, **body})
            if status == 400 and step.enforce and step.back is not None:
                # Dated before a current window it would be decided against: nothing recorded.
                assert answer["error"]["details"] == {"field": "timestamp"}, answer
                return
            assert status == 200, (body, status, answer)
            if answer["recorded"]:
                self.paths[key] = self.path_text(entity)
        elif isinstance(step, Debit):
            entity = pick(entities, step.entity)
            key = self.key("d")
            body = {"amount": qty(step.amount), "idempotency_key": key, "enforce": step.enforce}
            if entity is not None:
                body["entity"] = entity
            answer = client.ok("POST", f"{POOL}/debits", body)
            if answer["applied"]:
                self.paths[key] = self.path_text(entity)
        elif isinstance(step, Reserve):
            entity = pick(entities, step.entity)
            body = {
                "customer": CUSTOMER,
                "feature": step.feature,
                "amount": qty(step.amount),
                "idempotency_key": self.key("r"),
                "ttl_seconds": step.ttl,
            }
            if entity is not None:
                body["entity"] = entity
            answer = client.ok("POST", "/v1/reservations", body)
            if answer["granted"]:
                self.holds.append((answer["id"], path_of(self.parents, entity) if entity else ()))
        elif isinstance(step, End):
            if not self.holds:
                return
            hold, path = self.holds[step.index % len(self.holds)]
            if step.commit is None:
                status, _ = client.send("POST", f"/v1/reservations/{hold}/release", {})
            else:
                commit = {"amount": qty(step.commit)}
                status, _ = client.send("POST", f"/v1/reservations/{hold}/commit", commit)
                if status == 200:
                    # Committed usage (and its debit) counts for the path the hold was made
                    # with: the budgets it held against.
                    self.paths[f"reservation:{hold}"] = "/" + "/".join(path) + "/" if path else None
            assert status in (200, 409)  # 409: it had ended (expired) already
        elif isinstance(step, Move):
            entity = pick(entities, step.entity)
            parent = pick(entities, step.parent)
            assert entity is not None
            status, _ = client.send("PUT", f"{ENTITIES}/{entity}", {"parent": parent})
            if parent is not None and entity in path_of(self.parents, parent):
                assert status == 400  # a cycle
            else:
                assert status == 200, status
                self.parents[entity] = parent
        elif isinstance(step, Remove):
            entity = pick(entities, step.entity)
            assert entity is not None
            if len(self.parents) == 1:
                return
            status, _ = client.send("DELETE", f"{ENTITIES}/{entity}")
            if any(parent == entity for parent in self.parents.values()):
                assert status == 409
            else:
                assert status == 200
                del self.parents[entity]
        else:
            raise AssertionError(step)


def figures(client: Client, parents: dict[str, str | None]) -> dict[str, Any]:
    """Every figure the API shows for the customer: checks with and without each entity, every
    entity's budgets, the credit pool and its ledger."""
    seen: dict[str, Any] = {}
    for feature in ("calls", "tokens"):
        seen[f"check {feature}"] = client.check(feature)
        seen[f"check {feature} 5"] = client.check(feature, requested="5")
        for entity in parents:
            seen[f"check {feature} {entity}"] = client.check(feature, entity)
    for entity in parents:
        seen[f"entity {entity}"] = client.ok("GET", f"{ENTITIES}/{entity}")
    seen["pool"] = client.ok("GET", POOL)
    seen["ledger"] = client.ledger()
    return seen


TABLES = ("usage_events", "usage_counters", "budget_counters", "ledger_entries", "reservations")


def tables(database: Path) -> dict[str, list[tuple[Any, ...]]]:
    with database_file(database) as db:
        return {
            table: sorted(db.execute(f"SELECT * FROM {table}").fetchall(), key=repr)
            for table in TABLES
        }


# ---------------------------------------------------------------------------- (b) refusals


@dataclass(frozen=True)
class Refusal:
    owner: int  # the entity given a hard budget
    target: str
    limit: int
    reset: ResetPeriod
    member: int  # who in the owner's subtree asks
    how: int  # which kind of request
    extra: int  # past what is left


refusals = st.builds(
    Refusal,
    owner=entity_index,
    target=st.sampled_from(targets),
    limit=limits,
    reset=resets,
    member=st.integers(min_value=0, max_value=MAX_ENTITIES - 1),
    how=st.integers(min_value=0, max_value=2),
    extra=st.one_of(st.just(1), st.integers(min_value=1, max_value=5 * UNIT)),
)


def refused_request(run: Run, refusal: Refusal) -> tuple[str, str, dict[str, Any], str]:
    """A request that the owner's hard budget must refuse: (method, route, body, flag), where
    flag names the answer's field that says whether it went through."""
    client = run.client
    entities = list(run.parents)
    owner = pick(entities, refusal.owner)
    assert owner is not None
    route = f"{ENTITIES}/{owner}/budgets/{refusal.target}"
    body = {"limit": qty(refusal.limit), "reset": refusal.reset.value, "enforcement": "hard"}
    standing = client.ok("PUT", route, body)
    left = micros(standing["limit"]) - micros(standing["usage"]) - micros(standing["reserved"])
    over = max(left, 0) + refusal.extra
    member = pick(subtree_of(run.parents, owner), refusal.member)
    assert member is not None
    if refusal.target == "cr":
        # Credits: a debit of more than is left, or tokens that cost more than is left.
        if refusal.how == 0:
            body = {"amount": qty(over), "idempotency_key": "refused", "entity": member}
            return "POST", f"{POOL}/debits", body, "applied"
        units = -((-over * 2) // 3)  # 1.5 credits a unit: units * 1.5 >= over
        feature = "tokens"
    else:
        units, feature = over, refusal.target
    if refusal.how == 2:
        body = {
            "customer": CUSTOMER,
            "feature": feature,
            "amount": qty(units),
            "idempotency_key": "refused",
            "entity": member,
        }
        return "POST", "/v1/reservations", body, "granted"
    body = {
        "customer": CUSTOMER,
        "feature": feature,
        "amount": qty(units),
        "idempotency_key": "refused",
        "entity": member,
        "enforce": True,
    }
    return "POST", "/v1/usage", body, "recorded"


@pytest.mark.sqlite_file
@EXAMPLES
@given(parents=trees(), initial=initial_budgets, steps=mixed_steps(move), refusal=refusals)
def test_a_refused_request_changes_nothing(
    parents: dict[str, str | None], initial: list[SetBudget], steps: list[Any], refusal: Refusal
) -> None:
    with fresh_client() as client:
        plant(client, parents)
        run = Run(client, dict(parents))
        for step in [*initial, *steps]:
            run.step(step)
        method, route, body, flag = refused_request(run, refusal)
        event(f"refused: {route.rsplit('/', 1)[-1]} against a {refusal.target} budget")
        # Read through the API first (this projects every budget window in use), then the rows.
        before = figures(client, run.parents)
        rows_before = tables(client.database)
        for attempt in ("first", "replay"):
            status, answer = client.send(method, route, body)
            assert status == 200, answer
            assert answer[flag] is False, (attempt, answer)
            assert answer["access_denied_reason"] == "budget_exceeded", (attempt, answer)
            assert answer["replayed"] is (attempt == "replay")
            # The rows first, before any read could project anything, then every figure.
            assert tables(client.database) == rows_before, attempt
            assert figures(client, run.parents) == before, attempt


# ---------------------------------------------------------------------------- (c) projection


def rebuilt_counter(
    db: sqlite3.Connection, row: tuple[Any, ...]
) -> tuple[int, list[tuple[Any, ...]]]:
    """A budget_counters row's figure summed again from the truth, matching path ids exactly."""
    customer, kind, target, entity, start, end, _ = row
    if kind == "feature":
        rows = db.execute(
            "SELECT amount, timestamp, entity_path FROM usage_events"
            " WHERE customer = ? AND feature = ?",
            (customer, target),
        ).fetchall()
        sign = 1
    else:
        assert kind == "currency", row
        rows = db.execute(
            "SELECT amount, at, entity_path FROM ledger_entries"
            " WHERE customer = ? AND currency = ? AND type = 'debit'",
            (customer, target),
        ).fetchall()
        sign = -1
    counted = [
        r
        for r in rows
        if r[2] is not None and entity in r[2].strip("/").split("/") and start <= r[1] < end
    ]
    return sign * sum(r[0] for r in counted), counted


def assert_counters_are_the_truth(database: Path) -> int:
    with database_file(database) as db:
        counters = db.execute(
            "SELECT customer, kind, target, entity, period_start, period_end, used"
            " FROM budget_counters"
        ).fetchall()
        for row in counters:
            rebuilt, counted = rebuilt_counter(db, row)
            assert row[-1] == rebuilt, (row, counted)
    return len(counters)


def assert_paths_written(run: Run) -> None:
    """Every event and debit entry carries the path its entity had when it was written."""
    with database_file(run.client.database) as db:
        events = db.execute(
            "SELECT idempotency_key, entity_path FROM usage_events WHERE customer = ?",
            (CUSTOMER,),
        ).fetchall()
        entries = db.execute(
            "SELECT idempotency_key, entity_path FROM ledger_entries WHERE type = 'debit'"
            " AND customer = ?",
            (CUSTOMER,),
        ).fetchall()
    for key, path in events:
        assert key in run.paths, (key, path)
        assert path == run.paths[key], (key, path)
    for key, path in entries:
        # Debits of credit-priced usage carry the usage report's key, commits the hold's.
        assert key in run.paths, (key, path)
        assert path == run.paths[key], (key, path)
    assert {key for key, _ in events} | {key for key, _ in entries} == set(run.paths)


@pytest.mark.sqlite_file
@EXAMPLES
@given(parents=trees(), initial=initial_budgets, steps=mixed_steps(move, remove))
def test_budget_counters_are_a_projection_of_the_truth(
    parents: dict[str, str | None], initial: list[SetBudget], steps: list[Any]
) -> None:
    with fresh_client() as client:
        plant(client, parents)
        neighbour(client, parents)
        run = Run(client, dict(parents))
        for step in [*initial, *steps]:
            run.step(step)
        before = figures(client, run.parents)
        rows = assert_counters_are_the_truth(client.database)
        event("budget_counters rows: " + ("0" if not rows else "1-9" if rows < 10 else "10+"))
        assert_paths_written(run)
        with database_file(client.database) as db:
            db.execute("DELETE FROM budget_counters")
        # The next store job notices the foreign write and drops every cached snapshot, so the
        # checks below are answered from windows projected afresh, not from the cache that the
        # checks above read.
        client.ok("GET", f"{ENTITIES}/{next(iter(run.parents))}")
        after = figures(client, run.parents)
        assert after == before
        assert_counters_are_the_truth(client.database)


# ---------------------------------------------------------------------------- moves


@pytest.mark.sqlite_file
def test_a_move_keeps_past_usage_with_the_old_ancestors(api: Api) -> None:
    """eng > team > agent, then team moves under ops: what agent used before the move stays
    with eng, what it uses afterwards counts for ops; agent and team keep both."""
    client = Client(api)
    define(client)
    plant(client, {"eng": None, "ops": None, "team": "eng", "agent": "team"})
    for entity in ("eng", "ops", "team", "agent"):
        for target in ("calls", "cr"):
            route = f"{ENTITIES}/{entity}/budgets/{target}"
            client.ok("PUT", route, {"limit": "100", "reset": "never"})
    client.ok("PUT", f"{ENTITIES}/team/budgets/tokens", {"limit": "100", "reset": "never"})

    def usage_of(entity: str) -> dict[str, int]:
        budgets = client.ok("GET", f"{ENTITIES}/{entity}")["budgets"]
        return {b["target"]: micros(b["usage"]) for b in budgets}

    def on_path(feature: str) -> list[tuple[str, str, int]]:
        budgets = client.check(feature, "agent")["budgets"]
        return [(b["entity"], b["target"], micros(b["usage"])) for b in budgets]

    def spend(key: str, calls: str, credits: str) -> None:
        body = {"feature": "calls", "amount": calls, "idempotency_key": key, "entity": "agent"}
        assert client.usage({**body, "enforce": True})["recorded"] is True
        debit = {"amount": credits, "idempotency_key": key, "entity": "agent"}
        assert client.ok("POST", f"{POOL}/debits", debit)["applied"] is True

    spend("before", "5", "3")
    assert on_path("calls") == [
        ("agent", "calls", 5 * UNIT),
        ("team", "calls", 5 * UNIT),
        ("eng", "calls", 5 * UNIT),
    ]
    # For a credit-priced feature: nearest entity first, its feature budget before its currency.
    assert on_path("tokens") == [
        ("agent", "cr", 3 * UNIT),
        ("team", "tokens", 0),
        ("team", "cr", 3 * UNIT),
        ("eng", "cr", 3 * UNIT),
    ]

    moved = client.ok("PUT", f"{ENTITIES}/team", {"parent": "ops"})
    assert moved["parent"] == "ops"
    client.advance(60)
    spend("after", "7", "2")

    expected = {
        "agent": {"calls": 12 * UNIT, "cr": 5 * UNIT},
        "team": {"calls": 12 * UNIT, "tokens": 0, "cr": 5 * UNIT},
        "eng": {"calls": 5 * UNIT, "cr": 3 * UNIT},
        "ops": {"calls": 7 * UNIT, "cr": 2 * UNIT},
    }
    assert {entity: usage_of(entity) for entity in expected} == expected
    calls_after_move = [
        ("agent", "calls", 12 * UNIT),
        ("team", "calls", 12 * UNIT),
        ("ops", "calls", 7 * UNIT),
    ]
    assert on_path("calls") == calls_after_move
    # The stored paths say who each event and debit counted for when it was written.
    with database_file(api.database) as db:
        written = db.execute(
            "SELECT idempotency_key, entity_path FROM usage_events ORDER BY timestamp"
        ).fetchall()
        debited = db.execute(
            "SELECT idempotency_key, entity_path FROM ledger_entries WHERE type = 'debit'"
            " ORDER BY seq"
        ).fetchall()
    assert written == [("before", "/agent/team/eng/"), ("after", "/agent/team/ops/")]
    assert debited == written
    # The same figures once the projection is rebuilt from that truth.
    assert assert_counters_are_the_truth(api.database) > 0
    with database_file(api.database) as db:
        db.execute("DELETE FROM budget_counters")
    assert {entity: usage_of(entity) for entity in expected} == expected  # drops the cache too
    assert on_path("calls") == calls_after_move

    # Moving back hands nothing back: eng's budget, cut to what the agent used under it
    # before the first move, now refuses the agent even one micro-unit.
    client.ok("PUT", f"{ENTITIES}/team", {"parent": "eng"})
    client.ok("PUT", f"{ENTITIES}/eng/budgets/calls", {"limit": "5", "reset": "never"})
    body = {"feature": "calls", "amount": "0.000001", "idempotency_key": "u3", "entity": "agent"}
    refused = client.usage({**body, "enforce": True})
    assert (refused["recorded"], refused["access_denied_reason"]) == (False, "budget_exceeded")
    assert usage_of("eng") == expected["eng"]
    assert usage_of("ops") == expected["ops"]
