"""The service's one clock: the real one, or a test clock that moves only when told."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from allotment.domain.errors import InvalidRequest
from allotment.domain.timefmt import LATEST_INSTANT, require_supported_instant


class SystemClock:
    """The real time, never earlier than it has already said: a step of the machine's clock
    backwards must not make a credited grant look scheduled again."""

    def __init__(self) -> None:
        self._last = datetime.now(UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            current = datetime.now(UTC)
            if current > self._last:
                self._last = current
            return self._last


class TestClock:
    """Starts at the real time and then stands still except when moved, never backwards."""

    __test__ = False  # not a pytest test class

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime.now(UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: int) -> datetime:
        if seconds < 0:
            raise InvalidRequest("advance_seconds must not be negative: the clock never goes back.")
        if seconds > (LATEST_INSTANT - self._now).total_seconds():
            raise InvalidRequest("advance_seconds would take the clock past the supported range.")
        return self.set(self._now + timedelta(seconds=seconds))

    def set(self, instant: datetime) -> datetime:
        instant = require_supported_instant(instant.astimezone(UTC), "now")
        with self._lock:
            if instant < self._now:
                raise InvalidRequest(
                    "the test clock never goes backwards.", {"now": instant.isoformat()}
                )
            self._now = instant
            return instant
