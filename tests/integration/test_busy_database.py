"""Another process holding SQLite's write lock past the wait is 503 with Retry-After, never 500."""

from __future__ import annotations

import contextlib
import sqlite3

import pytest

import allotment.storage.sqlite.store
from tests.conftest import Api, define_catalog, new_customer


@pytest.mark.sqlite_file
def test_a_write_that_cannot_take_the_lock_in_time_is_503_with_retry_after(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    define_catalog(api)
    new_customer(api, "acme", "team")
    api.put("/v1/currencies/cr", {"name": "Credits"}, 201)
    assert api.check("acme", "ai-requests")["has_access"] is True  # now cached
    monkeypatch.setattr(allotment.storage.sqlite.store, "WRITE_LOCK_WAIT_SECONDS", 0.2)
    writes = [
        (
            "POST",
            "/v1/usage",
            {"customer": "acme", "feature": "ai-requests", "amount": 1, "idempotency_key": "u"},
        ),
        ("POST", "/v1/customers/acme/credits/cr/debits", {"amount": 1, "idempotency_key": "d"}),
        ("PUT", "/v1/features/f", {"name": "F", "kind": "boolean"}),
    ]
    with contextlib.closing(sqlite3.connect(api.database, isolation_level=None)) as other:
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        try:
            for method, path, body in writes:
                response = api.client.request(
                    method, path, json=body, headers={"Authorization": f"Bearer {api.key}"}
                )
                assert response.status_code == 503, (path, response.text)
                assert response.headers["retry-after"] == "1"
                error = response.json()["error"]
                assert (error["code"], error["details"]) == ("service_busy", {})
            # Checks answered from memory go on meanwhile.
            assert api.check("acme", "ai-requests")["has_access"] is True
        finally:
            other.execute("ROLLBACK")
    # Nothing was written, and the same requests go through once the lock is free.
    assert api.check("acme", "ai-requests")["current_usage"] == 0
    for method, path, body in writes:
        response = api.client.request(
            method, path, json=body, headers={"Authorization": f"Bearer {api.key}"}
        )
        assert response.status_code in {200, 201}, (path, response.text)
