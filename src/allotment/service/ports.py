"""The ports the service layer depends on: a store that runs jobs durably, and a clock.

A *job* is a plain function of a :class:`UnitOfWork`. The store runs it inside a transaction (its
own or one shared with other jobs of the same batch) and the awaiting caller gets the job's
result only once that transaction is durable. A job that raises leaves nothing behind: the
store rolls back to a savepoint taken before it. Jobs run one at a time, so a job sees every
write of the jobs before it; limits are enforced by reading and writing inside one job.

Caches follow the store through the change log. A job *records* each change it makes
(:meth:`UnitOfWork.record`): the adapter writes it to the log in the job's own transaction and gives
it a revision, gap-free and in commit order across every process sharing the database. A job may
also *fill* the cache with what it read (:meth:`UnitOfWork.fill`). Once the batch is durable, the
store hands its changes (with their revisions) and fills, in job order, to the sink it was given
(:meth:`Store.subscribe`), before any awaiting caller resumes; it hands over changes other
processes wrote as soon as it reads them from the log. The sink feeds the projector, the only
writer of cached state, which keeps the cache exactly one committed prefix of the truth.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

from allotment.domain.budgets import NO_PATH, Budget, EntityPath
from allotment.domain.catalog import Catalog
from allotment.domain.changes import Change, LoggedChange
from allotment.domain.credits import Entry, Grant, GrantStatus, Pool
from allotment.domain.customers import ApiKey, Customer
from allotment.domain.entities import Entity
from allotment.domain.events import LoggedEvent
from allotment.domain.holdings import Holdings, Override, Promotion, Subscription
from allotment.domain.quantities import Micros
from allotment.domain.reservations import Reservation
from allotment.domain.webhooks import Delivery, DeliveryStatus, Endpoint
from allotment.service.projector import Fill
from allotment.service.stats import StoreStats

T = TypeVar("T")


class Clock(Protocol):
    def now(self) -> datetime: ...


@dataclass(frozen=True, slots=True)
class UsageEvent:
    customer: str
    feature: str
    entity: str | None
    amount: Micros  # the signed delta this event adds to usage
    timestamp: datetime
    recorded_at: datetime
    idempotency_key: str | None
    entity_path: EntityPath = NO_PATH  # who it counts for: the entity, then its ancestors


FINGERPRINT_BYTES = 16


@dataclass(frozen=True, slots=True)
class StoredOutcome:
    """The first outcome of an idempotent request, kept to answer its replays; ``fingerprint``
    is :func:`~allotment.service.idempotency.fingerprint` of its payload."""

    fingerprint: bytes
    response: bytes


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: Sequence[T]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class LedgerRecord:
    """A stored ledger entry: the entry with its id, sequence number and pool."""

    id: str
    seq: int
    customer: str
    currency: str
    entry: Entry


class CatalogRepository(Protocol):
    """Catalog objects, each stored as the JSON document it was defined with."""

    def load(self) -> Catalog: ...
    def save_object(self, kind: str, object_id: str, document: bytes, at: datetime) -> bool:
        """Create or replace one object; True when it was created."""
        ...

    def stored_document(self, kind: str, object_id: str) -> bytes | None:
        """The object's stored document, held against other writers until the job ends (the
        check before publishing a version: nobody published one meanwhile)."""
        ...


class CustomerRepository(Protocol):
    def get(self, customer_id: str) -> Customer | None: ...
    def save(self, customer: Customer) -> None: ...
    def list(self, after: str | None, limit: int) -> Page[Customer]: ...


class HoldingRepository(Protocol):
    """What a customer holds: subscriptions, promotions and overrides."""

    def load(self, customer_id: str, catalog: Catalog) -> Holdings: ...
    def get_subscription(self, customer_id: str, subscription_id: str) -> Subscription | None: ...
    def save_subscription(self, subscription: Subscription) -> None: ...
    def live_on_plan(self, plan_id: str, now: datetime) -> list[Subscription]:
        """Every subscription to the plan, of any customer, not over by ``now`` (scheduled ones
        included), oldest first: what a migration moves and a version list counts."""
        ...

    def live_in_product(self, product_id: str, now: datetime) -> list[Subscription]:
        """The same for every plan of the product: where an add-on's entries are."""
        ...

    def list_subscriptions(
        self, customer_id: str, after: str | None, limit: int
    ) -> Page[Subscription]: ...
    def get_promotion(
        self, customer_id: str, promotion_id: str, catalog: Catalog
    ) -> Promotion | None: ...
    def save_promotion(self, promotion: Promotion) -> None: ...
    def save_override(self, override: Override) -> None: ...
    def delete_override(self, customer_id: str, feature_id: str) -> bool: ...


