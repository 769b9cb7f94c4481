"""Request heads past the limit, against a real server process: refused with 431 and the
connection closed, and a flood of huge headers does not grow the server."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

import httpx
import pytest

from allotment.api.protocol import MAX_HEAD_BYTES
from tests.e2e.conftest import Server

pytestmark = pytest.mark.slow


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def _read_answer(connection: socket.socket) -> bytes:
    """Everything the server sends until it closes (a reset after its answer included)."""
    received = b""
    try:
        while chunk := connection.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    return received


def test_a_head_over_the_limit_is_431_and_closes_the_connection(server: Server) -> None:
    head = b"GET /livez HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * MAX_HEAD_BYTES + b"\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as connection:
        connection.sendall(head)
        answer = _read_answer(connection)
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 431 Request Header Fields Too Large", answer[:200]
    headers, _, body = rest.partition(b"\r\n\r\n")
    assert b"connection: close" in headers.lower()
    assert json.loads(body)["error"]["code"] == "headers_too_large"
    # Heads within the limit are served as before, on the same server, and a large body
    # arriving with its head in one read is not taken for a large head.
    within = {"X-Fine": "a" * (MAX_HEAD_BYTES // 2)}
    assert httpx.get(f"{server.url}/livez", headers=within, timeout=10).status_code == 200
    with server.client() as client:
        body = {"name": "Big", "metadata": {"blob": "a" * 900_000}}
        assert client.put("/v1/customers/big", json=body).status_code == 201
        for n in range(3):  # one connection, one request after another
            assert client.get("/v1/customers/big").status_code == 200, n


def test_a_flood_of_huge_headers_is_cut_and_does_not_grow_the_server(server: Server) -> None:
    assert server.process is not None
    pid = server.process.pid
    for _ in range(20):  # let the server settle after start-up
        httpx.get(f"{server.url}/livez", timeout=10)
    before = _rss_bytes(pid)
    size, connections = 32 * 1024 * 1024, 8
    chunk = b"a" * (256 * 1024)
    all_sent = threading.Barrier(connections + 1, timeout=60)
    done = threading.Event()
    sent: list[int] = []
    answers: list[bytes] = []

    def flood() -> None:
        total = 0
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as connection:
            try:
                connection.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\nX-Big: ")
                while total < size:
                    connection.sendall(chunk)
                    total += len(chunk)
            except OSError:  # the server closed the connection: what it should do
                pass
            sent.append(total)
            all_sent.wait()  # every connection stays open while the server is measured
            done.wait(60)
            answers.append(_read_answer(connection))

    threads = [threading.Thread(target=flood) for _ in range(connections)]
    for thread in threads:
        thread.start()
    all_sent.wait()
    grown = _rss_bytes(pid) - before
    done.set()
    for thread in threads:
        thread.join(60)
    assert grown < 24 * 1024 * 1024, f"the server grew by {grown // 1024} KiB"
    assert all(total < size for total in sent), sent  # each was cut well before the end
    for answer in answers:  # 431, or a reset that swallowed it: never anything else
        assert answer == b"" or answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert httpx.get(f"{server.url}/livez", timeout=10).status_code == 200
