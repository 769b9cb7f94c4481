"""Window counters (a customer's usage of a feature, a budget's use) kept in memory beside
their tables, so enforced requests neither read nor update rows one by one.

The store's thread is the only writer of the database file (another process's writes are
detected through ``PRAGMA data_version`` and clear the cache), so a series of counters (one
budget target of one entity) read once in full is known until the next write, which goes
through here too. Each batch works on a :class:`BatchCounters`: the committed figures plus the
batch's own changes, with a journal that takes back the changes of a job that failed. Reports
change the figures in memory only; the batch writes each window it changed once, with its last
figure, just before it commits (``dirty``), so the table is the exact projection at every
commit. Publishing after the commit makes the batch's figures the committed ones. At most
``ALLOTMENT_CACHE_COUNTERS`` series stay committed: past that, those least recently used leave
(``lru.py``), and are read in full again when next needed.
"""

from __future__ import annotations

from typing import Final

from allotment.storage.sqlite.lru import Committed

Series = tuple[str, str, str, str]
"""(customer, kind, target, entity): the windows of one budget target of one entity, or of a
customer's usage of one feature (kind ``usage``, no entity)."""

Window = tuple[int, int]
"""(period_start, period_end) in epoch microseconds, as in the table."""

CommittedCounters = Committed[Series, dict[Window, int]]
"""Every stored window of each series present: a series is here only once read in full."""

DEFAULT_CACHED_SERIES = 200_000

_ABSENT: Final = object()


class BatchCounters:
    """One batch's view of the counters; ``None`` marks a window dropped from the table."""

    def __init__(self, committed: CommittedCounters, limit: int) -> None:
        self._committed = committed
        self._limit = limit  # the largest figure a counter holds, either sign
        self._changed: dict[Series, dict[Window, int | None]] = {}
        self._journal: list[tuple[Series, Window | None, object]] = []
        self.dirty: set[tuple[Series, Window]] = set()
        # Committed series the batch read, each once (a dict as an ordered set), in the order
        # first read: publishing marks them used, and a batch of many reports reads each several
        # times. Among themselves they leave in that order; all of them leave after every
        # series the batch did not read.
        self._used: dict[Series, None] = {}

    def knows(self, series: Series) -> bool:
        """Whether every stored window of ``series`` is known here."""
        if series in self._changed:
            return True
        committed = self._committed
        if series in committed:
            committed.stats.hits += 1
            self._used[series] = None
            return True
        committed.stats.misses += 1
        return False

    def load(self, series: Series, windows: dict[Window, int]) -> None:
        """Record ``series`` as read in full from the table."""
        self._journal.append((series, None, _ABSENT))
        self._changed[series] = dict(windows)

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
        """Add ``amount`` to every window of a known series that holds ``instant``.

        Raises OverflowError, changing nothing, when a figure would pass the limit."""
        updates = []
        for window in self._windows(series):
            start, end = window
            used = self.get(series, window)
            if start <= instant < end and used is not None:
                if abs(used + amount) > self._limit:
                    raise OverflowError(f"budget counter {series} {window}")
                updates.append((window, used + amount))
        for window, used in updates:
            self.put(series, window, used)
            self.dirty.add((series, window))

    def drop_ended(self, series: Series, before: int) -> None:
        """Mirror the table's delete of the windows that ended by ``before``."""
        for window in self._windows(series):
            if window[1] <= before:
                self.put(series, window, None)

    def mark(self) -> int:
        return len(self._journal)

    def take_changed(self) -> list[tuple[Series, Window, int]]:
        """Each window the batch changed, with its last figure, once (to write before commit).

        Windows dropped since, or changed only by a failed job, are left out."""
        changed = []
        for series, window in self.dirty:
            used = self.get(series, window)
            if used is not None:
                changed.append((series, window, used))
        self.dirty.clear()
        return changed

    def undo(self, mark: int) -> None:
        """Take back every change made since ``mark`` (a job that failed)."""
        while len(self._journal) > mark:
            series, window, previous = self._journal.pop()
            if window is None:  # the series was read in full by the failed job
                del self._changed[series]
                continue
            changed = self._changed[series]
            if previous is _ABSENT:
                del changed[window]
            else:
                assert previous is None or isinstance(previous, int)
                changed[window] = previous

    def publish(self) -> None:
        """Make the batch's changes the committed figures (call once the batch committed)."""
        committed, changed = self._committed, self._changed
        for series in self._used:
            if series not in changed:  # those changed are marked used just below
                committed.used(series)
        for series, changes in changed.items():
            windows = committed.get(series)
            if windows is None:
                windows = {}
                committed.keep(series, windows)
            else:
                committed.used(series)
            for window, used in changes.items():
                if used is None:
                    windows.pop(window, None)
                else:
                    windows[window] = used
        committed.trim()
        self._changed.clear()
        self._journal.clear()
        self.dirty.clear()
        self._used.clear()

    def _windows(self, series: Series) -> list[Window]:
        committed = self._committed.get(series)
        changed = self._changed.get(series)
        if not changed:
            return list(committed) if committed else []
        if not committed:
            return list(changed)
        return list(committed.keys() | changed.keys())
