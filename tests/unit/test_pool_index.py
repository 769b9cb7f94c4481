"""A pool's work follows what changes, not its size: burn order, settling, storing.

The asymptotics are pinned by counting, never by timing: how many burn keys a debit computes
(``burn_key``: a grant put in order), how many queued instants settling and the horizon look
at (``stands``), and which grants a step changed (what an adapter writes).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import allotment.domain.credits
import allotment.domain.pool_index
from allotment.domain.catalog import CreditCategory
from allotment.domain.credits import EntryContext, EntryType, Grant, GrantStatus, Pool

UNIT = 1_000_000
T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
ORDER = ("priority", "expiry", "promotional_first", "created")
MANY = 10_000


def make_grant(grant_id: str, credits: int = 10, **fields: Any) -> Grant:
    values: dict[str, Any] = {
        "amount": credits * UNIT,
        "category": CreditCategory.PAID,
        "cost_basis": 0,
        "priority": 50,
        "effective_at": T0,
        "expires_at": None,
        "created_at": T0,
    }
    return Grant(grant_id, **{**values, **fields})


def big_pool(count: int = MANY) -> Pool:
    """``count`` live grants, each expiring at its own instant a day or more ahead."""
    pool = Pool(burn_order=ORDER)
    for n in range(count):
        expires = T0 + timedelta(days=1, minutes=n)
        pool.include(make_grant(f"g{n:05d}", priority=(n * 7919) % count, expires_at=expires))
    pool.settle(T0)
    pool.stored()
    return pool


class Counter:
    def __init__(self) -> None:
        self.calls = 0

    def wrap(self, function: Callable[..., Any]) -> Callable[..., Any]:
        def counted(*args: Any) -> Any:
            self.calls += 1
            return function(*args)

        return counted


@pytest.fixture
def burn_keys(monkeypatch: pytest.MonkeyPatch) -> Counter:
    counter = Counter()
    for module in (allotment.domain.pool_index, allotment.domain.credits):
        monkeypatch.setattr(module, "burn_key", counter.wrap(module.burn_key))
    return counter


@pytest.fixture
def looked_at(monkeypatch: pytest.MonkeyPatch) -> Counter:
    """Queued instants looked at (``DueQueue`` checks each against its grant)."""
    counter = Counter()
    module = allotment.domain.pool_index
    monkeypatch.setattr(module, "stands", counter.wrap(module.stands))
    return counter


def test_a_debit_orders_the_pool_once_then_only_what_it_draws_from(burn_keys: Counter) -> None:
    pool = big_pool()
    reference = [g.id for g in pool.spendable(ORDER, T0)]
    burn_keys.calls = 0
    first = pool.debit(25 * UNIT, ORDER, T0)  # the first debit orders the pool: once
    assert burn_keys.calls == MANY
    assert [e.grant for e in first] == reference[:3]
    burn_keys.calls = 0
    second = pool.debit(25 * UNIT, ORDER, T0, EntryContext("d2"))
    assert [e.grant for e in second] == reference[2:5]
    assert burn_keys.calls == 0  # a drained grant leaves the order; a partial one keeps its place
    assert [g.id for g in pool.changed_grants()] == reference[:5]
    pool.stored()
    assert len(pool.grants) == MANY - 5  # the five drained grants left the pool
    assert [g.id for g in pool.spendable(ORDER, T0)] == reference[5:]


def test_another_burn_order_orders_the_pool_again() -> None:
    pool = big_pool(100)
    pool.debit(UNIT, ORDER, T0)
    other = ("expiry", "priority")
    expected = [g.id for g in pool.spendable(other, T0)][:3]
    assert [e.grant for e in pool.debit(25 * UNIT, other, T0)] == expected


def test_settling_looks_only_at_the_instants_that_passed(looked_at: Counter) -> None:
    pool = big_pool()
    looked_at.calls = 0
    pool.settle(T0 + timedelta(hours=23))  # nothing due
    assert pool.entries == []
    assert looked_at.calls == 0
    pool.settle(T0 + timedelta(days=1, minutes=2))  # three grants expire: 0, 1 and 2 minutes
    assert [(e.type, e.grant) for e in pool.entries] == [
        (EntryType.EXPIRY, f"g{n:05d}") for n in range(3)
    ]
    assert looked_at.calls == 3
    looked_at.calls = 0
    assert pool.horizon(T0 + timedelta(days=1, minutes=2)) == T0 + timedelta(days=1, minutes=3)
    assert looked_at.calls == 1
    pool.stored()
    assert len(pool.grants) == MANY - 3


def test_the_balance_and_what_grants_hold_are_kept_not_summed() -> None:
    pool = big_pool()
    assert pool.balance == MANY * 10 * UNIT
    pool.debit(15 * UNIT, ORDER, T0)
    assert pool.balance == (MANY * 10 - 15) * UNIT
    pool.add_grant(make_grant("later", 7, effective_at=T0 + timedelta(days=3)), T0)
    assert pool.held_and_scheduled() == (MANY * 10 - 15 + 7) * UNIT
    pool.grants["g00001"] = replace(pool.grants["g00001"], remaining=UNIT)  # written as a dict
    assert pool.balance == sum(g.remaining for g in pool.grants.values() if g.credited)
    with pytest.raises(ValueError, match="written under the id"):
        pool.grants["g00002"] = pool.grants["g00003"]


def test_storing_lets_ended_grants_go_and_keeps_the_live_ones() -> None:
    pool = Pool(burn_order=ORDER)
    pool.add_grant(make_grant("used", 5, priority=0), T0)
    pool.add_grant(make_grant("brief", 5, expires_at=T0 + timedelta(hours=1)), T0)
    pool.add_grant(make_grant("void", 5), T0)
    pool.add_grant(make_grant("later", 5, effective_at=T0 + timedelta(days=1)), T0)
    pool.add_grant(make_grant("live", 5, priority=99), T0)
    pool.debit(5 * UNIT, ORDER, T0)
    pool.void("void", T0)
    pool.settle(T0 + timedelta(hours=2))
    balance, held = pool.balance, pool.held_and_scheduled()
    assert pool.pending
    assert {g.id for g in pool.changed_grants()} == {"used", "brief", "void", "later", "live"}
    pool.stored()
    assert list(pool.grants) == ["later", "live"]
    assert (pool.pending, pool.entries, pool.changed_grants()) == (False, [], [])
    assert (pool.balance, pool.held_and_scheduled()) == (balance, held)
    assert pool.horizon(T0 + timedelta(hours=2)) == T0 + timedelta(days=1)


def test_a_used_up_grant_read_back_is_voided_without_an_entry() -> None:
    pool = Pool(burn_order=ORDER)
    pool.add_grant(make_grant("used", 5), T0)
    pool.debit(5 * UNIT, ORDER, T0)
    used = pool.grants["used"]
    pool.stored()
    assert "used" not in pool.grants
    assert used.status(T0) is GrantStatus.DEPLETED
    pool.include(used)  # as the service reads it back by id
    pool.void("used", T0)
    assert pool.entries == []
    assert [g.voided_at for g in pool.changed_grants()] == [T0]
    pool.stored()
    assert pool.grants == {}


def test_a_grant_entry_carries_its_request_only_in_the_job_that_made_it() -> None:
    """As when each job loaded a pool of its own: a scheduled grant enters later without it."""
    pool = Pool(burn_order=ORDER)
    pool.add_grant(make_grant("now", 5), T0, EntryContext("made-now"))
    pool.add_grant(
        make_grant("later", 5, effective_at=T0 + timedelta(days=1)), T0, EntryContext("x")
    )
    assert [e.idempotency_key for e in pool.entries] == ["made-now"]
    pool.stored()
    pool.settle(T0 + timedelta(days=2))
    assert [(e.grant, e.idempotency_key) for e in pool.entries] == [("later", None)]


def test_a_debit_passes_over_grants_not_spendable_at_its_instant() -> None:
    """Not settled by the debit's instant: an expired grant is passed over, and kept."""
    pool = Pool(burn_order=ORDER)
    pool.add_grant(make_grant("ends", 5, priority=0, expires_at=T0 + timedelta(hours=1)), T0)
    pool.add_grant(make_grant("stays", 5, priority=9), T0)
    late = T0 + timedelta(hours=2)
    assert [e.grant for e in pool.debit(2 * UNIT, ORDER, late)] == ["stays"]
    assert [e.grant for e in pool.debit(UNIT, ORDER, T0)] == ["ends"]  # still there before
