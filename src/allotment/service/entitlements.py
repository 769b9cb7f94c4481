"""Check and the entitlements list: the hot path, answered from snapshots in memory.

A check reads the customer's snapshot, resolves the feature (cached until a holding starts or
ends or the catalog changes) and reads the usage of the current window from the snapshot, and,
with an entity, that of each budget window on its path. When something is not cached yet it asks
the store to load it (every missing window in one job), then answers from memory again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from allotment.domain.budgets import Budget, held_for
from allotment.domain.catalog import Catalog, Feature, MeteredSpec
from allotment.domain.errors import NotFound
from allotment.domain.quantities import Micros
from allotment.domain.reservations import reserved_credits, reserved_usage
from allotment.domain.resolution import DenialReason
from allotment.service.answers import (
    BudgetFigures,
    CheckAnswer,
    CreditFigures,
    Entitlements,
    PeriodView,
    answer_for,
    denied,
)
from allotment.service.budgets import standings_in_job
from allotment.service.credits import CreditService
from allotment.service.gate import admission_denial
from allotment.service.ports import UnitOfWork
from allotment.service.projector import BudgetWindowLoaded, WindowLoaded
from allotment.service.runtime import Runtime
from allotment.service.snapshots import (
    BudgetSlot,
    CustomerSnapshot,
    budget_window_key,
    window_key,
)

# A snapshot or window can be dropped by a concurrent write between loading it and reading it;
# after this many loads the check is answered inside a store job instead, which cannot miss.
MAX_CACHE_LOADS = 3


@dataclass(frozen=True, slots=True)
class _MissingSnapshot:
    customer: str


@dataclass(frozen=True, slots=True)
class _MissingWindows:
    """Usage windows a check needs that the snapshot does not hold yet: the feature's (when
    ``feature`` is set) and those of budgets on the entity's path. One job loads them all."""

    customer: str
    feature: str | None
    window: PeriodView | None
    budgets: list[tuple[Budget, PeriodView]]


@dataclass(frozen=True, slots=True)
class _NeedsStore:
    """A credit-priced feature: its pool is read (and settled) inside a store job."""


_Miss = _MissingSnapshot | _MissingWindows | _NeedsStore
_Loadable = _MissingSnapshot | _MissingWindows
CreditLookup = Callable[[str], CreditFigures]


class EntitlementService:
    def __init__(self, runtime: Runtime, credits: CreditService) -> None:
        self._runtime = runtime
        self._credits = credits

    async def check(
        self, customer_id: str, feature_id: str, entity: str | None, requested: Micros | None
    ) -> CheckAnswer:
        for _ in range(MAX_CACHE_LOADS):
            answer = self.check_cached(customer_id, feature_id, entity, requested)
            if isinstance(answer, CheckAnswer):
                return answer
            if isinstance(answer, _NeedsStore):
                break
            await self._fill(answer)
        return await self._runtime.run(
            lambda uow: self.check_in_job(uow, customer_id, feature_id, entity, requested)
        )

    def check_cached(
        self, customer_id: str, feature_id: str, entity: str | None, requested: Micros | None
    ) -> CheckAnswer | _Miss:
        """The answer from memory alone, or what must be loaded first."""
        snapshot = self._runtime.snapshots.lookup(customer_id)
        if snapshot is False:
            return _MissingSnapshot(customer_id)
        assert not isinstance(snapshot, bool)
        catalog = self._runtime.catalog.current
        now = self._runtime.clock.now()
        return _evaluate(
            catalog, snapshot, customer_id, feature_id, entity, requested, now, None, None
        )

    def check_in_job(
        self,
        uow: UnitOfWork,
        customer_id: str,
        feature_id: str,
        entity: str | None,
        requested: Micros | None,
    ) -> CheckAnswer:
        snapshot = self._runtime.snapshot_in(uow, customer_id)
        now = self._runtime.clock.now()
        answer = _evaluate(
            self._runtime.catalog_in(uow),
            snapshot,
            customer_id,
            feature_id,
            entity,
            requested,
            now,
            uow,
            self._credit_lookup(uow, customer_id, now),
        )
        assert isinstance(answer, CheckAnswer)
        return answer

    async def entitlements(self, customer_id: str, entity: str | None) -> Entitlements:
        """A check result for every feature some source grants the customer."""
        runtime = self._runtime

        def job(uow: UnitOfWork) -> Entitlements:
            snapshot = runtime.snapshot_in(uow, customer_id)
            if snapshot is None:
                raise NotFound(f"no customer {customer_id!r}.", {"customer": customer_id})
            catalog, now = runtime.catalog_in(uow), runtime.clock.now()
            answers = []
            for feature in catalog.features.values():
                if snapshot.resolution(catalog, feature, now).offer is None:
                    continue
                answer = _evaluate(
                    catalog,
                    snapshot,
                    customer_id,
                    feature.id,
                    entity,
                    None,
                    now,
                    uow,
                    self._credit_lookup(uow, customer_id, now),
                )
                assert isinstance(answer, CheckAnswer)
                answers.append(answer)
            return Entitlements(customer_id, answers)

        return await runtime.run(job)

    def _credit_lookup(self, uow: UnitOfWork, customer: str, now: datetime) -> CreditLookup:
        credits, runtime = self._credits, self._runtime

        def figures(currency: str) -> CreditFigures:
            pool = credits.settled_pool(uow, customer, currency, now)
            credits.save(uow, customer, currency, pool, now)
            limit = credits.overdraft_limit(uow, customer, currency, now)
            held = reserved_credits(runtime.live_holds(uow, customer, now), currency, now)
            return CreditFigures(currency, pool.available(held), limit)

        return figures

    async def _fill(self, miss: _Loadable) -> None:
        await self._runtime.run(lambda uow: self._load(uow, miss))

    def _load(self, uow: UnitOfWork, miss: _Loadable) -> None:
        runtime = self._runtime
        if isinstance(miss, _MissingSnapshot):
            runtime.load_snapshot(uow, miss.customer)
            return
        customer = miss.customer
        if miss.feature is not None and miss.window is not None:
            period = miss.window.period
            used = uow.usage.window_usage(customer, miss.feature, period.start, period.end)
            uow.fill(WindowLoaded(customer, window_key(miss.feature, miss.window), used))
        for budget, view in miss.budgets:
            spent = uow.budgets.usage(customer, budget, view.period.start, view.period.end)
            uow.fill(BudgetWindowLoaded(customer, budget_window_key(budget, view), spent))


