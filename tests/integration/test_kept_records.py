"""Idempotency records are kept compactly (a 16-byte fingerprint, the answer by position), and
the records written before that (the whole SHA-256 as hexadecimal text, the answer as the
contract's JSON) still answer their replays and conflicts: ledger writes keep theirs forever."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path
from typing import Any

import msgspec
import pytest

from allotment.service.outcomes import RECORD_V1
from tests.conftest import Api, define_catalog, new_customer, open_api

POOL = "/v1/customers/acme/credits/ai-credits"


def _history(api: Api) -> dict[str, Any]:
    define_catalog(api)
    api.put("/v1/currencies/ai-credits", {"name": "Credits"}, 201)
    new_customer(api, "acme", "starter")
    grant = {"amount": "10.5", "category": "paid", "cost_basis": "0.01", "idempotency_key": "g"}
    reserve = {
        "customer": "acme",
        "feature": "ai-requests",
        "amount": 2,
        "idempotency_key": "r",
    }
    return {
        "grant": (f"{POOL}/grants", grant, api.post(f"{POOL}/grants", grant, 201)),
        "debit": (
            f"{POOL}/debits",
            {"amount": "0.25", "idempotency_key": "d"},
            api.post(f"{POOL}/debits", {"amount": "0.25", "idempotency_key": "d"}, 200),
        ),
        "reservation": ("/v1/reservations", reserve, api.post("/v1/reservations", reserve, 200)),
    }


def _replayed(answer: dict[str, Any]) -> dict[str, Any]:
    return {**answer, "replayed": True}


def _records(database: Path) -> list[tuple[str, bytes | str, bytes]]:
    with sqlite3.connect(database) as db:
        rows: list[tuple[str, bytes | str, bytes]] = db.execute(
            "SELECT route, fingerprint, response FROM idempotency_records ORDER BY route"
        ).fetchall()
    return rows


@pytest.mark.sqlite_file
def test_records_are_kept_compactly_and_replay_the_first_answer(tmp_path: Path) -> None:
    database = tmp_path / "allotment.db"
    for api in open_api(database, test_clock=True):
        written = _history(api)
    for route, fingerprint, response in _records(database):
        assert isinstance(fingerprint, bytes), route
        assert len(fingerprint) == 16, route
        assert response.startswith(RECORD_V1), route
    for api in open_api(database, test_clock=True):  # nothing cached: read from the records
        for path, body, first in written.values():
            status = 201 if path.endswith("/grants") else 200
            assert api.post(path, body, status) == _replayed(first)
            conflict = api.post(path, {**body, "amount": 3}, 409)
            assert conflict["error"]["code"] == "idempotency_conflict"


@pytest.mark.sqlite_file
def test_records_written_in_the_earlier_form_still_replay_and_conflict(tmp_path: Path) -> None:
    database = tmp_path / "allotment.db"
    for api in open_api(database, test_clock=True):
        written = _history(api)
    # Rewrite every record as the earlier form held it: the fingerprint's whole digest as text
    # (its first 16 bytes are today's fingerprint; the rest is what the hash went on to say)
    # and the first answer as the contract's JSON.
    with sqlite3.connect(database) as db:
        for route, fingerprint, _ in _records(database):
            assert isinstance(fingerprint, bytes)
            kind = route.rsplit("/", 1)[-1]
            first = next(answer for path, _, answer in written.values() if path.endswith(kind))
            legacy = fingerprint.hex() + hashlib.sha256(fingerprint).hexdigest()[:32]
            db.execute(
                "UPDATE idempotency_records SET fingerprint = ?, response = ? WHERE route = ?",
                (legacy, msgspec.json.encode({**first, "replayed": False}), route),
            )
    for route, fingerprint, response in _records(database):
        assert isinstance(fingerprint, str), route
        assert len(fingerprint) == 64, route
        assert response.startswith(b"{"), route
    for api in open_api(database, test_clock=True):
        for path, body, first in written.values():
            status = 201 if path.endswith("/grants") else 200
            assert api.post(path, body, status) == _replayed(first)
            conflict = api.post(path, {**body, "amount": 3}, 409)
            assert conflict["error"]["code"] == "idempotency_conflict"
