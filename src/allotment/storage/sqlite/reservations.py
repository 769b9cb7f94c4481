"""Reservations (holds)."""

from __future__ import annotations

import sqlite3
from datetime import datetime

from allotment.domain.reservations import Reservation
from allotment.domain.timefmt import to_epoch_micros
from allotment.storage.records import RESERVATION_COLUMNS, reservation_of, reservation_row


class SqliteReservations:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def save(self, reservation: Reservation) -> None:
        self._db.execute(
            f"INSERT INTO reservations ({RESERVATION_COLUMNS})"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (id) DO UPDATE SET ended_at = excluded.ended_at,"
            " ended_as = excluded.ended_as, committed_amount = excluded.committed_amount",
            reservation_row(reservation),
        )

    def get(self, reservation_id: str) -> Reservation | None:
        row = self._db.execute(
            f"SELECT {RESERVATION_COLUMNS} FROM reservations WHERE id = ?", (reservation_id,)
        ).fetchone()
        return None if row is None else reservation_of(row)

    def live(self, customer_id: str, now: datetime) -> list[Reservation]:
        return [
            reservation_of(row)
            for row in self._db.execute(
                f"SELECT {RESERVATION_COLUMNS} FROM reservations WHERE customer = ?"
                " AND ended_at IS NULL AND expires_at > ? ORDER BY seq",
                (customer_id, to_epoch_micros(now)),
            )
        ]
