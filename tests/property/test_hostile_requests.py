"""Hostile requests to every route: never a 5xx, always the contract's error shape, and a
rejected request changes nothing that is stored.

Each example takes a route the application serves and a request that is valid for it, then
breaks it the way attackers and careless clients do: a field's value replaced (digits by the
thousand, control characters, invalid UTF-8, wrong types, instants out of range), a field
dropped or added, the whole body replaced by other JSON or by bytes that are not JSON, path
and query values that are not ids, and keys of every scope, unknown or malformed. After a 4xx
every table of the database must hold exactly what it held before.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.testclient import TestClient

from allotment.api.app import create_app
from allotment.api.openapi.serving import ASSETS
from allotment.config import Settings
from tests.conftest import ADMIN_KEY, Api, define_catalog, new_customer

CUSTOMER = "/v1/customers/acme"
POOL = f"{CUSTOMER}/credits/ai-credits"
ENTITY = f"{CUSTOMER}/entities/team-a"

# A request each route accepts; the examples break it. ``{...}`` are path parameters.
VALID: dict[tuple[str, str], Any] = {
    ("PUT", "/v1/features/{id}"): {"name": "F", "kind": "metered"},
    ("PUT", "/v1/currencies/{id}"): {"name": "C", "burn_order": ["expiry", "created"]},
    ("PUT", "/v1/products/{id}"): {"name": "P"},
    ("PUT", "/v1/plans/{id}"): {
        "product": "coder",
        "name": "P",
        "entitlements": {"ai-requests": {"limit": 10, "reset": "day"}},
        "credits": {"ai-credits": {"amount": 5, "every": "month"}},
    },
    ("PUT", "/v1/addons/{id}"): {
        "product": "coder",
        "name": "A",
        "entitlements": {"ai-requests": {"limit": 5, "mode": "increment"}},
    },
    ("PUT", "/v1/customers/{customer}"): {"name": "N", "metadata": {"tier": 1}},
    ("POST", "/v1/customers/{customer}/subscriptions"): {
        "plan": "team",
        "addons": [{"id": "extra-requests", "quantity": 2}],
    },
    ("PATCH", "/v1/customers/{customer}/subscriptions/{subscription}"): {
        "addons": [{"id": "extra-requests", "quantity": 1}]
    },
    ("POST", "/v1/customers/{customer}/promotions"): {"feature": "ai-requests", "limit": 5},
    ("PUT", "/v1/customers/{customer}/overrides/{feature}"): {"limit": 50, "reset": "month"},
    ("PUT", "/v1/customers/{customer}/entities/{entity}"): {"parent": None, "kind": "team"},
    ("PUT", "/v1/customers/{customer}/entities/{entity}/budgets/{target}"): {"limit": 3},
    ("POST", "/v1/customers/{customer}/credits/{currency}/grants"): {
        "amount": 10,
        "category": "paid",
        "idempotency_key": "g",
    },
    ("POST", "/v1/customers/{customer}/credits/{currency}/debits"): {
        "amount": 1,
        "idempotency_key": "d",
    },
    ("POST", "/v1/customers/{customer}/credits/{currency}/grants/{grant}/void"): None,
    ("POST", "/v1/check"): {"customer": "acme", "feature": "ai-requests", "requested": 1},
    ("POST", "/v1/usage"): {
        "customer": "acme",
        "feature": "ai-requests",
        "amount": 1,
        "idempotency_key": "u",
        "enforce": True,
    },
    ("POST", "/v1/reservations"): {
        "customer": "acme",
        "feature": "ai-requests",
        "amount": 1,
        "idempotency_key": "r",
    },
    ("POST", "/v1/reservations/{reservation}/commit"): {"amount": 1},
    ("POST", "/v1/api-keys"): {"name": "k", "scope": "client", "customer": "acme"},
    ("POST", "/v1/test/clock"): {"advance_seconds": 0},
}

# What each path parameter is when it is not the hostile part.
PARAMETERS = {
    "id": "x1",
    "customer": "acme",
    "feature": "ai-requests",
    "entity": "team-a",
    "target": "ai-requests",
    "currency": "ai-credits",
    "subscription": "sub_unknown",
    "promotion": "promo_unknown",
    "grant": "grant_unknown",
    "reservation": "res_unknown",
    "key": "key_unknown",
    "endpoint": "we_unknown",
    "event": "evt_unknown",
    "version": "1",
    "asset": min(ASSETS),
}

# The change feed never ends; it is exercised by tests/e2e/test_change_feed.py.
SKIPPED = {("GET", "/v1/stream")}

HUGE_DIGITS = "9" * 5000
hostile_values = st.sampled_from(
    [
        None,
        True,
        -1,
        0,
        2**64,
        -(2**63),
        1.5e308,
        -0.0,
        "",
        " ",
        "acme\n",
        "\u0000",
        "\u202e",
        "é" * 300,
        "x" * 20_000,
        HUGE_DIGITS,
        "-" + HUGE_DIGITS,
        "1e999999",
        "0.0000001",
        "NaN",
        "Infinity",
        "0001-01-01T00:00:00Z",
        "9999-12-31T23:59:59Z",
        "2026-13-45T25:61:61Z",
        "1970-01-01T00:00:00+14:00",
        [],
        [1, [2, [3]]],
        {},
        {"$ne": None},
    ]
)
hostile_text = st.one_of(
    st.sampled_from(["", "..", "%00", "a%0A", "a b", "é", "x" * 300, "%ff%fe", "<script>", "*"]),
    st.text(min_size=1, max_size=40),
)
# Bodies that are not the route's JSON at all (raw bytes, sent as they are).
raw_bodies = st.sampled_from(
    [
        b"",
        b"{",
        b"null",
        b"[]",
        b'"text"',
        b"\xef\xbb\xbf{}",
        b'{"customer":"acme","feature":"\xff"}',
        b'{"\xff":1}',
        b'{"amount":' + HUGE_DIGITS.encode() + b"}",
        b'{"amount":1e99999999999}',
        b'{"a":' * 2000 + b"1" + b"}" * 2000,
        b"\x00\x01\x02",
        b'{"customer":"acme","customer":"other"}',
    ]
)


# Served in front of Starlette's router (``api/hot.py``).
HOT_ROUTES = {
    ("POST", "/v1/check"),
    ("POST", "/v1/usage"),
    ("POST", "/v1/customers/{customer}/credits/{currency}/debits"),
}


def _routes(app: Any) -> list[tuple[str, str]]:
    found = set(HOT_ROUTES)
    while not isinstance(app, Starlette):  # through the layers that wrap the router
        app = getattr(app, "app", None) or app._app
    for route in app.router.routes:
        if isinstance(route, Route) and route.methods:
            found |= {(method, route.path) for method in route.methods if method != "HEAD"}
    return sorted(found - SKIPPED)


def _digest(database: Path) -> str:
    """Every row of every table, in a fixed order: what "nothing stored changed" compares."""
    digest = hashlib.sha256()
    with sqlite3.connect(database) as db:
        tables = [
            name
            for (name,) in db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
            )
        ]
        for table in tables:
            digest.update(table.encode())
            for row in sorted(repr(row) for row in db.execute(f'SELECT * FROM "{table}"')):
                digest.update(row.encode())
    return digest.hexdigest()


@dataclass(frozen=True)
class Target:
    api: Api
    routes: list[tuple[str, str]]
    keys: dict[str, str]  # by scope


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    database = tmp_path_factory.mktemp("hostile") / "allotment.db"
    app = create_app(Settings(database_path=database, admin_key=ADMIN_KEY, test_clock=True))
    with TestClient(app) as client:
        api = Api(client, database)
        define_catalog(api)
        api.put("/v1/currencies/ai-credits", {"name": "Credits"}, 201)
        new_customer(api, "acme", "team")
        api.put(f"{CUSTOMER}/entities/team-a", {"kind": "team"}, 201)
        grant = {"amount": 100, "category": "paid", "idempotency_key": "seed"}
        api.post(f"{POOL}/grants", grant, 201)
        browser = {"scope": "client", "name": "browser", "customer": "acme"}
        keys = {
            "admin": ADMIN_KEY,
            "client": api.post("/v1/api-keys", browser, 201)["key"],
            "server": api.post("/v1/api-keys", {"scope": "server", "name": "s"}, 201)["key"],
        }
        yield Target(api, _routes(app), keys)


@st.composite
def hostile_requests(draw: st.DrawFn, routes: list[tuple[str, str]]) -> dict[str, Any]:
    method, template = draw(st.sampled_from(routes))
    names = [part[1:-1] for part in template.split("/") if part.startswith("{")]
    broken_parameter = draw(st.sampled_from([None, *names]))
    path = template
    for name in names:
        value = draw(hostile_text) if name == broken_parameter else PARAMETERS[name]
        path = path.replace("{" + name + "}", quote(value, safe="%"))
    query = ""
    if method == "GET":
        query = draw(
            st.sampled_from(
                ["", "?limit=-1", "?limit=abc", "?limit=99999999999999999999", "?after=%ff"]
            )
            | st.builds(lambda v: "?entity=" + quote(v, safe="%"), hostile_text)
            | st.builds(lambda v: "?customer=" + quote(v, safe="%"), hostile_text)
        )
    valid = VALID.get((method, template))
    how = draw(st.sampled_from(["field", "drop", "extra", "json", "raw", "none"]))
    body: bytes | None = None
    if method in {"POST", "PUT", "PATCH"}:
        document: Any = json.loads(json.dumps(valid)) if valid is not None else {}
        if how == "field" and isinstance(document, dict) and document:
            document[draw(st.sampled_from(sorted(document)))] = draw(hostile_values)
        elif how == "drop" and isinstance(document, dict) and document:
            del document[draw(st.sampled_from(sorted(document)))]
        elif how == "extra" and isinstance(document, dict):
            document[draw(st.sampled_from(["unknown", "id", "__proto__"]))] = draw(hostile_values)
        elif how == "json":
            document = draw(hostile_values)
        if how == "raw":
            body = draw(raw_bodies)
        elif document is not None:
            body = json.dumps(document).encode()
    # Mostly the admin key, which every route lets through to its body.
    key = draw(
        st.sampled_from(["admin"] * 6 + ["client", "server", "none", "unknown", "malformed"])
    )
    return {"method": method, "path": path + query, "body": body, "key": key}


def _headers(target: Target, key: str) -> dict[str, str | bytes]:
    if key in target.keys:
        return {"Authorization": f"Bearer {target.keys[key]}"}
    if key == "unknown":
        return {"Authorization": "Bearer ak_" + "0" * 40}
    if key == "malformed":
        return {"Authorization": b"Bearer \xc3\xa9\xff\x00"}
    return {}


@pytest.mark.sqlite_file
@settings(
    max_examples=1500,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_hostile_requests_get_a_clean_4xx_and_change_nothing(
    target: Target, data: st.DataObject
) -> None:
    api = target.api
    request = data.draw(hostile_requests(target.routes))
    before = _digest(api.database)
    headers = _headers(target, request["key"])
    if request["body"] is not None:
        headers["Content-Type"] = "application/json"
    response = api.client.request(
        request["method"], request["path"], content=request["body"], headers=headers
    )
    status = response.status_code
    event(f"status {status}")
    assert status < 500, (request, status, response.text)
    if status >= 400:
        answer = response.json()
        assert set(answer) == {"error"}, answer
        error = answer["error"]
        assert isinstance(error.get("code"), str), answer
        assert isinstance(error.get("message"), str), answer
        assert isinstance(error.get("details"), dict), answer
        assert _digest(api.database) == before, (request, status, response.text)
