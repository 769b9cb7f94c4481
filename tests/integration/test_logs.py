"""Text and JSON log lines, and the sampled access log."""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from allotment.api.logs import ACCESS_LOGGER, configure_logging, sampled
from allotment.config import Settings
from tests.conftest import Api, define_catalog, new_customer, open_api


@pytest.fixture
def access(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    return caplog


def _access_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == ACCESS_LOGGER]


def test_every_request_is_logged_when_all_are_sampled(
    tmp_path: Path, access: pytest.LogCaptureFixture
) -> None:
    for api in open_api(tmp_path / "db.sqlite", access_log_sample=1.0):
        define_catalog(api)
        new_customer(api, "acme", "team")
        access.clear()
        checked = api.client.post(
            "/v1/check",
            json={"customer": "acme", "feature": "sso"},
            headers={"Authorization": f"Bearer {api.key}", "X-Request-Id": "chk-1"},
        )
        read = api.client.get(
            "/v1/customers/acme/subscriptions?limit=5&secret=hunter2",
            headers={"Authorization": f"Bearer {api.key}"},
        )
        missing = api.client.get("/nowhere?token=hunter2")
    first, second, third = (vars(record) for record in _access_lines(access))
    assert (first["method"], first["route"], first["path"], first["status"]) == (
        "POST",
        "/v1/check",
        "/v1/check",
        200,
    )
    assert first["request_id"] == "chk-1"
    assert first["duration_ms"] >= 0
    assert second["route"] == "/v1/customers/{customer}/subscriptions"
    assert second["path"] == "/v1/customers/acme/subscriptions"
    assert second["request_id"] == read.headers["x-request-id"]
    assert (third["route"], third["status"]) == ("unmatched", 404)
    assert third["request_id"] == missing.headers["x-request-id"]
    assert checked.status_code == 200
    # Query strings may carry what must not be logged: never written.
    assert not any("hunter2" in str(vars(record)) for record in _access_lines(access))


def test_nothing_is_logged_when_sampling_is_off(api: Api, access: pytest.LogCaptureFixture) -> None:
    define_catalog(api)
    new_customer(api, "acme", "team")
    api.check("acme", "sso")
    api.get("/v1/customers/acme")
    assert _access_lines(access) == []


def test_a_share_of_requests_is_sampled() -> None:
    random.seed(7)
    taken = sum(sampled(0.1) for _ in range(10_000))
    assert 800 < taken < 1200
    assert not any(sampled(0.0) for _ in range(1000))
    assert all(sampled(1.0) for _ in range(1000))


def test_the_sample_is_a_share() -> None:
    for wrong in (-0.1, 1.5):
        with pytest.raises(ValueError, match="share"):
            Settings(access_log_sample=wrong)


@pytest.fixture
def restored_logging() -> Iterator[None]:
    root, access_log = logging.getLogger(), logging.getLogger(ACCESS_LOGGER)
    handlers, level, access_level = list(root.handlers), root.level, access_log.level
    try:
        yield
    finally:
        for handler in list(root.handlers):
            if handler not in handlers:
                root.removeHandler(handler)
        root.setLevel(level)
        access_log.setLevel(access_level)


@pytest.mark.usefixtures("restored_logging")
def test_json_lines_carry_the_fields_and_the_exception(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info", "json", 0.0)
    configure_logging("info", "json", 0.0)  # configured again: one handler still
    log = logging.getLogger("allotment.example")
    log.info("plain %s", "text", extra={"customer": "acme"})
    try:
        raise ValueError("bad")
    except ValueError:
        log.exception("it failed")
    log.debug("below the level")
    first, second = (json.loads(line) for line in capsys.readouterr().err.splitlines())
    assert first == {
        "timestamp": first["timestamp"],
        "level": "INFO",
        "logger": "allotment.example",
        "message": "plain text",
        "request_id": None,
        "customer": "acme",
    }
    assert first["timestamp"].endswith("Z")
    assert (second["level"], second["message"]) == ("ERROR", "it failed")
    assert "ValueError: bad" in second["exception"]
    assert "Traceback" in second["exception"]


@pytest.mark.usefixtures("restored_logging")
def test_text_lines_and_the_access_log_level(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("warning", "text", 0.5)
    logging.getLogger("allotment.example").warning("careful")
    logging.getLogger("allotment.example").info("not written: below the level")
    # The access log writes what is sampled whatever the level.
    logging.getLogger(ACCESS_LOGGER).info("GET /livez 200 0.1 ms")
    first, second = capsys.readouterr().err.splitlines()
    assert first.endswith(" WARNING allotment.example: careful")
    assert second.endswith(" INFO allotment.access: GET /livez 200 0.1 ms")