class UsageRepository(Protocol):
    """Usage events are the truth; per-window counters are a projection kept in step."""

    def window_usage(
        self, customer_id: str, feature_id: str, start: datetime, end: datetime | None
    ) -> Micros:
        """The sum of the customer's events of the feature in [start, end)."""
        ...

    def append(self, event: UsageEvent) -> None:
        """Append the event; the customer's window counters and the counters of the budgets
        along its entity path follow it."""
        ...


USAGE_ROUTE = "usage"
"""The route of usage reports' idempotency records: kept for a retention, where every other
route's are kept forever (API.md: forever for ledger writes, at least 7 days for usage)."""


class OutcomeRepository(Protocol):
    """Idempotency records, scoped to (customer, route, key)."""

    def find(self, customer_id: str, route: str, key: str) -> StoredOutcome | None: ...
    def save(
        self, customer_id: str, route: str, key: str, outcome: StoredOutcome, at: datetime
    ) -> None: ...
    def prune_usage(self, before: datetime, limit: int) -> int:
        """Drop up to ``limit`` of the usage reports' records made before ``before``, oldest
        first, reading only those it drops; how many it dropped."""
        ...


class LedgerRepository(Protocol):
    """Credit pools: a pool's grants, overdraft and revenue are projections of its ledger
    entries, written together with the entries that change them.

    A pool holds its live grants only: ended ones (``Grant.ended``: voided, expired, or in the
    ledger and used up) stay in the ledger and are read by id or a page at a time. Nothing here
    reads or writes in proportion to a pool's history: loading reads its live grants, saving
    writes what changed."""

    def load_pool(self, customer_id: str, currency: str) -> Pool:
        """The pool's live grants, oldest first, its overdraft and its revenue."""
        ...

    def save_pool(self, customer_id: str, currency: str, pool: Pool) -> list[LedgerRecord]:
        """Append the pool's new entries and store the grants they or the job changed
        (``Pool.changed_grants``, new ones included), the overdraft and the revenue; the
        counters of the currency budgets along each debit's entity path follow them. Then
        ``Pool.stored``: the pool forgets its entries and lets its ended grants go."""
        ...

    def grant_exists(self, customer_id: str, currency: str, grant_id: str) -> bool: ...
    def get_grant(self, customer_id: str, currency: str, grant_id: str) -> Grant | None:
        """One grant of the pool, ended or not; None when the pool has no such grant."""
        ...

    def list_grants(
        self,
        customer_id: str,
        currency: str,
        after: str | None,
        limit: int,
        status: GrantStatus | None,
        now: datetime,
    ) -> Page[Grant]:
        """Every grant of the pool, ended ones included, oldest first (paged by creation
        ``seq``); with ``status``, only those whose ``Grant.status(now)`` it is."""
        ...

    def list_entries(
        self, customer_id: str, currency: str, after: str | None, limit: int
    ) -> Page[LedgerRecord]:
        """The pool's entries in ``seq`` order after the cursor: reads ``limit`` + 1 of them."""
        ...


class EntityRepository(Protocol):
    """A customer's tree, read a path or a level at a time: nothing reads the whole tree."""

    def get(self, customer_id: str, entity_id: str) -> Entity | None: ...
    def path(self, customer_id: str, entity_id: str) -> list[Entity]:
        """The entity and its ancestors, nearest first (at most MAX_ENTITY_DEPTH of them);
        empty when the customer has no such entity."""
        ...

    def children(self, customer_id: str, entity_id: str) -> list[str]:
        """The ids of the entity's children, in creation order."""
        ...

    def height(self, customer_id: str, entity_id: str) -> int:
        """Levels in the entity's subtree, itself included (1 for a leaf), counted up to
        MAX_ENTITY_DEPTH + 1: what moving it under another parent must check."""
        ...

    def save(self, customer_id: str, entity: Entity) -> None: ...
    def delete(self, customer_id: str, entity_id: str) -> None:
        """Remove the entity and its budgets; what was attributed to it stays in the truth."""
        ...


