"""Reservations (holds) on PostgreSQL: as on SQLite."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from allotment.domain.reservations import Reservation, ReservationStatus
from allotment.domain.timefmt import from_epoch_micros, to_epoch_micros
from allotment.storage.postgres.db import Db
from allotment.storage.rows import instant, micros, path_of, path_text


class PostgresReservations:
    def __init__(self, db: Db) -> None:
        self._db = db

    def save(self, reservation: Reservation) -> None:
        self._db.execute(
            f"INSERT INTO reservations ({_RESERVATION_COLUMNS})"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (customer, id) DO UPDATE SET ended_at = excluded.ended_at,"
            " ended_as = excluded.ended_as, committed_amount = excluded.committed_amount",
            (
                reservation.id,
                reservation.customer,
                reservation.feature,
                reservation.entity,
                reservation.amount,
                reservation.currency,
                reservation.credits,
                to_epoch_micros(reservation.created_at),
                to_epoch_micros(reservation.expires_at),
                micros(reservation.ended_at),
                None if reservation.ended_as is None else reservation.ended_as.value,
                reservation.committed_amount,
                path_text(reservation.entity_path),
            ),
        )

    def get(self, reservation_id: str) -> Reservation | None:
        row = self._db.execute(
            f"SELECT {_RESERVATION_COLUMNS} FROM reservations WHERE id = %s", (reservation_id,)
        ).fetchone()
        return None if row is None else _reservation(row)

    def live(self, customer_id: str, now: datetime) -> list[Reservation]:
        rows = self._db.execute(
            f"SELECT {_RESERVATION_COLUMNS} FROM reservations WHERE customer = %s"
            " AND ended_at IS NULL AND expires_at > %s ORDER BY seq",
            (customer_id, to_epoch_micros(now)),
        )
        return [_reservation(row) for row in rows]


_RESERVATION_COLUMNS = (
    "id, customer, feature, entity, amount, currency, credits, created_at, expires_at,"
    " ended_at, ended_as, committed_amount, entity_path"
)


def _reservation(row: tuple[Any, ...]) -> Reservation:
    return Reservation(
        id=row[0],
        customer=row[1],
        feature=row[2],
        entity=row[3],
        amount=row[4],
        currency=row[5],
        credits=row[6],
        created_at=from_epoch_micros(row[7]),
        expires_at=from_epoch_micros(row[8]),
        ended_at=instant(row[9]),
        ended_as=None if row[10] is None else ReservationStatus(row[10]),
        committed_amount=row[11],
        entity_path=path_of(row[12]),
    )
