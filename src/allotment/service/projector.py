"""The projector: the one writer of cached state.

Cached state is what answers checks without the store: the catalog, a snapshot per customer
(holdings, usage windows, holds, pool figures, the entity nodes read, budget windows) and the
authenticated API keys. :func:`apply` changes it, and nothing else does. It takes two sorts of
effect:

- a *change* (``domain/changes.py``), read from the change log: written by a job of this
  process and applied when that job's batch commits, or written by another process and applied
  when this one reads it from the log. Replaying the log through :func:`apply` from an empty
  state gives the state the live process holds, for the figures changes carry;
- a *fill*, local to one process: what a job read from the store to answer a miss (a customer's
  snapshot, a window's usage, an entity's path, a pool's figures, a key), installed after its
  batch commits so that it lands after every change the read already includes and before
  every later one.

Effects are applied in commit order, one at a time, on the store's thread. Applying one costs
what it touches: its customer's snapshot, the windows of its feature, the budgets on its path.
It is pure apart from the state it is given, so an SDK or a sidecar can run it on the events of
the change feed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from allotment.domain.catalog import Catalog
from allotment.domain.changes import (
    ApiKeyChanged,
    CatalogChanged,
    Change,
    CreditsChanged,
    CustomerChanged,
    EventRecorded,
    HoldEnded,
    HoldPlaced,
    UsageRecorded,
)
from allotment.domain.customers import ApiKey
from allotment.domain.documents import add_document
from allotment.domain.quantities import Micros
from allotment.service.entity_tree import BudgetWindowKey, EntityNode, PathBudgets
from allotment.service.snapshots import (
    CustomerSnapshot,
    PoolFigures,
    SnapshotCache,
    WindowKey,
)


@dataclass(slots=True)
class CatalogState:
    """The committed catalog; replaced as a whole, never changed in place."""

    current: Catalog = field(default_factory=Catalog)


@dataclass(slots=True)
class CacheState:
    """Everything cached: read by any thread, written only through :func:`apply`."""

    catalog: CatalogState = field(default_factory=CatalogState)
    snapshots: SnapshotCache = field(default_factory=SnapshotCache)
    keys: dict[str, ApiKey] = field(default_factory=dict)  # live keys by SHA-256 digest
    # The last revision of the log applied, and a count of effects begun and ended: a reader on
    # another thread that sees ``begun == ended`` before and after its reads, unchanged, read
    # exactly the state after ``revision`` (``Runtime.project`` keeps them).
    revision: int = 0
    begun: int = 0
    ended: int = 0


# ---------------------------------------------------------------- fills


@dataclass(frozen=True, slots=True)
class SnapshotLoaded:
    customer: str
    snapshot: CustomerSnapshot | None  # None: the customer does not exist


@dataclass(frozen=True, slots=True)
class WindowLoaded:
    customer: str
    key: WindowKey
    used: Micros


@dataclass(frozen=True, slots=True)
class BudgetWindowLoaded:
    customer: str
    key: BudgetWindowKey
    used: Micros


@dataclass(frozen=True, slots=True)
class TreeLoaded:
    """An entity's path as stored (itself and its ancestors, with their budgets); empty when
    the entity does not exist."""

    customer: str
    entity: str
    nodes: tuple[EntityNode, ...]


@dataclass(frozen=True, slots=True)
class PathComputed:
    """A path a job computed from the nodes it read (``TreeLoaded`` before it), for a feature
    and a currency: kept beside the nodes while they are the tree's."""

    customer: str
    entity: str
    feature: str | None
    currency: str | None
    found: PathBudgets


@dataclass(frozen=True, slots=True)
class PoolFiguresComputed:
    """A pool's figures, computed by a job that appended nothing to its ledger."""

    customer: str
    currency: str
    figures: PoolFigures


@dataclass(frozen=True, slots=True)
class KeyFound:
    key: ApiKey


@dataclass(frozen=True, slots=True)
class CatalogLoaded:
    """The whole catalog, read from the store (at start-up, or after losing the log's thread)."""

    catalog: Catalog


@dataclass(frozen=True, slots=True)
class Forget:
    """Drop every snapshot and key: this process can no longer follow the log's changes one by
    one (it fell behind what the log keeps)."""


Fill = (
    SnapshotLoaded
    | WindowLoaded
    | BudgetWindowLoaded
    | TreeLoaded
    | PathComputed
    | PoolFiguresComputed
    | KeyFound
    | CatalogLoaded
    | Forget
)
Effect = Change | Fill


def apply_all(state: CacheState, effects: Iterable[Effect]) -> None:
    for effect in effects:
        apply(state, effect)


def apply(state: CacheState, effect: Effect) -> None:
    snapshots = state.snapshots
    match effect:
        case UsageRecorded(customer, feature, _, amount, timestamp, path):
            snapshots.add_usage(customer, feature, timestamp, amount, path)
        case CreditsChanged(customer, currency, balance, overdraft, valid_until, spends):
            figures = PoolFigures(state.catalog.current, balance, overdraft, valid_until)
            snapshots.install_pool(customer, currency, figures)
            for spend in spends:
                snapshots.add_spend(customer, currency, spend.entity_path, spend.at, spend.credits)
        case CustomerChanged(customer, None):
            snapshots.invalidate(customer)
        case CustomerChanged(customer, str() as entity):
            snapshots.forget_entity(customer, entity)
        case HoldPlaced(reservation):
            snapshots.add_hold(reservation.customer, reservation)
        case HoldEnded(customer, reservation_id):
            snapshots.end_hold(customer, reservation_id)
        case CatalogChanged(object_kind, object_id, document):
            current = state.catalog.current
            state.catalog.current = add_document(current, object_kind, object_id, document)
        case ApiKeyChanged(key):
            if key.revoked_at is None:
                state.keys[key.key_hash] = key
            else:
                state.keys.pop(key.key_hash, None)
        case SnapshotLoaded(customer, snapshot):
            snapshots.install(customer, snapshot)
        case WindowLoaded(customer, key, used):
            snapshots.install_window(customer, key, used)
        case TreeLoaded(customer, entity, nodes):
            snapshots.install_path(customer, entity, nodes)
        case PathComputed(customer, entity, feature, currency, found):
            snapshots.keep_path(customer, entity, feature, currency, found)
        case BudgetWindowLoaded(customer, key, used):
            snapshots.install_budget_window(customer, key, used)
        case PoolFiguresComputed(customer, currency, figures):
            snapshots.install_pool(customer, currency, figures)
        case KeyFound(key):
            if key.revoked_at is None:
                state.keys[key.key_hash] = key
        case EventRecorded():
            pass  # for webhooks and GET /v1/events, which read the events table
        case CatalogLoaded(catalog):
            state.catalog.current = catalog
        case Forget():
            snapshots.clear()
            state.keys.clear()
