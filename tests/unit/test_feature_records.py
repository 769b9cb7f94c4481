"""What a check reads of one feature (``FeatureAt``): resolved once per ``Derived``, with the
reset window that holds the instant asked about, made again when the instant leaves it, in
either direction."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from allotment.domain.customers import Customer
from allotment.domain.holdings import Holdings
from allotment.domain.resolution import DenialReason, SourceType
from allotment.service.snapshots import NO_HOLDS, CustomerSnapshot, window_key
from tests.unit.test_resolution import AI, CATALOG, SSO, T0, sub

# ``enterprise`` resets AI requests daily from its subscription's start, 09:00.
START = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def snapshot(plan: str = "enterprise") -> CustomerSnapshot:
    holdings = Holdings(subscriptions=(sub(plan, T0),))
    return CustomerSnapshot(Customer("acme", None), holdings)


def test_a_metered_feature_carries_its_window_bounds_key_and_source() -> None:
    cached = snapshot()
    now = START + timedelta(hours=3)
    at = cached.derived_for(CATALOG, now).feature_at(cached, AI, now)
    assert at.offer is not None
    assert at.spec is at.offer.spec
    assert at.source is not None
    assert (at.source.type, at.source.id) == (SourceType.PLAN, "enterprise")
    assert at.window is not None
    assert (at.window.period.start, at.window.period.end) == (START, START + DAY)
    assert (at.starts, at.ends) == (START, START + DAY)
    assert at.key == window_key(AI.id, at.window)
    assert at.resolution == cached.resolution(CATALOG, AI, now)


def test_the_record_is_kept_while_its_window_holds_the_instant() -> None:
    cached = snapshot()
    derived = cached.derived_for(CATALOG, START)
    first = derived.feature_at(cached, AI, START)
    assert derived.feature_at(cached, AI, START + DAY - timedelta(microseconds=1)) is first


def test_the_window_is_made_again_once_the_instant_leaves_it_forward_or_back() -> None:
    cached = snapshot()
    derived = cached.derived_for(CATALOG, START)
    first = derived.feature_at(cached, AI, START)
    later = derived.feature_at(cached, AI, START + DAY)  # the window's end is not in it
    assert later is not first
    assert (later.starts, later.ends) == (START + DAY, START + 2 * DAY)
    assert later.offer is first.offer  # resolved once: only the window was made again
    # A test clock moved back, within what the derived record still covers.
    earlier = derived.feature_at(cached, AI, START + timedelta(hours=1))
    assert (earlier.starts, earlier.ends) == (START, START + DAY)
    assert earlier.offer is first.offer


def test_features_without_a_window_or_an_offer() -> None:
    cached = snapshot("team")
    now = START
    derived = cached.derived_for(CATALOG, now)
    denied = derived.feature_at(cached, SSO, now)
    assert (denied.offer, denied.denial, denied.window) == (None, DenialReason.NOT_ENTITLED, None)
    boolean = snapshot().derived_for(CATALOG, now).feature_at(snapshot(), SSO, now)
    assert boolean.denial is None
    assert (boolean.window, boolean.starts, boolean.key) == (None, None, None)


def test_the_snapshot_keeps_the_customers_archived_flag_and_no_holds() -> None:
    archived = Customer("acme", None, archived_at=T0)
    assert CustomerSnapshot(archived, Holdings()).archived
    fresh = CustomerSnapshot(Customer("acme", None), Holdings())
    assert not fresh.archived
    assert fresh.holds is NO_HOLDS  # one mapping shared by every snapshot without holds
    with pytest.raises(TypeError):
        fresh.holds["r1"] = None  # type: ignore[index]
