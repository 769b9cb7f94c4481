"""Logging for ``allotment serve``: text or JSON lines, every line written while answering a
request tagged with its id, and a sampled access log.

The access log writes one line for a random share of requests (``--access-log-sample``), so
that a busy server can keep one without writing a line per check; with the share at 0 (the
default) the request path tests one float and logs nothing. Lines name the route's template
(``/v1/customers/{customer}``) and the path, never the query string.
"""

from __future__ import annotations

import logging
import random
import sys
from datetime import UTC, datetime
from typing import Any

import msgspec

from allotment.api.request_ids import current_request_id

ACCESS_LOGGER = "allotment.access"

access_log = logging.getLogger(ACCESS_LOGGER)

# Attributes every LogRecord has; the others were given through ``extra`` and go into the JSON.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "request_id",
    "color_message",  # uvicorn's message again, with terminal colours
    "taskName",
}
_encode = msgspec.json.Encoder(enc_hook=str).encode


class RequestIdFilter(logging.Filter):
    """Tags each record with the id of the request being answered where it was logged (None
    outside a request: start-up, the store's thread)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = current_request_id()
        return True


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(request_tag)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        request_id = getattr(record, "request_id", None)
        record.request_tag = f" [{request_id}]" if request_id else ""
        return super().format(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``timestamp`` (UTC), ``level``, ``logger``, ``message``,
    ``request_id`` (null outside a request), ``exception`` and ``stack`` when there are, and
    whatever the call passed as ``extra``."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        for name, value in record.__dict__.items():
            if name not in _STANDARD and name not in document:
                document[name] = value
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            document["exception"] = record.exc_text
        if record.stack_info:
            document["stack"] = self.formatStack(record.stack_info)
        return _encode(document).decode()


class _StderrHandler(logging.Handler):
    """Writes to whatever ``sys.stderr`` is when a line is written (as ``logging.lastResort``
    does), so a handler installed while stderr was redirected never writes to a closed file."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
            stream = sys.stderr
            stream.write(line + "\n")
            stream.flush()
        except Exception:
            self.handleError(record)


def configure_logging(level: str, log_format: str, access_sample: float) -> None:
    """Every logger (uvicorn's too, which then has no handler of its own) writes to stderr in
    ``log_format`` (``text`` or ``json``), at ``level``; the access log at INFO whatever the
    level, when sampled."""
    handler = _StderrHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    for previous in list(root.handlers):
        if isinstance(previous, _StderrHandler):  # configured again: replaced
            root.removeHandler(previous)
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # Asked for by --access-log-sample, so written whatever --log-level says.
    access_log.setLevel(logging.INFO if access_sample > 0 else logging.WARNING)


def sampled(rate: float) -> bool:
    """Whether to log this request; call only with ``rate`` above 0, so that with sampling off
    the request path pays for no random number."""
    return random.random() < rate


def log_access(
    method: str, route: str, path: str, status: int, seconds: float, request_id: bytes | None
) -> None:
    duration_ms = round(seconds * 1000, 3)
    access_log.info(
        "%s %s %d %.3f ms",
        method,
        path,
        status,
        duration_ms,
        extra={
            "method": method,
            "route": route,
            "path": path,
            "status": status,
            "duration_ms": duration_ms,
            "request_id": None if request_id is None else request_id.decode("ascii"),
        },
    )
