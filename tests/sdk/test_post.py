"""The delivery's poster: exact bytes, the answer as given, and any network fault an OSError."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from allotment.sdk.post import UsagePoster


class Recorder(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    received: ClassVar[list[tuple[str, bytes, str | None]]] = []
    status: ClassVar[int] = 200

    def do_POST(self) -> None:
        length = int(self.headers["content-length"])
        Recorder.received.append(
            (self.path, self.rfile.read(length), self.headers["authorization"])
        )
        body = b'{"recorded": true, "replayed": false}'
        self.send_response(Recorder.status)
        if Recorder.status == 429:
            self.send_header("retry-after", "7")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def service() -> Iterator[ThreadingHTTPServer]:
    Recorder.received = []
    Recorder.status = 200
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def url(server: ThreadingHTTPServer) -> str:
    host, port = server.server_address[:2]
    return f"http://{host!s}:{port}/base"


def test_posts_the_exact_bytes_on_one_connection(service: ThreadingHTTPServer) -> None:
    poster = UsagePoster(url(service), "key-1", 5, "test")
    bodies = [b'{"amount": 1.500000}', b"\xff not even JSON", b"{}"]
    answers = [poster(body) for body in bodies]
    assert [a.status for a in answers] == [200, 200, 200]
    assert answers[0].body == b'{"recorded": true, "replayed": false}'
    assert Recorder.received == [("/base/v1/usage", body, "Bearer key-1") for body in bodies]
    Recorder.status = 429
    assert poster(b"{}").retry_after == 7
    poster.close()


def test_a_dropped_connection_is_opened_again(service: ThreadingHTTPServer) -> None:
    poster = UsagePoster(url(service), "k", 5, "test")
    assert poster(b"1").status == 200
    poster.close()
    assert poster(b"2").status == 200
    assert [body for _, body, _ in Recorder.received] == [b"1", b"2"]


def test_nothing_listening_is_an_oserror() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    poster = UsagePoster(f"http://127.0.0.1:{port}", "k", 1, "test")
    with pytest.raises(ConnectionRefusedError):
        poster(b"{}")


def test_garbage_for_an_answer_is_an_oserror() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()

    def answer_garbage() -> None:
        connection, _ = listener.accept()
        connection.recv(65536)
        connection.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        connection.close()

    threading.Thread(target=answer_garbage, daemon=True).start()
    poster = UsagePoster(f"http://127.0.0.1:{listener.getsockname()[1]}", "k", 2, "test")
    with pytest.raises(ConnectionError, match="BadStatusLine"):
        poster(b"{}")
    listener.close()


def test_only_http_urls() -> None:
    with pytest.raises(ValueError, match="http"):
        UsagePoster("ftp://example.com", "k", 1, "test")


def test_a_connection_the_service_closed_while_idle_is_replaced_at_once(
    service: ThreadingHTTPServer,
) -> None:
    poster = UsagePoster(url(service), "k", 5, "test")
    assert poster(b"1").status == 200
    connection = poster._connection
    assert connection is not None
    assert connection.sock is not None
    connection.sock.shutdown(socket.SHUT_RDWR)  # as a server's keep-alive timeout does
    assert poster(b"2").status == 200  # no error: sent again on a new connection
    assert [body for _, body, _ in Recorder.received] == [b"1", b"2"]
