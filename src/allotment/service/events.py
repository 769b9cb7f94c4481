"""Writing events: each in the job that makes the change it describes.

``emit`` records an ``EventRecorded`` change, so the event is stored in the same transaction as
its change and under its revision. The events time brings are *timers*
(``TimerRepository``): set in the job that makes the instant known (a trial's end, a grant's
expiry), taken by ``fire_due`` once the service's clock passes it, in a job that decides on what
is stored then whether the event still happens, and removed with the event it writes, so each
is stored once however many processes take timers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import msgspec

from allotment.domain.changes import EventRecorded
from allotment.domain.events import TRIAL_WARNING, Event, EventType
from allotment.domain.holdings import Subscription
from allotment.domain.identifiers import new_id
from allotment.domain.timefmt import from_epoch_micros, to_epoch_micros
from allotment.service.ports import Timer, UnitOfWork

_encode = msgspec.json.Encoder(decimal_format="number").encode
_decode = msgspec.json.decode


def emit(
    uow: UnitOfWork, event_type: EventType, customer: str | None, data: Any, now: datetime
) -> Event:
    """Record an event of ``data`` (a view struct or a mapping) in the job's transaction."""
    event = Event(new_id("evt"), event_type, customer, now, _encode(data))
    uow.record(EventRecorded(event))
    return event


# ------------------------------------------------------------------ timers


def _timer(
    kind: EventType, subject: str, due_at: datetime, customer: str | None, **fields: Any
) -> Timer:
    return Timer(f"{kind.value}:{subject}", due_at, customer, _encode(fields))


def subscription_timers(
    uow: UnitOfWork, subscription: Subscription, now: datetime
) -> list[EventType]:
    """Set (or clear) the timers of what the subscription's instants will bring; the events due
    already (a trial with less than ``TRIAL_WARNING`` left) are returned for the caller to emit
    at once."""
    subject = f"{subscription.customer}:{subscription.id}"
    customer = subscription.customer
    at_once: list[EventType] = []
    over = subscription.canceled_at is not None and subscription.canceled_at <= now
    trial_end = subscription.trial_ends_at if subscription.is_trial and not over else None
    for kind, instant, due in (
        (
            EventType.TRIAL_WILL_END,
            trial_end,
            None if trial_end is None else trial_end - TRIAL_WARNING,
        ),
        (EventType.TRIAL_ENDED, trial_end, trial_end),
        (
            EventType.SUBSCRIPTION_EXPIRED,
            None if over else subscription.ends_at,
            None if over else subscription.ends_at,
        ),
    ):
        key = f"{kind.value}:{subject}"
        if instant is None or due is None or instant <= now:
            uow.timers.cancel(key)
        elif due <= now:
            uow.timers.cancel(key)
            if first_time(uow, key, instant):
                at_once.append(kind)
        else:
            uow.timers.set(
                _timer(
                    kind,
                    subject,
                    due,
                    customer,
                    subscription=subscription.id,
                    at=to_epoch_micros(instant),
                )
            )
    return at_once


def first_time(uow: UnitOfWork, key: str, instant: datetime) -> bool:
    """Whether the event of timer ``key`` for ``instant`` is written for the first time: a
    subscription changed after its trial warning was sent does not send it again."""
    return uow.events.mark_once(f"{key}:{to_epoch_micros(instant)}", instant)


def grant_timer(
    uow: UnitOfWork,
    customer: str,
    currency: str,
    grant_id: str,
    at: datetime,
    kind: EventType = EventType.CREDITS_EXPIRED,
) -> None:
    """At ``at`` the pool is settled, which writes the grant's entry (``credits.granted``, for
    a grant that takes effect then) or its expiry (``credits.expired``) and sends its event."""
    uow.timers.set(
        _timer(
            kind,
            f"{customer}:{currency}:{grant_id}",
            at,
            customer,
            currency=currency,
            grant=grant_id,
            at=to_epoch_micros(at),
        )
    )


def reservation_timer(
    uow: UnitOfWork, customer: str, reservation_id: str, expires_at: datetime
) -> None:
    uow.timers.set(
        _timer(
            EventType.RESERVATION_EXPIRED,
            reservation_id,
            expires_at,
            customer,
            reservation=reservation_id,
            at=to_epoch_micros(expires_at),
        )
    )


def reservation_ended(uow: UnitOfWork, reservation_id: str) -> None:
    uow.timers.cancel(f"{EventType.RESERVATION_EXPIRED.value}:{reservation_id}")


def migration_timers(
    uow: UnitOfWork,
    migration_id: str,
    moved: list[tuple[str, str, datetime]],
    completed_at: datetime,
    migration: Any,
) -> None:
    """A migration at period end: ``subscription.migrated`` at each subscription's move, and
    ``migration.completed`` once the last has moved."""
    for customer, subscription_id, at in moved:
        uow.timers.set(
            _timer(
                EventType.SUBSCRIPTION_MIGRATED,
                f"{customer}:{subscription_id}:{migration_id}",
                at,
                customer,
                subscription=subscription_id,
                migration=migration_id,
                at=to_epoch_micros(at),
            )
        )
    uow.timers.set(
        Timer(
            f"{EventType.MIGRATION_COMPLETED.value}:{migration_id}",
            completed_at,
            None,
            _encode({"migration": migration}),
        )
    )


Firing = Callable[[UnitOfWork, Timer, Mapping[str, Any], datetime], None]
"""What taking a timer of one kind does: emit its event if what is stored still calls for it."""


def timer_kind(timer: Timer) -> EventType:
    return EventType(timer.key.split(":", 1)[0])


def timer_fields(timer: Timer) -> dict[str, Any]:
    fields: dict[str, Any] = _decode(timer.payload)
    return fields


def timer_instant(fields: Mapping[str, Any]) -> datetime:
    return from_epoch_micros(fields["at"])
