"""GET /openapi.json and GET /docs against the running application: the document lists exactly
the routes the app serves, with the scopes it enforces; its examples work on the demo; real
answers fit it; the documentation page loads nothing from elsewhere."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx
import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from allotment.api import hot
from allotment.api.app import create_app
from allotment.api.described import DescribedRoute
from allotment.api.openapi.document import document, document_bytes
from allotment.api.services import Services
from allotment.config import Settings
from allotment.demo import load_demo
from tests.conftest import ADMIN_KEY, Api, define_catalog, new_customer
from tests.openapi_kit import Conformance

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


def _described(doc: dict[str, Any], *, test_clock: bool = True) -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, item in doc["paths"].items()
        for method, operation in item.items()
        if test_clock or not operation.get("x-test-clock")
    }


def _starlette(app: Any) -> Starlette:
    """The Starlette application behind the request path and whatever wraps it."""
    while not isinstance(app, Starlette):
        app = getattr(app, "_app", None) or app.app
    return app


def _served(settings: Settings) -> set[tuple[str, str]]:
    app = create_app(settings)
    served = {(operation.method, operation.path) for operation in hot.OPERATIONS}
    assert set(app._exact) <= {path for _, path in served}  # type: ignore[attr-defined]
    for route in _starlette(app).routes:
        assert isinstance(route, DescribedRoute), f"{route} has no description"
        assert route.methods is not None
        served |= {(method, route.path) for method in route.methods if method != "HEAD"}
    app_services: Services = _starlette(app).state.services
    app_services.close()
    return served


@pytest.mark.parametrize("test_clock", [True, False])
def test_the_document_lists_every_route_served_and_nothing_else(
    tmp_path: Path, test_clock: bool
) -> None:
    settings = Settings(database_path=tmp_path / "a.db", admin_key=ADMIN_KEY, test_clock=test_clock)
    assert _served(settings) == _described(document(), test_clock=test_clock)


def test_the_request_path_answers_its_documented_paths_itself(api: Api) -> None:
    # Starlette has no route for these: a 401 from them can only come from api/hot.py.
    for operation in hot.OPERATIONS:
        path = re.sub(r"{\w+}", "acme", operation.path)
        response = api.client.request(operation.method, path, json={})
        assert response.status_code == 401, path
        assert response.json()["error"]["code"] == "unauthenticated"


def test_openapi_json_needs_no_key_and_is_cached(api: Api) -> None:
    response = api.client.get("/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.content == document_bytes()
    assert response.json()["openapi"] == "3.1.0"
    again = api.client.get("/openapi.json", headers={"If-None-Match": response.headers["etag"]})
    assert again.status_code == 304
    assert not again.content


def test_the_docs_page_loads_only_what_this_server_serves(api: Api) -> None:
    page = api.client.get("/docs")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert "default-src 'self'" in page.headers["content-security-policy"]
    html = page.text
    assert "http://" not in html
    assert "https://" not in html
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert len(assets) >= 4
    kinds = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}
    for asset in assets:
        assert not asset.startswith("//"), asset
        response = api.client.get(urljoin(str(page.url), asset))
        assert response.status_code == 200, asset
        assert response.headers["content-type"].startswith(kinds[Path(asset).suffix]), asset
        assert response.headers["cache-control"] == "public, max-age=86400"
        assert (
            api.client.get(
                urljoin(str(page.url), asset), headers={"If-None-Match": response.headers["etag"]}
            ).status_code
            == 304
        )
        if asset.endswith(".css"):
            assert not re.search(r"url\(\s*['\"]?(https?:)?//", response.text), asset
            assert "@import" not in response.text
    init = api.client.get("/docs/init.js").text
    assert "openapi.json" in init
    assert "http" not in init
    assert api.client.get("/docs/swagger-ui.js").status_code == 404
    assert api.client.get("/docs/..%2Fdescribed.py").status_code == 404


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[TestClient]:
    """The application over the demo's catalog and customers, as `allotment demo` loads it."""
    settings = Settings(database_path=tmp_path / "demo.db", admin_key=ADMIN_KEY)
    services = Services.open(settings)
    asyncio.run(load_demo(services))
    with TestClient(create_app(settings, services)) as client:
        yield client


