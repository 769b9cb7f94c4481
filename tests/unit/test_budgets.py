"""The pure budgets core: windows anchored at creation, the hard/soft decision of one budget,
which budgets apply and in what order, what live holds keep back,
the nearest exceeded budget, and the roll-up of consumption along entity paths.

Amounts are micro-units (1 unit = 1_000_000); every expected figure is written out by hand.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from allotment.domain.budgets import (
    NO_PATH,
    Budget,
    BudgetKind,
    Standing,
    budgets_on_path,
    first_exceeded,
    held_for,
    roll_up,
)
from allotment.domain.catalog import Enforcement
from allotment.domain.periods import Period, ResetPeriod
from allotment.domain.reservations import Reservation, ReservationStatus

UNIT = 1_000_000
T0 = datetime(2026, 11, 24, 10, 30, tzinfo=UTC)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
MICRO = timedelta(microseconds=1)

HARD = Enforcement.HARD
SOFT = Enforcement.SOFT
FEATURE = BudgetKind.FEATURE
CURRENCY = BudgetKind.CURRENCY


def budget(
    entity: str = "team",
    target: str = "calls",
    kind: BudgetKind = FEATURE,
    limit: int = 100 * UNIT,
    reset: ResetPeriod = ResetPeriod.DAY,
    enforcement: Enforcement = HARD,
    created_at: datetime = T0,
) -> Budget:
    return Budget(entity, target, kind, limit, reset, enforcement, created_at)


def standing(b: Budget, usage: int = 0, reserved: int = 0, now: datetime = T0) -> Standing:
    return Standing(b, b.window(now), usage, reserved)


def hold(
    hold_id: str = "res_1",
    *,
    feature: str = "calls",
    path: tuple[str, ...] = ("agent", "team", "dept"),
    amount: int = 10 * UNIT,
    currency: str | None = None,
    credits: int = 0,
    created_at: datetime = T0,
    expires_at: datetime = T0 + HOUR,
    ended_as: ReservationStatus | None = None,
) -> Reservation:
    return Reservation(
        id=hold_id,
        customer="acme",
        feature=feature,
        entity=path[0] if path else None,
        amount=amount,
        currency=currency,
        credits=credits,
        created_at=created_at,
        expires_at=expires_at,
        ended_at=None if ended_as is None else T0,
        ended_as=ended_as,
        committed_amount=None,
        entity_path=path,
    )


# ------------------------------------------------------------------ Budget.window


@pytest.mark.parametrize(
    ("reset", "now", "start", "end"),
    [
        # Anchored at 10:30 on the 24th, not at midnight or the top of the hour.
        (ResetPeriod.HOUR, T0, T0, T0 + HOUR),
        (ResetPeriod.HOUR, T0 + HOUR - MICRO, T0, T0 + HOUR),
        (ResetPeriod.HOUR, T0 + HOUR, T0 + HOUR, T0 + 2 * HOUR),
        (ResetPeriod.DAY, T0 + 5 * HOUR, T0, T0 + DAY),
        (ResetPeriod.DAY, T0 + DAY, T0 + DAY, T0 + 2 * DAY),
        (ResetPeriod.DAY, T0 + 3 * DAY + 23 * HOUR, T0 + 3 * DAY, T0 + 4 * DAY),
        (ResetPeriod.WEEK, T0 + 8 * DAY, T0 + 7 * DAY, T0 + 14 * DAY),
        (
            ResetPeriod.MONTH,
            T0 + 40 * DAY,
            datetime(2026, 12, 24, 10, 30, tzinfo=UTC),
            datetime(2027, 1, 24, 10, 30, tzinfo=UTC),
        ),
        (
            ResetPeriod.YEAR,
            T0 + 400 * DAY,
            datetime(2027, 11, 24, 10, 30, tzinfo=UTC),
            datetime(2028, 11, 24, 10, 30, tzinfo=UTC),
        ),
    ],
)
def test_windows_are_anchored_at_the_budgets_creation(
    reset: ResetPeriod, now: datetime, start: datetime, end: datetime
) -> None:
    assert budget(reset=reset).window(now) == Period(start, end)


def test_a_window_never_resets_for_reset_never() -> None:
    never = budget(reset=ResetPeriod.NEVER)
    assert never.window(T0) == Period(T0, None)
    assert never.window(T0 + 1000 * DAY) == Period(T0, None)


def test_monthly_windows_clamp_only_the_month_that_lacks_the_day() -> None:
    jan31 = budget(reset=ResetPeriod.MONTH, created_at=datetime(2027, 1, 31, tzinfo=UTC))
    feb = jan31.window(datetime(2027, 2, 15, tzinfo=UTC))
    assert feb == Period(datetime(2027, 1, 31, tzinfo=UTC), datetime(2027, 2, 28, tzinfo=UTC))
    march = jan31.window(datetime(2027, 3, 1, tzinfo=UTC))
    assert march == Period(datetime(2027, 2, 28, tzinfo=UTC), datetime(2027, 3, 31, tzinfo=UTC))


def test_two_budgets_created_at_different_instants_have_different_windows() -> None:
    morning = budget(created_at=T0)
    evening = budget(created_at=T0 + 9 * HOUR)
    now = T0 + DAY + 2 * HOUR
    assert morning.window(now) == Period(T0 + DAY, T0 + 2 * DAY)
    assert evening.window(now) == Period(T0 + 9 * HOUR, T0 + DAY + 9 * HOUR)


# ------------------------------------------------------------------ Standing.exceeded_by


@pytest.mark.parametrize(
    ("usage", "reserved", "requested", "exceeded"),
    [
        (60, 30, 10, False),  # 60 + 30 + 10 == 100: exactly at the limit grants
        (60, 30, 11, True),
        (0, 0, 100, False),
        (0, 0, 101, True),
        (0, 100, 1, True),  # what is held counts like usage
        (100, 0, 0, False),  # a request of nothing fits even when full
        (120, 0, 0, True),  # ... but not when already past the limit
        (150, 0, 1, True),
    ],
)
def test_a_hard_budget_grants_a_request_while_usage_reserved_and_request_fit(
    usage: int, reserved: int, requested: int, exceeded: bool
) -> None:
    s = standing(budget(), usage * UNIT, reserved * UNIT)
    assert s.exceeded_by(requested * UNIT) is exceeded


@pytest.mark.parametrize(
    ("usage", "reserved", "exceeded"),
    [
        (0, 0, False),
        (99, 0, False),
        (50, 49, False),
        (100, 0, True),  # nothing left
        (60, 40, True),
        (150, 0, True),
    ],
)
def test_a_hard_budget_without_a_request_grants_while_something_is_left(
    usage: int, reserved: int, exceeded: bool
) -> None:
    assert standing(budget(), usage * UNIT, reserved * UNIT).exceeded_by(None) is exceeded


def test_the_hard_boundary_is_exact_to_the_micro_unit() -> None:
    limit = 100 * UNIT
    b = budget(limit=limit)
    assert standing(b, limit - 1).exceeded_by(1) is False
    assert standing(b, limit - 1).exceeded_by(2) is True
    assert standing(b, 0, limit - 1).exceeded_by(1) is False
    assert standing(b, 1, limit - 1).exceeded_by(1) is True
    assert standing(b, limit - 1).exceeded_by(None) is False
    assert standing(b, limit).exceeded_by(None) is True


def test_a_zero_hard_budget_denies_any_use_but_grants_nothing_requested() -> None:
    zero = budget(limit=0)
    assert standing(zero).exceeded_by(None) is True
    assert standing(zero).exceeded_by(1) is True
    assert standing(zero).exceeded_by(0) is False


@pytest.mark.parametrize(
    ("usage", "reserved", "requested"),
    [(0, 0, 101), (100, 0, None), (500, 500, 1), (0, 0, 10**6), (100, 0, 1)],
)
def test_a_soft_budget_is_never_exceeded(usage: int, reserved: int, requested: int | None) -> None:
    soft = budget(enforcement=SOFT)
    s = standing(soft, usage * UNIT, reserved * UNIT)
    assert s.exceeded_by(None if requested is None else requested * UNIT) is False


def test_the_window_of_a_standing_does_not_enter_the_decision() -> None:
    """exceeded_by compares the figures it holds; which window they came from is the caller's."""
    b = budget()
    late = Standing(b, b.window(T0 + 5 * DAY), 100 * UNIT, 0)
    assert late.exceeded_by(1) is True
    assert late.exceeded_by(0) is False


