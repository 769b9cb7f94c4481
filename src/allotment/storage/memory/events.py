"""The memory adapter's events, timers and webhooks, as ``storage/event_tables.py`` keeps them on
SQL: the same upserts (and the columns an update may change), the same order, the same paging.

Events are written by the unit of work when its job commits (:func:`write_events`), each under
the revision of the ``EventRecorded`` change it came with, as the SQL adapters write them at the
end of a batch: a job does not read back the events it records.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import TypeVar

from allotment.domain.events import EventType, LoggedEvent
from allotment.domain.timefmt import to_epoch_micros
from allotment.domain.webhooks import Delivery, DeliveryStatus, Endpoint
from allotment.service.ports import Page, Timer
from allotment.storage.memory.database import NEVER_ENDS, ConstraintError, MemoryDatabase, page
from allotment.storage.memory.records import stored

V = TypeVar("V")


def write_events(db: MemoryDatabase, logged: Iterable[LoggedEvent]) -> None:
    """Store each event under its revision (through the journal: a job that fails at its end
    leaves none); an id already taken fails the job, as the events' unique id does on SQL."""
    journal = db.journal
    for found in logged:
        event = found.event
        if event.id in db.event_ids:
            raise ConstraintError(f"events.id is unique: {event.id} exists")
        kept = replace(stored(event), type=EventType(event.type), data=bytes(event.data))
        journal.put(db.logged_events, found.seq, LoggedEvent(found.seq, kept))
        journal.put(db.event_ids, event.id, found.seq)


class MemoryEvents:
    def __init__(self, db: MemoryDatabase) -> None:
        self._db = db

    def get(self, event_id: str) -> LoggedEvent | None:
        seq = self._db.event_ids.get(event_id)
        return None if seq is None else self._db.logged_events[seq]

    def created_between(
        self, since: datetime, until: datetime | None, after: int, limit: int
    ) -> list[LoggedEvent]:
        low = to_epoch_micros(since)
        high = NEVER_ENDS if until is None else to_epoch_micros(until)
        return self._chosen(
            after, limit, lambda e: low <= to_epoch_micros(e.event.created_at) < high
        )

    def newest_seq(self) -> int:
        return max(self._db.logged_events, default=0)

    def mark_once(self, key: str, kept_until: datetime) -> bool:
        marks = self._db.event_marks
        if key in marks:
            return False
        self._db.journal.put(marks, key, to_epoch_micros(kept_until))
        return True

    def prune(self, before: datetime, limit: int) -> int:
        # The reference adapter scans: what it promises is which events go, not the cost.
        db, cutoff = self._db, to_epoch_micros(before)
        old = sorted(
            (to_epoch_micros(found.event.created_at), seq)
            for seq, found in db.logged_events.items()
            if to_epoch_micros(found.event.created_at) < cutoff
        )[:limit]
        for _, seq in old:
            db.journal.delete(db.event_ids, db.logged_events[seq].event.id)
            db.journal.delete(db.logged_events, seq)
        marks = sorted((at, key) for key, at in db.event_marks.items() if at < cutoff)[:limit]
        for _, key in marks:
            db.journal.delete(db.event_marks, key)
        finished = [
            d
            for _, d in db.deliveries.ordered(everyone=True)
            if d.status != DeliveryStatus.PENDING and to_epoch_micros(d.created_at) < cutoff
        ][:limit]
        for delivery in finished:
            db.deliveries.delete(delivery.id)
        return len(old)

    def _chosen(
        self, after: int, limit: int, chosen: Callable[[LoggedEvent], bool]
    ) -> list[LoggedEvent]:
        # Sorted on each read: a rolled-back delete puts an event back at the end of the dict.
        events = self._db.logged_events
        found: list[LoggedEvent] = []
        for seq in sorted(seq for seq in events if seq > after):
            if len(found) >= limit:
                break
            if chosen(events[seq]):
                found.append(events[seq])
        return found

    # Last: a method called ``list`` would shadow the type in the annotations after it.
    def list(
        self, event_type: str | None, customer: str | None, after: int, limit: int
    ) -> list[LoggedEvent]:
        return self._chosen(
            after,
            limit,
            lambda e: (
                (event_type is None or e.event.type.value == event_type)
                and (customer is None or e.event.customer == customer)
            ),
        )


class MemoryTimers:
    def __init__(self, db: MemoryDatabase) -> None:
        self._db = db

    def set(self, timer: Timer) -> None:
        kept = replace(stored(timer), payload=bytes(timer.payload))
        self._db.journal.put(self._db.timers, timer.key, kept)

    def cancel(self, key: str) -> None:
        self._db.journal.delete(self._db.timers, key)

    def take_due(self, now: datetime, limit: int) -> list[Timer]:
        db, at = self._db, to_epoch_micros(now)
        due = sorted(
            (to_epoch_micros(timer.due_at), key)
            for key, timer in db.timers.items()
            if to_epoch_micros(timer.due_at) <= at
        )[:limit]
        taken = [db.timers[key] for _, key in due]
        for timer in taken:
            db.journal.delete(db.timers, timer.key)
        return taken

    def next_due(self) -> datetime | None:
        timers = self._db.timers.values()
        return min((timer.due_at for timer in timers), key=to_epoch_micros, default=None)


