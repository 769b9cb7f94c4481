"""Concurrent debits over real HTTP: each key applied at most once, no overspend, and the ledger
sums to the balance change; a SIGKILL in a debit storm loses no acknowledged debit."""

from __future__ import annotations

import asyncio
import random
import sqlite3

import httpx
import pytest

from tests.e2e.conftest import Server

pytestmark = pytest.mark.slow
POOL = "/v1/customers/acme/credits/ai-credits"


def seed(server: Server, credits: int) -> None:
    with server.client() as client:
        for path, body in [
            ("/v1/currencies/ai-credits", {"name": "Credits"}),
            ("/v1/customers/acme", {"name": "Acme"}),
        ]:
            assert client.put(path, json=body).status_code in (200, 201)
        body = {"amount": credits, "category": "paid", "idempotency_key": "seed"}
        assert client.post(f"{POOL}/grants", json=body).status_code == 201


async def debit_storm(server: Server, keys: list[str]) -> list[dict[str, object]]:
    async with server.async_client(64, timeout=30) as client:
        queue = list(keys)
        answers: list[dict[str, object]] = []

        async def worker() -> None:
            while queue:
                key = queue.pop()
                response = await client.post(
                    f"{POOL}/debits", json={"amount": 3, "idempotency_key": key}
                )
                assert response.status_code == 200, response.text
                answers.append(response.json())

        await asyncio.gather(*(worker() for _ in range(64)))
        return answers


def ledger_totals(server: Server) -> tuple[int, int, int]:
    with sqlite3.connect(server.database) as db:
        (debited,) = db.execute(
            "SELECT -SUM(amount) FROM ledger_entries WHERE type = 'debit'"
        ).fetchone()
        (keys,) = db.execute(
            "SELECT COUNT(DISTINCT idempotency_key) FROM ledger_entries WHERE type = 'debit'"
        ).fetchone()
        (total,) = db.execute("SELECT SUM(amount) FROM ledger_entries").fetchone()
    return debited // 1_000_000, keys, total // 1_000_000


def test_concurrent_debits_with_retries_never_overspend(server: Server) -> None:
    seed(server, credits=600)  # room for 200 debits of 3
    keys = [f"d-{n}" for n in range(300)]
    sent = keys + random.Random(7).sample(keys, 150)  # every other key retried
    random.Random(8).shuffle(sent)
    answers = asyncio.run(debit_storm(server, sent))
    firsts = [a for a in answers if not a["replayed"]]
    assert len(firsts) == 300
    applied = [a for a in firsts if a["applied"]]
    assert len(applied) == 200
    assert all(
        a["access_denied_reason"] == "insufficient_credits" for a in firsts if not a["applied"]
    )
    assert ledger_totals(server) == (600, 200, 0)
    with server.client() as client:
        pool = client.get(POOL).json()
        (used_up,) = client.get(f"{POOL}/grants").json()["data"]
    assert (pool["balance"], pool["grants"]) == (0, [])  # used up, it left the pool
    assert (used_up["remaining"], used_up["status"]) == (0, "depleted")


def test_acknowledged_debits_survive_a_kill(server: Server) -> None:
    seed(server, credits=1_000_000)

    async def storm() -> set[str]:
        acknowledged: set[str] = set()
        keys = iter(f"k-{n}" for n in range(100_000))
        async with server.async_client(64, timeout=10) as client:

            async def worker() -> None:
                for key in keys:
                    try:
                        response = await client.post(
                            f"{POOL}/debits", json={"amount": 1, "idempotency_key": key}
                        )
                    except httpx.TransportError:
                        return
                    if response.status_code == 200 and response.json()["applied"]:
                        acknowledged.add(key)
                    if len(acknowledged) >= 500:
                        server.kill()

            await asyncio.gather(*(worker() for _ in range(64)))
        return acknowledged

    acknowledged = asyncio.run(storm())
    with sqlite3.connect(server.database) as db:
        stored = [
            row[0]
            for row in db.execute("SELECT idempotency_key FROM ledger_entries WHERE type = 'debit'")
        ]
    assert len(stored) == len(set(stored)), "a debit was written twice"
    assert acknowledged <= set(stored), "an acknowledged debit was lost"
    server.start()
    with server.client() as client:
        assert client.get(POOL).json()["balance"] == 1_000_000 - len(stored)
