"""Concurrent enforced usage over real HTTP: nothing overspends, nothing is lost or doubled."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from tests.e2e.conftest import Server

pytestmark = pytest.mark.slow


def seed(server: Server, limit: int, used: int) -> None:
    with server.client() as client:
        for path, body in [
            ("/v1/features/ai-requests", {"name": "Requests", "kind": "metered"}),
            ("/v1/products/coder", {"name": "Coder"}),
            (
                "/v1/plans/team",
                {
                    "product": "coder",
                    "name": "Team",
                    "entitlements": {"ai-requests": {"limit": limit}},
                },
            ),
            ("/v1/customers/acme", {"name": "Acme"}),
        ]:
            assert client.put(path, json=body).status_code in (200, 201)
        assert (
            client.post("/v1/customers/acme/subscriptions", json={"plan": "team"}).status_code
            == 201
        )
        if used:
            body = {
                "customer": "acme",
                "feature": "ai-requests",
                "amount": used,
                "idempotency_key": "preload",
            }
            assert client.post("/v1/usage", json=body).json()["recorded"] is True


async def fire(server: Server, keys: list[str]) -> list[dict[str, object]]:
    async with server.async_client(len(keys), timeout=30) as client:

        async def one(key: str) -> dict[str, object]:
            body = {
                "customer": "acme",
                "feature": "ai-requests",
                "amount": 1,
                "idempotency_key": key,
                "enforce": True,
            }
            response = await client.post("/v1/usage", json=body)
            assert response.status_code == 200, response.text
            answer: dict[str, object] = response.json()
            return answer

        return await asyncio.gather(*(one(key) for key in keys))


def recorded_usage(server: Server) -> tuple[int, int, int]:
    with sqlite3.connect(server.database) as db:
        (events, total) = db.execute(
            "SELECT COUNT(*), SUM(amount) FROM usage_events WHERE idempotency_key != 'preload'"
        ).fetchone()
        (counter,) = db.execute("SELECT used FROM usage_counters").fetchone()
    return events, total // 1_000_000, counter // 1_000_000


def test_fifty_concurrent_enforced_requests_against_twenty_left_record_exactly_twenty(
    server: Server,
) -> None:
    seed(server, limit=100, used=80)
    answers = asyncio.run(fire(server, [f"req-{n}" for n in range(50)]))
    granted = [a for a in answers if a["recorded"]]
    refused = [a for a in answers if not a["recorded"]]
    assert (len(granted), len(refused)) == (20, 30)
    assert all(a["access_denied_reason"] == "usage_limit_exceeded" for a in refused)
    assert sorted(a["current_usage"] for a in granted) == list(range(81, 101))  # type: ignore[type-var]
    assert recorded_usage(server) == (20, 20, 100)
    with server.client() as client:
        check = client.post("/v1/check", json={"customer": "acme", "feature": "ai-requests"})
        assert check.json()["current_usage"] == 100


def test_retries_of_the_same_keys_under_concurrency_apply_each_key_once(server: Server) -> None:
    seed(server, limit=1000, used=0)
    keys = [f"req-{n}" for n in range(60)]
    answers = asyncio.run(fire(server, keys + keys + keys[:20]))
    firsts = [a for a in answers if not a["replayed"]]
    assert len(firsts) == 60
    assert all(a["recorded"] for a in answers)
    assert sum(1 for a in answers if a["replayed"]) == 80
    assert recorded_usage(server) == (60, 60, 60)


def test_acknowledged_usage_survives_a_kill(server: Server) -> None:
    """SIGKILL in the middle of a storm: every acknowledged report is there, none twice."""
    seed(server, limit=100_000, used=0)

    def report(n: int) -> dict[str, object]:
        return {
            "customer": "acme",
            "feature": "ai-requests",
            "amount": 1,
            "idempotency_key": f"k-{n}",
            "enforce": True,
        }

    acknowledged = asyncio.run(server.report_until_killed(report, kill_after=300))
    assert len(acknowledged) >= 300
    with sqlite3.connect(server.database) as db:
        stored = [
            row[0]
            for row in db.execute(
                "SELECT idempotency_key FROM usage_events WHERE idempotency_key != 'preload'"
            )
        ]
    assert len(stored) == len(set(stored)), "an event was written twice"
    assert acknowledged <= set(stored), "an acknowledged report was lost"
    server.start()
    with server.client() as client:
        check = client.post("/v1/check", json={"customer": "acme", "feature": "ai-requests"})
        assert check.json()["current_usage"] == len(stored)