class MemoryWebhooks:
    def __init__(self, db: MemoryDatabase) -> None:
        self._endpoints = db.endpoints
        self._deliveries = db.deliveries

    def save_endpoint(self, endpoint: Endpoint) -> None:
        endpoint = stored(endpoint)
        if endpoint.events is not None:
            endpoint = replace(endpoint, events=tuple(endpoint.events))
        existing = self._endpoints.get(endpoint.id)
        if existing is None:
            self._endpoints.insert(endpoint.id, endpoint)
            return
        # Every column but the id and the creation instant may change.
        self._endpoints.update(endpoint.id, replace(endpoint, created_at=existing.created_at))

    def get_endpoint(self, endpoint_id: str, *, held: bool = True) -> Endpoint | None:
        return self._endpoints.get(endpoint_id)  # a job here is alone: it holds everything

    def list_endpoints(self, after: str | None, limit: int) -> Page[Endpoint]:
        return page(self._endpoints.ordered(everyone=True), after, limit, _same)

    def enabled_endpoints(self) -> list[Endpoint]:
        return [e for _, e in self._endpoints.ordered(everyone=True) if not e.disabled]

    def delete_endpoint(self, endpoint_id: str) -> bool:
        for delivery in self._deliveries.values(endpoint_id):
            self._deliveries.delete(delivery.id)
        return self._endpoints.delete(endpoint_id)

    def add_deliveries(self, deliveries: Sequence[Delivery]) -> None:
        table = self._deliveries
        for delivery in deliveries:
            if delivery.id in table:
                raise ConstraintError(f"webhook_deliveries.id is unique: {delivery.id} exists")
            kept = stored(delivery)
            if self._first_pending(kept.endpoint, kept.group) is not None:
                kept = replace(kept, next_attempt_at=None)  # it waits for the one ahead
            seq = table.insert(kept.id, kept, kept.endpoint)
            table.update(kept.id, replace(kept, seq=seq))

    def _first_pending(self, endpoint_id: str, group: str) -> Delivery | None:
        return next(
            (
                d
                for _, d in self._deliveries.ordered(endpoint_id)
                if d.group == group and d.status == DeliveryStatus.PENDING
            ),
            None,
        )

    def save_delivery(self, delivery: Delivery) -> None:
        existing = self._deliveries.get(delivery.id)
        if existing is None:  # as an UPDATE that finds no row
            return
        delivery = stored(delivery)
        changed = replace(
            existing,
            status=delivery.status,
            attempts=delivery.attempts,
            next_attempt_at=delivery.next_attempt_at,
            last_status_code=delivery.last_status_code,
            last_error=delivery.last_error,
        )
        self._deliveries.update(delivery.id, changed)
        if changed.status != DeliveryStatus.PENDING:  # the group's next one's turn
            following = self._first_pending(changed.endpoint, changed.group)
            if following is not None and following.next_attempt_at is None:
                turn = replace(following, next_attempt_at=following.created_at)
                self._deliveries.update(following.id, turn)

    def get_delivery(self, delivery_id: str) -> Delivery | None:
        return self._deliveries.get(delivery_id)

    def due_deliveries(self, now: datetime, limit: int, busy: Sequence[str] = ()) -> list[Delivery]:
        at = to_epoch_micros(now)
        enabled = {e.id for _, e in self._endpoints.ordered(everyone=True) if not e.disabled}
        due = [
            d
            for _, d in self._deliveries.ordered(everyone=True)
            if d.status == DeliveryStatus.PENDING
            and d.next_attempt_at is not None
            and to_epoch_micros(d.next_attempt_at) <= at
            and d.endpoint in enabled
            and d.endpoint not in busy
        ]
        due.sort(key=_due_order)
        return due[:limit]

    def list_deliveries(
        self, endpoint_id: str, status: DeliveryStatus | None, after: str | None, limit: int
    ) -> Page[Delivery]:
        rows = [
            (seq, d)
            for seq, d in self._deliveries.ordered(endpoint_id)
            if status is None or d.status == status
        ]
        return page(rows, after, limit, _same)


def _due_order(delivery: Delivery) -> tuple[int, int]:
    assert delivery.next_attempt_at is not None
    return to_epoch_micros(delivery.next_attempt_at), delivery.seq


def _same(value: V) -> V:
    return value