class BudgetRepository(Protocol):
    """Budgets, and their usage: a projection of the usage events (feature budgets) or the
    debit entries (currency budgets) whose entity path names the budget's entity."""

    def get(self, customer_id: str, entity_id: str, target: str) -> Budget | None: ...
    def of_entities(self, customer_id: str, entity_ids: Sequence[str]) -> list[Budget]:
        """The budgets of these entities (a path), in creation order."""
        ...

    def save(self, customer_id: str, budget: Budget) -> None: ...
    def delete(self, customer_id: str, entity_id: str, target: str) -> bool: ...
    def usage(
        self, customer_id: str, budget: Budget, start: datetime, end: datetime | None
    ) -> Micros: ...
    def usages(
        self, customer_id: str, windows: Sequence[tuple[Budget, int, int | None]]
    ) -> list[Micros]:
        """``usage`` of each (budget, start, end), in order, read together; instants in epoch
        microseconds, as windows carry them on the hot path."""
        ...


class ReservationRepository(Protocol):
    def save(self, reservation: Reservation) -> None: ...
    def get(self, reservation_id: str) -> Reservation | None: ...
    def live(self, customer_id: str, now: datetime) -> list[Reservation]: ...


class KeyRepository(Protocol):
    def save(self, key: ApiKey) -> None: ...
    def find_by_hash(self, key_hash: str) -> ApiKey | None: ...
    def get(self, key_id: str) -> ApiKey | None: ...
    def list(self, after: str | None, limit: int) -> Page[ApiKey]: ...


class EventRepository(Protocol):
    """Events, written by the store with their change (``EventRecorded``) under its revision:
    nothing here appends one. Read by seq, a page at a time."""

    def get(self, event_id: str) -> LoggedEvent | None: ...
    def list(
        self, event_type: str | None, customer: str | None, after: int, limit: int
    ) -> Sequence[LoggedEvent]:
        """Up to ``limit`` events past revision ``after``, in ``seq`` order, of that type and
        customer when given (a customer's events, or a type's, through an index)."""
        ...

    def created_between(
        self, since: datetime, until: datetime | None, after: int, limit: int
    ) -> Sequence[LoggedEvent]:
        """Up to ``limit`` events past ``after`` made in [since, until), in ``seq`` order."""
        ...

    def newest_seq(self) -> int:
        """The revision of the newest event stored; 0 when there is none."""
        ...

    def mark_once(self, key: str, kept_until: datetime) -> bool:
        """Note ``key``, kept at least until ``kept_until`` (the end of the period it is about);
        True the first time it is noted: what sends a threshold event once per period even
        when usage falls back and rises again."""
        ...

    def prune(self, before: datetime, limit: int) -> int:
        """Drop up to ``limit`` events made before ``before``, as many marks kept until before
        it, and as many finished webhook deliveries made before it; how many events."""
        ...


@dataclass(frozen=True, slots=True)
class Timer:
    """An event that time will bring: at ``due_at`` (the service's clock) the job that takes it
    decides, on what is stored then, whether it still happens. ``key`` names what it is about
    (``trial.ended:sub_...``); setting a timer with a key replaces the one it had."""

    key: str
    due_at: datetime
    customer: str | None
    payload: bytes  # JSON: what the firing needs beyond the key


class TimerRepository(Protocol):
    def set(self, timer: Timer) -> None: ...
    def cancel(self, key: str) -> None: ...
    def take_due(self, now: datetime, limit: int) -> list[Timer]:
        """Remove and return up to ``limit`` timers due at ``now``, earliest first; a timer
        another transaction is taking is skipped, so each is taken once."""
        ...

    def next_due(self) -> datetime | None:
        """The earliest instant a timer is due."""
        ...


class WebhookRepository(Protocol):
    """Endpoints and their deliveries."""

    def save_endpoint(self, endpoint: Endpoint) -> None: ...
    def get_endpoint(self, endpoint_id: str, *, held: bool = True) -> Endpoint | None:
        """The endpoint; ``held`` against other writers until the job ends."""
        ...

    def list_endpoints(self, after: str | None, limit: int) -> Page[Endpoint]: ...
    def enabled_endpoints(self) -> list[Endpoint]: ...
    def delete_endpoint(self, endpoint_id: str) -> bool:
        """Remove the endpoint and its deliveries."""
        ...

    def add_deliveries(self, deliveries: Sequence[Delivery]) -> None:
        """Store new pending deliveries, in order. Only the first pending delivery of its
        (endpoint, group) keeps its ``next_attempt_at``; one that has a pending delivery ahead
        of it waits with none, so that what is due is always a group's first."""
        ...

    def save_delivery(self, delivery: Delivery) -> None:
        """Store a delivery's new status, attempts and next attempt. When it stops being
        pending, the next pending delivery of its group becomes due (at its ``created_at``)."""
        ...

    def get_delivery(self, delivery_id: str) -> Delivery | None: ...
    def due_deliveries(self, now: datetime, limit: int, busy: Sequence[str] = ()) -> list[Delivery]:
        """Up to ``limit`` pending deliveries due at ``now`` (each the first of its group: no
        other has a next attempt), of enabled endpoints not ``busy``, earliest due first; read
        through the due instants' index, so the cost is the page, not the backlog. Taken
        against other transactions taking them (skipped), so two processes never claim one."""
        ...

    def list_deliveries(
        self, endpoint_id: str, status: DeliveryStatus | None, after: str | None, limit: int
    ) -> Page[Delivery]: ...