# ------------------------------------------------------------------ budgets_on_path

AGENT_PATH = ("agent", "team", "dept")


def test_budgets_apply_nearest_entity_first_and_feature_before_currency() -> None:
    dept_cr = budget("dept", "cr", CURRENCY)
    dept_calls = budget("dept", "calls")
    team_cr = budget("team", "cr", CURRENCY)
    agent_calls = budget("agent", "calls")
    # Stored in the opposite order on purpose: currency before feature, ancestors first.
    stored = {"dept": [dept_cr, dept_calls], "team": [team_cr], "agent": [agent_calls]}
    found = budgets_on_path(stored, AGENT_PATH, "calls", "cr")
    assert found == [agent_calls, team_cr, dept_calls, dept_cr]


def test_only_budgets_on_the_feature_or_the_currency_of_the_request_apply() -> None:
    calls = budget("team", "calls")
    tokens = budget("team", "tokens")
    cr = budget("team", "cr", CURRENCY)
    gems = budget("team", "gems", CURRENCY)
    stored = {"team": [calls, tokens, cr, gems]}
    assert budgets_on_path(stored, AGENT_PATH, "calls", "cr") == [calls, cr]
    assert budgets_on_path(stored, AGENT_PATH, "tokens", None) == [tokens]
    assert budgets_on_path(stored, AGENT_PATH, None, "gems") == [gems]
    assert budgets_on_path(stored, AGENT_PATH, None, None) == []
    assert budgets_on_path(stored, AGENT_PATH, "other", "other") == []


