"""The demo data loads on an empty database, loads again without changing anything, and splits
acme's credits and requests across its entity tree."""

from __future__ import annotations

import asyncio
from contextlib import contextmanager
from pathlib import Path

from allotment.api.services import Services
from allotment.config import Settings
from allotment.demo import ACME_BUDGETS, ACME_ENTITIES, load_demo
from tests import conftest

open_api = contextmanager(conftest.open_api)


def _load(database: Path) -> None:
    async def run() -> None:
        services = Services.open(Settings(database_path=database))
        try:
            await load_demo(services)
        finally:
            services.close()

    asyncio.run(run())


def test_demo_loads_twice_and_splits_acme_across_its_tree(tmp_path: Path) -> None:
    database = tmp_path / "demo.db"
    _load(database)
    with open_api(database) as api:
        first = {e: api.get(f"/v1/customers/acme/entities/{e}") for e in ACME_ENTITIES}
    _load(database)
    with open_api(database) as api:
        again = {e: api.get(f"/v1/customers/acme/entities/{e}") for e in ACME_ENTITIES}
        assert again == first
        assert first["platform"]["children"] == ["agent-7"]
        budgets = {(b["entity"], b["target"]): b for doc in first.values() for b in doc["budgets"]}
        assert set(budgets) == set(ACME_BUDGETS)
        check = api.check("acme", "model-tokens", entity="agent-7", requested=1000)
        assert check["has_access"] is True
        assert [(b["entity"], b["target"]) for b in check["budgets"]] == [
            ("platform", "ai-credits"),
            ("engineering", "ai-credits"),
        ]
        requests = api.check("acme", "ai-requests", entity="agent-7")
        assert [(b["entity"], b["limit"]) for b in requests["budgets"]] == [("agent-7", 50)]
