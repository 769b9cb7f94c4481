"""The in-memory budget counters mirror the table exactly: series read in full, updates of
every window holding an instant, dropped windows, a failed job's changes taken back, the
windows to write before commit, and publication after it."""

from __future__ import annotations

import pytest

from allotment.storage.sqlite.counter_cache import BatchCounters, CommittedCounters
from allotment.storage.sqlite.lru import Committed

TEAM = ("acme", "feature", "requests", "team")
AGENT = ("acme", "feature", "requests", "agent")
DAY_1, DAY_2 = (0, 100), (100, 200)
LIMIT = 1_000


def test_a_series_is_known_once_read_in_full_and_reads_fall_back_to_committed() -> None:
    committed: CommittedCounters = Committed([(TEAM, {DAY_1: 5})], capacity=10)
    batch = BatchCounters(committed, LIMIT)
    assert (batch.knows(TEAM), batch.knows(AGENT)) == (True, False)
    assert (batch.get(TEAM, DAY_1), batch.get(TEAM, DAY_2)) == (5, None)
    batch.load(AGENT, {})
    assert batch.knows(AGENT)
    batch.put(TEAM, DAY_1, 7)
    assert (batch.get(TEAM, DAY_1), committed[TEAM][DAY_1]) == (7, 5)


def test_add_reaches_every_window_holding_the_instant_and_marks_it_to_write() -> None:
    batch = BatchCounters(Committed([(TEAM, {DAY_1: 5, DAY_2: 1})], capacity=10), LIMIT)
    batch.put(TEAM, (50, 150), 3)  # an overlapping window of another anchor
    batch.add(TEAM, 120, 10)
    assert [batch.get(TEAM, w) for w in (DAY_1, DAY_2, (50, 150))] == [5, 11, 13]
    assert batch.dirty == {(TEAM, DAY_2), (TEAM, (50, 150))}
    batch.add(TEAM, 200, 1)  # windows are half-open
    assert batch.get(TEAM, DAY_2) == 11


def test_a_figure_past_the_limit_raises_and_changes_nothing() -> None:
    batch = BatchCounters(Committed([(TEAM, {DAY_1: 5, (50, 150): LIMIT - 1})], capacity=10), LIMIT)
    with pytest.raises(OverflowError):
        batch.add(TEAM, 60, 2)
    assert (batch.get(TEAM, DAY_1), batch.get(TEAM, (50, 150))) == (5, LIMIT - 1)
    assert batch.dirty == set()


def test_dropped_windows_read_as_unknown_and_leave_the_committed_figures_on_publish() -> None:
    committed: CommittedCounters = Committed([(TEAM, {DAY_1: 5})], capacity=10)
    batch = BatchCounters(committed, LIMIT)
    batch.drop_ended(TEAM, 100)
    batch.put(TEAM, DAY_2, 0)
    assert batch.get(TEAM, DAY_1) is None
    batch.add(TEAM, 50, 1)  # a backdated event into the dropped window: nothing to change
    assert batch.get(TEAM, DAY_1) is None
    batch.publish()
    assert committed == {TEAM: {DAY_2: 0}}


def test_undo_takes_back_a_failed_job_and_keeps_the_jobs_before_it() -> None:
    committed: CommittedCounters = Committed([(TEAM, {DAY_1: 5})], capacity=10)
    batch = BatchCounters(committed, LIMIT)
    batch.add(TEAM, 10, 1)  # job 1 succeeds
    mark = batch.mark()
    batch.add(TEAM, 10, 2)  # job 2 reads a series in full, changes several figures, fails
    batch.load(AGENT, {DAY_1: 4})
    batch.add(AGENT, 10, 1)
    batch.drop_ended(TEAM, 100)
    batch.undo(mark)
    assert (batch.get(TEAM, DAY_1), batch.knows(AGENT)) == (6, False)
    batch.publish()
    assert committed == {TEAM: {DAY_1: 6}}
    assert batch.dirty == set()
