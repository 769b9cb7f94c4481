"""Checks on one kept-alive connection to a real server, where some are answered inline by the
HTTP protocol and some by the application (``api/protocol.py``): every answer arrives, in the
order asked, whole."""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest

from tests.e2e.conftest import ADMIN_KEY, Server

pytestmark = pytest.mark.slow


def _request(body: dict[str, object], request_id: str, *extra: str) -> bytes:
    payload = json.dumps(body).encode()
    lines = [
        "POST /v1/check HTTP/1.1",
        "Host: test",
        f"Authorization: Bearer {ADMIN_KEY}",
        f"X-Request-Id: {request_id}",
        f"Content-Length: {len(payload)}",
        *extra,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


def _read_answers(connection: socket.socket, count: int) -> list[tuple[int, bytes, Any]]:
    """(status, request id, body) of the next ``count`` answers."""
    buffer = b""
    answers = []
    while len(answers) < count:
        while b"\r\n\r\n" not in buffer:
            buffer += connection.recv(65536)
        head, _, buffer = buffer.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        headers = dict(line.lower().split(b": ", 1) for line in lines[1:])
        length = int(headers[b"content-length"])
        while len(buffer) < length:
            buffer += connection.recv(65536)
        body, buffer = buffer[:length], buffer[length:]
        answers.append((int(lines[0].split()[1]), headers[b"x-request-id"], json.loads(body)))
    return answers


def test_pipelined_checks_come_back_whole_and_in_order(server: Server) -> None:
    with server.client() as api:
        api.put("/v1/features/sso", json={"name": "SSO", "kind": "boolean"})
        api.put("/v1/products/app", json={"name": "App"})
        plan = {"product": "app", "name": "Pro", "entitlements": {"sso": {}}}
        assert api.put("/v1/plans/pro", json=plan).status_code == 201
        assert api.put("/v1/customers/acme", json={"name": "Acme"}).status_code == 201
        assert api.post("/v1/customers/acme/subscriptions", json={"plan": "pro"}).status_code == 201
    known = {"customer": "acme", "feature": "sso"}
    unknown = {"customer": "stranger", "feature": "sso"}
    sequence = [known, unknown, known, known, {"customer": "acme"}, known]
    data = b"".join(_request(body, f"r{n}") for n, body in enumerate(sequence))
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as connection:
        for _ in range(3):  # the first round loads acme; the next ones answer from memory
            connection.sendall(data)
            answers = _read_answers(connection, len(sequence))
            assert [request_id for _, request_id, _ in answers] == [
                f"r{n}".encode() for n in range(len(sequence))
            ]
            assert [status for status, _, _ in answers] == [200, 200, 200, 200, 400, 200]
            decided = [body for status, _, body in answers if status == 200]
            assert [body["has_access"] for body in decided] == [True, False, True, True, True]
        # Then one at a time on the same connection, as a client library sends them.
        for n in range(20):
            connection.sendall(_request(known, f"single-{n}"))
            ((status, request_id, body),) = _read_answers(connection, 1)
            assert (status, request_id) == (200, f"single-{n}".encode())
            assert body["has_access"] is True
