"""Reservations placed and committed one after the other, in process through the HTTP app
(Starlette's test client) on a fresh SQLite file: a priced feature, an agent under a team, a
unit budget on the agent and a credit budget on the team, so that every pair reads the path's
budgets, debits the pool and compares the thresholds. Prints one line: pairs per second and
process CPU per pair, in microseconds. Run it in two checkouts, in turn, to compare them.

    uv run --locked python bench/reservation_pairs.py [pairs]
"""

from __future__ import annotations

import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from allotment.api.app import create_app
from allotment.config import Settings

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # Starlette's note on httpx, not this measurement's
    from starlette.testclient import TestClient

KEY = "bench-admin-key"
WARM_UP = 200
PRICED = {"limit": None, "credit_cost": {"currency": "ai-credits", "per_unit": 1}}
PLAN = {"product": "bench", "name": "Priced", "entitlements": {"tokens": PRICED}}
MONTHLY = {"limit": 10**9, "reset": "month"}
ENTITIES = "/v1/customers/acme/entities"
SETUP: list[tuple[str, str, dict[str, Any]]] = [
    ("PUT", "/v1/currencies/ai-credits", {"name": "Credits", "low_balance_threshold": 10}),
    ("PUT", "/v1/features/tokens", {"name": "Tokens", "kind": "metered"}),
    ("PUT", "/v1/products/bench", {"name": "Bench"}),
    ("PUT", "/v1/plans/priced", PLAN),
    ("PUT", "/v1/customers/acme", {"name": "Acme"}),
    ("POST", "/v1/customers/acme/subscriptions", {"plan": "priced"}),
    (
        "POST",
        "/v1/customers/acme/credits/ai-credits/grants",
        {"amount": 10**9, "category": "paid", "idempotency_key": "seed"},
    ),
    ("PUT", f"{ENTITIES}/eng", {"kind": "team"}),
    ("PUT", f"{ENTITIES}/a1", {"kind": "agent", "parent": "eng"}),
    ("PUT", f"{ENTITIES}/eng/budgets/ai-credits", MONTHLY),
    ("PUT", f"{ENTITIES}/a1/budgets/tokens", MONTHLY),
]  # fmt: skip


def main(pairs: int) -> None:
    database = Path(tempfile.mkdtemp()) / "reservations.db"
    with TestClient(create_app(Settings(database_path=database, admin_key=KEY))) as client:
        headers = {"Authorization": f"Bearer {KEY}"}

        def call(method: str, path: str, body: dict[str, Any]) -> Any:
            answer = client.request(method, path, json=body, headers=headers)
            if answer.status_code not in (200, 201):
                raise SystemExit(f"{method} {path} answered {answer.status_code}: {answer.text}")
            return answer.json()

        for method, path, body in SETUP:
            call(method, path, body)

        def pair(key: str) -> None:
            held = call(
                "POST",
                "/v1/reservations",
                {"customer": "acme", "feature": "tokens", "entity": "a1", "amount": 2,
                 "idempotency_key": key},
            )  # fmt: skip
            if not held["granted"]:
                raise SystemExit(f"reservation {key} was refused: {held}")
            call("POST", f"/v1/reservations/{held['id']}/commit", {"amount": 1})

        for n in range(WARM_UP):
            pair(f"warm-{n}")
        started, cpu = time.perf_counter(), time.process_time()
        for n in range(pairs):
            pair(f"pair-{n}")
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        print(f"{pairs / seconds:,.0f} pairs/s, {1e6 * cpu / pairs:,.0f} us CPU per pair")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
