"""Rows of ``credit_grants`` on PostgreSQL: every grant of every pool, ended ones included.

The queries are ``storage/sqlite/grants.py``'s, with ``boolean`` columns where SQLite keeps
0 and 1. A pool loads only its live grants, through the partial index ``credit_grants_live``
(migration 0007), whose PostgreSQL condition ``LIVE`` repeats term for term, so that the
planner sees at once that the query's WHERE implies it. Ended grants (voided, expired, or
credited and used up) are read by id, to void a used-up one, or a page at a time.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from allotment.domain.credits import Grant, GrantStatus
from allotment.domain.timefmt import to_epoch_micros
from allotment.service.ports import Page
from allotment.storage.postgres.db import Db
from allotment.storage.records import GRANT_COLUMNS as COLUMNS
from allotment.storage.records import grant_of, grant_row
from allotment.storage.rows import paged

LIVE = "NOT expired AND voided_at IS NULL AND (NOT credited OR remaining > 0)"
"""Not ended (``Grant.ended``): the condition of the partial index, as migration 0007 writes it
for PostgreSQL."""

_NOT_ENDED_BY_TIME = (
    "voided_at IS NULL AND NOT expired AND (expires_at IS NULL OR expires_at > %(now)s)"
)
STATUS = {
    # Grant.status, in SQL: the contract suite compares every filter with it.
    GrantStatus.VOIDED: "voided_at IS NOT NULL",
    GrantStatus.EXPIRED: (
        "voided_at IS NULL AND (expired OR (expires_at IS NOT NULL AND expires_at <= %(now)s))"
    ),
    GrantStatus.SCHEDULED: f"{_NOT_ENDED_BY_TIME} AND effective_at > %(now)s",
    GrantStatus.DEPLETED: f"{_NOT_ENDED_BY_TIME} AND effective_at <= %(now)s AND remaining <= 0",
    GrantStatus.ACTIVE: f"{_NOT_ENDED_BY_TIME} AND effective_at <= %(now)s AND remaining > 0",
}


def load_live(db: Db, customer_id: str, currency: str) -> dict[str, Grant]:
    """The pool's live grants, oldest first: none of its ended ones is read."""
    rows = db.execute(
        f"SELECT {COLUMNS} FROM credit_grants WHERE customer = %s AND currency = %s"
        f" AND {LIVE} ORDER BY seq",
        (customer_id, currency),
    ).fetchall()
    return {row[0]: grant_of(row) for row in rows}


def get(db: Db, customer_id: str, currency: str, grant_id: str) -> Grant | None:
    row = db.execute(
        f"SELECT {COLUMNS} FROM credit_grants WHERE id = %s AND customer = %s AND currency = %s",
        (grant_id, customer_id, currency),
    ).fetchone()
    return None if row is None else grant_of(row)


def exists(db: Db, customer_id: str, currency: str, grant_id: str) -> bool:
    row = db.execute(
        "SELECT 1 FROM credit_grants WHERE id = %s AND customer = %s AND currency = %s",
        (grant_id, customer_id, currency),
    ).fetchone()
    return row is not None


def page(
    db: Db,
    customer_id: str,
    currency: str,
    after: str | None,
    limit: int,
    status: GrantStatus | None,
    now: datetime,
) -> Page[Grant]:
    """Grants oldest first after the cursor (a ``seq``), with the status ``status`` at ``now``
    if given; one more is read to know whether there is a next page."""
    # Named parameters: a status condition names ``now`` up to four times.
    where = "customer = %(customer)s AND currency = %(currency)s AND seq > %(after)s"
    if status is not None:
        where += f" AND {STATUS[status]}"
    rows = db.execute(
        f"SELECT seq, {COLUMNS} FROM credit_grants WHERE {where} ORDER BY seq LIMIT %(limit)s",
        {
            "customer": customer_id,
            "currency": currency,
            "after": 0 if after is None else int(after),
            "now": to_epoch_micros(now),
            "limit": limit + 1,
        },
    ).fetchall()
    return paged(rows, limit, lambda row: grant_of(row[1:]))


def save(db: Db, customer_id: str, currency: str, grants: Iterable[Grant]) -> None:
    """Insert new grants and store the figures and state of the others (what a pool changes)."""
    rows = [grant_row(customer_id, currency, grant) for grant in grants]
    if not rows:
        return
    with db.cursor() as cursor:
        cursor.executemany(
            f"INSERT INTO credit_grants (customer, currency, {COLUMNS})"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (customer, id) DO UPDATE SET remaining = excluded.remaining,"
            " credited = excluded.credited, expired = excluded.expired,"
            " voided_at = excluded.voided_at",
            rows,
        )
