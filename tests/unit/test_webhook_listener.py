"""``allotment webhooks listen``: verifies, prints, and refuses what does not verify."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import ThreadingHTTPServer

import httpx
import pytest

from allotment.domain.webhook_rules import new_secret
from allotment.service.webhook_signing import delivery_headers
from allotment.webhook_listener import describe, make_handler

SECRET = new_secret(b"k" * 24)


@pytest.fixture
def listener() -> Iterator[tuple[str, list[str]]]:
    lines: list[str] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(SECRET, False, lines.append))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", lines
    server.shutdown()
    server.server_close()


def _event() -> bytes:
    return json.dumps(
        {
            "id": "evt_1",
            "seq": 7,
            "type": "credits.low",
            "created_at": "2026-12-07T10:00:00Z",
            "customer": "acme",
            "data": {"currency": "ai-credits", "available": 150},
        }
    ).encode()


def test_a_signed_delivery_is_printed_and_answered_204(listener: tuple[str, list[str]]) -> None:
    url, lines = listener
    body = _event()
    headers = delivery_headers([SECRET], "evt_1", int(time.time()), body)
    assert httpx.post(url, content=body, headers=headers).status_code == 204
    assert lines == [describe(json.loads(body))]
    assert "credits.low" in lines[0]
    assert "available=150" in lines[0]


def test_a_delivery_signed_with_another_secret_is_refused(
    listener: tuple[str, list[str]],
) -> None:
    url, lines = listener
    body = _event()
    other = new_secret(b"o" * 24)
    headers = delivery_headers([other], "evt_1", int(time.time()), body)
    assert httpx.post(url, content=body, headers=headers).status_code == 400
    assert lines[0].startswith("  refused evt_1")
