"""Events, timers and webhooks on SQL: one implementation for SQLite and PostgreSQL.

The statements are the same on both databases but for the placeholder (``?`` here, turned into
``%s`` for psycopg by the adapter's ``Sql``) and for taking rows other transactions may be
taking (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite's batch already holds the write lock).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

import msgspec

from allotment.domain.events import Event, EventType, LoggedEvent
from allotment.domain.timefmt import from_epoch_micros, to_epoch_micros
from allotment.domain.webhooks import Delivery, DeliveryStatus, Endpoint
from allotment.service.ports import Page, Timer
from allotment.storage.rows import instant, micros, paged

Row = tuple[Any, ...]


class Sql(Protocol):
    """A connection inside the batch's transaction, as these repositories use it."""

    take_locked: str  # appended to a SELECT whose rows this transaction will change

    def rows(self, query: str, params: Sequence[Any] = ()) -> list[Row]: ...
    def run(self, query: str, params: Sequence[Any] = ()) -> None: ...
    def run_many(self, query: str, rows: Sequence[Sequence[Any]]) -> None: ...
    def changed(self, query: str, params: Sequence[Any] = ()) -> int: ...


EVENT_COLUMNS = "seq, id, type, customer, created_at, data"


def event_row(seq: int, event: Event) -> Row:
    return (
        seq,
        event.id,
        event.type.value,
        event.customer,
        to_epoch_micros(event.created_at),
        event.data.decode(),
    )


def event_of(row: Row) -> LoggedEvent:
    seq, event_id, event_type, customer, created_at, data = row
    at = from_epoch_micros(created_at)
    event = Event(event_id, EventType(event_type), customer, at, data.encode())
    return LoggedEvent(int(seq), event)


class SqlEvents:
    def __init__(self, sql: Sql) -> None:
        self._sql = sql

    def get(self, event_id: str) -> LoggedEvent | None:
        rows = self._sql.rows(f"SELECT {EVENT_COLUMNS} FROM events WHERE id = ?", (event_id,))
        return event_of(rows[0]) if rows else None

    def list(
        self, event_type: str | None, customer: str | None, after: int, limit: int
    ) -> Sequence[LoggedEvent]:
        conditions: list[str] = ["seq > ?"]
        params: list[Any] = [after]
        if event_type is not None:
            conditions.append("type = ?")
            params.append(event_type)
        if customer is not None:
            conditions.append("customer = ?")
            params.append(customer)
        rows = self._sql.rows(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE {' AND '.join(conditions)}"
            " ORDER BY seq LIMIT ?",
            (*params, limit),
        )
        return [event_of(row) for row in rows]

    def created_between(
        self, since: datetime, until: datetime | None, after: int, limit: int
    ) -> Sequence[LoggedEvent]:
        end = 2**62 if until is None else to_epoch_micros(until)
        # Walked by seq from ``after``, the instants filtered (``+``: not through their index,
        # which would read and sort the whole range again for every page of a replay).
        rows = self._sql.rows(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE seq > ? AND +created_at >= ?"
            " AND +created_at < ? ORDER BY seq LIMIT ?",
            (after, to_epoch_micros(since), end, limit),
        )
        return [event_of(row) for row in rows]

    def newest_seq(self) -> int:
        return int(self._sql.rows("SELECT COALESCE(MAX(seq), 0) FROM events")[0][0])

    def mark_once(self, key: str, kept_until: datetime) -> bool:
        return (
            self._sql.changed(
                "INSERT INTO event_marks (key, kept_until) VALUES (?, ?) ON CONFLICT DO NOTHING",
                (key, to_epoch_micros(kept_until)),
            )
            == 1
        )

    def prune(self, before: datetime, limit: int) -> int:
        cutoff = to_epoch_micros(before)
        dropped = self._sql.changed(
            "DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE created_at < ?"
            " ORDER BY created_at LIMIT ?)",
            (cutoff, limit),
        )
        self._sql.run(
            "DELETE FROM event_marks WHERE key IN (SELECT key FROM event_marks"
            " WHERE kept_until < ? ORDER BY kept_until LIMIT ?)",
            (cutoff, limit),
        )
        # Through ``deliveries_finished_by_age`` (migration 0014), whose condition the query
        # repeats: it reads only the deliveries it drops, however many are kept.
        self._sql.run(
            "DELETE FROM webhook_deliveries WHERE seq IN (SELECT seq FROM webhook_deliveries"
            " WHERE status <> 'pending' AND created_at < ? ORDER BY created_at LIMIT ?)",
            (cutoff, limit),
        )
        return dropped