def test_a_target_matches_only_through_its_own_kind() -> None:
    """A feature budget named like the request's currency (or the reverse) does not apply."""
    feature_named_cr = budget("team", "cr", FEATURE)
    currency_named_calls = budget("team", "calls", CURRENCY)
    stored = {"team": [feature_named_cr, currency_named_calls]}
    assert budgets_on_path(stored, AGENT_PATH, "calls", "cr") == []
    assert budgets_on_path(stored, AGENT_PATH, "cr", "calls") == [
        feature_named_cr,
        currency_named_calls,
    ]


def test_budgets_off_the_path_do_not_apply() -> None:
    ops = budget("ops", "calls")
    bot = budget("bot", "calls")
    team = budget("team", "calls")
    stored = {"ops": [ops], "bot": [bot], "team": [team]}
    assert budgets_on_path(stored, AGENT_PATH, "calls", None) == [team]
    # Descendants of the entity are not on its path either.
    agent = budget("agent", "calls")
    assert budgets_on_path({"agent": [agent]}, ("team", "dept"), "calls", None) == []
    assert budgets_on_path(stored, NO_PATH, "calls", None) == []


def test_budgets_of_the_same_kind_keep_the_path_order() -> None:
    dept = budget("dept", "calls")
    agent = budget("agent", "calls")
    team = budget("team", "calls")
    stored = {"dept": [dept], "agent": [agent], "team": [team]}
    assert budgets_on_path(stored, AGENT_PATH, "calls", None) == [agent, team, dept]
    assert budgets_on_path(stored, ("team", "dept"), "calls", None) == [team, dept]


# ------------------------------------------------------------------ held_for


def test_live_holds_of_the_entity_and_its_subtree_count_against_its_budget() -> None:
    holds = [
        hold("r1", path=("agent", "team", "dept"), amount=10 * UNIT),
        hold("r2", path=("team", "dept"), amount=5 * UNIT),
        hold("r3", path=("dept",), amount=2 * UNIT),
        hold("r4", path=("bot", "ops"), amount=100 * UNIT),  # another branch
        hold("r5", path=(), amount=100 * UNIT),  # made without an entity
    ]
    assert held_for(budget("agent"), holds, T0) == 10 * UNIT
    assert held_for(budget("team"), holds, T0) == 15 * UNIT
    assert held_for(budget("dept"), holds, T0) == 17 * UNIT
    assert held_for(budget("ops"), holds, T0) == 100 * UNIT
    assert held_for(budget("nobody"), holds, T0) == 0


