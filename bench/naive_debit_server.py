"""The baseline for the debit benchmark: one durable SQLite transaction per request.

A deliberately naive credit debit, the way one would first write it: every
``POST /v1/customers/{id}/credits/{currency}/debits`` runs, on its own,

    BEGIN IMMEDIATE
    UPDATE balances SET balance = balance - ? WHERE ... AND balance >= ?   -- the hard limit
    INSERT INTO ledger (..., idempotency_key UNIQUE, ...)
    COMMIT                                                                 -- one fsync

with the SQLite settings Allotment uses (WAL, ``synchronous=FULL``, ``busy_timeout``), and
answers ``{"applied": bool, "balance": n}``. The work runs in one worker thread that owns the
only connection (``--threads`` gives each of N threads its own connection instead; SQLite lets
one writer in at a time either way). Nothing is batched: every answered debit waited for its own
fsync. It is served by uvicorn with the options ``allotment serve`` passes.

``--inline`` is the leaner variant an in-house team would write first: the same transaction on
one connection, run inline on the event loop, with no worker thread and no hand-off. The loop
is blocked for the length of each transaction (its fsync included), so requests are served one
transaction at a time, but nothing is paid to cross threads or to contend for the GIL.

Amounts are whole numbers; a reused idempotency key applies nothing and answers the current
balance. There is no authentication and no catalog. Two helper routes exist for the benchmark:
``POST .../grants {"amount"}`` adds to the balance (creating the row), and ``GET .../{currency}``
reads it.

Run it alone with ``python bench/naive_debit_server.py --db /tmp/naive.db --port 8098
[--inline]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS balances (
    customer TEXT NOT NULL,
    currency TEXT NOT NULL,
    balance INTEGER NOT NULL,
    PRIMARY KEY (customer, currency)
);
CREATE TABLE IF NOT EXISTS ledger (
    seq INTEGER PRIMARY KEY,
    customer TEXT NOT NULL,
    currency TEXT NOT NULL,
    amount INTEGER NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE,
    at INTEGER NOT NULL
);
"""


def connect(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    connection.execute("PRAGMA busy_timeout=10000")
    return connection


class Database:
    """SQLite work on ``threads`` worker threads, each with its own connection."""

    def __init__(self, path: Path, threads: int) -> None:
        self.path = path
        create_schema(path)
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="naive-sqlite")

    def _connection(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = connect(self.path)
            self._local.connection = connection
            with self._lock:
                self._connections.append(connection)
        return connection

    async def run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: work(self._connection()))

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        with self._lock:
            for connection in self._connections:
                connection.close()


class InlineDatabase:
    """SQLite work run inline on the event loop, on one connection: no thread, no hand-off."""

    def __init__(self, path: Path) -> None:
        self.path = path
        create_schema(path)
        self._connection = connect(path)

    async def run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        return work(self._connection)  # blocks the loop for the whole transaction

    def close(self) -> None:
        self._connection.close()


def create_schema(path: Path) -> None:
    connection = connect(path)
    connection.executescript(SCHEMA)
    connection.close()