class SqlTimers:
    def __init__(self, sql: Sql) -> None:
        self._sql = sql

    def set(self, timer: Timer) -> None:
        self._sql.run(
            "INSERT INTO event_timers (key, due_at, customer, payload) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (key) DO UPDATE SET due_at = excluded.due_at,"
            " customer = excluded.customer, payload = excluded.payload",
            (timer.key, to_epoch_micros(timer.due_at), timer.customer, timer.payload.decode()),
        )

    def cancel(self, key: str) -> None:
        self._sql.run("DELETE FROM event_timers WHERE key = ?", (key,))

    def take_due(self, now: datetime, limit: int) -> list[Timer]:
        rows = self._sql.rows(
            "SELECT key, due_at, customer, payload FROM event_timers WHERE due_at <= ?"
            f" ORDER BY due_at, key LIMIT ?{self._sql.take_locked}",
            (to_epoch_micros(now), limit),
        )
        if rows:
            self._sql.run_many(
                "DELETE FROM event_timers WHERE key = ?", [(row[0],) for row in rows]
            )
        return [
            Timer(key, from_epoch_micros(due), customer, payload.encode())
            for key, due, customer, payload in rows
        ]

    def next_due(self) -> datetime | None:
        rows = self._sql.rows("SELECT MIN(due_at) FROM event_timers")
        return instant(rows[0][0]) if rows else None


ENDPOINT_COLUMNS = (
    "id, url, events, description, disabled, secret, created_at, cursor, previous_secret,"
    " previous_until, failing_since"
)
DELIVERY_COLUMNS = (
    "id, endpoint, event_seq, event_id, grp, status, attempts, next_attempt_at, created_at,"
    " last_status_code, last_error, seq"
)


def _endpoint_row(e: Endpoint) -> Row:
    return (
        e.id,
        e.url,
        None if e.events is None else msgspec.json.encode(list(e.events)).decode(),
        e.description,
        e.disabled,
        e.secret,
        to_epoch_micros(e.created_at),
        e.cursor,
        e.previous_secret,
        micros(e.previous_until),
        micros(e.failing_since),
    )


def _endpoint_of(row: Row) -> Endpoint:
    events = None if row[2] is None else tuple(msgspec.json.decode(row[2], type=list[str]))
    return Endpoint(
        id=row[0],
        url=row[1],
        events=events,
        description=row[3],
        disabled=bool(row[4]),
        secret=row[5],
        created_at=from_epoch_micros(row[6]),
        cursor=int(row[7]),
        previous_secret=row[8],
        previous_until=instant(row[9]),
        failing_since=instant(row[10]),
    )


def _delivery_row(d: Delivery) -> Row:
    return (
        d.id,
        d.endpoint,
        d.event_seq,
        d.event_id,
        d.group,
        d.status.value,
        d.attempts,
        micros(d.next_attempt_at),
        to_epoch_micros(d.created_at),
        d.last_status_code,
        d.last_error,
    )


def _delivery_of(row: Row) -> Delivery:
    return Delivery(
        id=row[0],
        endpoint=row[1],
        event_seq=int(row[2]),
        event_id=row[3],
        group=row[4],
        status=DeliveryStatus(row[5]),
        attempts=int(row[6]),
        next_attempt_at=instant(row[7]),
        created_at=from_epoch_micros(row[8]),
        last_status_code=row[9],
        last_error=row[10],
        seq=int(row[11]),
    )