def test_only_holds_that_are_still_live_count() -> None:
    holds = [
        hold("live", amount=1 * UNIT, expires_at=T0 + MICRO),
        hold("expiring", amount=2 * UNIT, expires_at=T0),  # expires_at <= now: expired
        hold("expired", amount=4 * UNIT, expires_at=T0 - HOUR),
        hold("committed", amount=8 * UNIT, ended_as=ReservationStatus.COMMITTED),
        hold("released", amount=16 * UNIT, ended_as=ReservationStatus.RELEASED),
    ]
    assert held_for(budget("team"), holds, T0) == 1 * UNIT
    assert held_for(budget("team"), holds, T0 - 2 * HOUR) == 1 * UNIT + 2 * UNIT + 4 * UNIT


def test_a_feature_budget_counts_the_units_held_on_its_feature() -> None:
    holds = [
        hold("r1", feature="calls", amount=3 * UNIT, currency="cr", credits=30 * UNIT),
        hold("r2", feature="tokens", amount=7 * UNIT, currency="cr", credits=70 * UNIT),
    ]
    assert held_for(budget("team", "calls"), holds, T0) == 3 * UNIT
    assert held_for(budget("team", "tokens"), holds, T0) == 7 * UNIT
    assert held_for(budget("team", "other"), holds, T0) == 0


def test_a_currency_budget_counts_the_credits_held_in_its_currency() -> None:
    holds = [
        hold("r1", feature="calls", amount=3 * UNIT, currency="cr", credits=30 * UNIT),
        hold("r2", feature="tokens", amount=7 * UNIT, currency="cr", credits=70 * UNIT),
        hold("r3", feature="calls", amount=1 * UNIT, currency="gems", credits=5 * UNIT),
        hold("r4", feature="free", amount=9 * UNIT),  # not credit-priced: no currency
    ]
    assert held_for(budget("team", "cr", CURRENCY), holds, T0) == 100 * UNIT
    assert held_for(budget("team", "gems", CURRENCY), holds, T0) == 5 * UNIT
    # A currency budget never counts units, and a feature budget never counts credits.
    assert held_for(budget("team", "calls", CURRENCY), holds, T0) == 0
    assert held_for(budget("team", "cr", FEATURE), holds, T0) == 0


def test_holds_are_matched_by_whole_ids_on_the_path() -> None:
    holds = [hold("r1", path=("team-2", "dept-2"), amount=4 * UNIT)]
    assert held_for(budget("team"), holds, T0) == 0
    assert held_for(budget("dept"), holds, T0) == 0
    assert held_for(budget("team-2"), holds, T0) == 4 * UNIT


def test_nothing_held_when_there_are_no_holds() -> None:
    assert held_for(budget(), [], T0) == 0
    assert held_for(budget(), iter(()), T0) == 0


# ------------------------------------------------------------------ first_exceeded


def test_nothing_is_exceeded_without_budgets() -> None:
    assert first_exceeded([], 10**9, 10**9) is None
    assert first_exceeded([], None, None) is None


def test_the_nearest_exceeded_budget_is_named() -> None:
    agent = standing(budget("agent", limit=100 * UNIT), 10 * UNIT)
    team = standing(budget("team", limit=50 * UNIT), 45 * UNIT)
    dept = standing(budget("dept", limit=10 * UNIT), 10 * UNIT)
    assert first_exceeded([agent, team, dept], 6 * UNIT, None) is team
    assert first_exceeded([agent, team, dept], 5 * UNIT, None) is dept
    assert first_exceeded([agent, dept, team], 6 * UNIT, None) is dept  # the order given
    assert first_exceeded([agent], 90 * UNIT, None) is None
    assert first_exceeded([agent], 91 * UNIT, None) is agent


def test_soft_budgets_are_passed_over() -> None:
    soft = standing(budget("agent", limit=0, enforcement=SOFT), 999 * UNIT)
    hard = standing(budget("team", limit=10 * UNIT), 10 * UNIT)
    assert first_exceeded([soft], 1 * UNIT, 1 * UNIT) is None
    assert first_exceeded([soft, hard], 1 * UNIT, None) is hard


