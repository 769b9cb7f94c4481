"""Health probes, metrics and the test clock."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import Api, define_catalog, new_customer, open_api


def test_probes_need_no_key(api: Api) -> None:
    for path in ("/livez", "/readyz"):
        response = api.client.get(path)
        assert (response.status_code, response.json()) == (200, {"status": "ok"})


def test_metrics_are_prometheus_text_and_count_decisions(api: Api) -> None:
    define_catalog(api)
    new_customer(api, "acme", "team")
    api.check("acme", "sso")
    response = api.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert 'allotment_decisions_total{outcome="not_entitled",route="check"}' in response.text
    assert "allotment_http_requests_total" in response.text


def test_test_clock_moves_forward_only(api: Api) -> None:
    start = api.now()
    moved = api.post("/v1/test/clock", {"advance_seconds": 3600}, 200)["now"]
    assert moved > start
    assert api.status("POST", "/v1/test/clock", {"now": start})[0] == 400
    assert api.post("/v1/test/clock", {"now": "2030-01-01T00:00:00Z"}, 200) == {
        "now": "2030-01-01T00:00:00Z"
    }
    assert api.status("POST", "/v1/test/clock", {"advance_seconds": 1, "now": start})[0] == 400
    assert api.get("/v1/test/clock") == {"now": "2030-01-01T00:00:00Z"}


def test_without_the_variable_the_clock_routes_are_404(tmp_path: Path) -> None:
    for api in open_api(tmp_path / "db.sqlite"):
        assert api.status("GET", "/v1/test/clock")[0] == 404
        assert api.status("POST", "/v1/test/clock", {"advance_seconds": 1})[0] == 404
