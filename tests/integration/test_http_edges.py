"""HTTP beyond the bodies: Allow on 405, clients that leave mid-request, readiness, CORS."""

from __future__ import annotations

import pytest

from tests.conftest import Api


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("DELETE", "/v1/features", "GET, HEAD"),
        ("POST", "/v1/customers/acme", "DELETE, GET, HEAD, PUT"),
        ("PUT", "/v1/customers/acme/subscriptions", "GET, HEAD, POST"),
        ("PUT", "/v1/test/clock", "GET, HEAD, POST"),
        ("POST", "/readyz", "GET, HEAD"),
        ("GET", "/v1/check", "POST"),
        ("PUT", "/v1/usage", "POST"),
        ("GET", "/v1/customers/acme/credits/cr/debits", "POST"),
    ],
)
def test_405_names_the_allowed_methods(api: Api, method: str, path: str, allow: str) -> None:
    response = api.client.request(method, path, headers={"Authorization": f"Bearer {api.key}"})
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"
    assert response.headers["allow"] == allow
