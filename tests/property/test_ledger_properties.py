"""The credits ledger under random sequences of grants, debits, voids and clock moves.

After every step the entries written so far must explain the pool exactly: replaying them gives
every grant's remaining and the overdraft, balance_after is the running sum, a refused hard debit
writes nothing, an allowed one stays within the overdraft limit, nothing goes negative, and the
grants a debit draws from do not depend on the order the pool happens to hold them in.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import event, given, settings
from hypothesis import strategies as st

from allotment.domain.catalog import BURN_ORDER_KEYS, CreditCategory
from allotment.domain.credits import (
    Entry,
    EntryContext,
    EntryType,
    Grant,
    GrantStatus,
    Pool,
    replay,
    revenue,
    revenue_totals,
)

UNIT = 1_000_000
T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)

amounts = st.one_of(
    st.integers(min_value=1, max_value=100).map(lambda credits: credits * UNIT),
    st.integers(min_value=1, max_value=100 * UNIT),
)
limits = st.one_of(
    st.none(),
    st.just(0),
    st.integers(min_value=0, max_value=50).map(lambda credits: credits * UNIT),
    st.integers(min_value=0, max_value=50 * UNIT),
)


@dataclass(frozen=True)
class AddGrant:
    tag: int  # part of the id, so that ids do not follow creation order
    amount: int
    category: CreditCategory
    priority: int
    cost_basis: int
    effective_minutes: int  # from now; negative is backdated
    lifetime_minutes: int | None  # from effective_at; None never expires


def grant_of(spec: AddGrant, made: int, now: datetime) -> Grant:
    """The grant ``spec`` describes, the ``made``-th of the run, made at ``now``."""
    effective = now + timedelta(minutes=spec.effective_minutes)
    expires = (
        None
        if spec.lifetime_minutes is None
        else effective + timedelta(minutes=spec.lifetime_minutes)
    )
    return Grant(
        id=f"g{spec.tag:02d}-{made}",
        amount=spec.amount,
        category=spec.category,
        cost_basis=spec.cost_basis,
        priority=spec.priority,
        effective_at=effective,
        expires_at=expires,
        created_at=now,
    )


@dataclass(frozen=True)
class Debit:
    amount: int
    enforce: bool
    limit: int | None
    reserved: int  # held by open reservations; counts against a hard decision
    edge: int | None  # when set, the amount is the one that leaves -limit - edge


@dataclass(frozen=True)
class Void:
    index: int


@dataclass(frozen=True)
class Advance:
    minutes: int


add_grant = st.builds(
    AddGrant,
    tag=st.integers(min_value=0, max_value=99),
    amount=amounts,
    category=st.sampled_from(CreditCategory),
    priority=st.sampled_from([0, 10, 50, 50, 100]),
    cost_basis=st.sampled_from([0, 1, 10_000, 15_000, UNIT, 2_500_001]),
    effective_minutes=st.one_of(st.just(0), st.integers(min_value=-180, max_value=300)),
    lifetime_minutes=st.one_of(st.none(), st.integers(min_value=1, max_value=240)),
)
debit = st.builds(
    Debit,
    amount=amounts,
    enforce=st.booleans(),
    limit=limits,
    reserved=st.one_of(st.just(0), st.integers(min_value=0, max_value=20 * UNIT)),
    edge=st.one_of(st.none(), st.sampled_from([-1, 0, 1])),
)
void = st.builds(Void, index=st.integers(min_value=0, max_value=1_000))
advance = st.builds(Advance, minutes=st.one_of(st.just(0), st.integers(min_value=1, max_value=480)))
operations = st.lists(
    st.one_of(add_grant, add_grant, debit, debit, debit, void, advance, advance),
    min_size=12,
    max_size=40,
)
burn_orders = st.lists(st.sampled_from(sorted(BURN_ORDER_KEYS)), unique=True, max_size=7)


def copy_of(pool: Pool, shuffle: random.Random | None = None) -> Pool:
    """The same grants and overdraft with no entries, the grants in another order if asked."""
    items = list(pool.grants.items())
    if shuffle is not None:
        shuffle.shuffle(items)
    return Pool(grants=dict(items), overdraft=pool.overdraft)


def rows(entries: list[Entry]) -> list[tuple[EntryType, str | None, int]]:
    return [(e.type, e.grant, e.amount) for e in entries]


def check_invariants(pool: Pool, now: datetime) -> None:
    entries = pool.entries
    state = replay(rows(entries))

    # (1) Replaying every entry written so far reproduces the pool exactly.
    for grant_id, grant in pool.grants.items():
        assert state.remaining.get(grant_id, 0) == grant.remaining, grant_id
    assert set(state.remaining) <= set(pool.grants)
    assert state.overdraft == pool.overdraft
    assert state.balance == pool.balance

    # (2) balance_after is the running sum of amounts, and the last one is the balance.
    running = 0
    for entry in entries:
        running += entry.amount
        assert entry.balance_after == running
        assert entry.at <= now
    assert running == pool.balance
    if entries:
        assert entries[-1].balance_after == pool.balance

    # (5) Nothing negative.
    assert pool.overdraft >= 0
    for grant in pool.grants.values():
        assert 0 <= grant.remaining <= grant.amount

    # (6) Each grant's entries sum to its remaining; those without a grant to -overdraft.
    sums: dict[str | None, int] = {}
    for entry in entries:
        sums[entry.grant] = sums.get(entry.grant, 0) + entry.amount
    for grant_id, grant in pool.grants.items():
        assert sums.get(grant_id, 0) == grant.remaining
    assert sums.get(None, 0) == -pool.overdraft

    # Signs by type, as the contract writes them.
    for entry in entries:
        if entry.type in (EntryType.GRANT, EntryType.ADJUSTMENT):
            assert entry.amount > 0
        else:
            assert entry.amount < 0
        if entry.grant is None:
            assert entry.type in (EntryType.DEBIT, EntryType.ADJUSTMENT)
        if entry.type is EntryType.ADJUSTMENT:
            assert entry.grant is None

    # Each grant enters the ledger once, at its effective time, unless voided before; it leaves
    # at its expiry time with what remained, and then holds nothing.
    for grant_id, grant in pool.grants.items():
        own = [e for e in entries if e.grant == grant_id]
        credits = [e for e in own if e.type is EntryType.GRANT]
        voided_first = grant.voided_at is not None and grant.voided_at < grant.effective_at
        entered = max(grant.effective_at, grant.created_at)  # late grants enter when made
        expired_first = grant.expires_at is not None and grant.expires_at <= entered
        if grant.effective_at <= now and not voided_first and not expired_first:
            assert [(e.amount, e.at) for e in credits] == [(grant.amount, entered)]
            assert own[0] is credits[0]
        else:
            assert own == []
        expiries = [e for e in own if e.type is EntryType.EXPIRY]
        assert len(expiries) <= 1
        if expiries:
            assert expiries[0].at == grant.expires_at
        if grant.expires_at is not None and grant.expires_at <= now:
            assert grant.remaining == 0
            assert grant.status(now) in (GrantStatus.EXPIRED, GrantStatus.VOIDED)
        if grant.voided_at is not None:
            assert grant.remaining == 0
            assert grant.status(now) is GrantStatus.VOIDED
        if grant.status(now) is GrantStatus.SCHEDULED:
            assert own == []

    # A new grant first pays back the overdraft: credits and an overdraft never coexist.
    if pool.overdraft > 0:
        assert all(g.status(now) is not GrantStatus.ACTIVE for g in pool.grants.values())

    # Every micro-credit granted is remaining, consumed, expired or voided; revenue splits the
    # money of what was not voided exactly.
    figures = revenue(pool.grants, state)
    # The pool keeps revenue in step with each entry: the same as rebuilt from the ledger.
    assert pool.revenue == revenue_totals(pool.grants, state)
    assert pool.revenue.figures() == figures
    voided = {g: -sums_of(entries, g, EntryType.VOID) for g in pool.grants}
    total = 0
    for grant_id, grant in pool.grants.items():
        granted = sums_of(entries, grant_id, EntryType.GRANT)
        assert (
            state.remaining.get(grant_id, 0)
            + state.consumed.get(grant_id, 0)
            + state.expired.get(grant_id, 0)
            + voided[grant_id]
            == granted
        )
        total += (granted - voided[grant_id]) * grant.cost_basis
    money = figures.deferred + figures.recognized + figures.breakage
    assert money == Decimal(total) / Decimal(10**12)
    assert min(figures.deferred, figures.recognized, figures.breakage) >= 0


def check_settled(written: list[Entry], pool: Pool) -> None:
    """What settle writes: events in time order; each grant entry, when the pool was overdrawn,
    followed by a debit of -P on that grant and an adjustment of +P without one."""
    assert [e.at for e in written] == sorted(e.at for e in written)
    i = 0
    while i < len(written):
        entry = written[i]
        assert entry.type in (EntryType.GRANT, EntryType.EXPIRY)
        assert entry.grant is not None
        if entry.type is EntryType.EXPIRY:
            assert entry.at == pool.grants[entry.grant].expires_at
            i += 1
            continue
        made = pool.grants[entry.grant]
        assert entry.at == max(made.effective_at, made.created_at)  # late grants enter when made
        if i + 1 < len(written) and written[i + 1].type is EntryType.DEBIT:
            payback, adjustment = written[i + 1], written[i + 2]
            assert (payback.grant, payback.at) == (entry.grant, entry.at)
            assert (adjustment.type, adjustment.grant) == (EntryType.ADJUSTMENT, None)
            assert adjustment.amount == -payback.amount
            assert adjustment.at == entry.at
            assert -payback.amount <= entry.amount
            # The pair leaves the balance where the grant entry put it.
            assert adjustment.balance_after == entry.balance_after
            i += 3
        else:
            assert entry.balance_after - entry.amount >= 0  # not overdrawn: no payback
            i += 1


def sums_of(entries: list[Entry], grant_id: str, kind: EntryType) -> int:
    return sum(e.amount for e in entries if e.grant == grant_id and e.type is kind)


@settings(max_examples=150, deadline=None)
@given(order=burn_orders, ops=operations, seed=st.randoms(use_true_random=False))
def test_the_ledger_explains_the_pool_after_every_step(
    order: list[str], ops: list[object], seed: random.Random
) -> None:
    pool = Pool()
    now = T0
    made = 0
    for op in ops:
        written_before = len(pool.entries)
        if isinstance(op, AddGrant):
            made += 1
            grant = grant_of(op, made, now)
            pool.add_grant(grant, now, EntryContext(idempotency_key=f"k{made}"))
            written = pool.entries[written_before:]
            check_settled(written, pool)
            for entry in written:
                if entry.type is EntryType.GRANT and entry.grant == grant.id:
                    assert entry.idempotency_key == f"k{made}"
        elif isinstance(op, Debit):
            pool.settle(now)
            check_settled(pool.entries[written_before:], pool)
            written_before = len(pool.entries)
            context = EntryContext(idempotency_key=f"d{written_before}", feature="ai-requests")
            amount = op.amount
            if op.edge is not None and op.limit is not None:
                # Right at the boundary: available - amount == -limit - edge.
                amount = pool.available(op.reserved) + op.limit + op.edge
                if amount <= 0:
                    amount = op.amount
                else:
                    event(f"edge {op.edge}")
                    assert pool.allows(amount, op.reserved, op.limit) == (op.edge <= 0)
            before = dict(pool.grants), pool.overdraft, pool.balance
            if op.enforce and not pool.allows(amount, op.reserved, op.limit):
                # (3) A refusal writes nothing and changes nothing; and it was needed: the
                # debit would have taken the pool below -limit.
                event("hard debit refused")
                assert op.limit is not None
                assert len(pool.entries) == written_before
                assert (dict(pool.grants), pool.overdraft, pool.balance) == before
                trial = copy_of(pool)
                trial.debit(amount, order, now)
                assert trial.available(op.reserved) < -op.limit
            else:
                # (7) The same debit on the same grants held in another order draws the same.
                shuffled = copy_of(pool, seed)
                other = shuffled.debit(amount, order, now)
                written = pool.debit(amount, order, now, context)
                assert all(e.at == now and e.type is EntryType.DEBIT for e in written)
                assert all(
                    (e.idempotency_key, e.feature) == (context.idempotency_key, context.feature)
                    for e in written
                )
                assert rows(written) == rows(other)
                assert shuffled.grants == pool.grants
                assert pool.entries[written_before:] == written
                assert sum(e.amount for e in written) == -amount
                assert pool.balance == before[2] - amount
                # In burn order, one entry per grant touched, every one drained but the last,
                # and the overdraft only once the spendable grants are all drained.
                spendable = [g.id for g in Pool(grants=before[0]).spendable(order, now)]
                touched = [e.grant for e in written if e.grant is not None]
                assert touched == spendable[: len(touched)]
                for grant_id in touched[:-1]:
                    assert pool.grants[grant_id].remaining == 0
                if written[-1].grant is None:
                    assert touched == spendable
                    assert all(pool.grants[g].remaining == 0 for g in spendable)
                else:
                    assert len(touched) == len(written)
                # (4) An allowed hard debit keeps available at or above -limit.
                if op.enforce and op.limit is not None:
                    assert pool.available(op.reserved) >= -op.limit
        elif isinstance(op, Void):
            pool.settle(now)
            check_settled(pool.entries[written_before:], pool)
            written_before = len(pool.entries)
            if pool.grants:
                grant_id = sorted(pool.grants)[op.index % len(pool.grants)]
                status = pool.grants[grant_id].status(now)
                if status not in (GrantStatus.VOIDED, GrantStatus.EXPIRED):  # else 409
                    remaining = pool.grants[grant_id].remaining
                    balance = pool.balance
                    pool.void(grant_id, now)
                    written = pool.entries[written_before:]
                    expected = [(EntryType.VOID, grant_id, -remaining)] if remaining else []
                    assert rows(written) == expected
                    assert pool.balance == balance - remaining
        else:
            assert isinstance(op, Advance)
            now += timedelta(minutes=op.minutes)
            pool.settle(now)
            check_settled(pool.entries[written_before:], pool)
        for entry in pool.entries[written_before:]:
            event(f"wrote {entry.type}{'' if entry.grant else ' without grant'}")
        check_invariants(pool, now)
