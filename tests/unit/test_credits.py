"""The pure credits core: burn order, debits across grants, hard and soft overdraft decisions,
overdraft payback, scheduled grants, expiry, voids, grant status and revenue.

Amounts are micro-credits (1 credit = 1_000_000); every expected figure is written out by hand
from API.md's "Credits" section, never computed by the code under test.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal, localcontext

import pytest

from allotment.domain.catalog import BURN_ORDER_KEYS, CreditCategory
from allotment.domain.credits import (
    Entry,
    EntryContext,
    EntryType,
    Grant,
    GrantStatus,
    Pool,
    burn_key,
    replay,
    revenue,
)

UNIT = 1_000_000
T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
DAY = timedelta(days=1)
MICRO = timedelta(microseconds=1)
PAID = CreditCategory.PAID
PROMO = CreditCategory.PROMOTIONAL

GRANT = EntryType.GRANT
DEBIT = EntryType.DEBIT
EXPIRY = EntryType.EXPIRY
VOID = EntryType.VOID
ADJUSTMENT = EntryType.ADJUSTMENT


def make_grant(
    grant_id: str,
    credits: int | float = 10,
    *,
    amount: int | None = None,
    category: CreditCategory = PAID,
    cost_basis: int = 0,
    priority: int = 50,
    effective_at: datetime = T0,
    expires_at: datetime | None = None,
    created_at: datetime = T0,
) -> Grant:
    return Grant(
        id=grant_id,
        amount=amount if amount is not None else int(credits * UNIT),
        category=category,
        cost_basis=cost_basis,
        priority=priority,
        effective_at=effective_at,
        expires_at=expires_at,
        created_at=created_at,
    )


def pool_of(*grants: Grant, now: datetime = T0) -> Pool:
    pool = Pool()
    for grant in grants:
        pool.add_grant(grant, now)
    return pool


def rows(entries: Sequence[Entry]) -> list[tuple[EntryType, str | None, int]]:
    return [(e.type, e.grant, e.amount) for e in entries]


def full(entries: Sequence[Entry]) -> list[tuple[EntryType, str | None, int, int, datetime]]:
    return [(e.type, e.grant, e.amount, e.balance_after, e.at) for e in entries]


def drawn_from(pool: Pool, order: Sequence[str], now: datetime = T0) -> list[str | None]:
    """The grants a debit of everything in the pool draws from, in the order it draws."""
    return [e.grant for e in pool.debit(pool.balance, order, now)]


# ---------------------------------------------------------------------------- burn order

# For each key: two grants that differ only in what the key looks at, the one that must burn
# first carrying the larger id, so that ignoring the key (id tie-break) gives the other answer.
KEY_CASES = {
    "priority": (
        make_grant("g2", priority=10),
        make_grant("g1", priority=20),
    ),
    "expiry": (
        make_grant("g2", expires_at=T0 + 5 * DAY),
        make_grant("g1", expires_at=T0 + 9 * DAY),
    ),
    "promotional_first": (
        make_grant("g2", category=PROMO),
        make_grant("g1", category=PAID),
    ),
    "paid_first": (
        make_grant("g2", category=PAID),
        make_grant("g1", category=PROMO),
    ),
    "created": (
        make_grant("g2", created_at=T0 - 2 * DAY),
        make_grant("g1", created_at=T0 - DAY),
    ),
    "cheapest_first": (
        make_grant("g2", cost_basis=10_000),
        make_grant("g1", cost_basis=15_000),
    ),
    "costliest_first": (
        make_grant("g2", cost_basis=15_000),
        make_grant("g1", cost_basis=10_000),
    ),
}


def test_every_burn_order_key_has_a_case() -> None:
    assert set(KEY_CASES) == BURN_ORDER_KEYS


@pytest.mark.parametrize("key", sorted(KEY_CASES))
def test_each_burn_key_decides_which_grant_burns_first(key: str) -> None:
    first, second = KEY_CASES[key]
    assert burn_key(first, [key]) < burn_key(second, [key])
    # Inserted in the wrong order on purpose: the dict's order must not matter.
    pool = pool_of(second, first)
    assert drawn_from(pool, [key]) == ["g2", "g1"]


@pytest.mark.parametrize("key", sorted(KEY_CASES))
def test_without_the_key_the_grant_id_decides(key: str) -> None:
    first, second = KEY_CASES[key]
    pool = pool_of(first, second)
    assert drawn_from(pool, []) == ["g1", "g2"]


def test_the_grant_id_breaks_a_full_tie() -> None:
    order = sorted(BURN_ORDER_KEYS)
    grants = [make_grant(gid) for gid in ("grant_c", "grant_a", "grant_b")]
    pool = pool_of(*grants)
    assert drawn_from(pool, order) == ["grant_a", "grant_b", "grant_c"]


def test_never_expiring_grants_burn_last_under_expiry() -> None:
    # The never-expiring grant was created first and has the smallest id: only the expiry key
    # can put it last.
    forever = make_grant("a-forever", created_at=T0 - 30 * DAY)
    late = make_grant("b-late", expires_at=T0 + 365 * DAY)
    soon = make_grant("c-soon", expires_at=T0 + DAY)
    pool = pool_of(forever, late, soon)
    assert drawn_from(pool, ["expiry"]) == ["c-soon", "b-late", "a-forever"]
    assert burn_key(late, ["expiry"]) < burn_key(forever, ["expiry"])


def test_product_example_promotional_first_then_expiry() -> None:
    """PRODUCT.md: promotional credits burn first, ahead of expiry; then soonest expiry."""
    order = ["promotional_first", "expiry", "created"]
    paid_soon = make_grant("a-paid-soon", category=PAID, expires_at=T0 + DAY)
    paid_later = make_grant("b-paid-later", category=PAID, expires_at=T0 + 90 * DAY)
    promo_late = make_grant("c-promo-late", category=PROMO, expires_at=T0 + 60 * DAY)
    promo_soon = make_grant("d-promo-soon", category=PROMO, expires_at=T0 + 30 * DAY)
    promo_forever = make_grant("e-promo-forever", category=PROMO)
    pool = pool_of(paid_later, promo_forever, paid_soon, promo_late, promo_soon)
    assert drawn_from(pool, order) == [
        "d-promo-soon",
        "c-promo-late",
        "e-promo-forever",
        "a-paid-soon",
        "b-paid-later",
    ]


def test_an_earlier_key_wins_over_a_later_one() -> None:
    # priority first: the low-priority-number grant burns first although it expires last.
    low = make_grant("z-low", priority=1, expires_at=T0 + 90 * DAY)
    high = make_grant("a-high", priority=2, expires_at=T0 + DAY)
    pool = pool_of(high, low)
    assert drawn_from(pool, ["priority", "expiry"]) == ["z-low", "a-high"]
    pool = pool_of(high, low)
    assert drawn_from(pool, ["expiry", "priority"]) == ["a-high", "z-low"]


def test_later_keys_break_ties_of_earlier_ones() -> None:
    order = ["priority", "cheapest_first", "created"]
    grants = [
        make_grant("a", priority=5, cost_basis=20, created_at=T0 - DAY),
        make_grant("b", priority=5, cost_basis=10, created_at=T0),
        make_grant("c", priority=5, cost_basis=10, created_at=T0 - DAY),
        make_grant("d", priority=1, cost_basis=99, created_at=T0),
    ]
    pool = pool_of(*grants)
    assert drawn_from(pool, order) == ["d", "c", "b", "a"]


def test_priority_expiry_promotional_created() -> None:
    order = ["priority", "expiry", "promotional_first", "created"]
    grants = [
        make_grant("a", priority=50, expires_at=None, category=PROMO),
        make_grant("b", priority=50, expires_at=T0 + DAY, category=PAID),
        make_grant("c", priority=50, expires_at=T0 + DAY, category=PROMO, created_at=T0 - DAY),
        make_grant("d", priority=50, expires_at=T0 + DAY, category=PROMO),
        make_grant("e", priority=40, expires_at=None, category=PAID),
    ]
    pool = pool_of(*grants)
    assert drawn_from(pool, order) == ["e", "c", "d", "b", "a"]


# ---------------------------------------------------------------------------- debits


def test_a_debit_spanning_grants_writes_one_entry_per_grant_in_burn_order() -> None:
    pool = pool_of(
        make_grant("c", 30, priority=3),
        make_grant("a", 10, priority=1),
        make_grant("b", 20, priority=2),
    )
    assert pool.balance == 60 * UNIT
    context = EntryContext(idempotency_key="k-1", entity="agent-7", feature="ai-requests")
    now = T0 + timedelta(hours=1)
    written = pool.debit(45 * UNIT, ["priority"], now, context)
    assert full(written) == [
        (DEBIT, "a", -10 * UNIT, 50 * UNIT, now),
        (DEBIT, "b", -20 * UNIT, 30 * UNIT, now),
        (DEBIT, "c", -15 * UNIT, 15 * UNIT, now),
    ]
    assert all(
        (e.idempotency_key, e.entity, e.feature) == ("k-1", "agent-7", "ai-requests")
        for e in written
    )
    assert pool.entries[-3:] == written
    assert [pool.grants[g].remaining for g in "abc"] == [0, 0, 15 * UNIT]
    assert pool.balance == 15 * UNIT
    assert pool.overdraft == 0


def test_a_debit_past_the_grants_puts_the_rest_on_the_overdraft() -> None:
    pool = pool_of(make_grant("a", 10), make_grant("b", 5))
    written = pool.debit(18 * UNIT + 250_000, ["priority"], T0)
    assert full(written) == [
        (DEBIT, "a", -10 * UNIT, 5 * UNIT, T0),
        (DEBIT, "b", -5 * UNIT, 0, T0),
        (DEBIT, None, -3_250_000, -3_250_000, T0),
    ]
    assert pool.overdraft == 3_250_000
    assert pool.balance == -3_250_000
    # A second debit goes straight onto the overdraft: the depleted grants are not touched.
    assert rows(pool.debit(UNIT, ["priority"], T0)) == [(DEBIT, None, -UNIT)]
    assert pool.overdraft == 4_250_000


def test_a_debit_within_one_grant_touches_only_that_grant() -> None:
    pool = pool_of(make_grant("a", 10), make_grant("b", 10))
    assert rows(pool.debit(1, ["priority"], T0)) == [(DEBIT, "a", -1)]
    assert pool.grants["a"].remaining == 10 * UNIT - 1
    assert pool.grants["b"].remaining == 10 * UNIT


def test_a_debit_skips_scheduled_voided_and_expired_grants() -> None:
    pool = pool_of(
        make_grant("a-scheduled", 10, effective_at=T0 + DAY),
        make_grant("b-voided", 10),
        make_grant("c-expiring", 10, expires_at=T0 + timedelta(hours=1)),
        make_grant("d-live", 10, priority=99),
    )
    pool.void("b-voided", T0)
    later = T0 + timedelta(hours=2)
    pool.settle(later)
    assert pool.balance == 10 * UNIT
    assert rows(pool.debit(12 * UNIT, ["priority"], later)) == [
        (DEBIT, "d-live", -10 * UNIT),
        (DEBIT, None, -2 * UNIT),
    ]


# ---------------------------------------------------------------------------- decisions


@pytest.mark.parametrize("limit", [0, 1, 5 * UNIT, 1_000 * UNIT + 3])
def test_a_hard_decision_lets_available_fall_to_minus_the_limit_and_no_further(
    limit: int,
) -> None:
    pool = pool_of(make_grant("a", 10))
    edge = 10 * UNIT + limit  # available - edge == -limit
    assert pool.allows(edge, 0, limit)
    assert not pool.allows(edge + 1, 0, limit)
    pool.debit(edge, ["priority"], T0)
    assert pool.available(0) == -limit
    assert pool.overdraft == limit
    assert pool.allows(0, 0, limit)
    assert not pool.allows(1, 0, limit)


def test_a_hard_decision_counts_what_is_reserved() -> None:
    pool = pool_of(make_grant("a", 10))
    assert pool.available(3 * UNIT) == 7 * UNIT
    assert pool.allows(7 * UNIT, 3 * UNIT, 0)
    assert not pool.allows(7 * UNIT + 1, 3 * UNIT, 0)
    assert pool.allows(9 * UNIT, 3 * UNIT, 2 * UNIT)
    assert not pool.allows(9 * UNIT + 1, 3 * UNIT, 2 * UNIT)


def test_an_empty_pool_with_hard_limit_zero_refuses_any_amount() -> None:
    pool = Pool()
    assert pool.allows(0, 0, 0)
    assert not pool.allows(1, 0, 0)


def test_an_overdrawn_pool_counts_the_overdraft_against_the_limit() -> None:
    pool = Pool()
    pool.debit(4 * UNIT, ["priority"], T0)  # soft usage recorded past the limit before
    assert pool.available(0) == -4 * UNIT
    assert pool.allows(UNIT, 0, 5 * UNIT)
    assert not pool.allows(UNIT + 1, 0, 5 * UNIT)
    assert not pool.allows(1, 0, 3 * UNIT)  # already past this limit


def test_an_unbounded_limit_allows_anything() -> None:
    pool = Pool()
    assert pool.allows(10**12 * UNIT, 0, None)
    pool.debit(10**9 * UNIT, ["priority"], T0)
    assert pool.allows(10**12 * UNIT, 10**6 * UNIT, None)


def test_a_soft_limit_runs_a_bounded_overdraft_then_refuses() -> None:
    limit = 50 * UNIT
    pool = pool_of(make_grant("a", 100))
    assert pool.allows(150 * UNIT, 0, limit)
    pool.debit(150 * UNIT, ["priority"], T0)
    assert pool.overdraft == limit
    assert pool.balance == -limit
    assert not pool.allows(1, 0, limit)


def test_an_unenforced_debit_applies_past_the_limit() -> None:
    pool = pool_of(make_grant("a", 10))
    assert not pool.allows(25 * UNIT, 0, 0)
    # enforce: false records what already happened: the caller debits without asking.
    written = pool.debit(25 * UNIT, ["priority"], T0)
    assert rows(written) == [(DEBIT, "a", -10 * UNIT), (DEBIT, None, -15 * UNIT)]
    assert pool.balance == -15 * UNIT
    assert pool.overdraft == 15 * UNIT
    assert not pool.allows(0, 0, 0)


# ---------------------------------------------------------------------------- overdraft payback


def test_a_new_grant_pays_back_the_overdraft_with_a_debit_and_an_adjustment() -> None:
    pool = Pool()
    pool.debit(30 * UNIT, ["priority"], T0)
    assert full(pool.entries) == [(DEBIT, None, -30 * UNIT, -30 * UNIT, T0)]
    later = T0 + timedelta(minutes=5)
    pool.add_grant(make_grant("top-up", 100, effective_at=later, created_at=later), later)
    assert full(pool.entries[1:]) == [
        (GRANT, "top-up", 100 * UNIT, 70 * UNIT, later),
        (DEBIT, "top-up", -30 * UNIT, 40 * UNIT, later),
        (ADJUSTMENT, None, 30 * UNIT, 70 * UNIT, later),
    ]
    # The pair leaves the balance where the grant entry put it.
    assert pool.entries[-1].balance_after == pool.entries[-3].balance_after
    assert pool.overdraft == 0
    assert pool.grants["top-up"].remaining == 70 * UNIT
    assert pool.balance == 70 * UNIT
    # Each grant's entries sum to its remaining; those without a grant to -overdraft.
    assert sum(e.amount for e in pool.entries if e.grant == "top-up") == 70 * UNIT
    assert sum(e.amount for e in pool.entries if e.grant is None) == 0


def test_the_grant_entry_carries_its_request_and_comes_first() -> None:
    pool = Pool()
    pool.debit(UNIT, ["priority"], T0)
    pool.add_grant(make_grant("g", 5), T0, EntryContext(idempotency_key="grant-key"))
    assert pool.entries[1].type is GRANT
    assert pool.entries[1].idempotency_key == "grant-key"
    assert [e.type for e in pool.entries[1:]] == [GRANT, DEBIT, ADJUSTMENT]


def test_a_grant_smaller_than_the_overdraft_pays_back_part_of_it() -> None:
    pool = Pool()
    pool.debit(30 * UNIT, ["priority"], T0)
    pool.add_grant(make_grant("small", 20), T0)
    assert full(pool.entries[1:]) == [
        (GRANT, "small", 20 * UNIT, -10 * UNIT, T0),
        (DEBIT, "small", -20 * UNIT, -30 * UNIT, T0),
        (ADJUSTMENT, None, 20 * UNIT, -10 * UNIT, T0),
    ]
    assert pool.overdraft == 10 * UNIT
    assert pool.grants["small"].remaining == 0
    assert pool.grants["small"].status(T0) is GrantStatus.DEPLETED
    # The next grant pays back the rest.
    pool.add_grant(make_grant("big", 50), T0)
    assert rows(pool.entries[4:]) == [
        (GRANT, "big", 50 * UNIT),
        (DEBIT, "big", -10 * UNIT),
        (ADJUSTMENT, None, 10 * UNIT),
    ]
    assert pool.overdraft == 0
    assert pool.balance == 40 * UNIT


def test_a_grant_exactly_the_overdraft_leaves_nothing() -> None:
    pool = Pool()
    pool.debit(7, ["priority"], T0)
    pool.add_grant(make_grant("g", amount=7), T0)
    assert rows(pool.entries[1:]) == [(GRANT, "g", 7), (DEBIT, "g", -7), (ADJUSTMENT, None, 7)]
    assert pool.overdraft == 0
    assert pool.balance == 0


def test_no_payback_entries_without_an_overdraft() -> None:
    pool = pool_of(make_grant("a", 10))
    pool.add_grant(make_grant("b", 10), T0)
    assert rows(pool.entries) == [(GRANT, "a", 10 * UNIT), (GRANT, "b", 10 * UNIT)]


# ---------------------------------------------------------------------------- scheduled grants


def test_a_scheduled_grant_enters_the_ledger_at_its_effective_time() -> None:
    starts = T0 + DAY
    pool = Pool()
    pool.add_grant(
        make_grant("later", 40, effective_at=starts), T0, EntryContext(idempotency_key="k")
    )
    assert pool.entries == []
    assert pool.balance == 0
    assert pool.grants["later"].status(T0) is GrantStatus.SCHEDULED
    assert not pool.allows(1, 0, 0)
    pool.settle(starts - MICRO)
    assert pool.entries == []
    # Settled well after: the entry is dated when the grant took effect, not when it was seen.
    pool.settle(starts + 3 * DAY)
    assert full(pool.entries) == [(GRANT, "later", 40 * UNIT, 40 * UNIT, starts)]
    assert pool.entries[0].idempotency_key == "k"
    assert pool.grants["later"].status(starts) is GrantStatus.ACTIVE
    assert pool.balance == 40 * UNIT
    pool.settle(starts + 4 * DAY)
    assert len(pool.entries) == 1


def test_a_grant_effective_exactly_now_enters_at_once() -> None:
    pool = pool_of(make_grant("now", 5, effective_at=T0))
    assert rows(pool.entries) == [(GRANT, "now", 5 * UNIT)]


def test_a_scheduled_grant_pays_back_the_overdraft_when_it_takes_effect() -> None:
    starts = T0 + DAY
    pool = Pool()
    pool.add_grant(make_grant("later", 40, effective_at=starts), T0)
    pool.debit(15 * UNIT, ["priority"], T0 + timedelta(hours=1))
    assert pool.overdraft == 15 * UNIT
    pool.settle(starts + DAY)
    assert full(pool.entries[1:]) == [
        (GRANT, "later", 40 * UNIT, 25 * UNIT, starts),
        (DEBIT, "later", -15 * UNIT, 10 * UNIT, starts),
        (ADJUSTMENT, None, 15 * UNIT, 25 * UNIT, starts),
    ]
    assert pool.overdraft == 0


def test_scheduled_grants_enter_in_time_order_whatever_the_insertion_order() -> None:
    pool = Pool()
    pool.add_grant(make_grant("a", 1, effective_at=T0 + 3 * DAY), T0)
    pool.add_grant(make_grant("b", 2, effective_at=T0 + DAY), T0)
    pool.add_grant(make_grant("c", 3, effective_at=T0 + 2 * DAY), T0)
    pool.settle(T0 + 10 * DAY)
    assert full(pool.entries) == [
        (GRANT, "b", 2 * UNIT, 2 * UNIT, T0 + DAY),
        (GRANT, "c", 3 * UNIT, 5 * UNIT, T0 + 2 * DAY),
        (GRANT, "a", 1 * UNIT, 6 * UNIT, T0 + 3 * DAY),
    ]


# ---------------------------------------------------------------------------- expiry


def test_a_grant_expires_with_what_remains_at_its_expiry_time() -> None:
    ends = T0 + 90 * DAY
    pool = pool_of(make_grant("block", 100, expires_at=ends), make_grant("other", 5, priority=99))
    pool.debit(30 * UNIT, ["priority"], T0 + DAY)
    pool.settle(ends - MICRO)
    assert [e.type for e in pool.entries] == [GRANT, GRANT, DEBIT]
    assert pool.grants["block"].status(ends - MICRO) is GrantStatus.ACTIVE
    pool.settle(ends + 10 * DAY)
    assert full(pool.entries[3:]) == [(EXPIRY, "block", -70 * UNIT, 5 * UNIT, ends)]
    assert pool.grants["block"].remaining == 0
    assert pool.grants["block"].status(ends) is GrantStatus.EXPIRED
    assert pool.balance == 5 * UNIT
    pool.settle(ends + 20 * DAY)
    assert len(pool.entries) == 4


def test_a_used_up_grant_expires_without_an_entry() -> None:
    ends = T0 + DAY
    pool = pool_of(make_grant("block", 10, expires_at=ends))
    pool.debit(10 * UNIT, ["priority"], T0)
    pool.settle(ends)
    assert rows(pool.entries) == [(GRANT, "block", 10 * UNIT), (DEBIT, "block", -10 * UNIT)]
    assert pool.grants["block"].status(ends) is GrantStatus.EXPIRED
    assert pool.grants["block"].expired


def test_a_scheduled_grant_seen_after_its_expiry_enters_and_leaves_at_its_own_times() -> None:
    starts, ends = T0 + DAY, T0 + 2 * DAY
    pool = Pool()
    pool.add_grant(make_grant("brief", 8, effective_at=starts, expires_at=ends), T0)
    pool.settle(T0 + 5 * DAY)
    assert full(pool.entries) == [
        (GRANT, "brief", 8 * UNIT, 8 * UNIT, starts),
        (EXPIRY, "brief", -8 * UNIT, 0, ends),
    ]
    assert pool.balance == 0


def test_settle_writes_due_events_in_time_order() -> None:
    """A grant that takes effect and expires before another takes effect, while overdrawn:
    the first pays back what it can, expires empty, and the second pays back the rest."""
    t1, t2, t3 = T0 + DAY, T0 + 2 * DAY, T0 + 3 * DAY
    pool = Pool()
    pool.debit(30 * UNIT, ["priority"], T0)
    # Inserted latest-first so that dict order and time order differ.
    pool.add_grant(make_grant("b-late", 100, effective_at=t3), T0)
    pool.add_grant(make_grant("a-early", 20, effective_at=t1, expires_at=t2), T0)
    assert len(pool.entries) == 1
    pool.settle(t3 + DAY)
    assert full(pool.entries[1:]) == [
        (GRANT, "a-early", 20 * UNIT, -10 * UNIT, t1),
        (DEBIT, "a-early", -20 * UNIT, -30 * UNIT, t1),
        (ADJUSTMENT, None, 20 * UNIT, -10 * UNIT, t1),
        (GRANT, "b-late", 100 * UNIT, 90 * UNIT, t3),
        (DEBIT, "b-late", -10 * UNIT, 80 * UNIT, t3),
        (ADJUSTMENT, None, 10 * UNIT, 90 * UNIT, t3),
    ]
    assert pool.grants["a-early"].remaining == 0
    assert pool.grants["b-late"].remaining == 90 * UNIT
    assert pool.overdraft == 0


def test_settle_expires_one_grant_before_crediting_a_later_one() -> None:
    t1, t2 = T0 + DAY, T0 + 2 * DAY
    pool = pool_of(make_grant("old", 10, expires_at=t1))
    pool.add_grant(make_grant("new", 5, effective_at=t2), T0)
    pool.settle(t2 + DAY)
    assert full(pool.entries) == [
        (GRANT, "old", 10 * UNIT, 10 * UNIT, T0),
        (EXPIRY, "old", -10 * UNIT, 0, t1),
        (GRANT, "new", 5 * UNIT, 5 * UNIT, t2),
    ]


# ---------------------------------------------------------------------------- voids


def test_a_void_takes_the_remaining_out_of_the_pool() -> None:
    pool = pool_of(make_grant("a", 100), make_grant("b", 10, priority=99))
    pool.debit(40 * UNIT, ["priority"], T0)
    when = T0 + timedelta(hours=2)
    pool.void("a", when)
    assert full(pool.entries[3:]) == [(VOID, "a", -60 * UNIT, 10 * UNIT, when)]
    assert pool.grants["a"].remaining == 0
    assert pool.grants["a"].status(when) is GrantStatus.VOIDED
    assert pool.balance == 10 * UNIT
    # Spending goes to the other grant now.
    assert rows(pool.debit(UNIT, ["priority"], when)) == [(DEBIT, "b", -UNIT)]


def test_a_voided_scheduled_grant_never_enters_the_ledger() -> None:
    starts = T0 + DAY
    pool = Pool()
    pool.add_grant(make_grant("later", 40, effective_at=starts, expires_at=starts + DAY), T0)
    pool.void("later", T0)
    assert pool.entries == []
    pool.settle(starts + 10 * DAY)
    assert pool.entries == []
    assert pool.balance == 0
    assert pool.grants["later"].status(starts + 10 * DAY) is GrantStatus.VOIDED


def test_a_voided_scheduled_grant_pays_back_nothing() -> None:
    starts = T0 + DAY
    pool = Pool()
    pool.debit(5 * UNIT, ["priority"], T0)
    pool.add_grant(make_grant("later", 40, effective_at=starts), T0)
    pool.void("later", T0)
    pool.settle(starts + DAY)
    assert rows(pool.entries) == [(DEBIT, None, -5 * UNIT)]
    assert pool.overdraft == 5 * UNIT


def test_a_voided_grant_is_not_expired_later() -> None:
    ends = T0 + DAY
    pool = pool_of(make_grant("a", 10, expires_at=ends))
    pool.void("a", T0)
    pool.settle(ends + DAY)
    assert rows(pool.entries) == [(GRANT, "a", 10 * UNIT), (VOID, "a", -10 * UNIT)]


def test_voiding_a_depleted_grant_writes_nothing() -> None:
    pool = pool_of(make_grant("a", 10))
    pool.debit(10 * UNIT, ["priority"], T0)
    pool.void("a", T0)
    assert [e.type for e in pool.entries] == [GRANT, DEBIT]
    assert pool.grants["a"].status(T0) is GrantStatus.VOIDED


# ---------------------------------------------------------------------------- status


def _status_cases() -> list[tuple[str, Grant, datetime, GrantStatus]]:
    base = make_grant("g", 10, effective_at=T0, expires_at=T0 + DAY)
    live = replace(base, remaining=10 * UNIT, credited=True)
    return [
        ("scheduled", base, T0 - MICRO, GrantStatus.SCHEDULED),
        ("active", live, T0, GrantStatus.ACTIVE),
        ("active-until-expiry", live, T0 + DAY - MICRO, GrantStatus.ACTIVE),
        ("depleted", replace(live, remaining=0), T0, GrantStatus.DEPLETED),
        ("expired-at-its-time", live, T0 + DAY, GrantStatus.EXPIRED),
        (
            "expired-flag",
            replace(live, remaining=0, expired=True),
            T0 + DAY,
            GrantStatus.EXPIRED,
        ),
        (
            "voided",
            replace(live, remaining=0, voided_at=T0),
            T0,
            GrantStatus.VOIDED,
        ),
        (
            "voided-wins-over-expired",
            replace(live, remaining=0, voided_at=T0),
            T0 + 2 * DAY,
            GrantStatus.VOIDED,
        ),
        (
            "voided-before-effect",
            replace(base, voided_at=T0 - DAY, credited=True),
            T0 - MICRO,
            GrantStatus.VOIDED,
        ),
        (
            "never-expires",
            replace(live, expires_at=None),
            T0 + 10_000 * DAY,
            GrantStatus.ACTIVE,
        ),
    ]


@pytest.mark.parametrize(
    ("grant", "now", "status"),
    [case[1:] for case in _status_cases()],
    ids=[case[0] for case in _status_cases()],
)
def test_grant_status(grant: Grant, now: datetime, status: GrantStatus) -> None:
    assert grant.status(now) is status


def test_status_through_a_grants_life_in_a_pool() -> None:
    starts, ends = T0 + DAY, T0 + 3 * DAY
    pool = Pool()
    pool.add_grant(make_grant("g", 10, effective_at=starts, expires_at=ends), T0)
    assert pool.grants["g"].status(T0) is GrantStatus.SCHEDULED
    pool.settle(starts)
    assert pool.grants["g"].status(starts) is GrantStatus.ACTIVE
    pool.debit(10 * UNIT, ["priority"], starts)
    assert pool.grants["g"].status(starts) is GrantStatus.DEPLETED
    pool.settle(ends)
    assert pool.grants["g"].status(ends) is GrantStatus.EXPIRED
    assert {s.value for s in GrantStatus} == {
        "active",
        "scheduled",
        "depleted",
        "expired",
        "voided",
    }


# ---------------------------------------------------------------------------- replay


def test_replay_rebuilds_remaining_consumed_expired_and_overdraft() -> None:
    ends = T0 + DAY
    pool = Pool()
    pool.debit(10 * UNIT, ["priority"], T0)
    pool.add_grant(make_grant("p", 100, expires_at=ends), T0)  # pays back 10
    pool.add_grant(make_grant("q", 50, priority=99), T0)
    pool.add_grant(make_grant("v", 5, priority=99), T0)
    pool.debit(30 * UNIT, ["priority"], T0)  # p: 90 -> 60
    pool.void("v", T0)
    pool.settle(ends)  # p expires with 60
    pool.debit(55 * UNIT, ["priority"], ends)  # q: 50 -> 0, overdraft 5
    state = replay(rows(pool.entries))
    assert state.remaining == {"p": 0, "q": 0, "v": 0}
    assert state.consumed == {"p": 40 * UNIT, "q": 50 * UNIT}
    assert state.expired == {"p": 60 * UNIT}
    assert state.overdraft == 5 * UNIT
    assert state.balance == pool.balance == -5 * UNIT


# ---------------------------------------------------------------------------- revenue


def test_revenue_on_a_worked_example() -> None:
    """Paid block P: 100 credits at 0.01, expiring; block Q: 200 credits at 0.015, never.

    10 credits of overdraft, paid back by P (consumed); 50 more used from P; P expires with 40;
    then 0.5 credit used from Q.
    deferred   = 199.5 * 0.015            = 2.9925
    recognized = (10 + 50) * 0.01 + 0.5 * 0.015 = 0.6075
    breakage   = 40 * 0.01                = 0.4
    """
    ends = T0 + 90 * DAY
    order = ["expiry"]
    pool = Pool()
    pool.debit(10 * UNIT, order, T0)
    pool.add_grant(make_grant("P", 100, cost_basis=10_000, expires_at=ends), T0)
    pool.debit(50 * UNIT, order, T0)
    pool.add_grant(make_grant("Q", 200, cost_basis=15_000), T0)
    pool.settle(ends)
    pool.debit(500_000, order, ends)
    figures = revenue(pool.grants, replay(rows(pool.entries)))
    assert figures.deferred == Decimal("2.9925")
    assert figures.recognized == Decimal("0.6075")
    assert figures.breakage == Decimal("0.4")
    assert (str(figures.deferred), str(figures.recognized), str(figures.breakage)) == (
        "2.9925",
        "0.6075",
        "0.4",
    )
    assert all(isinstance(v, Decimal) for v in (figures.deferred, figures.recognized))


def test_revenue_is_exact_at_the_smallest_units() -> None:
    # One micro-credit at a cost basis of one micro-unit is 10^-12 of money.
    pool = pool_of(make_grant("tiny", amount=3, cost_basis=1))
    pool.debit(1, ["priority"], T0)
    figures = revenue(pool.grants, replay(rows(pool.entries)))
    assert figures.deferred == Decimal("0.000000000002")
    assert figures.recognized == Decimal("0.000000000001")
    assert figures.breakage == 0


def test_revenue_is_exact_for_large_amounts() -> None:
    big = 999_999_999_999 * UNIT + 999_999  # just below 10^12 credits
    pool = pool_of(make_grant("big", amount=big, cost_basis=999_999_999_999 * UNIT + 999_999))
    figures = revenue(pool.grants, replay(rows(pool.entries)))
    with localcontext() as context:
        context.prec = 60
        expected = Decimal("999999999999.999999") ** 2
    # (10^12 - 10^-6)^2 = 10^24 - 2 * 10^6 + 10^-12
    assert expected == Decimal("999999999999999998000000.000000000001")
    assert figures.deferred == expected
    assert figures.recognized == 0


def test_whole_amounts_of_money_have_no_exponent() -> None:
    pool = pool_of(make_grant("g", 100, cost_basis=UNIT))
    figures = revenue(pool.grants, replay(rows(pool.entries)))
    assert str(figures.deferred) == "100"
    assert str(figures.recognized) == "0"


def test_voided_credits_are_neither_recognized_nor_broken() -> None:
    pool = pool_of(make_grant("a", 10, cost_basis=2 * UNIT), make_grant("b", 10, priority=99))
    pool.debit(4 * UNIT, ["priority"], T0)
    pool.void("a", T0)
    figures = revenue(pool.grants, replay(rows(pool.entries)))
    assert figures.deferred == 0
    assert figures.recognized == Decimal(8)
    assert figures.breakage == 0


def test_free_credits_count_for_nothing() -> None:
    ends = T0 + DAY
    pool = pool_of(make_grant("promo", 50, category=PROMO, expires_at=ends))
    pool.debit(20 * UNIT, ["priority"], T0)
    pool.settle(ends)
    figures = revenue(pool.grants, replay(rows(pool.entries)))
    assert (figures.deferred, figures.recognized, figures.breakage) == (0, 0, 0)
