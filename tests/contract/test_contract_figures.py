"""The contract of the figures: a window's usage and a budget's usage equal the truth, whether
the window was read before, after or between the writes, backdated ones included; and what
would pass 64 bits is refused."""

from __future__ import annotations

import asyncio
import random
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from allotment.domain.budgets import Budget, BudgetKind, EntityPath
from allotment.domain.credits import Entry, EntryType, Pool
from allotment.domain.errors import InvalidRequest
from allotment.domain.quantities import MAX_COUNTER
from allotment.domain.reservations import ReservationStatus
from allotment.service.ports import UnitOfWork
from tests.contract.kit import (
    T0,
    Boom,
    ContractStore,
    append_usage,
    at,
    budget,
    debit_entry,
    entity,
    event,
    every_grant,
    grant,
    micros,
    reservation,
    run,
    save_pool,
    save_reservations,
    window_truth,
)

PATH: EntityPath = ("agent", "team", "org")


def window(store: ContractStore, start: datetime, end: datetime | None, **key: str) -> int:
    customer_id, feature = key.get("customer", "acme"), key.get("feature", "calls")
    return run(store, lambda uow: uow.usage.window_usage(customer_id, feature, start, end))


def spent(store: ContractStore, found: Budget, start: datetime, end: datetime | None) -> int:
    return run(store, lambda uow: uow.budgets.usage("acme", found, start, end))


def test_a_window_is_the_sum_of_its_events_from_start_to_before_end(store: ContractStore) -> None:
    run(
        store,
        lambda uow: append_usage(
            uow,
            event(1, at(hours=-1)),
            event(10, at()),
            event(100, at(hours=23, seconds=3599)),
            event(1000, at(1)),
            event(-7, at(hours=5)),
        ),
    )
    assert window(store, at(), at(1)) == 103
    assert window(store, at(), None) == 1103
    assert window(store, at(-1), at()) == 1
    assert window(store, at(5), at(6)) == 0


def test_windows_are_per_customer_and_feature(store: ContractStore) -> None:
    run(
        store,
        lambda uow: append_usage(
            uow,
            event(1, at()),
            event(20, at(), feature="tokens"),
            event(300, at(), customer_id="umbrella"),
        ),
    )
    assert window(store, at(), at(1)) == 1
    assert window(store, at(), at(1), feature="tokens") == 20
    assert window(store, at(), at(1), customer="umbrella") == 300
    assert window(store, at(), at(1), customer="nobody") == 0


def test_a_window_read_before_its_events_follows_them_backdated_ones_included(
    store: ContractStore,
) -> None:
    assert window(store, at(1), at(2)) == 0  # read first: the window is kept from here on
    run(store, lambda uow: append_usage(uow, event(5, at(1, hours=1))))
    assert window(store, at(1), at(2)) == 5
    assert window(store, at(2), at(3)) == 0  # a later window is read...
    run(store, lambda uow: append_usage(uow, event(7, at(1, hours=2))))  # ...then a backdated one
    assert window(store, at(1), at(2)) == 12
    assert window(store, at(), at(3)) == 12
    assert window(store, at(2), at(3)) == 0


def test_windows_equal_the_truth_however_reads_and_writes_interleave(
    store: ContractStore,
) -> None:
    rng = random.Random(20260302)
    truth: list[tuple[int, int, EntityPath]] = []
    windows = [(at(day), at(day + 1)) for day in range(4)]
    windows += [(at(), at(7)), (at(hours=12), at(2, hours=12)), (at(1), None)]
    for _ in range(60):
        if rng.random() < 0.4:
            start, end = rng.choice(windows)
            assert window(store, start, end) == window_truth(truth, start, end)
            continue
        amount = rng.choice([1, 2, 5, 100, -3])
        when = at(seconds=rng.randrange(0, 5 * 86_400))
        run(store, lambda uow, a=amount, w=when: append_usage(uow, event(a, w)))  # type: ignore[misc]
        truth.append((micros(when), amount, ()))
    for start, end in windows:
        assert window(store, start, end) == window_truth(truth, start, end)