def _example_requests(doc: dict[str, Any]) -> Iterator[tuple[str, str, Any, str]]:
    for template, item in doc["paths"].items():
        for method, operation in item.items():
            media = operation.get("requestBody", {}).get("content", {}).get("application/json")
            for example in (media or {}).get("examples", {}).values():
                path = template
                for parameter in operation.get("parameters", ()):
                    if parameter["in"] == "path":
                        path = path.replace(f"{{{parameter['name']}}}", parameter["example"])
                yield method.upper(), path, example["value"], operation["operationId"]


def test_the_examples_work_against_the_demo(demo: TestClient) -> None:
    doc, kit = document(), Conformance()
    tried = set()
    for method, path, body, operation_id in _example_requests(doc):
        response = demo.request(method, path, json=body, headers=ADMIN)
        assert response.status_code in (200, 201), (path, response.text)
        kit.check(response)
        answer = response.json()
        assert answer.get("access_denied_reason") is None, (path, answer)
        for decided in ("has_access", "recorded", "applied", "granted"):
            assert answer.get(decided, True) is True, (path, answer)
        tried.add(operation_id)
    assert {"check", "report_usage", "debit_credits", "grant_credits", "reserve"} <= tried


def _fill(path: str, customer: str) -> str:
    prefixes = {"subscription": "sub_", "promotion": "promo_", "grant": "grant_"}
    prefixes |= {"reservation": "res_", "key": "key_"}

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        return prefixes[name] + "x" if name in prefixes else customer

    return re.sub(r"{(\w+)}", value, path)


def test_each_route_refuses_the_scope_below_the_one_documented(api: Api) -> None:
    define_catalog(api)
    new_customer(api, "acme", "team")
    server = api.post("/v1/api-keys", {"name": "s", "scope": "server"}, 201)["key"]
    client = api.post("/v1/api-keys", {"name": "c", "scope": "client", "customer": "acme"}, 201)[
        "key"
    ]
    below = {"admin": server, "server": client, "client": None}
    at = {"admin": ADMIN_KEY, "server": server, "client": client}
    checked = 0
    for template, item in document()["paths"].items():
        for method, operation in item.items():
            scope = operation["x-scope"]
            if scope is None:
                continue
            path = _fill(template, "acme")
            body = {"customer": "acme", "feature": "sso"} if method == "post" else None
            if below[scope] is not None:
                status, answer = api.status(method.upper(), path, body, key=below[scope])
                assert status == 403, (method, template, status, answer)
                checked += 1
            if template != "/v1/stream":  # a stream the key may read would never end
                status, _ = api.status(method.upper(), path, body, key=at[scope])
                assert status not in (401, 403), (method, template, status)
    assert checked > 30
    # A client key names its own customer, in the path or the body.
    assert (
        api.status("POST", "/v1/check", {"customer": "globex", "feature": "sso"}, key=client)[0]
        == 403
    )
    assert api.status("GET", "/v1/customers/globex/entitlements", key=client)[0] == 403


