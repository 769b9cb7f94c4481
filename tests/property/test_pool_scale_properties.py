"""Pools of many grants, kept the three ways an adapter may keep them, write the same ledger.

A pool keeps its spendable grants in burn order and its grants' instants in a queue, and lets
grants that ended go once it is stored. Under random sequences of batches of grants, debits,
voids and clock moves, three pools get the same operations:

- ``kept``: never stored, it keeps every grant it ever held (the pure core, as the other
  property tests use it);
- ``stored``: stored after every step, so ended grants leave it (the SQLite store's pools, kept
  between jobs);
- ``reloaded``: stored, then rebuilt from its live grants, overdraft and revenue after every
  step (a pool loaded from the tables, as the memory adapter and a cold SQLite store load it).

Every step must write exactly the same entries in all three, each debit in the order a sorted
list of the spendable grants gives, and the figures kept in step (balance, what the grants hold
and will hold, revenue) must be what the ledger replays to.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from hypothesis import event, given, settings
from hypothesis import strategies as st

from allotment.domain.credits import (
    EntryContext,
    EntryType,
    Grant,
    GrantStatus,
    Pool,
    replay,
    revenue_totals,
)
from tests.property.test_ledger_properties import (
    T0,
    UNIT,
    AddGrant,
    Advance,
    add_grant,
    advance,
    amounts,
    burn_orders,
    grant_of,
)


@dataclass(frozen=True)
class AddMany:
    grants: list[AddGrant]


@dataclass(frozen=True)
class Spend:
    amount: int


@dataclass(frozen=True)
class VoidOne:
    index: int


operations = st.lists(
    st.one_of(
        st.builds(AddMany, grants=st.lists(add_grant, min_size=1, max_size=40)),
        st.builds(Spend, amount=amounts),
        # Large debits drain many grants at once.
        st.builds(Spend, amount=st.integers(min_value=1, max_value=3_000).map(lambda c: c * UNIT)),
        st.builds(VoidOne, index=st.integers(min_value=0, max_value=10_000)),
        advance,
    ),
    min_size=5,
    max_size=30,
)


def rebuilt(pool: Pool) -> Pool:
    """``pool`` as an adapter loads it: its live grants, overdraft and revenue."""
    live = {g.id: g for g in pool.grants.values() if not g.ended}
    assert len(live) == len(pool.grants)  # a stored pool holds nothing else
    return Pool(
        grants=live, overdraft=pool.overdraft, burn_order=pool.burn_order, revenue=pool.revenue
    )


def reference_horizon(pool: Pool, now: datetime) -> datetime | None:
    instants = []
    for grant in pool.grants.values():
        if grant.voided_at is None and not grant.expired:
            if not grant.credited:
                instants.append(max(grant.effective_at, grant.created_at))
            if grant.expires_at is not None:
                instants.append(grant.expires_at)
    future = [instant for instant in instants if instant > now]
    return min(future) if future else None


def void_in(pool: Pool, grant_id: str, kept: Grant, now: datetime) -> None:
    """Void as the service does: a grant that left the pool is read back (used up ones only)."""
    if grant_id not in pool.grants:
        assert kept.status(now) is GrantStatus.DEPLETED
        pool.include(kept)
    pool.void(grant_id, now)


@settings(max_examples=120, deadline=None)
@given(order=burn_orders, ops=operations)
def test_pools_that_let_ended_grants_go_write_the_same_ledger(
    order: list[str], ops: list[object]
) -> None:
    kept, stored, reloaded = (Pool(burn_order=order) for _ in range(3))
    pools = [kept, stored, reloaded]
    everything: list[object] = []  # every entry written, from ``kept``
    now, made = T0, 0
    for op in ops:
        marks = [len(p.entries) for p in pools]
        if isinstance(op, AddMany):
            for spec in op.grants:
                made += 1
                grant = grant_of(spec, made, now)
                # No context: a grant entry carries its request's only when it enters in the
                # job that made it, and ``kept`` has no jobs (tests/unit/test_pool_index.py).
                for pool in pools:
                    pool.include(grant)
            for pool in pools:
                pool.settle(now)
        elif isinstance(op, Spend):
            for pool in pools:
                pool.settle(now)
            spendable = [g.id for g in kept.spendable(order, now)]
            context = EntryContext(idempotency_key=f"d{len(everything)}")
            written = [pool.debit(op.amount, order, now, context) for pool in pools]
            touched = [e.grant for e in written[0] if e.grant is not None]
            assert touched == spendable[: len(touched)]
            event(f"debit drew from {min(len(touched), 5)}+ grants")
        elif isinstance(op, VoidOne):
            for pool in pools:
                pool.settle(now)
            grant_id = sorted(kept.grants)[op.index % len(kept.grants)] if kept.grants else None
            if grant_id is not None:
                grant = kept.grants[grant_id]
                if grant.status(now) not in (GrantStatus.VOIDED, GrantStatus.EXPIRED):
                    for pool in pools:
                        void_in(pool, grant_id, grant, now)
        else:
            assert isinstance(op, Advance)
            now += timedelta(minutes=op.minutes)
            for pool in pools:
                pool.settle(now)
        news = [p.entries[mark:] for p, mark in zip(pools, marks, strict=True)]
        assert news[0] == news[1] == news[2]
        everything.extend(news[0])
        stored.stored()
        reloaded.stored()
        reloaded = rebuilt(reloaded)
        pools = [kept, stored, reloaded]

        live = {gid: g for gid, g in kept.grants.items() if not g.ended}
        assert dict(stored.grants) == dict(reloaded.grants) == live
        state = replay((e.type, e.grant, e.amount) for e in everything)  # type: ignore[attr-defined]
        for pool in pools:
            assert pool.balance == state.balance
            assert pool.overdraft == state.overdraft
            assert pool.revenue == revenue_totals(kept.grants, state)
            assert pool.held_and_scheduled() == sum(
                g.remaining if g.credited else g.amount for g in kept.grants.values()
            )
        assert stored.horizon(now) == reloaded.horizon(now) == reference_horizon(stored, now)
        assert kept.horizon(now) == reference_horizon(kept, now)
        for entry in news[0]:
            event(f"wrote {entry.type}")
            if entry.type is EntryType.GRANT:
                assert entry.amount > 0
