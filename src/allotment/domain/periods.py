"""Reset periods anchored at an arbitrary instant.

A period of unit ``u`` anchored at ``a`` is ``[a + k·u, a + (k+1)·u)`` for the whole number ``k``
that puts ``now`` inside it. Months and years are counted on the calendar from the anchor itself,
never from the previous boundary, so a day of month that does not exist is clamped only in the
month that lacks it: an anchor on Jan 31 gives Feb 28 (or 29), then Mar 31, Apr 30, May 31.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum


class ResetPeriod(StrEnum):
    """How often a limit or budget starts again from zero, anchored at its source's start."""

    HOUR = "hour"
    DAY = "day"
    WEEK = "week"
    MONTH = "month"
    YEAR = "year"
    NEVER = "never"


_FIXED_LENGTHS = {
    ResetPeriod.HOUR: timedelta(hours=1),
    ResetPeriod.DAY: timedelta(days=1),
    ResetPeriod.WEEK: timedelta(weeks=1),
}
_MONTHS_PER_STEP = {ResetPeriod.MONTH: 1, ResetPeriod.YEAR: 12}


@dataclass(frozen=True, slots=True)
class Period:
    """A half-open interval ``[start, end)``; ``end`` is None for a period that never resets."""

    start: datetime
    end: datetime | None

    def contains(self, instant: datetime) -> bool:
        return self.start <= instant and (self.end is None or instant < self.end)


def add_months(anchor: datetime, months: int) -> datetime:
    """``anchor`` moved by whole calendar months, its day clamped to the target month's length."""
    month_index = anchor.month - 1 + months
    year = anchor.year + month_index // 12
    month = month_index % 12 + 1
    day = min(anchor.day, calendar.monthrange(year, month)[1])
    return anchor.replace(year=year, month=month, day=day)


def period_boundary(anchor: datetime, unit: ResetPeriod, index: int) -> datetime:
    """The start of period number ``index`` (0 starts at ``anchor``; negative ones precede it)."""
    if unit in _FIXED_LENGTHS:
        return anchor + _FIXED_LENGTHS[unit] * index
    if unit in _MONTHS_PER_STEP:
        return add_months(anchor, _MONTHS_PER_STEP[unit] * index)
    raise ValueError(f"a period of {unit} has no boundaries")


def period_index(anchor: datetime, unit: ResetPeriod, instant: datetime) -> int:
    """The number of the period of ``unit`` anchored at ``anchor`` that contains ``instant``."""
    if unit in _FIXED_LENGTHS:
        return (instant - anchor) // _FIXED_LENGTHS[unit]
    step = _MONTHS_PER_STEP[unit]
    months = (instant.year - anchor.year) * 12 + instant.month - anchor.month
    index = months // step
    # The calendar estimate is off by at most one: correct it against the real boundaries.
    while period_boundary(anchor, unit, index) > instant:
        index -= 1
    while period_boundary(anchor, unit, index + 1) <= instant:
        index += 1
    return index


def period_containing(anchor: datetime, unit: ResetPeriod, instant: datetime) -> Period:
    """The period of ``unit`` anchored at ``anchor`` that contains ``instant``."""
    if unit is ResetPeriod.NEVER:
        return Period(start=anchor, end=None)
    index = period_index(anchor, unit, instant)
    return Period(
        start=period_boundary(anchor, unit, index),
        end=period_boundary(anchor, unit, index + 1),
    )
