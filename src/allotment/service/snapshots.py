"""In-memory snapshots of customers, kept exact by the projector (``projector.py``).

A snapshot holds what resolution needs for one customer (the customer, its holdings) and what it
has derived from them: resolutions, valid until the next instant a holding starts or ends, and
usage per reset window. It also holds live holds, credit pool figures, the nodes of the entity
tree that requests have read with their budgets (``entity_tree.py``), and usage per budget
window. Only the projector installs, changes or drops snapshots, applying committed changes and
fills in commit order, so a snapshot always equals some committed prefix of the truth and a
check served from it never touches the database.

Resolutions and periods are derived, not truth: the event loop may fill them in; it never writes
usage figures.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType

from allotment.domain.budgets import BudgetKind, EntityPath
from allotment.domain.catalog import Catalog, Feature, MeteredSpec, Spec
from allotment.domain.customers import Customer
from allotment.domain.holdings import Holdings
from allotment.domain.periods import period_containing
from allotment.domain.projections import counts_in
from allotment.domain.quantities import Micros
from allotment.domain.reservations import Reservation
from allotment.domain.resolution import DenialReason, Offer, Resolution, resolve
from allotment.domain.timefmt import to_epoch_micros
from allotment.service.answers import PeriodView, SourceView
from allotment.service.entity_tree import BudgetWindowKey, EntityNode, EntityTree, PathBudgets

DEFAULT_MAX_CUSTOMERS = 100_000

NO_HOLDS: Mapping[str, Reservation] = MappingProxyType({})

WindowKey = tuple[str, int, int | None]
"""(feature, window start, window end) with instants in epoch microseconds."""


def window_key(feature_id: str, window: PeriodView) -> WindowKey:
    return (feature_id, window.start_micros, window.end_micros)


@dataclass(frozen=True, slots=True)
class FeatureAt:
    """One feature as checks read it for one ``Derived``: the resolution and, for a metered
    feature with an offer, its reset window containing the instant it was made for.

    One record holds what a check reads, copied out of the objects it comes from (the offer's
    spec, its source as the answer writes it, the window's bounds), so that a check reaches
    one object rather than a chain of five: with a hundred thousand customers cached, each
    object a check reaches is a likely miss of the processor's caches. Replaced whole, never
    changed: threads share it."""

    offer: Offer | None
    denial: DenialReason | None
    spec: Spec | None = None
    source: SourceView | None = None
    window: PeriodView | None = None
    key: WindowKey | None = None
    starts: datetime | None = None  # the window's bounds: ``window.period``'s, copied
    ends: datetime | None = None

    @property
    def resolution(self) -> Resolution:
        return Resolution(self.offer, self.denial)

    @staticmethod
    def of(feature_id: str, resolution: Resolution, now: datetime) -> FeatureAt:
        offer = resolution.offer
        if offer is None:
            return FeatureAt(None, resolution.denial)
        spec = offer.spec
        source = SourceView(offer.source.type, offer.source.id)
        if not isinstance(spec, MeteredSpec):
            return FeatureAt(offer, None, spec, source)
        period = period_containing(offer.anchor, spec.reset, now)
        window = PeriodView.of(period)
        key = window_key(feature_id, window)
        return FeatureAt(offer, None, spec, source, window, key, period.start, period.end)


@dataclass(slots=True)
class Derived:
    """Resolutions computed for one catalog and one stretch of time in which nothing changes."""

    catalog: Catalog
    valid_from: datetime
    valid_until: datetime | None
    # Per feature, its resolution and current window (``FeatureAt``): the window is computed
    # again once it no longer contains the instant asked about.
    features: dict[str, FeatureAt] = field(default_factory=dict)

    def feature_at(self, snapshot: CustomerSnapshot, feature: Feature, now: datetime) -> FeatureAt:
        """``feature`` as ``snapshot``'s checks read it at ``now`` (which this record covers)."""
        found = self.features.get(feature.id)
        if found is not None:
            starts = found.starts
            if starts is None or (
                starts <= now and (found.ends is None or now < found.ends)
            ):  # fmt: skip
                return found
            resolution = found.resolution  # kept: only the window is made again
        else:
            resolution = resolve(self.catalog, snapshot.holdings, feature, now)
        found = FeatureAt.of(feature.id, resolution, now)
        self.features[feature.id] = found
        return found


@dataclass(frozen=True, slots=True)
class PoolFigures:
    """A pool as a check needs it; true for one catalog until ``valid_until`` (the next instant
    a grant enters or leaves, or a period's recurring block is due), or until a write."""

    catalog: Catalog
    balance: Micros
    overdraft_limit: Micros | None
    valid_until: datetime | None

    def holds_at(self, catalog: Catalog, now: datetime) -> bool:
        return self.catalog is catalog and (self.valid_until is None or now < self.valid_until)


@dataclass(slots=True)
class CustomerSnapshot:
    customer: Customer
    holdings: Holdings
    windows: dict[WindowKey, Micros] = field(default_factory=dict)
    derived: Derived | None = None
    # Reservations that were live when loaded or made since; ended ones are removed by the
    # projector, expired ones are skipped by the clock. Replaced as a whole, never changed;
    # the many snapshots without any share one empty mapping, which stays in the processor's
    # caches when a check reads it.
    holds: Mapping[str, Reservation] = field(default_factory=lambda: NO_HOLDS)
    # Each credit pool's figures as the last job that saved it left them, for checks.
    pools: dict[str, PoolFigures] = field(default_factory=dict)
    # The nodes of the entity tree that requests have read (``entity_tree.py``).
    tree: EntityTree = field(default_factory=EntityTree)
    budget_windows: dict[BudgetWindowKey, Micros] = field(default_factory=dict)
    # The keys of ``windows`` by feature, and of ``budget_windows`` by (entity, kind, target):
    # a change touches the windows of its own feature and path, never all of them.
    windows_of: dict[str, list[WindowKey]] = field(default_factory=dict)
    budget_windows_of: dict[tuple[str, BudgetKind, str], list[BudgetWindowKey]] = field(
        default_factory=dict
    )

    # The customer's ``is_archived``, read by every check: kept here, beside the fields a check
    # reads anyway, rather than one object further (the customer never changes in a snapshot).
    archived: bool = field(init=False)

    def __post_init__(self) -> None:
        self.archived = self.customer.is_archived

    def derived_for(self, catalog: Catalog, now: datetime) -> Derived:
        """What holds for ``catalog`` at ``now``: the cached record, or a new empty one.

        Callers keep the returned record for the rest of their work rather than reading
        ``self.derived`` again, which another thread may replace meanwhile (the store thread
        works with the catalog staged in its batch).
        """
        derived = self.derived
        if (
            derived is None
            or derived.catalog is not catalog
            or now < derived.valid_from
            or (derived.valid_until is not None and now >= derived.valid_until)
        ):
            derived = Derived(catalog, now, self.holdings.next_change_after(now))
            self.derived = derived
        return derived

    def resolution(self, catalog: Catalog, feature: Feature, now: datetime) -> Resolution:
        return self.derived_for(catalog, now).feature_at(self, feature, now).resolution


class SnapshotCache:
    """Snapshots by customer id; ``None`` records a customer known not to exist.

    At most ``max_customers`` of them: past that, the one least recently looked up or installed
    leaves, one at a time (the others stay). The order is an ``OrderedDict``'s, whose single
    operations are atomic under the interpreter lock: the event loop moves a customer to the
    recent end as it looks it up while the store's thread installs and evicts."""

    def __init__(self, max_customers: int = DEFAULT_MAX_CUSTOMERS) -> None:
        if max_customers < 1:
            raise ValueError("the snapshot cache must hold at least one customer")
        self._snapshots: OrderedDict[str, CustomerSnapshot | None] = OrderedDict()
        self.max_customers = max_customers
        self.evictions = 0  # customers dropped to make room, for /metrics
        self.installs = 0  # snapshots (or absences) installed, for freezing (``api/memory.py``)

    def lookup(self, customer_id: str) -> CustomerSnapshot | bool | None:
        """The snapshot, None for a known-missing customer, or False when nothing is cached."""
        snapshots = self._snapshots
        found = snapshots.get(customer_id, False)
        if found is not False:
            # Not contextlib.suppress: on every check, its context manager would cost more.
            try:  # noqa: SIM105
                snapshots.move_to_end(customer_id)
            except KeyError:  # the store's thread dropped it since
                pass
        return found

    def __len__(self) -> int:
        return len(self._snapshots)

    # The methods below are called only by the projector, on the store's thread.

    def install(self, customer_id: str, snapshot: CustomerSnapshot | None) -> None:
        snapshots = self._snapshots
        snapshots[customer_id] = snapshot
        snapshots.move_to_end(customer_id)
        self.installs += 1
        while len(snapshots) > self.max_customers:
            snapshots.popitem(last=False)
            self.evictions += 1

    def invalidate(self, customer_id: str) -> None:
        self._snapshots.pop(customer_id, None)

    def clear(self) -> None:
        self._snapshots.clear()

    def install_window(self, customer_id: str, key: WindowKey, used: Micros) -> None:
        snapshot = self._snapshots.get(customer_id)
        if snapshot is None:
            return
        feature, start, _ = key
        # A window that ended before this one starts is no longer read by checks: drop it, so
        # that a long-lived snapshot of an hourly feature does not grow without end.
        kept = []
        for other in snapshot.windows_of.get(feature, ()):
            if other[2] is not None and other[2] <= start:
                del snapshot.windows[other]
            elif other != key:
                kept.append(other)
        kept.append(key)
        snapshot.windows_of[feature] = kept
        snapshot.windows[key] = used

    def add_hold(self, customer_id: str, reservation: Reservation) -> None:
        snapshot = self._snapshots.get(customer_id)
        if snapshot is None:
            return
        # Holds that expired by the time this one was made are no longer read: drop them.
        # The dict is replaced, never changed in place: checks on the event loop iterate it.
        holds = {
            hold.id: hold
            for hold in snapshot.holds.values()
            if hold.expires_at > reservation.created_at
        }
        holds[reservation.id] = reservation
        snapshot.holds = holds

    def end_hold(self, customer_id: str, reservation_id: str) -> None:
        snapshot = self._snapshots.get(customer_id)
        if snapshot is not None and reservation_id in snapshot.holds:
            holds = dict(snapshot.holds)
            del holds[reservation_id]
            snapshot.holds = holds

    def install_pool(self, customer_id: str, currency: str, figures: PoolFigures) -> None:
        snapshot = self._snapshots.get(customer_id)
        if snapshot is not None:
            snapshot.pools[currency] = figures

    def install_path(self, customer_id: str, entity: str, nodes: Sequence[EntityNode]) -> None:
        snapshot = self._snapshots.get(customer_id)
        if snapshot is not None:
            snapshot.tree.install(entity, nodes)

    def keep_path(
        self,
        customer_id: str,
        entity: str,
        feature: str | None,
        currency: str | None,
        found: PathBudgets,
    ) -> None:
        snapshot = self._snapshots.get(customer_id)
        if snapshot is not None:
            snapshot.tree.keep(entity, feature, currency, found)

    def forget_entity(self, customer_id: str, entity: str) -> None:
        snapshot = self._snapshots.get(customer_id)
        if snapshot is not None:
            snapshot.tree.forget(entity)

    def install_budget_window(self, customer_id: str, key: BudgetWindowKey, used: Micros) -> None:
        snapshot = self._snapshots.get(customer_id)
        if snapshot is None:
            return
        entity, kind, target, start, _ = key
        series = (entity, kind, target)
        kept = []
        for other in snapshot.budget_windows_of.get(series, ()):
            if other[4] is not None and other[4] <= start:
                del snapshot.budget_windows[other]
            elif other != key:
                kept.append(other)
        kept.append(key)
        snapshot.budget_windows_of[series] = kept
        snapshot.budget_windows[key] = used

    def add_usage(
        self,
        customer_id: str,
        feature_id: str,
        timestamp: datetime,
        delta: Micros,
        path: EntityPath = (),
    ) -> None:
        snapshot = self._snapshots.get(customer_id)
        if snapshot is None:
            return
        instant = to_epoch_micros(timestamp)
        windows = snapshot.windows
        for key in snapshot.windows_of.get(feature_id, ()):
            _, start, end = key
            if counts_in(start, end, instant):
                windows[key] += delta
        if path:
            _count_for_budgets(snapshot, BudgetKind.FEATURE, feature_id, path, instant, delta)

    def add_spend(
        self, customer_id: str, currency: str, path: EntityPath, at: datetime, credits: Micros
    ) -> None:
        """Credits debited for ``path`` at ``at``, for the currency budgets along it."""
        snapshot = self._snapshots.get(customer_id)
        if snapshot is not None:
            instant = to_epoch_micros(at)
            _count_for_budgets(snapshot, BudgetKind.CURRENCY, currency, path, instant, credits)


def _count_for_budgets(
    snapshot: CustomerSnapshot,
    kind: BudgetKind,
    target: str,
    path: EntityPath,
    instant: int,
    amount: Micros,
) -> None:
    windows, series = snapshot.budget_windows, snapshot.budget_windows_of
    for entity in path:
        for key in series.get((entity, kind, target), ()):
            if counts_in(key[3], key[4], instant):
                windows[key] += amount
