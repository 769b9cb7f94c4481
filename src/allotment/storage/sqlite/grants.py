"""Rows of ``credit_grants``: every grant of every pool, ended ones included.

A pool loads only its live grants, through the partial index ``credit_grants_live`` (migration
0007), whose condition ``LIVE`` repeats word for word: SQLite uses a partial index only for a
query whose WHERE clause contains the index's own terms. Ended grants (voided, expired, or
credited and used up) are read by id, to void a used-up one, or a page at a time.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from datetime import datetime

from allotment.domain.credits import Grant, GrantStatus
from allotment.domain.timefmt import to_epoch_micros
from allotment.service.ports import Page
from allotment.storage.records import GRANT_COLUMNS as COLUMNS
from allotment.storage.records import grant_of, grant_row
from allotment.storage.rows import paged

LIVE = "expired = 0 AND voided_at IS NULL AND (credited = 0 OR remaining > 0)"
"""Not ended (``Grant.ended``): the condition of the partial index, as it is written there."""

_NOT_ENDED_BY_TIME = (
    "voided_at IS NULL AND expired = 0 AND (expires_at IS NULL OR expires_at > :now)"
)
STATUS = {
    # Grant.status, in SQL: the contract suite compares every filter with it.
    GrantStatus.VOIDED: "voided_at IS NOT NULL",
    GrantStatus.EXPIRED: (
        "voided_at IS NULL AND (expired <> 0 OR (expires_at IS NOT NULL AND expires_at <= :now))"
    ),
    GrantStatus.SCHEDULED: f"{_NOT_ENDED_BY_TIME} AND effective_at > :now",
    GrantStatus.DEPLETED: f"{_NOT_ENDED_BY_TIME} AND effective_at <= :now AND remaining <= 0",
    GrantStatus.ACTIVE: f"{_NOT_ENDED_BY_TIME} AND effective_at <= :now AND remaining > 0",
}


def load_live(db: sqlite3.Connection, customer_id: str, currency: str) -> dict[str, Grant]:
    rows = db.execute(
        f"SELECT {COLUMNS} FROM credit_grants WHERE customer = :customer"
        f" AND currency = :currency AND {LIVE} ORDER BY seq",
        {"customer": customer_id, "currency": currency},
    )
    return {row[0]: grant_of(row) for row in rows}


def get(db: sqlite3.Connection, customer_id: str, currency: str, grant_id: str) -> Grant | None:
    row = db.execute(
        f"SELECT {COLUMNS} FROM credit_grants WHERE id = ? AND customer = ? AND currency = ?",
        (grant_id, customer_id, currency),
    ).fetchone()
    return None if row is None else grant_of(row)


def exists(db: sqlite3.Connection, customer_id: str, currency: str, grant_id: str) -> bool:
    row = db.execute(
        "SELECT 1 FROM credit_grants WHERE id = ? AND customer = ? AND currency = ?",
        (grant_id, customer_id, currency),
    ).fetchone()
    return row is not None


def page(
    db: sqlite3.Connection,
    customer_id: str,
    currency: str,
    after: str | None,
    limit: int,
    status: GrantStatus | None,
    now: datetime,
) -> Page[Grant]:
    """Grants oldest first after the cursor (a ``seq``), with the status ``status`` at ``now``
    if given; one more is read to know whether there is a next page."""
    where = "customer = :customer AND currency = :currency AND seq > :after"
    if status is not None:
        where += f" AND {STATUS[status]}"
    rows = db.execute(
        f"SELECT seq, {COLUMNS} FROM credit_grants WHERE {where} ORDER BY seq LIMIT :limit",
        {
            "customer": customer_id,
            "currency": currency,
            "after": 0 if after is None else int(after),
            "now": to_epoch_micros(now),
            "limit": limit + 1,
        },
    ).fetchall()
    return paged(rows, limit, lambda row: grant_of(row[1:]))


# The figures and state of a grant the table holds: all a pool changes of it.
UPDATE_FIGURES = (
    "UPDATE credit_grants SET remaining = ?, credited = ?, expired = ?, voided_at = ? WHERE id = ?"
)


def save(db: sqlite3.Connection, customer_id: str, currency: str, grants: Iterable[Grant]) -> None:
    """Insert new grants and store the figures and state of the others (what a pool changes)."""
    db.executemany(
        f"INSERT INTO credit_grants (customer, currency, {COLUMNS})"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (id) DO UPDATE SET remaining = excluded.remaining,"
        " credited = excluded.credited, expired = excluded.expired,"
        " voided_at = excluded.voided_at",
        [grant_row(customer_id, currency, grant) for grant in grants],
    )
