"""A real server process on loopback, for tests of concurrency and durability."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

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

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {**os.environ, "ALLOTMENT_ADMIN_KEY": ADMIN_KEY, "ALLOTMENT_TEST_CLOCK": "1"}
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "allotment",
                "serve",
                "--db",
                str(self.database),
                "--port",
                str(self.port),
                "--log-level",
                "warning",
            ],
            env=env,
        )
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
