"""POST /v1/usage: idempotency, delta and set, enforcement, and counters as a projection."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta

import pytest

from tests.conftest import Api, define_catalog, new_customer


@pytest.fixture
def acme(api: Api) -> Api:
    define_catalog(api)
    new_customer(api, "acme", "starter")  # ai-requests: 100 a day, hard
    return api


def events(api: Api) -> list[tuple[str, str, int]]:
    with sqlite3.connect(api.database) as db:
        return db.execute(
            "SELECT customer, feature, amount FROM usage_events ORDER BY seq"
        ).fetchall()


@pytest.mark.sqlite_file
def test_a_replay_returns_the_first_outcome_and_applies_nothing(acme: Api) -> None:
    first = acme.usage("acme", "ai-requests", 10, "k1")
    assert (first["recorded"], first["replayed"], first["current_usage"]) == (True, False, 10)
    acme.usage("acme", "ai-requests", 5, "k2")
    replay = acme.usage("acme", "ai-requests", 10, "k1")
    assert replay == {**first, "replayed": True}
    assert acme.check("acme", "ai-requests")["current_usage"] == 15
    assert len(events(acme)) == 2


def test_the_same_key_with_another_payload_is_409(acme: Api) -> None:
    acme.usage("acme", "ai-requests", 10, "k1")
    status, body = acme.status(
        "POST",
        "/v1/usage",
        {"customer": "acme", "feature": "ai-requests", "amount": 11, "idempotency_key": "k1"},
    )
    assert status == 409
    assert body["error"]["code"] == "idempotency_conflict"
    assert acme.check("acme", "ai-requests")["current_usage"] == 10


def test_keys_are_scoped_to_the_customer(acme: Api) -> None:
    new_customer(acme, "globex", "starter")
    acme.usage("acme", "ai-requests", 10, "shared")
    other = acme.usage("globex", "ai-requests", 20, "shared")
    assert (other["replayed"], other["current_usage"]) == (False, 20)


@pytest.mark.sqlite_file
def test_a_denial_is_stored_and_replayed_too(acme: Api) -> None:
    denied = acme.usage("acme", "ai-requests", 101, "big", enforce=True)
    assert (denied["recorded"], denied["access_denied_reason"]) == (False, "usage_limit_exceeded")
    assert denied["current_usage"] == 0
    # Even once the request would fit, the key answers what it answered first.
    acme.put("/v1/customers/acme/overrides/ai-requests", {"limit": 1000}, 201)
    replay = acme.usage("acme", "ai-requests", 101, "big", enforce=True)
    assert (replay["recorded"], replay["replayed"]) == (False, True)
    assert events(acme) == []


def test_a_rejected_request_stores_no_key(acme: Api) -> None:
    status, _ = acme.status(
        "POST",
        "/v1/usage",
        {"customer": "acme", "feature": "seats", "amount": 1, "idempotency_key": "k"},
    )
    assert status == 400  # seats is numeric: usage is for metered features
    assert acme.usage("acme", "ai-requests", 1, "k")["replayed"] is False


def test_enforce_true_refuses_past_a_hard_limit_and_records_nothing(acme: Api) -> None:
    assert acme.usage("acme", "ai-requests", 60, "a", enforce=True)["recorded"] is True
    refused = acme.usage("acme", "ai-requests", 41, "b", enforce=True)
    assert (refused["recorded"], refused["has_access"], refused["requested"]) == (False, False, 41)
    assert refused["current_usage"] == 60
    exact = acme.usage("acme", "ai-requests", 40, "c", enforce=True)
    assert (exact["recorded"], exact["current_usage"], exact["remaining"]) == (True, 100, 0)


def test_enforce_false_records_past_the_limit_and_says_so(acme: Api) -> None:
    acme.usage("acme", "ai-requests", 100, "a")
    over = acme.usage("acme", "ai-requests", 5, "b")
    assert (over["recorded"], over["has_access"], over["access_denied_reason"]) == (
        True,
        False,
        "usage_limit_exceeded",
    )
    assert over["current_usage"] == 105


def test_soft_limits_grant_and_record(api: Api) -> None:
    define_catalog(api)
    new_customer(api, "acme", "enterprise")
    api.usage("acme", "ai-requests", 20000, "a", enforce=True)
    soft = api.usage("acme", "ai-requests", 50, "b", enforce=True)
    assert (soft["recorded"], soft["has_access"], soft["current_usage"]) == (True, True, 20050)


@pytest.mark.sqlite_file
def test_set_makes_amount_the_new_usage_of_the_period(acme: Api) -> None:
    acme.usage("acme", "ai-requests", 30, "a")
    lowered = acme.usage("acme", "ai-requests", 12, "b", behavior="set")
    assert (lowered["recorded"], lowered["current_usage"]) == (True, 12)
    assert [amount for *_, amount in events(acme)] == [30_000_000, -18_000_000]
    refused = acme.usage("acme", "ai-requests", 101, "c", behavior="set", enforce=True)
    assert (refused["recorded"], refused["current_usage"]) == (False, 12)
    raised = acme.usage("acme", "ai-requests", 100, "d", behavior="set", enforce=True)
    assert (raised["recorded"], raised["current_usage"]) == (True, 100)


@pytest.mark.sqlite_file
def test_usage_for_unknown_customer_or_feature_is_a_decision(acme: Api) -> None:
    ghost = acme.usage("ghost", "ai-requests", 1, "a")
    assert (ghost["recorded"], ghost["access_denied_reason"]) == (False, "customer_not_found")
    unknown = acme.usage("acme", "teleport", 1, "b")
    assert (unknown["recorded"], unknown["access_denied_reason"]) == (False, "feature_not_found")
    assert events(acme) == []


def test_backdated_usage_counts_in_the_period_it_happened(acme: Api) -> None:
    yesterday_start = acme.check("acme", "ai-requests")["usage_period_start"]
    acme.advance(86400)
    late = acme.usage("acme", "ai-requests", 7, "late", timestamp=yesterday_start)
    assert (late["recorded"], late["current_usage"]) == (True, 0)
    acme.usage("acme", "ai-requests", 3, "today")
    assert acme.check("acme", "ai-requests")["current_usage"] == 3


@pytest.mark.sqlite_file
def test_counters_equal_the_sum_of_events_and_survive_a_restart(acme: Api) -> None:
    """Counters are a projection: rebuilt from the events they must match, also after restart."""
    from tests.conftest import open_api

    for index, amount in enumerate([5, "2.5", 40, 1]):
        acme.usage("acme", "ai-requests", amount, f"k{index}")
    acme.usage("acme", "ai-requests", 60, "refused", enforce=True)
    acme.usage("acme", "ai-requests", 10, "set", behavior="set")
    acme.advance(86400)
    acme.usage("acme", "ai-requests", 4, "tomorrow")
    assert acme.check("acme", "ai-requests")["current_usage"] == 4
    with sqlite3.connect(acme.database) as db:
        counters = db.execute(
            "SELECT customer, feature, period_start, period_end, used FROM usage_counters"
        ).fetchall()
        # Opening the second day's window dropped the first's counter: an ended window is
        # projected again from the events when it is read (as after the restart below).
        assert len(counters) == 1
        for customer, feature, start, end, used in counters:
            (rebuilt,) = db.execute(
                "SELECT COALESCE(SUM(amount), 0) FROM usage_events WHERE customer = ? AND"
                " feature = ? AND timestamp >= ? AND timestamp < ?",
                (customer, feature, start, end),
            ).fetchone()
            assert used == rebuilt
    acme.client.__exit__(None, None, None)
    for reopened in open_api(acme.database, test_clock=True):
        # The test clock restarts at the real time: back on the first day.
        assert reopened.check("acme", "ai-requests")["current_usage"] == 10
        reopened.post("/v1/test/clock", {"advance_seconds": 86400}, 200)
        assert reopened.check("acme", "ai-requests")["current_usage"] == 4


@pytest.mark.sqlite_file
@pytest.mark.parametrize("amount", [-1, "-0.5", "1e12", "0.0000001", "NaN", "Infinity", True, "x"])
def test_bad_amounts_are_400_and_change_nothing(acme: Api, amount: object) -> None:
    status, body = acme.status(
        "POST",
        "/v1/usage",
        {"customer": "acme", "feature": "ai-requests", "amount": amount, "idempotency_key": "k"},
    )
    assert status == 400, body
    assert body["error"]["code"] == "invalid_request"
    assert events(acme) == []


@pytest.mark.sqlite_file
def test_enforced_usage_dated_before_the_current_window_is_400_and_records_nothing(
    acme: Api,
) -> None:
    """Decided in an older, emptier window, it would pass a limit already used up now."""
    assert acme.usage("acme", "ai-requests", 100, "fill", enforce=True)["recorded"]
    check = acme.check("acme", "ai-requests")
    started = datetime.fromisoformat(check["usage_period_start"].replace("Z", "+00:00"))
    before_it = (started - timedelta(seconds=1)).isoformat().replace("+00:00", "Z")
    for index, when in enumerate(["1970-01-01T00:00:00Z", "2000-06-01T12:00:00Z", before_it]):
        status, body = acme.status(
            "POST",
            "/v1/usage",
            {
                "customer": "acme",
                "feature": "ai-requests",
                "amount": 1,
                "idempotency_key": f"past-{index}",
                "enforce": True,
                "timestamp": when,
            },
        )
        assert status == 400, body
        assert body["error"]["details"] == {"field": "timestamp"}
    assert len(events(acme)) == 1
    # Dated inside the current window it is decided there, and refused by the limit.
    inside = acme.usage(
        "acme", "ai-requests", 1, "inside", enforce=True, timestamp=check["usage_period_start"]
    )
    assert (inside["recorded"], inside["access_denied_reason"]) == (False, "usage_limit_exceeded")
    # Without enforce, past usage is the truth and is recorded where it happened.
    late = acme.usage("acme", "ai-requests", 1, "late", timestamp="2000-06-01T12:00:00Z")
    assert (late["recorded"], late["current_usage"]) == (True, 100)


@pytest.mark.sqlite_file
def test_usage_dated_past_the_clock_skew_is_400_and_cannot_step_around_a_limit(
    acme: Api,
) -> None:
    """A report dated next period would be decided against next period's limit."""
    assert acme.usage("acme", "ai-requests", 100, "fill", enforce=True)["recorded"]
    now = datetime.fromisoformat(acme.now().replace("Z", "+00:00"))
    for seconds, expected in ((300, 200), (301, 400), (40 * 86400, 400)):
        when = (now + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")
        status, body = acme.status(
            "POST",
            "/v1/usage",
            {
                "customer": "acme",
                "feature": "ai-requests",
                "amount": 1,
                "idempotency_key": f"ahead-{seconds}",
                "enforce": True,
                "timestamp": when,
            },
        )
        assert status == expected, body
        if status == 200:  # within the skew: decided in the current, full period
            assert (body["recorded"], body["access_denied_reason"]) == (
                False,
                "usage_limit_exceeded",
            )
        else:
            assert body["error"]["details"] == {"field": "timestamp"}
    assert len(events(acme)) == 1
