"""A real server process on loopback, for tests of concurrency and durability."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.postgres_server import PostgresServer

ADMIN_KEY = "e2e-admin-key"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Server:
    database: Path
    port: int
    process: subprocess.Popen[bytes] | None = None
    args: tuple[str, ...] = ()  # more options of `allotment serve` (later ones win)
    env: dict[str, str] = field(default_factory=dict)  # more environment variables
    stderr: Path | None = None  # where the server's log goes (default: the test's stderr)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {
            **os.environ,
            "ALLOTMENT_ADMIN_KEY": ADMIN_KEY,
            "ALLOTMENT_TEST_CLOCK": "1",
            **self.env,
        }
        command = [sys.executable, "-m", "allotment", "serve", "--db", str(self.database)]
        if "ALLOTMENT_PORT" not in self.env:
            command += ["--port", str(self.port)]
        if "ALLOTMENT_LOG_LEVEL" not in self.env:
            command += ["--log-level", "warning"]
        with contextlib.ExitStack() as files:
            log = None if self.stderr is None else files.enter_context(self.stderr.open("ab"))
            self.process = subprocess.Popen([*command, *self.args], env=env, stderr=log)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with {self.process.returncode}")
            try:
                if httpx.get(f"{self.url}/livez", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.05)
        raise RuntimeError("the server did not become live within 30 s")

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a crash."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def async_client(self, connections: int, timeout: float = 30) -> httpx.AsyncClient:
        """A client for concurrent requests, with the admin key and ``connections`` at once."""
        return httpx.AsyncClient(
            base_url=self.url,
            limits=httpx.Limits(max_connections=connections),
            timeout=timeout,
            headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        )

    async def report_until_killed(
        self, body_for: Callable[[int], dict[str, Any]], kill_after: int, workers: int = 32
    ) -> set[str]:
        """POST /v1/usage from ``workers`` at once, the n-th report being ``body_for(n)`` (with
        a unique idempotency key), and SIGKILL the server once ``kill_after`` reports were
        recorded. The idempotency keys of the reports acknowledged as recorded."""
        acknowledged: set[str] = set()
        numbers = iter(range(1_000_000))
        async with self.async_client(workers, timeout=10) as client:

            async def worker() -> None:
                for n in numbers:
                    body = body_for(n)
                    try:
                        response = await client.post("/v1/usage", json=body)
                    except httpx.TransportError:
                        return  # the server is gone
                    if response.status_code == 200 and response.json()["recorded"]:
                        acknowledged.add(body["idempotency_key"])
                    if len(acknowledged) >= kill_after:
                        self.kill()

            await asyncio.gather(*(worker() for _ in range(workers)))
        return acknowledged

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=30
        )


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    running = Server(database=tmp_path / "allotment.db", port=free_port())
    running.start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def workers(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Server]:
    """``serve --workers 2`` on SQLite and on PostgreSQL: requests and the stream come from
    either process."""
    with contextlib.ExitStack() as stack:
        args: tuple[str, ...] = ("--workers", "2")
        if request.param == "postgres":
            postgres: PostgresServer = request.getfixturevalue("postgres")
            args += ("--database-url", stack.enter_context(postgres.fresh_database()))
        server = Server(
            database=tmp_path / "allotment.db",
            port=free_port(),
            args=args,
            env={"ALLOTMENT_TEST_CLOCK": "0"},  # a test clock lives in one process
            stderr=tmp_path / "serve.log",
        )
        server.start()
        stack.callback(server.stop)
        yield server


# --- The change feed: a small reader of server-sent events --------------------------------------


def log_head(database: Path) -> int:
    """The newest revision in the change log, read from the database file itself."""
    with contextlib.closing(sqlite3.connect(database, timeout=10)) as db:
        (head,) = db.execute("SELECT COALESCE(MAX(seq), 0) FROM change_log").fetchone()
    return int(head)


@dataclass(frozen=True)
class Block:
    """One block of an event stream (the lines up to a blank line), as the SSE spec parses it."""

    fields: tuple[tuple[str, str], ...]
    comments: tuple[str, ...]

    def get(self, name: str) -> str | None:
        values = [value for field, value in self.fields if field == name]
        return values[-1] if values else None

    @property
    def id(self) -> int | None:
        value = self.get("id")
        return None if value is None else int(value)

    @property
    def event(self) -> str | None:
        return self.get("event")

    @property
    def data(self) -> Any:
        value = self.get("data")
        return None if value is None else json.loads(value)

    @property
    def is_comment(self) -> bool:
        return not self.fields


class EventStream:
    """The blocks of an open ``GET /v1/stream`` response, read one at a time. Every read waits
    at most the client's read timeout, so a test never hangs on a stream that stays silent."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.iter_lines()
        self.seen: list[Block] = []
        self.start: int | None = None  # the revision the stream continues after

    @property
    def status_code(self) -> int:
        return self.response.status_code

    def block(self) -> Block:
        fields: list[tuple[str, str]] = []
        comments: list[str] = []
        try:
            for line in self._lines:
                if line == "":
                    if fields or comments:
                        block = Block(tuple(fields), tuple(comments))
                        self.seen.append(block)
                        return block
                    continue
                if line.startswith(":"):
                    comments.append(line[1:].strip())
                    continue
                name, _, value = line.partition(":")
                fields.append((name, value.removeprefix(" ")))
        except httpx.ReadTimeout:
            raise AssertionError(f"the stream stayed silent; blocks so far: {self.seen}") from None
        raise AssertionError(f"the stream ended; blocks so far: {self.seen}")

    def change(self) -> Block:
        """The next block that carries a revision (an event or an ``id:`` line alone)."""
        while True:
            block = self.block()
            if block.id is not None:
                return block

    def changes(self, count: int) -> list[Block]:
        return [self.change() for _ in range(count)]

    def until(self, stop: Callable[[Block], bool], limit: int = 10_000) -> list[Block]:
        """Changes up to and including the first one ``stop`` accepts."""
        taken: list[Block] = []
        while len(taken) < limit:
            taken.append(self.change())
            if stop(taken[-1]):
                return taken
        raise AssertionError(f"no matching change within {limit}")


@contextlib.contextmanager
def open_stream(
    url: str,
    key: str | None = ADMIN_KEY,
    last_event_id: str | int | None = None,
    customer: str | None = None,
    read_timeout: float = 5.0,
) -> Iterator[EventStream]:
    """``GET /v1/stream`` on ``url``; for a 200 the preamble (retry and ``: connected``) is
    read and checked before the stream is handed over."""
    headers = {} if key is None else {"Authorization": f"Bearer {key}"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)
    params = {} if customer is None else {"customer": customer}
    with (
        httpx.Client(base_url=url, timeout=httpx.Timeout(10.0, read=read_timeout)) as client,
        client.stream("GET", "/v1/stream", headers=headers, params=params) as response,
    ):
        stream = EventStream(response)
        if response.status_code == 200:
            assert response.headers["content-type"].startswith("text/event-stream")
            first = stream.block()
            assert first.fields[0] == ("retry", "1000"), first
            # Then the revision the stream continues after, unless it starts with a reset.
            assert [name for name, _ in first.fields[1:]] in ([], ["id"]), first
            assert first.comments == ("connected",), first
            stream.start = first.id
        else:
            response.read()
        yield stream