def _evaluate(
    catalog: Catalog,
    snapshot: CustomerSnapshot | None,
    customer_id: str,
    feature_id: str,
    entity: str | None,
    requested: Micros | None,
    now: datetime,
    uow: UnitOfWork | None,
    credit_lookup: CreditLookup | None,
) -> CheckAnswer | _Miss:
    """The check decision. Usage comes from ``uow`` when given, else from the snapshot."""
    feature: Feature | None = catalog.features.get(feature_id)
    kind = feature.kind if feature else None
    admission = admission_denial(snapshot, feature, entity)
    if admission is not None:
        known_kind = None if admission is DenialReason.FEATURE_NOT_FOUND else kind
        return denied(customer_id, feature_id, entity, admission, known_kind, requested)
    assert snapshot is not None
    assert feature is not None
    derived = snapshot.derived_for(catalog, now)
    resolution = derived.resolution(snapshot.holdings, feature, now)
    offer = resolution.offer
    if offer is None:
        assert resolution.denial is not None
        return denied(customer_id, feature_id, entity, resolution.denial, kind, requested)
    spec = offer.spec
    window = None
    used = reserved = 0
    budgets: list[BudgetFigures] = []
    if isinstance(spec, MeteredSpec):
        window, key = derived.current_window(feature_id, offer.anchor, spec.reset, now)
        slots: list[BudgetSlot] = []
        if entity is not None:
            currency = spec.credit_cost.currency if spec.credit_cost is not None else None
            _, slots = snapshot.path_and_budgets(entity, feature_id, currency)
        if uow is not None:
            period = window.period
            used = uow.usage.window_usage(customer_id, feature_id, period.start, period.end)
            live = uow.reservations.live(customer_id, now)
            reserved = reserved_usage(live, feature_id, now)
            budgets = standings_in_job(uow, customer_id, slots, live, now)
        else:
            cached = snapshot.windows.get(key)
            cached_budgets, missing = _cached_budgets(snapshot, slots, now)
            if cached is None or missing:
                if cached is None:
                    return _MissingWindows(customer_id, feature_id, window, missing)
                return _MissingWindows(customer_id, None, None, missing)
            budgets = cached_budgets
            used = cached
            if snapshot.holds:
                reserved = reserved_usage(snapshot.holds.values(), feature_id, now)
    credits = None
    if isinstance(spec, MeteredSpec) and spec.credit_cost is not None:
        currency = spec.credit_cost.currency
        if credit_lookup is not None:
            credits = credit_lookup(currency)
        else:
            # From memory while the pool's figures hold: no grant has entered or left since
            # they were saved, and no period's block has come due.
            figures = snapshot.pools.get(currency)
            if figures is None or not figures.holds_at(catalog, now):
                return _NeedsStore()
            held = reserved_credits(snapshot.holds.values(), currency, now)
            credits = CreditFigures(currency, figures.balance - held, figures.overdraft_limit)
    return answer_for(
        customer_id,
        feature_id,
        entity,
        offer,
        kind=feature.kind,
        window=window,
        used=used,
        reserved=reserved,
        requested=requested,
        credits=credits,
        budgets=budgets,
    )


def _cached_budgets(
    snapshot: CustomerSnapshot, slots: list[BudgetSlot], now: datetime
) -> tuple[list[BudgetFigures], list[tuple[Budget, PeriodView]]]:
    """Where each budget stands, from the snapshot, and the windows it does not hold yet."""
    figures, missing = [], []
    holds = snapshot.holds
    for slot in slots:
        view, key = slot.window_at(now)
        usage = snapshot.budget_windows.get(key)
        if usage is None:
            missing.append((slot.budget, view))
            continue
        held = held_for(slot.budget, holds.values(), now) if holds else 0
        figures.append(slot.figures(view, key, usage, held))
    return figures, missing