def debit(
    connection: sqlite3.Connection,
    customer: str,
    currency: str,
    amount: int,
    key: str,
    enforce: bool,
) -> dict[str, Any]:
    """One debit in one durable transaction: the conditional update, then the ledger row."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        if enforce:
            updated = connection.execute(
                "UPDATE balances SET balance = balance - ?"
                " WHERE customer = ? AND currency = ? AND balance >= ?",
                (amount, customer, currency, amount),
            ).rowcount
        else:
            updated = connection.execute(
                "UPDATE balances SET balance = balance - ? WHERE customer = ? AND currency = ?",
                (amount, customer, currency),
            ).rowcount
        applied = updated == 1
        if applied:
            try:
                connection.execute(
                    "INSERT INTO ledger (customer, currency, amount, idempotency_key, at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (customer, currency, -amount, key, time.time_ns() // 1000),
                )
            except sqlite3.IntegrityError:  # a reused key: undo the update, apply nothing
                connection.execute("ROLLBACK")
                # Applied by the first request with this key (refused debits record no key).
                found = balance(connection, customer, currency)
                return {"applied": True, "replayed": True, "balance": found}
        row = connection.execute(
            "SELECT balance FROM balances WHERE customer = ? AND currency = ?",
            (customer, currency),
        ).fetchone()
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise
    return {"applied": applied, "balance": None if row is None else row[0]}


def grant(connection: sqlite3.Connection, customer: str, currency: str, amount: int) -> int:
    connection.execute("BEGIN IMMEDIATE")
    try:
        connection.execute(
            "INSERT INTO balances (customer, currency, balance) VALUES (?, ?, ?)"
            " ON CONFLICT (customer, currency) DO UPDATE SET balance = balance + excluded.balance",
            (customer, currency, amount),
        )
        new_balance = balance(connection, customer, currency)
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise
    assert new_balance is not None
    return new_balance


def balance(connection: sqlite3.Connection, customer: str, currency: str) -> int | None:
    row = connection.execute(
        "SELECT balance FROM balances WHERE customer = ? AND currency = ?", (customer, currency)
    ).fetchone()
    return None if row is None else int(row[0])


def _error(status: int, message: str) -> Response:
    return JSONResponse({"error": {"message": message}}, status_code=status)


async def _body(request: Request) -> dict[str, Any] | None:
    try:
        body = json.loads(await request.body())
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _whole(value: object) -> int | None:
    if type(value) is not int or value <= 0:
        return None
    return value


def create_app(database: Database | InlineDatabase) -> Starlette:
    async def post_debit(request: Request) -> Response:
        customer = request.path_params["customer"]
        currency = request.path_params["currency"]
        body = await _body(request)
        if body is None:
            return _error(400, "the body must be a JSON object")
        amount = _whole(body.get("amount"))
        key = body.get("idempotency_key")
        enforce = body.get("enforce", True)
        if amount is None or not isinstance(key, str) or not key or type(enforce) is not bool:
            return _error(422, "amount (a positive whole number) and idempotency_key are required")
        answer = await database.run(lambda db: debit(db, customer, currency, amount, key, enforce))
        if answer["balance"] is None:
            return _error(404, f"no balance for {customer}/{currency}")
        return JSONResponse(answer)

    async def post_grant(request: Request) -> Response:
        customer = request.path_params["customer"]
        currency = request.path_params["currency"]
        body = await _body(request)
        amount = None if body is None else _whole(body.get("amount"))
        if amount is None:
            return _error(422, "amount (a positive whole number) is required")
        new_balance = await database.run(lambda db: grant(db, customer, currency, amount))
        return JSONResponse({"balance": new_balance}, status_code=201)

    async def get_balance(request: Request) -> Response:
        customer = request.path_params["customer"]
        currency = request.path_params["currency"]
        found = await database.run(lambda db: balance(db, customer, currency))
        if found is None:
            return _error(404, f"no balance for {customer}/{currency}")
        return JSONResponse({"balance": found})

    async def livez(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            database.close()

    pool = "/v1/customers/{customer}/credits/{currency}"
    return Starlette(
        routes=[
            Route(f"{pool}/debits", post_debit, methods=["POST"]),
            Route(f"{pool}/grants", post_grant, methods=["POST"]),
            Route(pool, get_balance, methods=["GET"]),
            Route("/livez", livez, methods=["GET"]),
        ],
        lifespan=lifespan,
    )


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--db", type=Path, required=True, help="SQLite file (created if missing)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8098)
    parser.add_argument("--log-level", default="warning")
    parser.add_argument(
        "--threads", type=int, default=1, help="worker threads, one connection each (default 1)"
    )
    parser.add_argument(
        "--inline",
        action="store_true",
        help="run each transaction inline on the event loop, on one connection, no thread",
    )
    args = parser.parse_args()
    if args.threads < 1:
        parser.error("--threads must be at least 1")
    if args.inline and args.threads != 1:
        parser.error("--inline uses no worker thread: leave out --threads")
    database = InlineDatabase(args.db) if args.inline else Database(args.db, args.threads)
    # The same options as `allotment serve` (src/allotment/cli.py).
    uvicorn.run(
        create_app(database),
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        access_log=False,
        lifespan="on",
    )


if __name__ == "__main__":
    main()
