"""Events: what happened that a product, a billing system or a CRM may act on.

An event is written in the same transaction as the change it describes (it travels as an
``EventRecorded`` change, so it takes the change log's revision as its ``seq``: increasing
across the service, in commit order). Its ``data`` is the JSON of the resource or figures it
names, encoded once when the event is made.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum


class EventType(StrEnum):
    CUSTOMER_CREATED = "customer.created"
    CUSTOMER_UPDATED = "customer.updated"
    CUSTOMER_ARCHIVED = "customer.archived"
    SUBSCRIPTION_CREATED = "subscription.created"
    SUBSCRIPTION_UPDATED = "subscription.updated"
    SUBSCRIPTION_CANCELED = "subscription.canceled"
    SUBSCRIPTION_EXPIRED = "subscription.expired"
    SUBSCRIPTION_MIGRATED = "subscription.migrated"
    TRIAL_STARTED = "trial.started"
    TRIAL_WILL_END = "trial.will_end"
    TRIAL_ENDED = "trial.ended"
    USAGE_THRESHOLD_REACHED = "usage.threshold_reached"
    CREDITS_GRANTED = "credits.granted"
    CREDITS_LOW = "credits.low"
    CREDITS_DEPLETED = "credits.depleted"
    CREDITS_EXPIRED = "credits.expired"
    PLAN_PUBLISHED = "plan.published"
    ADDON_PUBLISHED = "addon.published"
    MIGRATION_COMPLETED = "migration.completed"
    RESERVATION_EXPIRED = "reservation.expired"
    WEBHOOK_ENDPOINT_DISABLED = "webhook_endpoint.disabled"
    PING = "ping"


SUBSCRIBABLE = tuple(t for t in EventType if t is not EventType.PING)
"""The types an endpoint may ask for; ``ping`` goes only to the endpoint it was sent to."""

TRIAL_WARNING = timedelta(days=3)
"""``trial.will_end`` fires this long before the trial ends (at once when less is left)."""

USAGE_THRESHOLDS = (80, 100)
"""Per cent of a finite limit at which ``usage.threshold_reached`` fires, once per period."""


@dataclass(frozen=True, slots=True)
class Event:
    id: str  # evt_...
    type: EventType
    customer: str | None
    created_at: datetime
    data: bytes  # the JSON object of the event's ``data``


@dataclass(frozen=True, slots=True)
class LoggedEvent:
    """An event as stored: with the revision of the transaction that wrote it."""

    seq: int
    event: Event


def crossed(before: int, after: int, limit: int) -> tuple[int, ...]:
    """The thresholds (per cent of ``limit``) that usage passing from ``before`` to ``after``
    reaches for the first time in this move; exact integers, no rounding: ``after * 100 >=
    threshold * limit`` while ``before * 100 < threshold * limit``."""
    if limit <= 0 or after <= before:
        return ()
    return tuple(t for t in USAGE_THRESHOLDS if before * 100 < t * limit <= after * 100)


def fell_below(before: int, after: int, floor: int) -> bool:
    """A balance moved from at or above ``floor`` to below it: a low-balance crossing. Rising
    back to ``floor`` or above re-arms it, since only a move from there fires again."""
    return before >= floor > after


def depleted(before: int, after: int) -> bool:
    """Available credits moved from above 0 to 0 or less."""
    return before > 0 >= after
