"""Changes: what a committed write did, as values.

Every write that can alter a decision, or that a client may act on, records one or more changes
in the change log, in the same transaction as the write itself. The log gives each a revision
(``seq``) that increases across the whole service, without gaps and in commit order. The
projector (``service/projector.py``) applies changes to cached state, in the process that made
them and in every other process that follows the log; the change feed streams them.

A change carries what a cache needs to follow it without asking the store: a usage change its
signed delta, its instant and its entity path; a credits change the pool's figures after it.
Changes to what a customer holds only say which customer changed: caches drop and reload it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from allotment.domain.budgets import EntityPath
from allotment.domain.customers import ApiKey
from allotment.domain.events import Event
from allotment.domain.quantities import Micros
from allotment.domain.reservations import Reservation


class ChangeKind(StrEnum):
    """The kind of each change, as the log stores it."""

    CATALOG = "catalog.changed"
    CUSTOMER = "customer.changed"
    USAGE = "usage.recorded"
    CREDITS = "credits.changed"
    HOLD_PLACED = "hold.placed"
    HOLD_ENDED = "hold.ended"
    API_KEY = "api_key.changed"
    EVENT = "event.recorded"


@dataclass(frozen=True, slots=True)
class CatalogChanged:
    """One catalog object was created or replaced by ``document`` (as stored)."""

    object_kind: str  # feature, currency, product, plan, addon
    object_id: str
    document: Mapping[str, Any]

    kind = ChangeKind.CATALOG
    customer = None


@dataclass(frozen=True, slots=True)
class CustomerChanged:
    """The customer or what it holds (subscriptions, promotions, overrides) changed: caches
    drop it and read it again. With ``entity``, only that entity (its place in the tree, its
    fields or its budgets) changed: caches drop what they hold of that entity alone."""

    customer: str
    entity: str | None = None

    kind = ChangeKind.CUSTOMER


@dataclass(frozen=True, slots=True)
class UsageRecorded:
    customer: str
    feature: str
    entity: str | None
    amount: Micros  # the signed delta recorded
    timestamp: datetime  # the instant it counts at
    entity_path: EntityPath  # who it counts for: the entity, then its ancestors

    kind = ChangeKind.USAGE


@dataclass(frozen=True, slots=True)
class Spend:
    """Credits debited for an entity path: what the currency budgets along it count."""

    entity_path: EntityPath
    at: datetime
    credits: Micros


@dataclass(frozen=True, slots=True)
class CreditsChanged:
    """Entries were appended to a pool's ledger; the pool's figures after them."""

    customer: str
    currency: str
    balance: Micros
    overdraft_limit: Micros | None  # None: soft without bound
    valid_until: datetime | None  # the next instant the pool changes by itself
    spends: tuple[Spend, ...] = ()

    kind = ChangeKind.CREDITS


@dataclass(frozen=True, slots=True)
class HoldPlaced:
    reservation: Reservation

    kind = ChangeKind.HOLD_PLACED

    @property
    def customer(self) -> str:
        return self.reservation.customer


@dataclass(frozen=True, slots=True)
class HoldEnded:
    """A reservation was committed or released (expiry needs no change: the clock ends it)."""

    customer: str
    reservation: str

    kind = ChangeKind.HOLD_ENDED


@dataclass(frozen=True, slots=True)
class ApiKeyChanged:
    """A key was created, replaced or revoked; caches of authenticated keys follow it."""

    key: ApiKey

    kind = ChangeKind.API_KEY
    customer = None


@dataclass(frozen=True, slots=True)
class EventRecorded:
    """An event (``domain/events.py``) was written with the change it describes; the events
    table keeps it under this change's revision. Caches have nothing to follow in it."""

    event: Event

    kind = ChangeKind.EVENT

    @property
    def customer(self) -> str | None:
        return self.event.customer


Change = (
    CatalogChanged
    | CustomerChanged
    | UsageRecorded
    | CreditsChanged
    | HoldPlaced
    | HoldEnded
    | ApiKeyChanged
    | EventRecorded
)
CHANGES = (
    CatalogChanged,
    CustomerChanged,
    UsageRecorded,
    CreditsChanged,
    HoldPlaced,
    HoldEnded,
    ApiKeyChanged,
    EventRecorded,
)
"""Every kind of change, for ``isinstance``."""


@dataclass(frozen=True, slots=True)
class LoggedChange:
    """A change as the log holds it: with its revision and the instant it was written."""

    seq: int
    written_at: datetime
    change: Change
