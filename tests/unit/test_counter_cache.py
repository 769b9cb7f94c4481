"""The in-memory budget counters mirror the table exactly: reads, range updates, dropped
windows, a failed job's changes taken back, and publication on commit."""

from __future__ import annotations

from allotment.storage.counter_cache import BatchCounters, CommittedCounters

TEAM = ("acme", "feature", "requests", "team")
AGENT = ("acme", "feature", "requests", "agent")
DAY_1, DAY_2 = (0, 100), (100, 200)


def test_reads_fall_back_from_the_batch_to_the_committed_figures() -> None:
    committed: CommittedCounters = {TEAM: {DAY_1: 5}}
    batch = BatchCounters(committed)
    assert batch.get(TEAM, DAY_1) == 5
    assert batch.get(TEAM, DAY_2) is None
    assert batch.get(AGENT, DAY_1) is None
    batch.put(TEAM, DAY_1, 7)
    assert (batch.get(TEAM, DAY_1), committed[TEAM][DAY_1]) == (7, 5)


def test_add_reaches_every_known_window_holding_the_instant_and_nothing_else() -> None:
    batch = BatchCounters({TEAM: {DAY_1: 5, DAY_2: 1}})
    batch.put(TEAM, (50, 150), 3)  # an overlapping window of another anchor
    batch.add(TEAM, 120, 10)
    assert [batch.get(TEAM, w) for w in (DAY_1, DAY_2, (50, 150))] == [5, 11, 13]
    batch.add(AGENT, 120, 10)  # nothing known for the agent: nothing to mirror
    assert batch.get(AGENT, DAY_2) is None
    batch.add(TEAM, 200, 1)  # windows are half-open
    assert batch.get(TEAM, DAY_2) == 11


def test_dropped_windows_read_as_unknown_and_leave_the_committed_figures_on_publish() -> None:
    committed: CommittedCounters = {TEAM: {DAY_1: 5}}
    batch = BatchCounters(committed)
    batch.drop_ended(TEAM, 100)
    batch.put(TEAM, DAY_2, 0)
    assert batch.get(TEAM, DAY_1) is None
    batch.add(TEAM, 50, 1)  # a backdated event into the dropped window: nothing to mirror
    assert batch.get(TEAM, DAY_1) is None
    batch.publish()
    assert committed == {TEAM: {DAY_2: 0}}


def test_undo_takes_back_a_failed_job_and_keeps_the_jobs_before_it() -> None:
    committed: CommittedCounters = {TEAM: {DAY_1: 5}}
    batch = BatchCounters(committed)
    batch.add(TEAM, 10, 1)  # job 1 succeeds
    mark = batch.mark()
    batch.add(TEAM, 10, 2)  # job 2 fails after several changes
    batch.put(AGENT, DAY_1, 9)
    batch.drop_ended(TEAM, 100)
    batch.undo(mark)
    assert batch.get(TEAM, DAY_1) == 6
    assert batch.get(AGENT, DAY_1) is None
    batch.publish()
    assert committed == {TEAM: {DAY_1: 6}, AGENT: {}}
    # A batch that fails to commit publishes nothing: the store clears the committed figures.
    assert BatchCounters(committed).get(TEAM, DAY_1) == 6
