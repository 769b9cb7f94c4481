"""The access decision for a resolved spec, and what is left of its limit."""

from __future__ import annotations

import pytest

from allotment.domain.catalog import BooleanSpec, Enforcement, MeteredSpec, NumericSpec
from allotment.domain.decision import decide, remaining
from allotment.domain.periods import ResetPeriod
from allotment.domain.resolution import DenialReason

UNIT = 1_000_000
EXCEEDED = DenialReason.USAGE_LIMIT_EXCEEDED

HARD_100 = MeteredSpec(limit=100 * UNIT, reset=ResetPeriod.MONTH, enforcement=Enforcement.HARD)
SOFT_100 = MeteredSpec(limit=100 * UNIT, reset=ResetPeriod.MONTH, enforcement=Enforcement.SOFT)
UNLIMITED = MeteredSpec(limit=None)


# ------------------------------------------------------------------ hard metered limits


@pytest.mark.parametrize(
    ("used", "reserved", "requested", "denial"),
    [
        (60, 30, 10, None),  # 60 + 30 + 10 == 100: exactly at the limit grants
        (60, 30, 11, EXCEEDED),
        (100, 0, 0, None),  # a request of nothing fits even when full
        (0, 0, 100, None),
        (0, 0, 101, EXCEEDED),
        (0, 100, 1, EXCEEDED),  # reservations count like usage
        (120, 0, 1, EXCEEDED),  # already past the limit
    ],
)
def test_hard_limit_with_a_request_grants_while_used_reserved_and_request_fit(
    used: int, reserved: int, requested: int, denial: DenialReason | None
) -> None:
    assert decide(HARD_100, used * UNIT, reserved * UNIT, requested * UNIT) is denial


def test_hard_limit_boundary_is_exact_to_the_micro_unit() -> None:
    limit = HARD_100.limit
    assert limit is not None
    assert decide(HARD_100, limit - 1, 0, 1) is None
    assert decide(HARD_100, limit - 1, 0, 2) is EXCEEDED
    assert decide(HARD_100, 0, limit - 1, 1) is None
    assert decide(HARD_100, 1, limit - 1, 1) is EXCEEDED


@pytest.mark.parametrize(
    ("used", "reserved", "denial"),
    [
        (0, 0, None),
        (99, 0, None),
        (50, 49, None),
        (100, 0, EXCEEDED),  # nothing left
        (60, 40, EXCEEDED),
        (150, 0, EXCEEDED),
    ],
)
def test_hard_limit_without_a_request_grants_while_something_is_left(
    used: int, reserved: int, denial: DenialReason | None
) -> None:
    assert decide(HARD_100, used * UNIT, reserved * UNIT, None) is denial


def test_hard_limit_without_a_request_grants_with_one_micro_unit_left() -> None:
    assert decide(HARD_100, 100 * UNIT - 1, 0, None) is None


def test_zero_hard_limit_denies_any_use() -> None:
    zero = MeteredSpec(limit=0)
    assert decide(zero, 0, 0, None) is EXCEEDED
    assert decide(zero, 0, 0, 1) is EXCEEDED
    assert decide(zero, 0, 0, 0) is None


# ------------------------------------------------------------------ soft and unlimited


@pytest.mark.parametrize("requested", [None, 0, 1, 10**6 * UNIT])
def test_soft_limit_always_grants(requested: int | None) -> None:
    assert decide(SOFT_100, 500 * UNIT, 500 * UNIT, requested) is None


@pytest.mark.parametrize("enforcement", [Enforcement.HARD, Enforcement.SOFT])
@pytest.mark.parametrize("requested", [None, 1, 10**11 * UNIT])
def test_unlimited_metered_always_grants(enforcement: Enforcement, requested: int | None) -> None:
    spec = MeteredSpec(limit=None, enforcement=enforcement)
    assert decide(spec, 10**11 * UNIT, 10**11 * UNIT, requested) is None


# ------------------------------------------------------------------ numeric and boolean


@pytest.mark.parametrize(
    ("value", "requested", "denial"),
    [
        (10, 10, None),  # n <= value grants
        (10, 11, EXCEEDED),
        (10, 0, None),
        (10, None, None),  # without a request a numeric feature grants
        (None, 10**9, None),  # unlimited
    ],
)
def test_numeric_grants_a_request_up_to_its_value(
    value: int | None, requested: int | None, denial: DenialReason | None
) -> None:
    spec = NumericSpec(None if value is None else value * UNIT)
    scaled = None if requested is None else requested * UNIT
    assert decide(spec, 0, 0, scaled) is denial


def test_numeric_decision_ignores_usage() -> None:
    """A numeric value is a ceiling on the request, not a quota that usage consumes."""
    assert decide(NumericSpec(10 * UNIT), 10**6 * UNIT, 10**6 * UNIT, 10 * UNIT) is None


@pytest.mark.parametrize("requested", [None, 0, 10**9 * UNIT])
def test_boolean_always_grants(requested: int | None) -> None:
    assert decide(BooleanSpec(), 10**9 * UNIT, 0, requested) is None


# ------------------------------------------------------------------ remaining


@pytest.mark.parametrize(
    ("used", "reserved", "left"),
    [(0, 0, 100), (60, 30, 10), (60, 40, 0), (150, 0, 0), (90, 90, 0), (0, 101, 0)],
)
def test_remaining_is_what_is_left_and_never_negative(used: int, reserved: int, left: int) -> None:
    assert remaining(100 * UNIT, used * UNIT, reserved * UNIT) == left * UNIT


def test_remaining_counts_micro_units() -> None:
    assert remaining(100 * UNIT, 100 * UNIT - 1, 0) == 1


def test_remaining_is_none_when_unlimited() -> None:
    assert remaining(None, 0, 0) is None
    assert remaining(None, 10**9 * UNIT, 10**9 * UNIT) is None
