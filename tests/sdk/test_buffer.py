"""The SDK's usage buffer and its delivery loop: what is kept, what is removed, in which order,
and that the loop survives failures, stops when asked and starts again in a forked child."""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from allotment.sdk import buffer as buffer_module
from allotment.sdk.buffer import (
    THREAD_NAME,
    Answer,
    Backoff,
    BufferedReport,
    BufferFull,
    DeliveryState,
    UsageBuffer,
    UsageDelivery,
)

SRC = str(Path(__file__).resolve().parents[2] / "src")
OK = Answer(200, b'{"recorded": true}')
LOGGER = "allotment.sdk"


def body(n: int) -> bytes:
    return json.dumps({"customer_id": "cus_1", "quantity": n, "idempotency_key": f"k-{n}"}).encode()


def error_answer(status: int, message: str, retry_after: float | None = None) -> Answer:
    error = {"error": {"code": "refused", "message": message, "details": {}}}
    return Answer(status, json.dumps(error).encode(), retry_after)


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.005)
    return True


class FakeClock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakePost:
    """Answers with the scripted answers (or raises the scripted errors), then with 200."""

    def __init__(self, *script: Answer | Exception) -> None:
        self.script = list(script)
        self.posted: list[bytes] = []

    def __call__(self, sent: bytes) -> Answer:
        self.posted.append(sent)
        step = self.script.pop(0) if self.script else OK
        if isinstance(step, Exception):
            raise step
        return step


@pytest.fixture
def buffer(tmp_path: Path) -> Iterator[UsageBuffer]:
    opened = UsageBuffer(tmp_path / "usage.db")
    yield opened
    opened.close()


def fill(buffer: UsageBuffer, count: int) -> list[int]:
    return [buffer.append(f"k-{n}", body(n)) for n in range(count)]


def held(buffer: UsageBuffer) -> list[BufferedReport]:
    """What the buffer holds, read through a claim that is released at once."""
    reports = buffer.claim("inspector", 1_000, 30.0, time.time())
    for report in reports:
        buffer.release(report.id, report.attempts)
    return reports


def messages(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == level]


# The buffer


def test_append_claim_remove_round_trip_keeps_bodies_byte_identical(buffer: UsageBuffer) -> None:
    bodies = [body(1), bytes(range(256)), b"", "\u00e9\u20ac\U0001f600".encode()]
    ids = [buffer.append(f"k-{n}", sent) for n, sent in enumerate(bodies)]

    reports = buffer.claim("me", 10, 30.0, 1_000.0)

    assert reports == [
        BufferedReport(report_id, f"k-{n}", sent, 0)
        for n, (report_id, sent) in enumerate(zip(ids, bodies, strict=True))
    ]
    assert all(type(report.body) is bytes for report in reports)
    for report in reports:
        buffer.remove(report.id)
    assert buffer.depth() == 0
    assert buffer.claim("me", 10, 30.0, 1_000.0) == []


def test_claim_takes_the_oldest_first_and_release_records_attempts(buffer: UsageBuffer) -> None:
    ids = fill(buffer, 5)

    first = buffer.claim("me", 2, 30.0, 1_000.0)
    buffer.release(first[0].id, 3)
    buffer.release(first[1].id, 0)

    again = buffer.claim("me", 10, 30.0, 1_000.0)
    assert [report.id for report in again] == ids
    assert [report.attempts for report in again] == [3, 0, 0, 0, 0]


def test_claim_stops_before_a_report_another_owner_holds(buffer: UsageBuffer) -> None:
    ids = fill(buffer, 4)
    assert [report.id for report in buffer.claim("a", 2, 30.0, 1_000.0)] == ids[:2]

    assert buffer.claim("b", 10, 30.0, 1_000.0) == []

    # A deliverer releases when its pass stops: the whole lease ends with it.
    buffer.release(ids[0], 0)
    assert [report.id for report in buffer.claim("b", 10, 30.0, 1_000.0)] == ids


def test_an_expired_lease_makes_the_report_claimable_again(buffer: UsageBuffer) -> None:
    ids = fill(buffer, 2)
    assert [report.id for report in buffer.claim("a", 10, 30.0, 1_000.0)] == ids

    assert buffer.claim("b", 10, 30.0, 1_029.9) == []
    assert [report.id for report in buffer.claim("b", 10, 30.0, 1_030.0)] == ids


