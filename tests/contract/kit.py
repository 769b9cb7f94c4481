"""What the contract tests share: the adapters under test, instants, builders of the values a
store keeps, and writes that take the holds they need.

Every adapter of the storage port (``service/ports.py``) must pass the contract suite. An
adapter is named here by the database URL the composition root opens it from (one per test, in
the test's own directory); adding one is a line in ``ADAPTERS``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol, TypeVar

from allotment.domain.budgets import NO_PATH, Budget, BudgetKind, EntityPath
from allotment.domain.catalog import Catalog, CreditCategory, Enforcement, Spec
from allotment.domain.credits import Entry, EntryType, Grant, Pool
from allotment.domain.customers import ApiKey, Customer, Scope
from allotment.domain.documents import add_document, spec_from_document
from allotment.domain.entities import Entity
from allotment.domain.holdings import AddonQuantity, Override, Promotion, Subscription
from allotment.domain.periods import ResetPeriod
from allotment.domain.reservations import Reservation
from allotment.service.ports import LedgerRecord, Published, Store, UnitOfWork, UsageEvent

T = TypeVar("T")

ADAPTERS: dict[str, Callable[[Path], str]] = {
    # Strict holds: every write of the suite is made under the holds it needs.
    "memory": lambda directory: f"memory://{directory}/contract?strict_holds=1",
    "sqlite": lambda directory: f"sqlite:///{directory}/contract.db",
}
POSTGRES = "postgres"
"""An adapter on a server rather than a file: each test gets a fresh database on the test
run's PostgreSQL server (the ``postgres_url`` fixture, ``tests/postgres_server.py``)."""
ADAPTER_NAMES = sorted([*ADAPTERS, POSTGRES])


class ContractStore(Store, Protocol):
    @property
    def last_seq(self) -> int:
        """The newest revision the store has handed to its sinks."""
        ...


def run(store: Store, job: Callable[[UnitOfWork], T]) -> T:
    return store.run_blocking(job)


class Recorder:
    """A sink that keeps what it is handed, one list per hand-over."""

    def __init__(self) -> None:
        self.batches: list[list[Published]] = []

    def __call__(self, published: Sequence[Published]) -> None:
        self.batches.append(list(published))

    @property
    def items(self) -> list[Published]:
        return [item for batch in self.batches for item in batch]


class Boom(Exception):
    """What a failing job raises."""


# ---------------------------------------------------------------- instants

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday


def at(days: float = 0, hours: float = 0, seconds: float = 0) -> datetime:
    return T0 + timedelta(days=days, hours=hours, seconds=seconds)