def test_a_feature_budget_counts_the_events_along_its_entitys_path(store: ContractStore) -> None:
    run(
        store,
        lambda uow: append_usage(
            uow,
            event(1, at(), path=PATH),
            event(10, at(), path=("team", "org")),
            event(100, at(), path=("other", "org")),
            event(1000, at()),  # no entity: counts for no budget
            event(10_000, at(), feature="tokens", path=PATH),
            event(100_000, at(), customer_id="umbrella", path=PATH),
        ),
    )
    day = (at(), at(1))
    assert spent(store, budget("agent"), *day) == 1
    assert spent(store, budget("team"), *day) == 11
    assert spent(store, budget("org"), *day) == 111
    assert spent(store, budget("other"), *day) == 100
    assert spent(store, budget("nobody"), *day) == 0
    assert spent(store, budget("team", "tokens"), *day) == 10_000


def test_a_currency_budget_counts_the_credits_its_paths_debits_took(store: ContractStore) -> None:
    def write(uow: UnitOfWork) -> None:
        uow.hold_budgets("acme", PATH)
        uow.hold_pool("acme", "credits")
        pool = Pool()
        pool.add_grant(grant("g1", 50), at())
        pool.debit(30, (), at())  # no entity: counts for no budget
        uow.ledger.save_pool("acme", "credits", pool)
        pool = uow.ledger.load_pool("acme", "credits")
        pool.entries += [debit_entry(7, at(hours=1), PATH), debit_entry(5, at(hours=2), ("team",))]
        pool.entries.append(Entry(EntryType.ADJUSTMENT, None, 4, 0, at(hours=3), entity_path=PATH))
        uow.ledger.save_pool("acme", "credits", pool)

    run(store, write)
    credits = budget("team", "credits", kind=BudgetKind.CURRENCY)
    assert spent(store, credits, at(), at(1)) == 12
    assert spent(store, budget("agent", "credits", kind=BudgetKind.CURRENCY), at(), at(1)) == 7
    assert spent(store, credits, at(hours=1, seconds=1), at(1)) == 5
    assert spent(store, budget("team", "calls"), at(), at(1)) == 0  # a feature of that name


def test_budget_usages_are_read_together_in_order(store: ContractStore) -> None:
    run(store, lambda uow: append_usage(uow, event(3, at(), path=PATH), event(4, at(2), path=PATH)))
    windows = [
        (budget("agent"), micros(at()), micros(at(1))),
        (budget("org"), micros(at()), None),
        (budget("team", "credits", kind=BudgetKind.CURRENCY), micros(at()), None),
        (budget("team"), micros(at(1)), micros(at(3))),
    ]
    read = run(store, lambda uow: uow.budgets.usages("acme", windows))
    assert read == [3, 7, 0, 4]


def test_budget_windows_equal_the_truth_however_reads_and_writes_interleave(
    store: ContractStore,
) -> None:
    rng = random.Random(7)
    paths: list[EntityPath] = [PATH, ("team", "org"), ("org",), ("solo",), ()]
    usage: list[tuple[int, int, EntityPath]] = []
    spend: list[tuple[int, int, EntityPath]] = []
    windows = [(at(day), at(day + 1)) for day in range(3)] + [(at(), None), (at(1), at(8))]
    budgets = [
        budget(name, target, kind=kind)
        for name in ("agent", "team", "org", "solo")
        for target, kind in (("calls", BudgetKind.FEATURE), ("credits", BudgetKind.CURRENCY))
    ]
    for _ in range(60):
        roll = rng.random()
        path = rng.choice(paths)
        when = at(seconds=rng.randrange(0, 3 * 86_400))
        if roll < 0.35:
            found = rng.choice(budgets)
            start, end = rng.choice(windows)
            truth = usage if found.kind is BudgetKind.FEATURE else spend
            assert spent(store, found, start, end) == window_truth(truth, start, end, found.entity)
        elif roll < 0.7:
            amount = rng.choice([1, 4, 9, -2])
            run(store, lambda uow, a=amount, w=when, p=path: append_usage(uow, event(a, w, path=p)))  # type: ignore[misc]
            usage.append((micros(when), amount, path))
        else:
            credits = rng.choice([1, 6, 25])

            def debit(
                uow: UnitOfWork, c: int = credits, w: datetime = when, p: EntityPath = path
            ) -> None:
                pool = uow.ledger.load_pool("acme", "credits")
                pool.entries.append(debit_entry(c, w, p))
                save_pool(uow, pool)

            run(store, debit)
            if path:
                spend.append((micros(when), credits, path))
    for found in budgets:
        truth = usage if found.kind is BudgetKind.FEATURE else spend
        for start, end in windows:
            assert spent(store, found, start, end) == window_truth(truth, start, end, found.entity)


