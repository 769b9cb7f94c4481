"""Fixtures of the contract suite: each test runs once per adapter (``kit.ADAPTERS``), on a
database of its own; ``open_store`` opens more stores on that same database."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import cast

import pytest

import allotment.bootstrap
from allotment.config import Settings
from allotment.storage.memory import forget_shared_databases
from tests.contract.kit import ADAPTER_NAMES, ADAPTERS, POSTGRES, ContractStore


@pytest.fixture(params=ADAPTER_NAMES)
def adapter(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def open_store(
    adapter: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[[], ContractStore]]:
    if adapter == POSTGRES:
        url: str = request.getfixturevalue("migrated_postgres_url")
    else:
        url = ADAPTERS[adapter](tmp_path)
    opened: list[ContractStore] = []

    def open_one() -> ContractStore:
        store = cast(ContractStore, allotment.bootstrap.open_store(Settings(database_url=url)))
        opened.append(store)
        return store

    yield open_one
    for store in reversed(opened):
        store.close()
    forget_shared_databases()


@pytest.fixture
def store(open_store: Callable[[], ContractStore]) -> ContractStore:
    return open_store()