def micros(instant: datetime) -> int:
    return (instant - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


# ---------------------------------------------------------------- the catalog

FEATURE_DOCUMENTS: dict[str, dict[str, Any]] = {
    "calls": {"name": "Calls", "kind": "metered"},
    "tokens": {"name": "Tokens", "kind": "metered"},
    "seats": {"name": "Seats", "kind": "numeric"},
}


def catalog() -> Catalog:
    built = Catalog()
    for feature_id, document in FEATURE_DOCUMENTS.items():
        built = add_document(built, "feature", feature_id, document)
    return built


def spec(feature_id: str, document: dict[str, Any]) -> Spec:
    return spec_from_document(catalog().features[feature_id], document)


# ---------------------------------------------------------------- records


def customer(customer_id: str = "acme", **fields: Any) -> Customer:
    values: dict[str, Any] = {
        "name": customer_id.title(),
        "metadata": {"tier": "gold"},
        "billing_id": None,
        "created_at": T0,
        "updated_at": T0,
    }
    return Customer(customer_id, **{**values, **fields})


def subscription(subscription_id: str, customer_id: str = "acme", **fields: Any) -> Subscription:
    values: dict[str, Any] = {
        "product": "coder",
        "plan": "starter",
        "addons": (AddonQuantity("extra", 2),),
        "is_trial": False,
        "starts_at": T0,
        "trial_ends_at": None,
        "ends_at": None,
        "canceled_at": None,
        "anchor_at": T0,
        "created_at": T0,
    }
    return Subscription(subscription_id, customer_id, **{**values, **fields})


def promotion(promotion_id: str, customer_id: str = "acme", **fields: Any) -> Promotion:
    values: dict[str, Any] = {
        "feature": "calls",
        "spec": spec("calls", {"limit": 50, "reset": "day"}),
        "starts_at": T0,
        "ends_at": at(days=30),
        "reason": "launch",
        "revoked_at": None,
        "created_at": T0,
    }
    return Promotion(promotion_id, customer_id, **{**values, **fields})


def override(feature_id: str, customer_id: str = "acme", **fields: Any) -> Override:
    values: dict[str, Any] = {
        "spec": spec(feature_id, {"value": 7} if feature_id == "seats" else {"limit": 9}),
        "created_at": T0,
        "updated_at": T0,
    }
    return Override(customer_id, feature_id, **{**values, **fields})


def api_key(key_id: str, **fields: Any) -> ApiKey:
    values: dict[str, Any] = {
        "name": key_id,
        "scope": Scope.SERVER,
        "customer": None,
        "key_hash": f"hash-of-{key_id}",
        "created_at": T0,
        "revoked_at": None,
    }
    return ApiKey(key_id, **{**values, **fields})


def entity(entity_id: str, parent: str | None = None, **fields: Any) -> Entity:
    values: dict[str, Any] = {"kind": "team", "name": entity_id.title(), "created_at": T0}
    return Entity(entity_id, parent, **{**values, **fields})


def budget(entity_id: str, target: str = "calls", **fields: Any) -> Budget:
    values: dict[str, Any] = {
        "kind": BudgetKind.FEATURE,
        "limit": 100,
        "reset": ResetPeriod.DAY,
        "enforcement": Enforcement.HARD,
        "created_at": T0,
    }
    return Budget(entity_id, target, **{**values, **fields})


def reservation(reservation_id: str, customer_id: str = "acme", **fields: Any) -> Reservation:
    values: dict[str, Any] = {
        "feature": "calls",
        "entity": None,
        "amount": 5,
        "currency": None,
        "credits": 0,
        "created_at": T0,
        "expires_at": at(hours=1),
    }
    return Reservation(reservation_id, customer_id, **{**values, **fields})


def grant(grant_id: str, amount: int = 100, **fields: Any) -> Grant:
    values: dict[str, Any] = {
        "category": CreditCategory.PAID,
        "cost_basis": 10,
        "priority": 0,
        "effective_at": T0,
        "expires_at": None,
        "created_at": T0,
    }
    return Grant(grant_id, amount, **{**values, **fields})


def event(
    amount: int,
    timestamp: datetime,
    *,
    customer_id: str = "acme",
    feature: str = "calls",
    path: EntityPath = NO_PATH,
) -> UsageEvent:
    return UsageEvent(
        customer=customer_id,
        feature=feature,
        entity=path[0] if path else None,
        amount=amount,
        timestamp=timestamp,
        recorded_at=timestamp,
        idempotency_key=None,
        entity_path=path,
    )


def debit_entry(credits: int, when: datetime, path: EntityPath = NO_PATH) -> Entry:
    """A debit from the overdraft (no grant) of ``credits``."""
    return Entry(
        EntryType.DEBIT, None, -credits, 0, when, entity=path[0] if path else None, entity_path=path
    )


# ---------------------------------------------------------------- writes under their holds


def append_usage(uow: UnitOfWork, *events: UsageEvent) -> None:
    for found in events:
        uow.hold_usage(found.customer)
    for found in events:
        if found.entity_path:
            uow.hold_budgets(found.customer, found.entity_path)
    for found in events:
        uow.usage.append(found)


def save_pool(
    uow: UnitOfWork, pool: Pool, customer_id: str = "acme", currency: str = "credits"
) -> list[LedgerRecord]:
    paths = {e.entity_path for e in pool.entries if e.type is EntryType.DEBIT and e.entity_path}
    for path in sorted(paths, key=len, reverse=True):
        uow.hold_budgets(customer_id, path)
    uow.hold_pool(customer_id, currency)
    return uow.ledger.save_pool(customer_id, currency, pool)


def every_grant(
    uow: UnitOfWork, customer_id: str = "acme", currency: str = "credits"
) -> dict[str, Grant]:
    """Every grant of the pool, ended ones included, oldest first, read a page at a time."""
    found: dict[str, Grant] = {}
    after: str | None = None
    while True:
        page = uow.ledger.list_grants(customer_id, currency, after, 2, None, T0)
        found.update((g.id, g) for g in page.items)
        if page.next_cursor is None:
            return found
        after = page.next_cursor


def save_reservations(uow: UnitOfWork, *reservations: Reservation) -> None:
    for found in reservations:
        uow.hold_usage(found.customer)
    for found in reservations:
        uow.reservations.save(found)


def all_pages(read: Callable[[str | None], Any]) -> tuple[list[Any], list[str | None]]:
    """Every item of a paged list, following ``next_cursor``, and the cursors seen."""
    items: list[Any] = []
    cursors: list[str | None] = []
    after: str | None = None
    while True:
        page = read(after)
        items.extend(page.items)
        cursors.append(page.next_cursor)
        if page.next_cursor is None:
            return items, cursors
        after = page.next_cursor


def window_truth(
    events: Iterable[tuple[int, int, EntityPath]],
    start: datetime,
    end: datetime | None,
    entity: str | None = None,
) -> int:
    """The test's own sum: (instant in micros, amount, path) in [start, end), for ``entity``."""
    low, high = micros(start), None if end is None else micros(end)
    return sum(
        amount
        for instant, amount, path in events
        if low <= instant
        and (high is None or instant < high)
        and (entity is None or entity in path)
    )
