"""The connection every PostgreSQL repository is given, and what they share over it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
from psycopg import errors

from allotment.domain.projections import counter_overflow
from allotment.service.ports import Page
from allotment.storage.rows import paged

Db = psycopg.Connection[tuple[Any, ...]]
"""One store thread's connection, inside the batch's transaction: repositories never commit."""

_R = TypeVar("_R")


def page(
    db: Db,
    select: str,
    where: str,
    params: tuple[Any, ...],
    after: str | None,
    limit: int,
    build: Callable[[tuple[Any, ...]], _R],
) -> Page[_R]:
    """Rows after the cursor (a ``seq``), oldest first: ``limit`` of them, and whether more."""
    conditions = [where] if where else []
    values = list(params)
    if after is not None:
        conditions.append("seq > %s")
        values.append(int(after))
    clause = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    rows = db.execute(f"{select}{clause} ORDER BY seq LIMIT %s", (*values, limit + 1)).fetchall()
    return paged(rows, limit, build)


def changed_rows(db: Db, query: str, params: tuple[Any, ...]) -> int:
    """How many rows the statement changed. Waited for: in pipeline mode (``store.py``) a
    statement's count is known only once its answer came."""
    with db.pipeline():
        cursor = db.execute(query, params)
    return cursor.rowcount


def hold(db: Db, kind: str, *names: str) -> None:
    """Take the transaction-scoped advisory lock of ``kind`` and ``names`` (``usage`` and a
    customer, ``budgets`` and a customer and an entity, ``pool`` and a customer and a currency):
    the holds of the unit of work (``uow.py``). Ids never hold "/", so two names collide only
    through the hash, which costs a wait, never a wrong figure."""
    db.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", ("/".join((kind, *names)),))


def counting(db: Db, run: Callable[[], _R]) -> _R:
    """``run()``, with a figure past 64 bits refused as a counter overflow, as on SQLite.

    Its statements are waited for before this returns (a nested pipeline syncs as it ends), so
    that an overflow they meet is raised here, not by a later statement's wait."""
    try:
        with db.pipeline():
            return run()
    except errors.NumericValueOutOfRange as error:
        raise counter_overflow() from error
