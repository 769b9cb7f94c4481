"""The events time brings: taking the timers the clock has passed.

Each process takes due timers every second (``api/background.py``), and the test clock's move
takes them before it answers. A job takes a batch of timers (removing them) and, for each,
decides on what is stored now whether its event still happens: a trial canceled before its end
sends no ``trial.ended``. Taking and writing are one transaction, so a timer's event is stored
once however many processes take timers.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import msgspec

from allotment.domain.errors import AllotmentError
from allotment.domain.events import EventType
from allotment.domain.holdings import Subscription
from allotment.domain.timefmt import to_epoch_micros
from allotment.service.credits import CreditService
from allotment.service.customer_views import subscription_view
from allotment.service.events import emit, first_time, timer_fields, timer_instant, timer_kind
from allotment.service.outcomes import reservation_view
from allotment.service.ports import Timer, UnitOfWork
from allotment.service.runtime import Runtime

log = logging.getLogger(__name__)

TIMERS_PER_JOB = 200

_SUBSCRIPTION_TIMERS = (
    EventType.TRIAL_WILL_END,
    EventType.TRIAL_ENDED,
    EventType.SUBSCRIPTION_EXPIRED,
    EventType.SUBSCRIPTION_MIGRATED,
)


class TimeEvents:
    def __init__(self, runtime: Runtime, credits: CreditService) -> None:
        self._runtime = runtime
        self._credits = credits

    async def fire_due(self) -> int:
        """Take every timer due by the service's clock now; how many were taken."""
        taken = 0
        while True:
            batch = await self._runtime.store.run(self._take)
            taken += batch
            if batch < TIMERS_PER_JOB:
                return taken

    def _take(self, uow: UnitOfWork) -> int:
        now = self._runtime.clock.now()
        timers = uow.timers.take_due(now, TIMERS_PER_JOB)
        # By customer, then key: a job settling several pools holds them in the order every
        # other such job does, so two processes taking timers never wait on each other in a
        # cycle.
        for timer in sorted(timers, key=lambda t: (t.customer or "", t.key)):
            try:
                self._fire(uow, timer, now)
            except AllotmentError:
                # What the timer was about is gone (a customer, a currency): nothing to send.
                log.info("timer %s has nothing left to fire for", timer.key)
            except (KeyError, ValueError, TypeError):
                # A payload this version cannot read: drop it rather than stop every timer.
                log.exception("timer %s could not be fired; dropped", timer.key)
        return len(timers)

    def _fire(self, uow: UnitOfWork, timer: Timer, now: datetime) -> None:
        kind, fields = timer_kind(timer), timer_fields(timer)
        if kind in _SUBSCRIPTION_TIMERS:
            assert timer.customer is not None
            subscription = uow.holdings.get_subscription(timer.customer, fields["subscription"])
            if subscription is None or not _still_due(kind, subscription, fields, now):
                return
            key = timer.key
            if kind is not EventType.SUBSCRIPTION_MIGRATED and not first_time(
                uow, key, timer_instant(fields)
            ):
                return
            catalog = self._runtime.catalog_in(uow)
            view = subscription_view(subscription, catalog, now)
            emit(uow, kind, subscription.customer, view, now)
        elif kind in (EventType.CREDITS_EXPIRED, EventType.CREDITS_GRANTED):
            # Settling writes the expiry entries, whose saving sends ``credits.expired``
            # (unless a request settled the pool first and sent it then).
            assert timer.customer is not None
            currency = fields["currency"]
            pool = self._credits.settled_pool(uow, timer.customer, currency, now)
            self._credits.save(uow, timer.customer, currency, pool, now)
        elif kind is EventType.RESERVATION_EXPIRED:
            reservation = uow.reservations.get(fields["reservation"])
            if (
                reservation is not None
                and reservation.ended_at is None
                and to_epoch_micros(reservation.expires_at) == fields["at"]
            ):
                emit(uow, kind, reservation.customer, reservation_view(reservation, now), now)
        elif kind is EventType.MIGRATION_COMPLETED:
            migration = msgspec.Raw(msgspec.json.encode(fields["migration"]))
            emit(uow, kind, None, migration, now)


def _still_due(
    kind: EventType, subscription: Subscription, fields: Mapping[str, Any], now: datetime
) -> bool:
    """Whether the subscription still reaches the instant its timer was set for."""
    at = fields["at"]
    canceled = subscription.canceled_at
    if kind is EventType.SUBSCRIPTION_MIGRATED:
        return canceled is None or canceled > now
    if kind is EventType.SUBSCRIPTION_EXPIRED:
        ends = subscription.ends_at
        return (
            ends is not None
            and to_epoch_micros(ends) == at
            and (canceled is None or canceled >= ends)
        )
    ends = subscription.trial_ends_at
    if not subscription.is_trial or ends is None or to_epoch_micros(ends) != at:
        return False
    return canceled is None or canceled >= (ends if kind is EventType.TRIAL_ENDED else now)
