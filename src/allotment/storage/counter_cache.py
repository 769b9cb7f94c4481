"""Budget counters kept in memory beside the table, so enforced requests need not read them.

The store's thread is the only writer of the database file (another process's writes are
detected through ``PRAGMA data_version`` and clear the cache), so a counter read or written once
is known until the next write, which goes through here too. Each batch works on a
:class:`BatchCounters`: the committed figures plus the batch's own changes, with a journal that
takes back the changes of a job that failed, and that publishes the rest when the batch commits.
The table stays the durable projection; this only spares reading it.
"""

from __future__ import annotations

from typing import Final

Series = tuple[str, str, str, str]
"""(customer, kind, target, entity): the windows of one budget target of one entity."""

Window = tuple[int, int]
"""(period_start, period_end) in epoch microseconds, as in the table."""

CommittedCounters = dict[Series, dict[Window, int]]

MAX_CACHED_SERIES = 200_000

_ABSENT: Final = object()


class BatchCounters:
    """One batch's view of the counters; ``None`` marks a window dropped from the table."""

    def __init__(self, committed: CommittedCounters) -> None:
        self._committed = committed
        self._changed: dict[Series, dict[Window, int | None]] = {}
        self._journal: list[tuple[Series, Window, object]] = []

    def get(self, series: Series, window: Window) -> int | None:
        changed = self._changed.get(series)
        if changed is not None and window in changed:
            return changed[window]
        committed = self._committed.get(series)
        return None if committed is None else committed.get(window)

    def put(self, series: Series, window: Window, used: int | None) -> None:
        changed = self._changed.setdefault(series, {})
        self._journal.append((series, window, changed.get(window, _ABSENT)))
        changed[window] = used

    def add(self, series: Series, instant: int, amount: int) -> None:
        """Mirror the table's update: ``amount`` into every known window holding ``instant``."""
        if series not in self._committed and series not in self._changed:
            return  # the common case for an entity on the path that has no budget
        for window in self._windows(series):
            start, end = window
            if start <= instant < end:
                used = self.get(series, window)
                if used is not None:
                    self.put(series, window, used + amount)

    def drop_ended(self, series: Series, before: int) -> None:
        """Mirror the table's delete of the windows that ended by ``before``."""
        for window in self._windows(series):
            if window[1] <= before:
                self.put(series, window, None)

    def mark(self) -> int:
        return len(self._journal)

    def undo(self, mark: int) -> None:
        """Take back every change made since ``mark`` (a job that failed)."""
        while len(self._journal) > mark:
            series, window, previous = self._journal.pop()
            changed = self._changed[series]
            if previous is _ABSENT:
                del changed[window]
            else:
                assert previous is None or isinstance(previous, int)
                changed[window] = previous

    def publish(self) -> None:
        """Make the batch's changes the committed figures (call once the batch committed)."""
        committed = self._committed
        if len(committed) + len(self._changed) > MAX_CACHED_SERIES:
            committed.clear()
        for series, changes in self._changed.items():
            windows = committed.setdefault(series, {})
            for window, used in changes.items():
                if used is None:
                    windows.pop(window, None)
                else:
                    windows[window] = used
        self._changed.clear()
        self._journal.clear()

    def _windows(self, series: Series) -> list[Window]:
        committed = self._committed.get(series)
        changed = self._changed.get(series)
        if not changed:
            return list(committed) if committed else []
        if not committed:
            return list(changed)
        return list(committed.keys() | changed.keys())