def test_removing_twice_is_harmless(buffer: UsageBuffer) -> None:
    ids = fill(buffer, 2)
    buffer.remove(ids[0])
    buffer.remove(ids[0])
    assert buffer.depth() == 1
    assert [report.id for report in held(buffer)] == [ids[1]]


def test_answered_reports_are_removed_together(buffer: UsageBuffer) -> None:
    ids = fill(buffer, 5)
    buffer.remove_all([ids[0], ids[2], ids[4], ids[4]])
    buffer.remove_all([])
    assert buffer.depth() == 2
    assert [report.id for report in held(buffer)] == [ids[1], ids[3]]


def test_a_lease_held_by_a_process_of_this_host_that_is_gone_ends_at_once(
    buffer: UsageBuffer,
) -> None:
    ids = fill(buffer, 2)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    owner = f"{socket.gethostname()}/{gone.pid}/0"
    assert [r.id for r in buffer.claim(owner, 10, 30.0, 1_000.0)] == ids
    living = f"{socket.gethostname()}/{os.getpid()}/0"
    assert [r.id for r in buffer.claim(living, 10, 30.0, 1_001.0)] == ids  # freed, not waited
    assert buffer.claim("elsewhere/1/0", 10, 30.0, 1_002.0) == []  # this one is alive


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_a_report_survives_its_process_being_killed_right_after_append(tmp_path: Path) -> None:
    path = tmp_path / "usage.db"
    script = (
        "import os, signal, sys\n"
        f"sys.path.insert(0, {SRC!r})\n"
        "from allotment.sdk.buffer import UsageBuffer\n"
        f"buffer = UsageBuffer({str(path)!r})\n"
        f"print(buffer.append('k-killed', {body(7)!r}), flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )

    child = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, timeout=60, check=False
    )

    assert child.returncode == -signal.SIGKILL, child.stderr
    reopened = UsageBuffer(path)
    try:
        assert reopened.claim("me", 10, 30.0, 1_000.0) == [
            BufferedReport(int(child.stdout), "k-killed", body(7), 0)
        ]
    finally:
        reopened.close()


def test_a_full_buffer_refuses_logs_once_and_accepts_again_once_drained(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    buffer = UsageBuffer(tmp_path / "usage.db", max_reports=3)
    ids = fill(buffer, 3)

    for _ in range(2):
        with pytest.raises(BufferFull):
            buffer.append("k-over", b"over")
    assert buffer.refused == 2
    assert len(messages(caplog, logging.WARNING)) == 1
    assert "full" in messages(caplog, logging.WARNING)[0]

    buffer.remove(ids[0])
    buffer.append("k-room", b"room")
    with pytest.raises(BufferFull):
        buffer.append("k-over", b"over")
    assert buffer.refused == 3
    assert len(messages(caplog, logging.WARNING)) == 2
    assert buffer.depth() == 3
    buffer.close()


def test_two_buffers_on_one_file_never_claim_the_same_report(tmp_path: Path) -> None:
    path = tmp_path / "usage.db"
    seed = UsageBuffer(path)
    ids = fill(seed, 2_000)
    buffers = [UsageBuffer(path), UsageBuffer(path)]
    claimed: list[list[int]] = [[], []]
    start = threading.Barrier(2)

    def drain(index: int) -> None:
        mine = buffers[index]
        start.wait()
        while True:
            reports = mine.claim(f"owner-{index}", 7, 30.0, time.time())
            if not reports and mine.depth() == 0:
                return
            claimed[index].extend(report.id for report in reports)
            for report in reports:
                mine.remove(report.id)

    threads = [threading.Thread(target=drain, args=(index,)) for index in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)

    first, second = claimed
    assert not set(first) & set(second)
    assert sorted(first + second) == ids
    assert first == sorted(first)
    assert second == sorted(second)
    for opened in [seed, *buffers]:
        opened.close()


def test_depth_counts_what_another_connection_appended(tmp_path: Path) -> None:
    path = tmp_path / "usage.db"
    mine, theirs = UsageBuffer(path), UsageBuffer(path)
    fill(theirs, 3)
    assert mine.depth() == 3
    mine.close()
    theirs.close()


def test_the_file_is_in_wal_mode_with_a_versioned_schema(tmp_path: Path) -> None:
    path = tmp_path / "usage.db"
    UsageBuffer(path, durability="power").close()

    outside = sqlite3.connect(path)
    try:
        assert outside.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert outside.execute("PRAGMA user_version").fetchone() == (2,)
    finally:
        outside.close()


def test_a_version_1_file_is_brought_up_to_date_and_its_leases_end(tmp_path: Path) -> None:
    path = tmp_path / "usage.db"
    old = sqlite3.connect(path)
    old.executescript(
        """
        CREATE TABLE usage_reports (
            id INTEGER PRIMARY KEY AUTOINCREMENT, idempotency_key TEXT NOT NULL,
            body BLOB NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
            lease_owner TEXT, lease_until REAL);
        CREATE INDEX usage_reports_leases
            ON usage_reports (lease_until, id) WHERE lease_owner IS NOT NULL;
        INSERT INTO usage_reports (idempotency_key, body, attempts, lease_owner, lease_until)
            VALUES ('k-1', X'7B7D', 2, 'elsewhere/1/x', 4e9);
        PRAGMA user_version=1;
        """
    )
    old.close()
    buffer = UsageBuffer(path)
    try:
        (report,) = buffer.claim("me", 10, 30.0, 1_000.0)
        assert (report.idempotency_key, report.body, report.attempts) == ("k-1", b"{}", 2)
    finally:
        buffer.close()


def test_a_file_from_a_newer_sdk_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "usage.db"
    newer = sqlite3.connect(path)
    newer.execute("PRAGMA user_version=3")
    newer.close()

    with pytest.raises(RuntimeError, match="version 3"):
        UsageBuffer(path)


def test_an_unknown_durability_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="durability"):
        UsageBuffer(tmp_path / "usage.db", durability="disk")  # type: ignore[arg-type]


