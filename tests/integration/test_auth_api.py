"""API keys and scopes: 401 for missing, unknown or revoked keys; 403 outside the scope."""

from __future__ import annotations

import sqlite3

import pytest

from tests.conftest import Api, define_catalog, new_customer


@pytest.fixture
def keys(api: Api) -> dict[str, str]:
    define_catalog(api)
    new_customer(api, "acme", "team")
    new_customer(api, "globex", "team")
    made = {}
    for scope in ("admin", "server"):
        made[scope] = api.post("/v1/api-keys", {"name": scope, "scope": scope}, 201)["key"]
    made["client"] = api.post(
        "/v1/api-keys", {"name": "web", "scope": "client", "customer": "acme"}, 201
    )["key"]
    return made


def call(api: Api, method: str, path: str, key: str | None, body: object = None) -> int:
    headers = {} if key is None else {"Authorization": f"Bearer {key}"}
    return api.client.request(method, path, json=body, headers=headers).status_code


CHECK = {"customer": "acme", "feature": "seats"}
USAGE = {"customer": "acme", "feature": "ai-requests", "amount": 1, "idempotency_key": "k"}


@pytest.mark.parametrize("key", [None, "", "wrong", "Bearer"])
def test_missing_or_unknown_key_is_401(api: Api, key: str | None) -> None:
    assert call(api, "POST", "/v1/check", key, CHECK) == 401
    assert call(api, "GET", "/v1/features", key) == 401
    assert call(api, "PUT", "/v1/features/x", key, {"name": "x", "kind": "boolean"}) == 401


def test_a_malformed_authorization_header_is_401(api: Api) -> None:
    response = api.client.get("/v1/features", headers={"Authorization": "Basic abc"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"


@pytest.mark.sqlite_file
def test_the_key_is_shown_once_and_stored_hashed(api: Api, keys: dict[str, str]) -> None:
    listed = api.get("/v1/api-keys")["data"]
    assert all("key" not in key for key in listed)
    assert {k["scope"] for k in listed} >= {"admin", "server", "client"}
    with sqlite3.connect(api.database) as db:
        stored = [row[0] for row in db.execute("SELECT key_hash FROM api_keys")]
    for secret in keys.values():
        assert secret not in stored
        assert all(secret not in value for value in stored)


def test_server_keys_use_the_request_path_and_read_but_do_not_administer(
    api: Api, keys: dict[str, str]
) -> None:
    server = keys["server"]
    assert call(api, "POST", "/v1/check", server, CHECK) == 200
    assert call(api, "POST", "/v1/usage", server, USAGE) == 200
    assert call(api, "GET", "/v1/plans", server) == 200
    assert call(api, "GET", "/v1/customers/acme", server) == 200
    assert call(api, "GET", "/v1/customers/acme/entitlements", server) == 200
    assert call(api, "PUT", "/v1/features/x", server, {"name": "x", "kind": "boolean"}) == 403
    assert call(api, "POST", "/v1/customers/acme/subscriptions", server, {"plan": "team"}) == 403
    assert call(api, "POST", "/v1/api-keys", server, {"name": "n", "scope": "admin"}) == 403
    assert call(api, "GET", "/v1/api-keys", server) == 403


def test_client_keys_check_their_own_customer_only(api: Api, keys: dict[str, str]) -> None:
    client = keys["client"]
    assert call(api, "POST", "/v1/check", client, CHECK) == 200
    assert call(api, "GET", "/v1/customers/acme/entitlements", client) == 200
    assert call(api, "POST", "/v1/check", client, {**CHECK, "customer": "globex"}) == 403
    assert call(api, "GET", "/v1/customers/globex/entitlements", client) == 403
    assert call(api, "POST", "/v1/usage", client, USAGE) == 403
    assert call(api, "GET", "/v1/plans", client) == 403
    assert call(api, "GET", "/v1/customers/acme", client) == 403


def test_revocation_takes_effect_at_once(api: Api, keys: dict[str, str]) -> None:
    server = keys["server"]
    assert call(api, "POST", "/v1/check", server, CHECK) == 200
    key_id = next(k["id"] for k in api.get("/v1/api-keys")["data"] if k["name"] == "server")
    revoked = api.delete(f"/v1/api-keys/{key_id}", 200)
    assert revoked["revoked_at"] is not None
    assert call(api, "POST", "/v1/check", server, CHECK) == 401
    assert call(api, "GET", "/v1/plans", server) == 401


def test_revoked_keys_stay_revoked_after_a_restart(api: Api, keys: dict[str, str]) -> None:
    from tests.conftest import open_api

    key_id = next(k["id"] for k in api.get("/v1/api-keys")["data"] if k["name"] == "server")
    api.delete(f"/v1/api-keys/{key_id}", 200)
    api.client.__exit__(None, None, None)
    for reopened in open_api(api.database):
        assert call(reopened, "POST", "/v1/check", keys["server"], CHECK) == 401
        assert call(reopened, "POST", "/v1/check", keys["admin"], CHECK) == 200


def test_key_creation_is_validated(api: Api, keys: dict[str, str]) -> None:
    assert api.status("POST", "/v1/api-keys", {"name": "c", "scope": "client"})[0] == 400
    assert (
        api.status("POST", "/v1/api-keys", {"name": "c", "scope": "client", "customer": "ghost"})[0]
        == 400
    )
    assert (
        api.status("POST", "/v1/api-keys", {"name": "s", "scope": "server", "customer": "acme"})[0]
        == 400
    )
    assert api.status("POST", "/v1/api-keys", {"name": "s", "scope": "root"})[0] == 400
    assert api.status("DELETE", "/v1/api-keys/key_nope")[0] == 404


def test_a_key_without_the_scope_is_403_before_its_body_is_read(
    api: Api, keys: dict[str, str]
) -> None:
    huge = (
        b'{"customer": "acme", "feature": "ai-requests", "amount": 1, "x": "'
        + b"y" * (2 * 1024 * 1024)
        + b'"}'
    )
    for path in ("/v1/usage", "/v1/customers/acme/credits/c/debits"):
        response = api.client.post(
            path, content=huge, headers={"Authorization": f"Bearer {keys['client']}"}
        )
        assert response.status_code == 403, path