class UnitOfWork(Protocol):
    """What a job may do: one repository per aggregate, the change log, the cache's fills,
    and the exclusive holds a job takes before it decides on figures it will change.

    **Holds.** A job that reads figures and then writes under a limit first holds them, in
    this order and never back: the customer's usage (its window counters and its holds),
    then the budget series of the entity path (from the root down), then a credit pool. An
    adapter whose jobs run one at a time (SQLite, memory) is exclusive already; one whose jobs
    run side by side (PostgreSQL) takes row locks here. The memory adapter checks both the
    order and that every write of counters and pools is made under its hold.
    """

    @property
    def catalog(self) -> CatalogRepository: ...
    @property
    def customers(self) -> CustomerRepository: ...
    @property
    def holdings(self) -> HoldingRepository: ...
    @property
    def usage(self) -> UsageRepository: ...
    @property
    def outcomes(self) -> OutcomeRepository: ...
    @property
    def ledger(self) -> LedgerRepository: ...
    @property
    def entities(self) -> EntityRepository: ...
    @property
    def budgets(self) -> BudgetRepository: ...
    @property
    def reservations(self) -> ReservationRepository: ...
    @property
    def keys(self) -> KeyRepository: ...
    @property
    def events(self) -> EventRepository: ...
    @property
    def timers(self) -> TimerRepository: ...
    @property
    def webhooks(self) -> WebhookRepository: ...

    scratch: dict[str, Any]
    """State that lives for one batch: what earlier jobs of the batch changed but the projector
    has not applied yet (it applies a batch only once it is durable). A job that fails leaves
    it as it found it, so its values are replaced, never changed in place."""

    def record(self, change: Change) -> None:
        """Write ``change`` to the change log in this job's transaction."""
        ...

    def fill(self, fill: Fill) -> None:
        """Have the projector install ``fill`` once this job's batch is durable."""
        ...

    def hold_usage(self, customer_id: str) -> None:
        """Hold the customer's window counters and reservations until the job ends."""
        ...

    def hold_budgets(self, customer_id: str, path: EntityPath) -> None:
        """Hold the budget series of every entity on ``path`` until the job ends."""
        ...

    def hold_pool(self, customer_id: str, currency: str) -> None:
        """Hold the customer's pool of ``currency`` until the job ends."""
        ...


Published = LoggedChange | Fill
"""What the store hands to its sink: a logged change (its own or another process's) or a fill."""


class Store(Protocol):
    def run(self, job: Callable[[UnitOfWork], T], *, fill: bool = False) -> Awaitable[T]:
        """Run ``job`` in a transaction; the result, once that is durable. A ``fill`` (a read
        of what a cache lacks) may wait behind the writes that arrive after it, a bounded
        number per batch, so that a flood of them never holds writes back."""
        ...

    def subscribe(self, sink: Callable[[Sequence[Published]], None]) -> None:
        """Hand every committed change of the log, in revision order, and every fill, in job
        order, to ``sink``, on the store's thread. Changes other processes commit are handed
        over within ``FOLLOW_INTERVAL`` of their commit."""
        ...

    async def read_log(self, after: int, limit: int) -> list[LoggedChange]:
        """Up to ``limit`` logged changes with revisions above ``after``, oldest first; read
        beside the writer, so a reader never delays a write."""
        ...

    async def log_bounds(self) -> tuple[int, int]:
        """(the oldest revision the log still keeps, the newest committed); (0, 0) when empty."""
        ...

    def run_blocking(self, job: Callable[[UnitOfWork], T]) -> T:
        """The same, for callers outside the event loop (start-up, the CLI)."""
        ...

    @property
    def last_seq(self) -> int:
        """The newest revision this store has handed to its sinks."""
        ...

    @property
    def stats(self) -> StoreStats:
        """What the store has committed so far (its thread keeps it; read it, never change it)."""
        ...

    def queue_depth(self) -> int:
        """Jobs waiting for the store's thread now (approximate: it is taking them meanwhile)."""
        ...

    def close(self) -> None:
        """Run every job already queued, then close the database."""
        ...
