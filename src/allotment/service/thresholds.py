"""Threshold events, computed on the write path from the figures it already has.

Usage reaching 80 % and 100 % of a finite limit is sent once per period (for the customer's
limit and for each budget), even when usage falls back and rises again: the first event of a
(limit, threshold, period) notes a mark, and only a move that notes it sends one. Credits
falling below the currency's ``low_balance_threshold`` or to zero are sent on the move that
crosses, so they come again only after the figure rose back above.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from allotment.domain.events import EventType, crossed, depleted, fell_below
from allotment.domain.periods import Period
from allotment.domain.quantities import Micros, to_json_number
from allotment.domain.timefmt import format_instant, to_epoch_micros
from allotment.service.answers import BudgetFigures
from allotment.service.events import emit
from allotment.service.ports import UnitOfWork


def usage_reached(
    uow: UnitOfWork,
    customer: str,
    feature: str,
    entity: str | None,
    limit: Micros | None,
    before: Micros,
    after: Micros,
    window: Period,
    now: datetime,
) -> None:
    """Usage of a limit moved from ``before`` to ``after`` in ``window``; ``entity`` names a
    budget's entity, None the customer's own limit."""
    if limit is None:
        return
    for threshold in crossed(before, after, limit):
        # The window and the limit both: a move to a plan with another period or limit
        # starts a series of its own.
        mark = (
            f"usage:{customer}:{feature}:{entity or ''}:{threshold}:{limit}:"
            f"{_start(window)}:{'' if window.end is None else to_epoch_micros(window.end)}"
        )
        if not uow.events.mark_once(mark, FOREVER if window.end is None else window.end):
            continue
        emit(
            uow,
            EventType.USAGE_THRESHOLD_REACHED,
            customer,
            {
                "feature": feature,
                "entity": entity,
                "threshold": threshold,
                "usage": to_json_number(after),
                "usage_limit": to_json_number(limit),
                "usage_period_end": None if window.end is None else format_instant(window.end),
            },
            now,
        )


def budgets_reached(
    uow: UnitOfWork,
    customer: str,
    before: Sequence[BudgetFigures],
    after: Sequence[BudgetFigures],
    now: datetime,
) -> None:
    """The budgets along a path, before and after one consumption (``after_consuming``)."""
    for old, new in zip(before, after, strict=True):
        if new.standing.usage > old.standing.usage:
            budget = new.standing.budget
            usage_reached(
                uow,
                customer,
                budget.target,
                budget.entity,
                budget.limit,
                old.standing.usage,
                new.standing.usage,
                new.standing.window,
                now,
            )


def credits_moved(
    uow: UnitOfWork,
    customer: str,
    currency: str,
    low_balance_threshold: Micros | None,
    before: Micros,
    after: Micros,
    balance: Micros,
    now: datetime,
) -> None:
    """A pool's available credits moved from ``before`` to ``after``."""
    data = {
        "currency": currency,
        "balance": to_json_number(balance),
        "available": to_json_number(after),
    }
    if low_balance_threshold is not None and fell_below(before, after, low_balance_threshold):
        low = {**data, "low_balance_threshold": to_json_number(low_balance_threshold)}
        emit(uow, EventType.CREDITS_LOW, customer, low, now)
    if depleted(before, after):
        emit(uow, EventType.CREDITS_DEPLETED, customer, data, now)


FOREVER = datetime(9999, 12, 31, tzinfo=UTC)
"""How long the mark of a limit that never resets is kept."""


def _start(window: Period) -> int:
    return to_epoch_micros(window.start)
