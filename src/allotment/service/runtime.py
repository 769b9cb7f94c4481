"""The runtime every use case shares: the store, the clock and the cached state.

It also holds the rules that keep a batch's jobs in step with each other: a job reads the catalog
and customer snapshots as the jobs before it in the same batch left them, although the projector
applies their changes only once the batch is durable.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from allotment.domain.catalog import Catalog
from allotment.domain.changes import CatalogChanged, CustomerChanged, LoggedChange, UsageRecorded
from allotment.domain.customers import ApiKey
from allotment.domain.errors import Unauthenticated
from allotment.domain.reservations import Reservation
from allotment.service.entity_tree import (
    EntityAt,
    EntityNode,
    NotLoaded,
    PathBudgets,
    located_in,
    nodes_of,
)
from allotment.service.ports import Clock, Published, Store, UnitOfWork, UsageEvent
from allotment.service.projector import (
    CacheState,
    CatalogState,
    Forget,
    PathComputed,
    SnapshotLoaded,
    TreeLoaded,
    apply,
)
from allotment.service.snapshots import NO_HOLDS, CustomerSnapshot, SnapshotCache

T = TypeVar("T")
log = logging.getLogger(__name__)

_ACTING_KEY: ContextVar[ApiKey | None] = ContextVar("allotment_acting_key", default=None)


def act_as(key: ApiKey) -> None:
    """Make every job the current request runs check, inside its own transaction, that ``key``
    is still live: a key revoked through another process is refused from the first write that
    commits after the revocation, even while this process's cache of keys still trusts it."""
    _ACTING_KEY.set(key)


_CATALOG = "catalog"
_CHANGED_CUSTOMERS = "changed_customers"
_CHANGED_HOLDS = "changed_holds"
_CHANGED_TREES = "changed_trees"
_LOADED_SNAPSHOTS = "loaded_snapshots"