def test_real_answers_fit_the_document(demo: TestClient) -> None:
    kit = Conformance()

    def call(method: str, path: str, body: Any = None, **headers: str) -> httpx.Response:
        response = demo.request(method, path, json=body, headers=headers or ADMIN)
        kit.check(response)
        return response

    pool = "/v1/customers/acme/credits/ai-credits"
    usage = {"customer": "acme", "feature": "ai-requests", "amount": 1, "idempotency_key": "u1"}
    for path in (
        "/v1/features",
        "/v1/currencies",
        "/v1/products",
        "/v1/plans",
        "/v1/addons",
        "/v1/plans/team",
        "/v1/addons/seat-pack",
        "/v1/customers",
        "/v1/customers/acme",
        "/v1/customers/initech/subscriptions",
        "/v1/customers/acme/entitlements?entity=agent-7",
        "/v1/customers/acme/entities/platform",
        "/v1/api-keys",
        "/livez",
        "/readyz",
    ):
        call("GET", path)
    for feature in ("sso", "seats", "ai-requests", "model-tokens", "nothing"):
        call("POST", "/v1/check", {"customer": "acme", "feature": feature, "entity": "agent-7"})
    priced = call("POST", "/v1/check", {"customer": "acme", "feature": "model-tokens"}).json()
    assert priced["credits"]["currency"] == "ai-credits"
    call("POST", "/v1/check", {"customer": "ghost", "feature": "sso"})
    assert call("POST", "/v1/usage", usage).json()["recorded"] is True
    assert call("POST", "/v1/usage", usage).json()["replayed"] is True
    assert call("POST", "/v1/usage", {**usage, "amount": 2}).status_code == 409
    refused = {
        **usage,
        "customer": "globex",
        "amount": 500,
        "enforce": True,
        "idempotency_key": "u2",
    }
    assert call("POST", "/v1/usage", refused).json()["recorded"] is False
    debit = {"amount": "12.5", "feature": "model-tokens", "idempotency_key": "d1"}
    assert call("POST", f"{pool}/debits", debit).json()["balance"] % 1 == 0.5
    grant = {"amount": 5, "category": "promotional", "idempotency_key": "g1"}
    grant_id = call("POST", f"{pool}/grants", grant).json()["id"]
    call("POST", f"{pool}/grants/{grant_id}/void")
    for path in (pool, f"{pool}/ledger?limit=2", f"{pool}/revenue"):
        call("GET", path)
    reserve = {"customer": "acme", "feature": "model-tokens", "amount": 100}
    held = call("POST", "/v1/reservations", {**reserve, "idempotency_key": "r1"}).json()
    call("POST", f"/v1/reservations/{held['id']}/commit", {"amount": 50})
    held = call("POST", "/v1/reservations", {**reserve, "idempotency_key": "r2"}).json()
    call("POST", f"/v1/reservations/{held['id']}/release")
    call("POST", f"/v1/reservations/{held['id']}/release")  # 409: it has ended
    call("PUT", "/v1/customers/globex", {"name": "Globex"})
    subscription = call("POST", "/v1/customers/globex/subscriptions", {"plan": "team"}).json()
    call("DELETE", f"/v1/customers/globex/subscriptions/{subscription['id']}")
    call("PUT", "/v1/customers/acme/overrides/seats", {"value": 40})
    call("DELETE", "/v1/customers/acme/overrides/seats")
    call("PUT", "/v1/features/sso", {"name": "SSO", "kind": "metered"})  # 409: kind is fixed
    call("GET", "/v1/customers/ghost")  # 404
    call("GET", "/v1/customers?after=x")  # 400
    call("GET", "/v1/features", Authorization="Bearer nope")  # 401
    call("POST", "/v1/check", {"customer": "acme"})  # 400

    answered = {(method, template) for method, template, _ in kit.checked}
    for expected in [
        ("POST", "/v1/check"),
        ("POST", "/v1/usage"),
        ("POST", "/v1/customers/{customer}/credits/{currency}/debits"),
        ("POST", "/v1/customers/{customer}/credits/{currency}/grants"),
        ("GET", "/v1/customers/{customer}"),
        ("GET", "/v1/plans/{id}"),
        ("GET", "/v1/customers"),
        ("GET", "/v1/customers/{customer}/credits/{currency}/ledger"),
    ]:
        assert expected in answered, expected
    statuses = {status for _, _, status in kit.checked}
    assert {200, 201, 400, 401, 404, 409} <= statuses
