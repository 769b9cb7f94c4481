"""Reservations (holds) on PostgreSQL: as on SQLite."""

from __future__ import annotations

from datetime import datetime

from allotment.domain.reservations import Reservation
from allotment.domain.timefmt import to_epoch_micros
from allotment.storage.postgres.db import Db
from allotment.storage.records import RESERVATION_COLUMNS, reservation_of, reservation_row


class PostgresReservations:
    def __init__(self, db: Db) -> None:
        self._db = db

    def save(self, reservation: Reservation) -> None:
        self._db.execute(
            f"INSERT INTO reservations ({RESERVATION_COLUMNS})"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (customer, id) DO UPDATE SET ended_at = excluded.ended_at,"
            " ended_as = excluded.ended_as, committed_amount = excluded.committed_amount",
            reservation_row(reservation),
        )

    def get(self, reservation_id: str) -> Reservation | None:
        row = self._db.execute(
            f"SELECT {RESERVATION_COLUMNS} FROM reservations WHERE id = %s", (reservation_id,)
        ).fetchone()
        return None if row is None else reservation_of(row)

    def live(self, customer_id: str, now: datetime) -> list[Reservation]:
        rows = self._db.execute(
            f"SELECT {RESERVATION_COLUMNS} FROM reservations WHERE customer = %s"
            " AND ended_at IS NULL AND expires_at > %s ORDER BY seq",
            (customer_id, to_epoch_micros(now)),
        )
        return [reservation_of(row) for row in rows]