@dataclass(slots=True)
class Runtime:
    store: Store
    clock: Clock
    cache: CacheState = field(default_factory=CacheState)
    # The cache's parts, which are never replaced, named directly: the request path reads them
    # several times per request.
    catalog: CatalogState = field(init=False)
    snapshots: SnapshotCache = field(init=False)

    def __post_init__(self) -> None:
        self.catalog = self.cache.catalog
        self.snapshots = self.cache.snapshots

    def run(self, job: Callable[[UnitOfWork], T], *, fill: bool = False) -> Awaitable[T]:
        """Run ``job`` in the store, on behalf of the request's key when there is one; a
        ``fill`` goes in the store's lane for cold reads (``Store.run``)."""
        key = _ACTING_KEY.get()
        if key is None:
            return self.store.run(job, fill=fill)
        keys = self.cache.keys

        def on_behalf(uow: UnitOfWork) -> T:
            # The batch has applied every change committed before it, revocations included,
            # so the cache is exact here; a key missing from it is read from the store.
            if key.key_hash not in keys:
                stored = uow.keys.find_by_hash(key.key_hash)
                if stored is None or stored.revoked_at is not None:
                    raise Unauthenticated("Unknown or revoked API key.")
            return job(uow)

        return self.store.run(on_behalf, fill=fill)

    def project(self, published: Sequence[Published]) -> None:
        """Apply what the store published to the cache: the store's sink, on its thread."""
        cache = self.cache
        for item in published:
            cache.begun += 1
            try:
                if isinstance(item, LoggedChange):
                    apply(cache, item.change)
                    cache.revision = item.seq
                else:
                    apply(cache, item)
            except Exception:
                # Never expected (each change applied in order to the state it was made on):
                # drop what is cached per customer rather than keep a wrong figure.
                log.exception("applying %r failed: dropping cached snapshots and keys", item)
                apply(cache, Forget())
                if isinstance(item, LoggedChange):
                    cache.revision = item.seq
            finally:
                cache.ended += 1

    def catalog_in(self, uow: UnitOfWork) -> Catalog:
        """The catalog as the jobs before this one in the batch left it."""
        staged = uow.scratch.get(_CATALOG)
        return staged if isinstance(staged, Catalog) else self.catalog.current

    def stage_catalog(
        self, uow: UnitOfWork, catalog: Catalog, changes: Sequence[CatalogChanged]
    ) -> None:
        """Make ``catalog`` (the current one with ``changes``) the one later jobs of the batch
        read, and log the changes, which the projector applies on commit."""
        uow.scratch[_CATALOG] = catalog
        for change in changes:
            uow.record(change)

    def customer_changed(self, uow: UnitOfWork, customer_id: str) -> None:
        """Log that the customer changed; later jobs of the batch read it from the store."""
        _mark(uow, _CHANGED_CUSTOMERS, customer_id)
        uow.record(CustomerChanged(customer_id))

    def entity_changed(self, uow: UnitOfWork, customer_id: str, entity_id: str) -> None:
        """Log that the entity, its place in the tree or its budgets changed; later jobs of the
        batch read the customer's paths from the store."""
        _mark(uow, _CHANGED_TREES, customer_id)
        uow.record(CustomerChanged(customer_id, entity_id))

    def entity_in(
        self, uow: UnitOfWork, snapshot: CustomerSnapshot, entity_id: str
    ) -> EntityAt | None:
        """The entity as of this point of the batch (None: the customer has no such entity):
        from the snapshot when it holds every node of its path, else read from the store, at a
        cost of the path's depth."""
        customer_id = snapshot.customer.id
        if customer_id not in uow.scratch.get(_CHANGED_TREES, ()):
            cached = located_in(snapshot.tree, entity_id)
            if not isinstance(cached, NotLoaded):
                return cached
        nodes = self.load_path(uow, customer_id, entity_id)
        if not nodes:
            return None

        def keep(feature: str | None, currency: str | None, found: PathBudgets) -> None:
            uow.fill(PathComputed(customer_id, entity_id, feature, currency, found))

        located = PathBudgets.of(nodes, None, None)
        keep(None, None, located)
        return EntityAt(located, keep=keep)

    def load_path(self, uow: UnitOfWork, customer_id: str, entity_id: str) -> list[EntityNode]:
        """Read the entity and its ancestors, with their budgets, from the store; the projector
        installs them in the customer's snapshot when the batch commits."""
        entities = uow.entities.path(customer_id, entity_id)
        budgets = uow.budgets.of_entities(customer_id, [e.id for e in entities]) if entities else []
        nodes = nodes_of(entities, budgets)
        uow.fill(TreeLoaded(customer_id, entity_id, tuple(nodes)))
        return nodes

    def snapshot_in(self, uow: UnitOfWork, customer_id: str) -> CustomerSnapshot | None:
        """The customer as of this point of the batch: cached if still exact, else loaded (once
        per batch: the jobs after the one that loaded it share that snapshot, and the fills
        they make go into it)."""
        if customer_id not in uow.scratch.get(_CHANGED_CUSTOMERS, ()):
            cached = self.snapshots.lookup(customer_id)
            if cached is not False:
                assert not isinstance(cached, bool)
                return cached
            loaded: dict[str, CustomerSnapshot | None] = uow.scratch.get(_LOADED_SNAPSHOTS, {})
            if customer_id in loaded:
                return loaded[customer_id]
        return self.load_snapshot(uow, customer_id)

    def reservations_changed(self, uow: UnitOfWork, customer_id: str) -> None:
        """Later jobs of the batch read this customer's holds from the store."""
        _mark(uow, _CHANGED_HOLDS, customer_id)

    def live_holds(self, uow: UnitOfWork, customer_id: str, now: datetime) -> list[Reservation]:
        """The customer's live reservations as of this point of the batch."""
        if customer_id in uow.scratch.get(_CHANGED_HOLDS, ()):
            return uow.reservations.live(customer_id, now)
        snapshot = self.snapshot_in(uow, customer_id)
        if snapshot is None:
            return []
        return [hold for hold in snapshot.holds.values() if hold.holds(now)]

    def load_snapshot(self, uow: UnitOfWork, customer_id: str) -> CustomerSnapshot | None:
        """Read the customer from the store; the projector installs it when the batch commits."""
        customer = uow.customers.get(customer_id)
        snapshot = None
        if customer is not None:
            holdings = uow.holdings.load(customer_id, self.catalog_in(uow))
            live = uow.reservations.live(customer_id, self.clock.now())
            holds = {r.id: r for r in live} if live else NO_HOLDS
            snapshot = CustomerSnapshot(customer, holdings, holds=holds)
        # Applied in job order: a change made earlier in this batch drops the old snapshot
        # before this one, which already includes that change, is installed.
        uow.fill(SnapshotLoaded(customer_id, snapshot))
        if customer_id not in uow.scratch.get(_CHANGED_CUSTOMERS, ()):
            # Replaced, not changed in place: a failed job restores the batch's scratch.
            loaded = uow.scratch.get(_LOADED_SNAPSHOTS, {})
            uow.scratch[_LOADED_SNAPSHOTS] = {**loaded, customer_id: snapshot}
        return snapshot


def record_usage(uow: UnitOfWork, event: UsageEvent) -> None:
    """Append a usage event to the truth and log the change it makes."""
    uow.usage.append(event)
    uow.record(
        UsageRecorded(
            event.customer,
            event.feature,
            event.entity,
            event.amount,
            event.timestamp,
            event.entity_path,
        )
    )


def _mark(uow: UnitOfWork, name: str, customer_id: str) -> None:
    # Replaced, not changed in place: a failed job restores the batch's scratch as it was.
    marked: frozenset[str] = uow.scratch.get(name, frozenset())
    if customer_id not in marked:
        uow.scratch[name] = marked | {customer_id}
