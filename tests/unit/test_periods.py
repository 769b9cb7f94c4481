"""Reset periods anchored at an instant, with month-end clamping counted from the anchor."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from allotment.domain.periods import (
    Period,
    ResetPeriod,
    add_months,
    period_boundary,
    period_containing,
    period_index,
)


def at(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


ANCHOR = at(2026, 3, 10, 14, 30, 15)


# ------------------------------------------------------------------ fixed-length units


def test_hour_period_containing_an_instant_inside_the_first_hour() -> None:
    period = period_containing(ANCHOR, ResetPeriod.HOUR, ANCHOR + timedelta(minutes=59))
    assert period == Period(ANCHOR, ANCHOR + timedelta(hours=1))


def test_hour_periods_keep_the_anchor_minute_and_second() -> None:
    period = period_containing(ANCHOR, ResetPeriod.HOUR, at(2026, 3, 11, 9, 0, 0))
    assert period == Period(at(2026, 3, 11, 8, 30, 15), at(2026, 3, 11, 9, 30, 15))


def test_day_periods_start_at_the_anchor_time_of_day() -> None:
    period = period_containing(ANCHOR, ResetPeriod.DAY, at(2026, 3, 15, 9, 0))
    assert period == Period(at(2026, 3, 14, 14, 30, 15), at(2026, 3, 15, 14, 30, 15))


def test_week_periods_start_on_the_anchor_weekday() -> None:
    period = period_containing(ANCHOR, ResetPeriod.WEEK, at(2026, 3, 30))
    assert period == Period(at(2026, 3, 24, 14, 30, 15), at(2026, 3, 31, 14, 30, 15))
    assert period.start.weekday() == ANCHOR.weekday()


@pytest.mark.parametrize(
    ("unit", "length"),
    [
        (ResetPeriod.HOUR, timedelta(hours=1)),
        (ResetPeriod.DAY, timedelta(days=1)),
        (ResetPeriod.WEEK, timedelta(weeks=1)),
    ],
)
def test_fixed_unit_period_has_its_exact_length(unit: ResetPeriod, length: timedelta) -> None:
    period = period_containing(ANCHOR, unit, ANCHOR + 5 * length + timedelta(seconds=1))
    assert period.start == ANCHOR + 5 * length
    assert period.end is not None
    assert period.end - period.start == length


@pytest.mark.parametrize(
    ("unit", "length"),
    [
        (ResetPeriod.HOUR, timedelta(hours=1)),
        (ResetPeriod.DAY, timedelta(days=1)),
        (ResetPeriod.WEEK, timedelta(weeks=1)),
    ],
)
def test_fixed_unit_instant_on_a_boundary_starts_the_next_period(
    unit: ResetPeriod, length: timedelta
) -> None:
    boundary = ANCHOR + 3 * length
    assert period_containing(ANCHOR, unit, boundary) == Period(boundary, boundary + length)
    just_before = boundary - timedelta(microseconds=1)
    assert period_containing(ANCHOR, unit, just_before) == Period(boundary - length, boundary)


@pytest.mark.parametrize(
    ("unit", "length"),
    [
        (ResetPeriod.HOUR, timedelta(hours=1)),
        (ResetPeriod.DAY, timedelta(days=1)),
        (ResetPeriod.WEEK, timedelta(weeks=1)),
    ],
)
def test_fixed_unit_instant_before_the_anchor_falls_in_a_negative_period(
    unit: ResetPeriod, length: timedelta
) -> None:
    instant = ANCHOR - timedelta(microseconds=1)
    assert period_index(ANCHOR, unit, instant) == -1
    assert period_containing(ANCHOR, unit, instant) == Period(ANCHOR - length, ANCHOR)
    far_before = ANCHOR - 2 * length - timedelta(seconds=1)
    assert period_index(ANCHOR, unit, far_before) == -3


def test_instant_equal_to_the_anchor_is_in_period_zero() -> None:
    for unit in (
        ResetPeriod.HOUR,
        ResetPeriod.DAY,
        ResetPeriod.WEEK,
        ResetPeriod.MONTH,
        ResetPeriod.YEAR,
    ):
        assert period_index(ANCHOR, unit, ANCHOR) == 0
        assert period_containing(ANCHOR, unit, ANCHOR).start == ANCHOR


# ------------------------------------------------------------------ never


def test_never_period_starts_at_the_anchor_and_has_no_end() -> None:
    period = period_containing(ANCHOR, ResetPeriod.NEVER, at(2099, 1, 1))
    assert period == Period(ANCHOR, None)
    assert period.contains(at(2099, 1, 1))
    assert period.contains(ANCHOR)


def test_never_period_does_not_contain_instants_before_the_anchor() -> None:
    period = period_containing(ANCHOR, ResetPeriod.NEVER, ANCHOR)
    assert not period.contains(ANCHOR - timedelta(microseconds=1))


def test_never_has_no_boundaries() -> None:
    with pytest.raises(ValueError, match="never"):
        period_boundary(ANCHOR, ResetPeriod.NEVER, 1)


# ------------------------------------------------------------------ months


def test_month_period_from_a_mid_month_anchor() -> None:
    anchor = at(2026, 11, 24, 10)
    period = period_containing(anchor, ResetPeriod.MONTH, at(2026, 12, 25))
    assert period == Period(at(2026, 12, 24, 10), at(2027, 1, 24, 10))


def test_month_anchor_on_jan_31_clamps_only_in_shorter_months() -> None:
    """Jan 31 -> Feb 28 -> Mar 31 -> Apr 30 -> May 31: clamping never sticks."""
    anchor = at(2026, 1, 31, 12)
    boundaries = [period_boundary(anchor, ResetPeriod.MONTH, k) for k in range(5)]
    assert boundaries == [
        at(2026, 1, 31, 12),
        at(2026, 2, 28, 12),
        at(2026, 3, 31, 12),
        at(2026, 4, 30, 12),
        at(2026, 5, 31, 12),
    ]


def test_month_anchor_on_jan_31_reaches_feb_29_in_a_leap_year() -> None:
    anchor = at(2028, 1, 31)
    assert period_boundary(anchor, ResetPeriod.MONTH, 1) == at(2028, 2, 29)
    assert period_boundary(anchor, ResetPeriod.MONTH, 2) == at(2028, 3, 31)


def test_month_period_in_february_after_a_jan_31_anchor() -> None:
    anchor = at(2026, 1, 31, 12)
    period = period_containing(anchor, ResetPeriod.MONTH, at(2026, 3, 15))
    assert period == Period(at(2026, 2, 28, 12), at(2026, 3, 31, 12))


def test_month_period_in_leap_february_after_a_jan_31_anchor() -> None:
    anchor = at(2028, 1, 31)
    period = period_containing(anchor, ResetPeriod.MONTH, at(2028, 2, 28, 23, 59, 59))
    assert period == Period(at(2028, 1, 31), at(2028, 2, 29))
    assert period_containing(anchor, ResetPeriod.MONTH, at(2028, 2, 29)).start == at(2028, 2, 29)


def test_month_instant_on_a_clamped_boundary_starts_the_next_period() -> None:
    anchor = at(2026, 1, 31, 12)
    boundary = at(2026, 2, 28, 12)
    assert period_containing(anchor, ResetPeriod.MONTH, boundary).start == boundary
    before = boundary - timedelta(microseconds=1)
    assert period_containing(anchor, ResetPeriod.MONTH, before) == Period(anchor, boundary)


def test_month_instant_between_clamped_day_and_anchor_day_in_a_short_month() -> None:
    """Apr 30 13:00 lies after the Apr 30 12:00 boundary of a Jan 31 12:00 anchor."""
    anchor = at(2026, 1, 31, 12)
    period = period_containing(anchor, ResetPeriod.MONTH, at(2026, 4, 30, 13))
    assert period == Period(at(2026, 4, 30, 12), at(2026, 5, 31, 12))


def test_month_anchor_on_the_30th_gives_feb_28_then_mar_30() -> None:
    anchor = at(2025, 12, 30)
    assert [period_boundary(anchor, ResetPeriod.MONTH, k) for k in range(4)] == [
        at(2025, 12, 30),
        at(2026, 1, 30),
        at(2026, 2, 28),
        at(2026, 3, 30),
    ]


def test_month_periods_cross_the_year_end() -> None:
    anchor = at(2026, 12, 31)
    assert period_boundary(anchor, ResetPeriod.MONTH, 1) == at(2027, 1, 31)
    assert period_boundary(anchor, ResetPeriod.MONTH, 2) == at(2027, 2, 28)
    assert period_boundary(anchor, ResetPeriod.MONTH, 14) == at(2028, 2, 29)


def test_month_instant_before_the_anchor() -> None:
    anchor = at(2026, 3, 31, 8)
    instant = at(2026, 3, 15)
    assert period_index(anchor, ResetPeriod.MONTH, instant) == -1
    assert period_containing(anchor, ResetPeriod.MONTH, instant) == Period(
        at(2026, 2, 28, 8), anchor
    )


def test_month_instant_well_before_the_anchor() -> None:
    anchor = at(2026, 3, 31, 8)
    instant = at(2025, 12, 31, 7, 59, 59)
    assert period_index(anchor, ResetPeriod.MONTH, instant) == -4
    assert period_containing(anchor, ResetPeriod.MONTH, instant) == Period(
        at(2025, 11, 30, 8), at(2025, 12, 31, 8)
    )


def test_month_instant_earlier_in_the_day_than_the_anchor_is_still_in_previous_period() -> None:
    anchor = at(2026, 1, 15, 18)
    period = period_containing(anchor, ResetPeriod.MONTH, at(2026, 2, 15, 17, 59, 59))
    assert period == Period(anchor, at(2026, 2, 15, 18))


def test_add_months_clamps_and_moves_backwards() -> None:
    anchor = at(2026, 3, 31, 9, 15)
    assert add_months(anchor, -1) == at(2026, 2, 28, 9, 15)
    assert add_months(anchor, -13) == at(2025, 2, 28, 9, 15)
    assert add_months(anchor, -25) == at(2024, 2, 29, 9, 15)
    assert add_months(anchor, 0) == anchor


# ------------------------------------------------------------------ years


def test_year_anchored_on_feb_29_clamps_to_feb_28_then_returns_in_leap_years() -> None:
    anchor = at(2024, 2, 29, 6)
    boundaries = [period_boundary(anchor, ResetPeriod.YEAR, k) for k in range(5)]
    assert boundaries == [
        at(2024, 2, 29, 6),
        at(2025, 2, 28, 6),
        at(2026, 2, 28, 6),
        at(2027, 2, 28, 6),
        at(2028, 2, 29, 6),
    ]


def test_year_period_containing_an_instant_after_a_feb_29_anchor() -> None:
    anchor = at(2024, 2, 29, 6)
    assert period_containing(anchor, ResetPeriod.YEAR, at(2025, 2, 28, 5, 59, 59)) == Period(
        anchor, at(2025, 2, 28, 6)
    )
    assert period_containing(anchor, ResetPeriod.YEAR, at(2025, 2, 28, 6)) == Period(
        at(2025, 2, 28, 6), at(2026, 2, 28, 6)
    )
    assert period_containing(anchor, ResetPeriod.YEAR, at(2028, 3, 1)) == Period(
        at(2028, 2, 29, 6), at(2029, 2, 28, 6)
    )


def test_year_instant_before_the_anchor() -> None:
    anchor = at(2024, 2, 29, 6)
    period = period_containing(anchor, ResetPeriod.YEAR, at(2023, 6, 1))
    assert period == Period(at(2023, 2, 28, 6), anchor)
    assert period_index(anchor, ResetPeriod.YEAR, at(2023, 6, 1)) == -1


def test_year_instant_late_in_the_calendar_year_before_the_anniversary() -> None:
    """Nov 2026 with a Dec 2025 anchor is still in year period 0."""
    anchor = at(2025, 12, 15)
    assert period_index(anchor, ResetPeriod.YEAR, at(2026, 11, 30)) == 0
    assert period_index(anchor, ResetPeriod.YEAR, at(2026, 12, 15)) == 1


# ------------------------------------------------------------------ Period.contains


def test_period_is_half_open() -> None:
    period = Period(at(2026, 1, 1), at(2026, 2, 1))
    assert period.contains(at(2026, 1, 1))
    assert period.contains(at(2026, 2, 1) - timedelta(microseconds=1))
    assert not period.contains(at(2026, 2, 1))
    assert not period.contains(at(2025, 12, 31, 23, 59, 59))
