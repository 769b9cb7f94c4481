"""Concurrent reservations and credit-priced usage over real HTTP never pass a limit."""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

import pytest

from tests.e2e.conftest import Server
from tests.e2e.test_concurrent_usage import seed

pytestmark = pytest.mark.slow


async def post_all(server: Server, path: str, bodies: list[dict[str, Any]]) -> list[Any]:
    async with server.async_client(50, timeout=30) as client:

        async def one(body: dict[str, Any]) -> Any:
            response = await client.post(path, json=body)
            assert response.status_code == 200, response.text
            return response.json()

        return await asyncio.gather(*(one(body) for body in bodies))


def test_fifty_concurrent_reservations_against_twenty_left_grant_exactly_twenty(
    server: Server,
) -> None:
    seed(server, limit=100, used=80)
    bodies = [
        {"customer": "acme", "feature": "ai-requests", "amount": 1, "idempotency_key": f"r-{n}"}
        for n in range(50)
    ]
    answers = asyncio.run(post_all(server, "/v1/reservations", bodies))
    assert sum(1 for a in answers if a["granted"]) == 20
    with server.client() as client:
        check = client.post("/v1/check", json={"customer": "acme", "feature": "ai-requests"})
    assert (check.json()["reserved"], check.json()["remaining"]) == (20, 0)


def test_concurrent_credit_priced_usage_never_overdraws_a_hard_pool(server: Server) -> None:
    with server.client() as client:
        for path, body in [
            ("/v1/currencies/ai-credits", {"name": "Credits"}),
            ("/v1/features/tokens", {"name": "Tokens", "kind": "metered"}),
            ("/v1/products/coder", {"name": "Coder"}),
            (
                "/v1/plans/team",
                {
                    "product": "coder",
                    "name": "Team",
                    "entitlements": {
                        "tokens": {
                            "limit": None,
                            "credit_cost": {"currency": "ai-credits", "per_unit": "0.5"},
                        }
                    },
                    "credits": {"ai-credits": {"amount": 30}},
                },
            ),
            ("/v1/customers/acme", {"name": "Acme"}),
        ]:
            assert client.put(path, json=body).status_code in (200, 201)
        assert (
            client.post("/v1/customers/acme/subscriptions", json={"plan": "team"}).status_code
            == 201
        )
    bodies = [
        {
            "customer": "acme",
            "feature": "tokens",
            "amount": 2,
            "enforce": True,
            "idempotency_key": f"u-{n}",
        }
        for n in range(60)
    ]
    answers = asyncio.run(post_all(server, "/v1/usage", bodies))
    assert sum(1 for a in answers if a["recorded"]) == 30  # 30 credits, 1 credit a call
    with sqlite3.connect(server.database) as db:
        (total,) = db.execute("SELECT SUM(amount) FROM ledger_entries").fetchone()
        (events,) = db.execute("SELECT COUNT(*) FROM usage_events").fetchone()
    assert (total, events) == (0, 30)
