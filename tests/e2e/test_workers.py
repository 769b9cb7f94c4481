"""``allotment serve --workers N``: N processes on one port, as one service.

Both workers answer (``/metrics`` names the one that answered), a write through the port shows
in every worker's answers, a hard limit holds across them, a worker that dies is started again,
and SIGTERM to the parent stops every worker. On a SQLite file and on a PostgreSQL database.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import ADMIN_KEY, Server, free_port

pytestmark = pytest.mark.slow

WORKER = re.compile(r'^allotment_worker_info\{index="(\d+)",pid="(\d+)"\} 1\.0$', re.MULTILINE)
DEADLINE_SECONDS = 15.0
LIMIT = 40


def answering(server: Server) -> dict[str, str]:
    """Worker index -> pid, from scrapes on new connections until both workers answered."""
    seen: dict[str, str] = {}
    deadline = time.monotonic() + DEADLINE_SECONDS
    while len(seen) < 2:
        assert time.monotonic() < deadline, f"only these workers answered: {seen}"
        with httpx.Client(base_url=server.url, timeout=5) as fresh:  # a new connection each
            seen.update(WORKER.findall(fresh.get("/metrics").text))
    return seen


def seed(client: httpx.Client) -> None:
    for path, body in (
        ("/v1/features/calls", {"name": "Calls", "kind": "metered"}),
        ("/v1/products/app", {"name": "App"}),
        (
            "/v1/plans/capped",
            {
                "product": "app",
                "name": "Capped",
                "entitlements": {"calls": {"limit": LIMIT, "enforcement": "hard"}},
            },
        ),
        ("/v1/customers/acme", {"name": "Acme"}),
    ):
        assert client.put(path, json=body).status_code in (200, 201)
    subscription = client.post("/v1/customers/acme/subscriptions", json={"plan": "capped"})
    assert subscription.status_code == 201, subscription.text


def test_both_workers_answer_as_one_service(workers: Server) -> None:
    assert set(answering(workers)) == {"0", "1"}
    with workers.client() as client:
        seed(client)
    # Every worker sees the catalog and the customer the other may have written.
    deadline = time.monotonic() + DEADLINE_SECONDS
    granted = 0
    while granted < 20:
        assert time.monotonic() < deadline
        with httpx.Client(
            base_url=workers.url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=5
        ) as fresh:
            answer = fresh.post("/v1/check", json={"customer": "acme", "feature": "calls"})
        granted = granted + 1 if answer.status_code == 200 and answer.json()["has_access"] else 0


def test_a_hard_limit_holds_across_the_workers(workers: Server) -> None:
    with workers.client() as client:
        seed(client)

    async def report_all() -> list[bool]:
        async with workers.async_client(32) as client:

            async def report(n: int) -> bool:
                body = {
                    "customer": "acme",
                    "feature": "calls",
                    "amount": 1,
                    "enforce": True,
                    "idempotency_key": f"k{n}",
                }
                response = await client.post("/v1/usage", json=body)
                assert response.status_code == 200, response.text
                recorded: bool = response.json()["recorded"]
                return recorded

            return await asyncio.gather(*(report(n) for n in range(3 * LIMIT)))

    assert sum(asyncio.run(report_all())) == LIMIT
    with workers.client() as client:
        answer = client.post("/v1/check", json={"customer": "acme", "feature": "calls"}).json()
    assert answer["current_usage"] == LIMIT


def test_a_worker_that_dies_is_started_again_and_sigterm_stops_them_all(
    workers: Server,
) -> None:
    before = answering(workers)
    os.kill(int(before["0"]), signal.SIGKILL)
    deadline = time.monotonic() + DEADLINE_SECONDS
    while True:
        assert time.monotonic() < deadline, "worker 0 was not started again"
        with contextlib.suppress(httpx.TransportError):
            now = answering(workers)
            if now["0"] != before["0"]:
                break
        time.sleep(0.1)
    assert now["1"] == before["1"]
    assert workers.process is not None
    workers.process.send_signal(signal.SIGTERM)
    assert workers.process.wait(timeout=30) == 0
    for pid in (now["0"], now["1"]):
        assert not Path(f"/proc/{pid}").exists() or _is_zombie(pid), f"worker {pid} still runs"


def _is_zombie(pid: str) -> bool:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    return True


@pytest.mark.parametrize(
    ("extra", "env", "message"),
    [
        (("--database-url", "memory:"), {}, "a memory: database lives in one process"),
        ((), {"ALLOTMENT_TEST_CLOCK": "1"}, "each process would have a test clock"),
    ],
)
def test_what_workers_cannot_share_is_refused_at_start(
    tmp_path: Path, extra: tuple[str, ...], env: dict[str, str], message: str
) -> None:
    command = [sys.executable, "-m", "allotment", "serve", "--db", str(tmp_path / "a.db")]
    done = subprocess.run(
        [*command, "--workers", "2", "--port", str(free_port()), *extra],
        env={**os.environ, "ALLOTMENT_ADMIN_KEY": ADMIN_KEY, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert message in done.stderr