def test_feature_budgets_are_decided_on_units_and_currency_budgets_on_credits() -> None:
    units = standing(budget("team", "calls", FEATURE, limit=10 * UNIT))
    credits = standing(budget("team", "cr", CURRENCY, limit=100 * UNIT))
    both = [units, credits]
    # 10 units cost 100 credits: both exactly at their limit.
    assert first_exceeded(both, 10 * UNIT, 100 * UNIT) is None
    # One unit too many trips the feature budget, whatever the credits.
    assert first_exceeded(both, 10 * UNIT + 1, 0) is units
    # One credit too many trips the currency budget, although the units fit.
    assert first_exceeded(both, 1 * UNIT, 100 * UNIT + 1) is credits
    # Were the figures swapped, the feature budget would see 100 units and trip first.
    assert first_exceeded(both, 100 * UNIT, 10 * UNIT) is units


def test_none_means_a_check_without_a_request_for_that_kind() -> None:
    full_units = standing(budget("team", "calls", FEATURE, limit=10 * UNIT), 10 * UNIT)
    room_units = standing(budget("team", "calls", FEATURE, limit=10 * UNIT), 9 * UNIT)
    full_credits = standing(budget("team", "cr", CURRENCY, limit=5 * UNIT), 3 * UNIT, 2 * UNIT)
    room_credits = standing(budget("team", "cr", CURRENCY, limit=5 * UNIT), 4 * UNIT)
    assert first_exceeded([full_units], None, 0) is full_units
    assert first_exceeded([room_units], None, 0) is None
    assert first_exceeded([full_credits], 0, None) is full_credits
    assert first_exceeded([room_credits], 0, None) is None
    # None for one kind does not leak to the other: the currency budget still sees its credits.
    assert first_exceeded([room_units, room_credits], None, 1 * UNIT) is None
    assert first_exceeded([room_units, room_credits], None, 1 * UNIT + 1) is room_credits
    assert first_exceeded([room_units, room_credits], 2 * UNIT, None) is room_units


def test_reserved_counts_in_the_nearest_exceeded_decision() -> None:
    held = standing(budget("team", limit=10 * UNIT), 4 * UNIT, 6 * UNIT)
    assert first_exceeded([held], 0, None) is None
    assert first_exceeded([held], 1, None) is held
    assert first_exceeded([held], None, None) is held


def test_first_exceeded_accepts_any_iterable_and_stops_at_the_first() -> None:
    consumed: list[str] = []

    def standings() -> Iterator[Standing]:
        for name in ("agent", "team", "dept"):
            consumed.append(name)
            yield standing(budget(name, limit=0))

    found = first_exceeded(standings(), 1, None)
    assert found is not None
    assert found.budget.entity == "agent"
    assert consumed == ["agent"]


# ------------------------------------------------------------------ roll_up


def test_consumption_counts_for_every_entity_on_its_path() -> None:
    totals = roll_up(
        [
            (("agent", "team", "dept"), 5 * UNIT),
            (("team", "dept"), 2 * UNIT),
            (("bot", "ops"), 7 * UNIT),
            (("agent", "team", "dept"), 1),
        ]
    )
    assert totals == {
        "agent": 5 * UNIT + 1,
        "team": 7 * UNIT + 1,
        "dept": 7 * UNIT + 1,
        "bot": 7 * UNIT,
        "ops": 7 * UNIT,
    }


def test_consumption_without_an_entity_counts_for_nobody() -> None:
    assert roll_up([((), 5 * UNIT), (NO_PATH, 1)]) == {}
    assert roll_up([]) == {}


def test_negative_amounts_roll_up_too() -> None:
    """roll_up adds what it is given: a negative delta lowers every total on its path."""
    totals = roll_up([(("agent", "team"), 10 * UNIT), (("agent", "team"), -4 * UNIT)])
    assert totals == {"agent": 6 * UNIT, "team": 6 * UNIT}


def test_paths_recorded_before_and_after_a_move_each_keep_their_ancestors() -> None:
    before = ("agent", "team", "dept")
    after = ("agent", "team", "ops")  # once the team moved under ops
    totals = roll_up([(before, 5 * UNIT), (after, 7 * UNIT)])
    assert totals == {
        "agent": 12 * UNIT,
        "team": 12 * UNIT,
        "dept": 5 * UNIT,
        "ops": 7 * UNIT,
    }


def test_a_budget_is_a_value() -> None:
    """Budgets are keys of the snapshot's period cache: equal fields, equal budgets."""
    b = budget()
    assert b == replace(b)
    assert hash(b) == hash(replace(b))
    assert b != replace(b, limit=b.limit + 1)
