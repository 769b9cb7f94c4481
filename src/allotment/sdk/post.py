"""Posting buffered usage: one keep-alive connection from the delivery thread.

The standard library's ``http.client`` rather than httpx, for its lower cost in Python per
request: the delivery thread shares the interpreter lock with the application's threads, and
every microsecond it spends in Python per report is one an application's ``report_usage`` or
``check`` may wait (``benchmarks.md``, "SDK"). A connection that failed in any way is dropped
and the next post opens a new one.
"""

from __future__ import annotations

import http.client
import ssl
import threading
from urllib.parse import urlsplit

from allotment.sdk.buffer import Answer


class UsagePoster:
    """``POST /v1/usage`` with a report's exact bytes; raises ``OSError`` when the network
    fails (the delivery then keeps the report and backs off)."""

    def __init__(self, base_url: str, api_key: str, timeout: float, user_agent: str) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{base_url!r} is not an http(s) URL")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._path = parts.path.rstrip("/") + "/v1/usage"
        self._timeout = timeout
        self._headers = {
            "authorization": f"Bearer {api_key}",
            "content-type": "application/json",
            "user-agent": user_agent,
        }
        self._connection: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()

    def __call__(self, body: bytes) -> Answer:
        with self._lock:
            if self._connection is not None:
                try:
                    return self._send(self._connection, body)
                except ConnectionError:
                    # The service closed the idle connection (a keep-alive timeout, a restart):
                    # the report goes again on a new one. Sending it twice is safe, since its
                    # idempotency key makes the service record it once.
                    pass
            return self._send(self._connect(), body)

    def _send(self, connection: http.client.HTTPConnection, body: bytes) -> Answer:
        try:
            connection.request("POST", self._path, body, self._headers)
            response = connection.getresponse()
            content = response.read()
        except (OSError, http.client.HTTPException) as error:
            self._drop()
            if isinstance(error, OSError):
                raise
            raise ConnectionError(f"{type(error).__name__}: {error}") from error
        if response.will_close:
            self._drop()
        retry = response.getheader("retry-after")
        retry_after = float(retry) if retry is not None and retry.isdigit() else None
        return Answer(response.status, content, retry_after)

    def close(self) -> None:
        self._drop()

    def after_fork(self) -> None:
        """In a forked child: the parent's socket is not ours to use or close."""
        self._connection = None
        self._lock = threading.Lock()

    def _connect(self) -> http.client.HTTPConnection:
        if self._https:
            context = ssl.create_default_context()
            self._connection = http.client.HTTPSConnection(
                self._host, self._port, timeout=self._timeout, context=context
            )
        else:
            self._connection = http.client.HTTPConnection(
                self._host, self._port, timeout=self._timeout
            )
        return self._connection

    def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()