def test_what_was_attributed_stays_with_the_path_it_was_written_under(
    store: ContractStore,
) -> None:
    def tree(uow: UnitOfWork) -> None:
        uow.entities.save("acme", entity("org"))
        uow.entities.save("acme", entity("team", "org"))
        uow.entities.save("acme", entity("agent", "team"))
        uow.budgets.save("acme", budget("team"))

    run(store, tree)
    run(store, lambda uow: append_usage(uow, event(5, at(), path=PATH)))
    moved = entity("agent", None)
    run(store, lambda uow: uow.entities.save("acme", moved))
    run(store, lambda uow: append_usage(uow, event(7, at(), path=("agent",))))
    run(store, lambda uow: uow.entities.delete("acme", "team"))
    assert spent(store, budget("team"), at(), at(1)) == 5
    assert spent(store, budget("agent"), at(), at(1)) == 12
    assert spent(store, budget("org"), at(), at(1)) == 5


def test_reservations_are_not_usage(store: ContractStore) -> None:
    def hold(uow: UnitOfWork) -> None:
        save_reservations(uow, reservation("res_1", amount=9, entity="agent", entity_path=PATH))
        committed = reservation(
            "res_1",
            amount=9,
            entity="agent",
            entity_path=PATH,
            ended_at=at(),
            ended_as=ReservationStatus.COMMITTED,
            committed_amount=9,
        )
        uow.reservations.save(committed)

    run(store, hold)
    assert window(store, at(), at(1)) == 0
    assert spent(store, budget("agent"), at(), at(1)) == 0


# ---------------------------------------------------------------- 64 bits

HALF = MAX_COUNTER // 2 + 1  # two of them pass 64 bits


def test_a_window_whose_total_would_pass_64_bits_is_refused(store: ContractStore) -> None:
    run(store, lambda uow: append_usage(uow, event(HALF, at()), event(HALF, at(hours=1))))
    with pytest.raises(InvalidRequest):
        window(store, at(), at(1))
    assert window(store, at(), at(hours=1)) == HALF


def test_a_budget_window_holds_the_events_of_its_instants_to_the_microsecond(
    store: ContractStore,
) -> None:
    """Budget windows start and end on whole seconds; events fall anywhere between."""
    run(
        store,
        lambda uow: append_usage(
            uow,
            event(1, at(seconds=-0.000001), path=PATH),
            event(10, at(), path=PATH),
            event(100, at(seconds=0.5), path=PATH),
            event(1000, at(seconds=0.999999), path=("team",)),
            event(10_000, at(seconds=1), path=PATH),
        ),
    )
    assert spent(store, budget("team"), at(seconds=-1), at()) == 1
    assert spent(store, budget("team"), at(), at(seconds=1)) == 1110
    assert spent(store, budget("agent"), at(), at(seconds=1)) == 110
    assert spent(store, budget("org"), at(seconds=1), at(seconds=2)) == 10_000


@pytest.mark.parametrize("apart", [0, 3600], ids=["one second", "an hour apart"])
def test_an_unread_budget_window_whose_total_would_pass_64_bits_is_refused(
    store: ContractStore, apart: int
) -> None:
    run(
        store,
        lambda uow: append_usage(
            uow, event(HALF, at(), path=("team",)), event(HALF, at(seconds=apart), path=("team",))
        ),
    )
    with pytest.raises(InvalidRequest):
        spent(store, budget("team"), at(), at(1))


def test_a_report_that_would_take_a_read_window_past_64_bits_is_refused(
    store: ContractStore,
) -> None:
    assert window(store, at(), at(1)) == 0
    run(store, lambda uow: append_usage(uow, event(HALF, at())))
    with pytest.raises(InvalidRequest):
        run(store, lambda uow: append_usage(uow, event(HALF, at(hours=1))))
    run(store, lambda uow: append_usage(uow, event(-HALF, at(hours=1))))  # lowering it is fine
    assert window(store, at(), at(1)) == 0


def test_a_report_that_would_take_a_read_budget_window_past_64_bits_is_refused(
    store: ContractStore,
) -> None:
    team = budget("team")
    assert spent(store, team, at(), at(1)) == 0
    run(store, lambda uow: append_usage(uow, event(HALF, at(), path=("team",))))
    with pytest.raises(InvalidRequest):
        run(store, lambda uow: append_usage(uow, event(HALF, at(), path=("agent", "team"))))
    assert spent(store, team, at(), at(1)) == HALF
    assert spent(store, budget("agent"), at(), at(1)) == 0


