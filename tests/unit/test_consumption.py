"""The one decision on consuming: the customer's limit, then budgets on the path, then credits."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from allotment.domain.budgets import Budget, BudgetKind, Standing
from allotment.domain.catalog import Enforcement, MeteredSpec
from allotment.domain.decision import PoolStanding, decide_consumption
from allotment.domain.periods import Period, ResetPeriod
from allotment.domain.resolution import DenialReason

UNIT = 1_000_000
START = datetime(2026, 12, 1, tzinfo=UTC)
HARD_10 = MeteredSpec(limit=10 * UNIT, reset=ResetPeriod.MONTH, enforcement=Enforcement.HARD)


def _standing(kind: BudgetKind, limit: int, usage: int, soft: bool = False) -> Standing:
    enforcement = Enforcement.SOFT if soft else Enforcement.HARD
    budget = Budget(
        "team", "calls" if kind is BudgetKind.FEATURE else "credits", kind, limit * UNIT,
        ResetPeriod.DAY, enforcement, START,
    )  # fmt: skip
    return Standing(budget, Period(START, None), usage * UNIT, 0)


FULL_UNITS = _standing(BudgetKind.FEATURE, 5, 5)
FULL_CREDITS = _standing(BudgetKind.CURRENCY, 5, 5)
EMPTY_POOL = PoolStanding(available=0, overdraft_limit=0)


@pytest.mark.parametrize(
    ("used", "budgets", "pool", "reason"),
    [
        (10, [FULL_UNITS], EMPTY_POOL, DenialReason.USAGE_LIMIT_EXCEEDED),  # the limit first
        (0, [FULL_UNITS], EMPTY_POOL, DenialReason.BUDGET_EXCEEDED),  # then budgets
        (0, [FULL_CREDITS], EMPTY_POOL, DenialReason.BUDGET_EXCEEDED),  # in credits too
        (0, [], EMPTY_POOL, DenialReason.INSUFFICIENT_CREDITS),  # then the pool
        (0, [_standing(BudgetKind.FEATURE, 5, 5, soft=True)], None, None),  # soft never denies
        (0, [], PoolStanding(1 * UNIT, 0), None),
        (0, [], PoolStanding(0, None), None),  # a pool without an overdraft bound
    ],
)
def test_a_request_is_refused_by_the_first_that_cannot_take_it(
    used: int, budgets: list[Standing], pool: PoolStanding | None, reason: DenialReason | None
) -> None:
    decided = decide_consumption(
        units=1 * UNIT, credits=1 * UNIT, limit=HARD_10, used=used * UNIT, budgets=budgets,
        pool=pool,
    )  # fmt: skip
    assert decided is reason


def test_a_check_without_a_request_passes_while_something_is_left() -> None:
    assert decide_consumption(units=None, credits=None, limit=HARD_10, used=9 * UNIT) is None
    assert (
        decide_consumption(units=None, credits=None, limit=HARD_10, used=10 * UNIT)
        is DenialReason.USAGE_LIMIT_EXCEEDED
    )
    assert decide_consumption(units=None, credits=None, pool=PoolStanding(1, 0)) is None
    assert (
        decide_consumption(units=None, credits=None, pool=EMPTY_POOL)
        is DenialReason.INSUFFICIENT_CREDITS
    )


def test_a_debit_has_no_feature_limit_and_may_use_the_overdraft() -> None:
    overdraft = PoolStanding(available=2 * UNIT, overdraft_limit=3 * UNIT)
    assert decide_consumption(units=None, credits=5 * UNIT, pool=overdraft) is None
    assert (
        decide_consumption(units=None, credits=5 * UNIT + 1, pool=overdraft)
        is DenialReason.INSUFFICIENT_CREDITS
    )
    assert (
        decide_consumption(units=None, credits=1, budgets=[FULL_CREDITS], pool=overdraft)
        is DenialReason.BUDGET_EXCEEDED
    )