def test_an_in_memory_buffer_works_and_close_is_idempotent() -> None:
    buffer = UsageBuffer(None)
    report_id = buffer.append("k-1", body(1))
    assert buffer.claim("me", 10, 30.0, 1_000.0) == [BufferedReport(report_id, "k-1", body(1), 0)]
    buffer.remove(report_id)
    assert buffer.depth() == 0
    buffer.close()
    buffer.close()


def test_after_fork_without_fork_hooks_sets_the_inherited_connection_aside(
    buffer: UsageBuffer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a child forked from C (uWSGI) gets: its connection was not closed before the fork,
    so it is kept, never used nor closed, and a new one is opened."""
    ids = fill(buffer, 2)
    inherited = len(buffer_module._INHERITED_CONNECTIONS)
    monkeypatch.setattr(os, "getpid", lambda: -1)

    buffer.after_fork()
    buffer.after_fork()

    assert len(buffer_module._INHERITED_CONNECTIONS) == inherited + 1
    set_aside = buffer_module._INHERITED_CONNECTIONS[-1]
    assert set_aside.execute("SELECT COUNT(*) FROM usage_reports").fetchone() == (2,)
    ids.append(buffer.append("k-2", body(2)))
    assert [report.id for report in held(buffer)] == ids


def test_an_in_memory_buffer_starts_empty_in_a_child(monkeypatch: pytest.MonkeyPatch) -> None:
    buffer = UsageBuffer(None)
    fill(buffer, 2)
    monkeypatch.setattr(os, "getpid", lambda: -1)

    buffer.after_fork()

    assert buffer.depth() == 0
    buffer.append("k-child", b"child")
    assert [report.body for report in held(buffer)] == [b"child"]
    buffer.close()


# Backoff


def test_backoff_doubles_up_to_the_cap_within_its_jitter() -> None:
    backoff = Backoff(rng=random.Random(7))
    delays = [backoff.failed(now=float(second)) for second in range(8)]

    ceilings = [1, 2, 4, 8, 16, 30, 30, 30]
    for delay, ceiling in zip(delays, ceilings, strict=True):
        assert ceiling / 2 <= delay <= ceiling
    replay = Backoff(rng=random.Random(7))
    assert [replay.failed(now=float(second)) for second in range(8)] == delays


def test_backoff_starts_over_after_sixty_seconds_without_a_failure() -> None:
    backoff = Backoff(rng=random.Random(1))
    for second in range(5):
        backoff.failed(now=float(second))

    backoff.succeeded(now=30.0)
    assert 15.0 <= backoff.failed(now=50.0) <= 30.0

    backoff.succeeded(now=109.9)
    assert 15.0 <= backoff.failed(now=109.95) <= 30.0

    backoff.succeeded(now=169.95)
    assert 0.5 <= backoff.failed(now=171.0) <= 1.0
    assert 1.0 <= backoff.failed(now=172.0) <= 2.0
    assert 0.5 <= backoff.failed(now=232.0) <= 1.0


# Delivery, one pass at a time


def test_accepted_reports_are_removed_and_answered(buffer: UsageBuffer) -> None:
    answers: list[tuple[BufferedReport, Answer]] = []
    post = FakePost()
    delivery = UsageDelivery(buffer, post, on_answer=lambda r, a: answers.append((r, a)))
    ids = fill(buffer, 3)

    assert delivery.deliver_once() is None

    assert post.posted == [body(n) for n in range(3)]
    assert [(report.id, report.body, answer) for report, answer in answers] == [
        (report_id, body(n), OK) for n, report_id in enumerate(ids)
    ]
    assert buffer.depth() == 0
    assert delivery.delivered == 3
    assert delivery.state is DeliveryState.IDLE


def test_a_full_batch_asks_for_another_pass_at_once(buffer: UsageBuffer) -> None:
    post = FakePost()
    delivery = UsageDelivery(buffer, post, batch=2)
    fill(buffer, 3)

    assert delivery.deliver_once() == 0.0
    assert delivery.deliver_once() is None
    assert post.posted == [body(n) for n in range(3)]


@pytest.mark.parametrize(
    "failure",
    [
        Answer(500, b"oops"),
        error_answer(503, "The database is busy: try again shortly."),
        error_answer(429, "Slow down."),
        Answer(408, b""),
        httpx.ConnectError("connection refused"),
        httpx.ReadTimeout("timed out"),
        ConnectionResetError("reset by peer"),
    ],
    ids=["500", "503", "429", "408", "connect-error", "read-timeout", "os-error"],
)
def test_a_failure_keeps_the_report_backs_off_and_then_delivers_each_once_in_order(
    buffer: UsageBuffer, failure: Answer | Exception
) -> None:
    clock = FakeClock()
    delivered: list[bytes] = []
    post = FakePost(failure, failure)
    delivery = UsageDelivery(
        buffer,
        post,
        on_answer=lambda report, _: delivered.append(report.body),
        backoff=Backoff(rng=random.Random(3)),
        clock=clock,
    )
    fill(buffer, 3)

    first = delivery.deliver_once()
    assert first is not None
    assert 0.5 <= first <= 1.0
    assert post.posted == [body(0)]
    assert delivery.state is DeliveryState.BACKING_OFF
    assert delivery.failures == 1
    assert delivery.last_error is not None
    assert [report.attempts for report in held(buffer)] == [1, 0, 0]

    clock.now += first
    second = delivery.deliver_once()
    assert second is not None
    assert 1.0 <= second <= 2.0

    clock.now += second
    assert delivery.deliver_once() is None
    assert post.posted == [body(0), body(0), body(0), body(1), body(2)]
    assert delivered == [body(0), body(1), body(2)]
    assert buffer.depth() == 0
    assert delivery.state is DeliveryState.IDLE
    assert (delivery.delivered, delivery.failures) == (3, 2)


def test_a_longer_retry_after_is_honoured(buffer: UsageBuffer) -> None:
    post = FakePost(error_answer(429, "Slow down.", retry_after=120.0), Answer(503, b"", 0.1))
    delivery = UsageDelivery(buffer, post, backoff=Backoff(rng=random.Random(3)))
    fill(buffer, 1)

    assert delivery.deliver_once() == 120.0
    second = delivery.deliver_once()
    assert second is not None
    assert 1.0 <= second <= 2.0


def test_a_failure_streak_warns_once_then_logs_at_info(
    buffer: UsageBuffer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    post = FakePost(Answer(502, b"Bad Gateway"), Answer(502, b"Bad Gateway"), Answer(500, b""))
    delivery = UsageDelivery(buffer, post)
    fill(buffer, 1)

    for _ in range(4):
        delivery.deliver_once()

    warnings = messages(caplog, logging.WARNING)
    assert len(warnings) == 1
    assert "HTTP 502: Bad Gateway" in warnings[0]
    infos = messages(caplog, logging.INFO)
    assert len(infos) == 3
    assert "HTTP 500: (empty body)" in infos[1]
    assert "recovered after 3 failed attempts" in infos[2]
    assert delivery.last_error == "HTTP 500: (empty body)"


@pytest.mark.parametrize("status", [401, 403])
def test_a_denied_key_stops_deliveries_and_keeps_every_report_until_resume(
    buffer: UsageBuffer, caplog: pytest.LogCaptureFixture, status: int
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    post = FakePost(error_answer(status, "The API key is revoked."))
    delivery = UsageDelivery(buffer, post)
    fill(buffer, 3)

    assert delivery.deliver_once() is None
    assert delivery.deliver_once() is None

    assert delivery.state is DeliveryState.UNAUTHORIZED
    assert post.posted == [body(0)]
    assert [report.attempts for report in held(buffer)] == [1, 0, 0]
    errors = messages(caplog, logging.ERROR)
    assert len(errors) == 1
    assert f"HTTP {status}: The API key is revoked." in errors[0]
    assert "stopped" in errors[0]

    delivery.resume()
    assert delivery.state is DeliveryState.IDLE
    assert delivery.deliver_once() is None
    assert post.posted == [body(0), body(0), body(1), body(2)]
    assert buffer.depth() == 0


@pytest.mark.parametrize("status", [400, 404, 409, 413, 422])
def test_a_refused_report_is_removed_and_counted_as_rejected(
    buffer: UsageBuffer, caplog: pytest.LogCaptureFixture, status: int
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    refusal = error_answer(status, "The idempotency key was used with another body.")
    answers: list[tuple[BufferedReport, Answer]] = []
    post = FakePost(OK, refusal)
    delivery = UsageDelivery(buffer, post, on_answer=lambda r, a: answers.append((r, a)))
    fill(buffer, 3)

    assert delivery.deliver_once() is None

    assert post.posted == [body(0), body(1), body(2)]
    assert buffer.depth() == 0
    assert (delivery.delivered, delivery.rejected, delivery.failures) == (2, 1, 0)
    assert [(report.idempotency_key, answer) for report, answer in answers] == [
        ("k-0", OK),
        ("k-1", refusal),
        ("k-2", OK),
    ]
    (warning,) = messages(caplog, logging.WARNING)
    assert "k-1" in warning
    assert "The idempotency key was used with another body." in warning


def test_an_on_answer_error_is_logged_and_ignored(
    buffer: UsageBuffer, caplog: pytest.LogCaptureFixture
) -> None:
    def on_answer(report: BufferedReport, answer: Answer) -> None:
        raise ValueError("the app's callback broke")

    delivery = UsageDelivery(buffer, FakePost(), on_answer=on_answer)
    fill(buffer, 2)

    assert delivery.deliver_once() is None

    assert buffer.depth() == 0
    assert delivery.delivered == 2
    logged = [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.ERROR]
    assert len(logged) == 2
    assert all(record.exc_info is not None for record in logged)


def test_an_unexpected_error_in_post_releases_the_claimed_reports(buffer: UsageBuffer) -> None:
    delivery = UsageDelivery(buffer, FakePost(RuntimeError("a bug in post")))
    fill(buffer, 3)

    with pytest.raises(RuntimeError, match="a bug in post"):
        delivery.deliver_once()

    assert [report.attempts for report in buffer.claim("other", 10, 30.0, time.time())] == [
        1,
        0,
        0,
    ]


def test_a_pass_stops_posting_when_half_its_lease_is_gone(buffer: UsageBuffer) -> None:
    wall_clock = FakeClock(1_000.0)

    def slow_post(sent: bytes) -> Answer:
        wall_clock.now += 15.0
        return OK

    delivery = UsageDelivery(buffer, slow_post, lease_seconds=30.0, wall_clock=wall_clock)
    ids = fill(buffer, 3)

    assert delivery.deliver_once() == 0.0

    assert buffer.depth() == 2
    claimable = buffer.claim("other", 10, 30.0, wall_clock.now)
    assert [report.id for report in claimable] == ids[1:]


# Delivery on its thread


def test_the_thread_delivers_soon_after_a_wake(buffer: UsageBuffer) -> None:
    post = FakePost()
    delivery = UsageDelivery(buffer, post, lease_seconds=600.0)

    def posted(count: int) -> Callable[[], bool]:
        return lambda: len(post.posted) == count

    delivery.start()
    try:
        for n in range(3):
            buffer.append(f"k-{n}", body(n))
            delivery.wake()
            assert wait_until(posted(n + 1))
        assert post.posted == [body(n) for n in range(3)]
    finally:
        assert delivery.stop(timeout=5.0)
    assert delivery.state is DeliveryState.STOPPED


def test_start_is_idempotent(buffer: UsageBuffer) -> None:
    def threads() -> int:
        return sum(thread.name == THREAD_NAME for thread in threading.enumerate())

    before = threads()
    delivery = UsageDelivery(buffer, FakePost())
    delivery.start()
    delivery.start()
    try:
        assert threads() == before + 1
    finally:
        assert delivery.stop(timeout=5.0)


def test_start_resumes_deliveries_a_denied_key_stopped(buffer: UsageBuffer) -> None:
    post = FakePost(error_answer(401, "Unknown API key."))
    delivery = UsageDelivery(buffer, post)
    fill(buffer, 2)
    delivery.start()
    try:
        assert wait_until(lambda: delivery.state is DeliveryState.UNAUTHORIZED)
        assert buffer.depth() == 2

        delivery.start()
        assert wait_until(lambda: delivery.delivered == 2)
        assert post.posted == [body(0), body(0), body(1)]
    finally:
        assert delivery.stop(timeout=5.0)


def test_the_thread_survives_an_unexpected_error(
    buffer: UsageBuffer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger=LOGGER)
    post = FakePost(RuntimeError("a bug in post"))
    delivery = UsageDelivery(buffer, post, backoff=Backoff(first=0.01, cap=0.01))
    fill(buffer, 2)
    delivery.start()
    try:
        assert wait_until(lambda: delivery.delivered == 2)
    finally:
        assert delivery.stop(timeout=5.0)

    assert post.posted == [body(0), body(0), body(1)]
    assert delivery.failures == 1
    assert delivery.last_error == "RuntimeError: a bug in post"
    (record,) = [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.ERROR]
    assert record.exc_info is not None


def test_stop_returns_while_a_post_is_blocked(buffer: UsageBuffer) -> None:
    posting, never = threading.Event(), threading.Event()

    def blocked_post(sent: bytes) -> Answer:
        posting.set()
        never.wait()
        return OK

    delivery = UsageDelivery(buffer, blocked_post)
    fill(buffer, 2)
    delivery.start()
    try:
        assert posting.wait(timeout=5.0)
        assert delivery.stop(timeout=0.5) is False
        assert delivery.state is DeliveryState.STOPPED
    finally:
        never.set()
    assert delivery.stop(timeout=5.0)
    assert delivery.state is DeliveryState.STOPPED
    assert buffer.depth() == 1


@pytest.mark.skipif(sys.platform != "linux", reason="os.fork")
def test_a_forked_child_appends_and_delivers_with_a_fresh_thread(tmp_path: Path) -> None:
    buffer = UsageBuffer(tmp_path / "usage.db")
    post = FakePost()
    delivery = UsageDelivery(buffer, post, lease_seconds=600.0)
    delivery.start()
    buffer.append("k-parent", b"parent")
    delivery.wake()
    assert wait_until(lambda: delivery.delivered == 1)

    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            buffer.after_fork()
            delivery.after_fork()
            post.posted.clear()
            buffer.append("k-child", b"child")
            delivery.start()
            delivery.wake()
            delivered = wait_until(lambda: post.posted == [b"child"] and buffer.depth() == 0)
            stopped = delivery.stop(timeout=5.0)
            code = 0 if delivered and stopped and delivery.delivered == 1 else 2
        finally:
            os._exit(code)

    _, status = os.waitpid(pid, 0)
    try:
        assert os.waitstatus_to_exitcode(status) == 0
        assert post.posted == [b"parent"]
        assert buffer.depth() == 0
    finally:
        assert delivery.stop(timeout=5.0)
        buffer.close()


@pytest.mark.skipif(sys.platform != "linux", reason="os.fork")
def test_a_forked_childs_reports_outlive_the_parent_closing_its_buffer(tmp_path: Path) -> None:
    path = tmp_path / "usage.db"
    buffer = UsageBuffer(path)
    buffer.append("k-parent", b"parent")
    closed, closed_signal = os.pipe()

    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            buffer.after_fork()
            buffer.append("k-child-1", b"child-1")
            os.read(closed, 1)
            buffer.append("k-child-2", b"child-2")
            code = 0
        finally:
            os._exit(code)

    buffer.close()
    os.write(closed_signal, b"x")
    _, status = os.waitpid(pid, 0)
    os.close(closed)
    os.close(closed_signal)
    assert os.waitstatus_to_exitcode(status) == 0
    reopened = UsageBuffer(path)
    try:
        reports = reopened.claim("me", 10, 30.0, 1_000.0)
        assert [report.body for report in reports] == [b"parent", b"child-1", b"child-2"]
    finally:
        reopened.close()