def test_a_debit_that_would_take_a_read_currency_budget_past_64_bits_is_refused(
    store: ContractStore,
) -> None:
    team = budget("team", "credits", kind=BudgetKind.CURRENCY)
    assert spent(store, team, at(), at(1)) == 0

    def debit(uow: UnitOfWork) -> None:
        pool = uow.ledger.load_pool("acme", "credits")
        pool.entries.append(debit_entry(HALF, at(), ("team",)))
        save_pool(uow, pool)

    run(store, debit)
    with pytest.raises(InvalidRequest):
        run(store, debit)
    assert spent(store, team, at(), at(1)) == HALF
    assert (
        len(run(store, lambda uow: uow.ledger.list_entries("acme", "credits", None, 10)).items) == 1
    )


def test_a_pool_figure_past_64_bits_is_refused(store: ContractStore) -> None:
    def save(uow: UnitOfWork) -> None:
        pool = Pool()
        pool.add_grant(grant("g1", MAX_COUNTER + 1), T0)
        save_pool(uow, pool)

    with pytest.raises(InvalidRequest):
        run(store, save)
    assert run(store, lambda uow: every_grant(uow, "acme", "credits")) == {}


def test_instants_come_back_in_utc(store: ContractStore) -> None:
    elsewhere = at().astimezone(timezone(timedelta(hours=5)))
    run(store, lambda uow: uow.entities.save("acme", entity("team", created_at=elsewhere)))
    loaded = run(store, lambda uow: uow.entities.get("acme", "team"))
    assert loaded is not None
    assert loaded.created_at == T0
    assert loaded.created_at.utcoffset() == timedelta(0)


def test_figures_equal_the_truth_when_jobs_some_failing_run_together(store: ContractStore) -> None:
    """Jobs submitted together (one SQLite batch, or several): each reads windows, appends along
    a path and debits along it; every third fails after writing, and leaves nothing."""
    rng = random.Random(11)
    paths: list[EntityPath] = [PATH, ("team", "org"), ("solo",)]
    windows = [(at(), at(1)), (at(1), at(2)), (at(), None)]
    feature_budgets = [budget(name) for name in ("agent", "team", "org", "solo")]
    credit_budgets = [
        replace(b, target="credits", kind=BudgetKind.CURRENCY) for b in feature_budgets
    ]
    usage: list[tuple[int, int, EntityPath]] = []
    spend: list[tuple[int, int, EntityPath]] = []
    jobs = []
    for n in range(45):
        path, amount = rng.choice(paths), rng.choice([1, 3, 8])
        when = at(seconds=rng.randrange(0, 2 * 86_400))
        start, end = rng.choice(windows)
        fails = n % 3 == 2

        def job(
            uow: UnitOfWork,
            path: EntityPath = path,
            amount: int = amount,
            when: datetime = when,
            start: datetime = start,
            end: datetime | None = end,
            fails: bool = fails,
        ) -> None:
            uow.usage.window_usage("acme", "calls", start, end)
            for found in (*feature_budgets, *credit_budgets):
                uow.budgets.usage("acme", found, start, end)
            uow.hold_usage("acme")
            uow.hold_budgets("acme", path)
            uow.hold_pool("acme", "credits")
            uow.usage.append(event(amount, when, path=path))
            pool = uow.ledger.load_pool("acme", "credits")
            pool.entries.append(debit_entry(amount * 2, when, path))
            uow.ledger.save_pool("acme", "credits", pool)
            if fails:
                raise Boom

        jobs.append(job)
        if not fails:
            usage.append((micros(when), amount, path))
            spend.append((micros(when), amount * 2, path))

    async def together() -> list[object]:
        return await asyncio.gather(*(store.run(job) for job in jobs), return_exceptions=True)

    outcomes = asyncio.run(together())
    assert [isinstance(outcome, Boom) for outcome in outcomes] == [n % 3 == 2 for n in range(45)]
    for start, end in windows:
        assert window(store, start, end) == window_truth(usage, start, end)
        for found in feature_budgets:
            assert spent(store, found, start, end) == window_truth(usage, start, end, found.entity)
        for found in credit_budgets:
            assert spent(store, found, start, end) == window_truth(spend, start, end, found.entity)
    assert (
        len(run(store, lambda uow: uow.ledger.list_entries("acme", "credits", None, 100)).items)
        == 30
    )