class SqlWebhooks:
    def __init__(self, sql: Sql) -> None:
        self._sql = sql

    def save_endpoint(self, endpoint: Endpoint) -> None:
        self._sql.run(
            f"INSERT INTO webhook_endpoints ({ENDPOINT_COLUMNS})"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET"
            " url = excluded.url, events = excluded.events,"
            " description = excluded.description, disabled = excluded.disabled,"
            " secret = excluded.secret, cursor = excluded.cursor,"
            " previous_secret = excluded.previous_secret,"
            " previous_until = excluded.previous_until, failing_since = excluded.failing_since",
            _endpoint_row(endpoint),
        )

    def get_endpoint(self, endpoint_id: str, *, held: bool = True) -> Endpoint | None:
        lock = self._sql.take_locked.replace(" SKIP LOCKED", "") if held else ""
        rows = self._sql.rows(
            f"SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = ?{lock}",
            (endpoint_id,),
        )
        return _endpoint_of(rows[0]) if rows else None

    def list_endpoints(self, after: str | None, limit: int) -> Page[Endpoint]:
        rows = self._sql.rows(
            f"SELECT seq, {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE seq > ?"
            " ORDER BY seq LIMIT ?",
            (0 if after is None else int(after), limit + 1),
        )
        return paged(rows, limit, lambda row: _endpoint_of(row[1:]))

    def enabled_endpoints(self) -> list[Endpoint]:
        rows = self._sql.rows(
            f"SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE NOT disabled ORDER BY seq"
        )
        return [_endpoint_of(row) for row in rows]

    def delete_endpoint(self, endpoint_id: str) -> bool:
        self._sql.run("DELETE FROM webhook_deliveries WHERE endpoint = ?", (endpoint_id,))
        return self._sql.changed("DELETE FROM webhook_endpoints WHERE id = ?", (endpoint_id,)) == 1

    def add_deliveries(self, deliveries: Sequence[Delivery]) -> None:
        if not deliveries:
            return
        # Each row sees the ones before it: a group's first pending delivery keeps its due
        # instant, the rest wait for it (``save_delivery`` hands the turn on).
        self._sql.run_many(
            "INSERT INTO webhook_deliveries (id, endpoint, event_seq, event_id, grp, status,"
            " attempts, next_attempt_at, created_at, last_status_code, last_error)"
            " SELECT ?, ?, ?, ?, ?, ?, ?, CASE WHEN EXISTS (SELECT 1 FROM webhook_deliveries e"
            " WHERE e.endpoint = ? AND e.grp = ? AND e.status = 'pending') THEN NULL ELSE ? END,"
            " ?, ?, ?",
            [
                (*row[:7], d.endpoint, d.group, row[7], *row[8:])
                for d, row in ((d, _delivery_row(d)) for d in deliveries)
            ],
        )

    def save_delivery(self, delivery: Delivery) -> None:
        self._sql.run(
            "UPDATE webhook_deliveries SET status = ?, attempts = ?, next_attempt_at = ?,"
            " last_status_code = ?, last_error = ? WHERE id = ?",
            (
                delivery.status.value,
                delivery.attempts,
                micros(delivery.next_attempt_at),
                delivery.last_status_code,
                delivery.last_error,
                delivery.id,
            ),
        )
        if delivery.status is not DeliveryStatus.PENDING:  # the group's next one's turn
            self._sql.run(
                "UPDATE webhook_deliveries SET next_attempt_at = created_at WHERE seq = ("
                "SELECT MIN(seq) FROM webhook_deliveries WHERE endpoint = ? AND grp = ?"
                " AND status = 'pending') AND next_attempt_at IS NULL",
                (delivery.endpoint, delivery.group),
            )

    def get_delivery(self, delivery_id: str) -> Delivery | None:
        rows = self._sql.rows(
            f"SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE id = ?", (delivery_id,)
        )
        return _delivery_of(rows[0]) if rows else None

    def due_deliveries(self, now: datetime, limit: int, busy: Sequence[str] = ()) -> list[Delivery]:
        # Filtered here, not by the caller: a disabled or busy endpoint's deliveries would
        # otherwise fill every page and starve the others.
        skipped = f" AND endpoint NOT IN ({', '.join('?' * len(busy))})" if busy else ""
        rows = self._sql.rows(
            f"SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries"
            " WHERE status = 'pending' AND next_attempt_at <= ?"
            f" AND endpoint IN (SELECT id FROM webhook_endpoints WHERE NOT disabled){skipped}"
            f" ORDER BY next_attempt_at, seq LIMIT ?{self._sql.take_locked}",
            (to_epoch_micros(now), *busy, limit),
        )
        return [_delivery_of(row) for row in rows]

    def list_deliveries(
        self, endpoint_id: str, status: DeliveryStatus | None, after: str | None, limit: int
    ) -> Page[Delivery]:
        conditions, params = (
            ["endpoint = ?", "seq > ?"],
            [endpoint_id, 0 if after is None else int(after)],
        )
        if status is not None:
            conditions.append("status = ?")
            params.append(status.value)
        rows = self._sql.rows(
            f"SELECT seq, {DELIVERY_COLUMNS} FROM webhook_deliveries"
            f" WHERE {' AND '.join(conditions)} ORDER BY seq LIMIT ?",
            (*params, limit + 1),
        )
        return paged(rows, limit, lambda row: _delivery_of(row[1:]))
