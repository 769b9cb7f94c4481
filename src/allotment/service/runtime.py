"""The runtime every use case shares: the store, the clock, the catalog and the snapshots.

It also holds the rules that keep in-memory state in step with the store inside a batch: a job
reads the catalog and customer snapshots as the jobs before it in the same batch left them,
although their hooks have not published anything yet.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from allotment.domain.budgets import Budget
from allotment.domain.catalog import Catalog
from allotment.domain.reservations import Reservation
from allotment.service.ports import Clock, Session, Store
from allotment.service.snapshots import CustomerSnapshot, SnapshotCache

_CATALOG = "catalog"
_CHANGED_CUSTOMERS = "changed_customers"
_CHANGED_HOLDS = "changed_holds"


@dataclass(slots=True)
class CatalogState:
    """The committed catalog; replaced as a whole by the hook of the job that changed it."""

    current: Catalog = field(default_factory=Catalog)


@dataclass(slots=True)
class Runtime:
    store: Store
    clock: Clock
    catalog: CatalogState = field(default_factory=CatalogState)
    snapshots: SnapshotCache = field(default_factory=SnapshotCache)

    def catalog_in(self, session: Session) -> Catalog:
        """The catalog as the jobs before this one in the batch left it."""
        staged = session.scratch.get(_CATALOG)
        return staged if isinstance(staged, Catalog) else self.catalog.current

    def stage_catalog(self, session: Session, catalog: Catalog) -> None:
        """Make ``catalog`` the current one, for later jobs now and for everyone on commit."""
        session.scratch[_CATALOG] = catalog

        def publish() -> None:
            self.catalog.current = catalog

        session.after_commit(publish)

    def customer_changed(self, session: Session, customer_id: str) -> None:
        """Drop the customer's snapshot on commit; later jobs of the batch read the store."""
        session.scratch.setdefault(_CHANGED_CUSTOMERS, set()).add(customer_id)
        session.after_commit(lambda: self.snapshots.invalidate(customer_id))

    def snapshot_in(self, session: Session, customer_id: str) -> CustomerSnapshot | None:
        """The customer as of this point of the batch: cached if still exact, else loaded."""
        if customer_id not in session.scratch.get(_CHANGED_CUSTOMERS, ()):
            cached = self.snapshots.lookup(customer_id)
            if cached is not False:
                assert not isinstance(cached, bool)
                return cached
        return self.load_snapshot(session, customer_id)

    def reservations_changed(self, session: Session, customer_id: str) -> None:
        """Later jobs of the batch read this customer's holds from the store."""
        session.scratch.setdefault(_CHANGED_HOLDS, set()).add(customer_id)

    def live_holds(self, session: Session, customer_id: str, now: datetime) -> list[Reservation]:
        """The customer's live reservations as of this point of the batch."""
        if customer_id in session.scratch.get(_CHANGED_HOLDS, ()):
            return session.live_reservations(customer_id, now)
        snapshot = self.snapshot_in(session, customer_id)
        if snapshot is None:
            return []
        return [hold for hold in snapshot.holds.values() if hold.holds(now)]

    def load_snapshot(self, session: Session, customer_id: str) -> CustomerSnapshot | None:
        """Read the customer from the store and install the snapshot when the batch commits."""
        customer = session.get_customer(customer_id)
        snapshot = None
        if customer is not None:
            holdings = session.load_holdings(customer_id, self.catalog_in(session))
            live = session.live_reservations(customer_id, self.clock.now())
            budgets: dict[str, list[Budget]] = {}
            for budget in session.load_budgets(customer_id):
                budgets.setdefault(budget.entity, []).append(budget)
            snapshot = CustomerSnapshot(
                customer,
                holdings,
                holds={r.id: r for r in live},
                entities=session.load_entities(customer_id),
                budgets={entity: tuple(found) for entity, found in budgets.items()},
            )
        # Hooks run in job order: a change made earlier in this batch has dropped the old
        # snapshot before this one, which already includes that change, is installed.
        session.after_commit(lambda: self.snapshots.install(customer_id, snapshot))
        return snapshot
