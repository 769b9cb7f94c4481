"""Budgets per entity: define them, and read where each stands for a decision.

A budget caps an entity's usage of a metered feature, or its debits in a credit currency, per
period anchored at the budget's creation. Decisions that consume (usage with ``enforce``,
reservations, debits) read every budget on the entity's path inside their own store job, so a
budget is enforced in the same atomic step as the customer's limit and credit pool.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from allotment.domain.budgets import Budget, BudgetKind, Standing, held_for
from allotment.domain.catalog import Enforcement, FeatureKind
from allotment.domain.errors import Conflict, InvalidRequest, NotFound
from allotment.domain.periods import ResetPeriod
from allotment.domain.quantities import Micros
from allotment.domain.reservations import Reservation
from allotment.domain.timefmt import whole_second
from allotment.service.answers import BudgetFigures, PeriodView
from allotment.service.entity_tree import BudgetSlot
from allotment.service.entity_views import (
    DeletedBudget,
    EntityBudgetView,
    budget_view,
    deleted_budget,
)
from allotment.service.ports import UnitOfWork
from allotment.service.runtime import Runtime


def standings_in_job(
    uow: UnitOfWork,
    customer_id: str,
    slots: Sequence[BudgetSlot],
    holds: Iterable[Reservation],
    now: datetime,
    usage_at: datetime | None = None,
) -> list[BudgetFigures]:
    """Where each budget stands at ``now``, read from the store inside a job; ``holds`` are
    the customer's live reservations. Feature budgets are read in their window containing
    ``usage_at`` when given: a report dated in the past counts, and is decided, there."""
    if not slots:
        return []
    holds = list(holds)
    views = []
    for slot in slots:
        view = slot.window_at(now)[0]
        if (
            usage_at is not None
            and slot.budget.kind is BudgetKind.FEATURE
            and not view.period.contains(usage_at)
        ):
            # Another window than now's: not cached in the slot, which checks share.
            view = PeriodView.of(slot.budget.window(usage_at))
        views.append(view)
    windows = [(s.budget, v.start_micros, v.end_micros) for s, v in zip(slots, views, strict=True)]
    usages = uow.budgets.usages(customer_id, windows)
    figures = []
    for slot, view, usage in zip(slots, views, usages, strict=True):
        window = view.period
        # Live holds are held now: they count in the window that contains now only.
        held = held_for(slot.budget, holds, now) if holds and window.contains(now) else 0
        figures.append(BudgetFigures(Standing(slot.budget, window, usage, held), view))
    return figures


def after_consuming(
    figures: Sequence[BudgetFigures], units: Micros, credits: Micros, at: datetime
) -> list[BudgetFigures]:
    """The standings once ``units`` of the feature and ``credits`` were recorded at ``at``."""
    updated = []
    for figure in figures:
        standing = figure.standing
        added = units if standing.budget.kind is BudgetKind.FEATURE else credits
        if added and standing.window.contains(at):
            standing = Standing(
                standing.budget, standing.window, standing.usage + added, standing.reserved
            )
        updated.append(BudgetFigures(standing, figure.window))
    return updated


class BudgetService:
    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    async def put(
        self,
        customer_id: str,
        entity_id: str,
        target: str,
        *,
        limit: Micros,
        reset: ResetPeriod,
        enforcement: Enforcement,
    ) -> tuple[EntityBudgetView, bool]:
        runtime = self._runtime

        def job(uow: UnitOfWork) -> tuple[EntityBudgetView, bool]:
            _entity_of(uow, customer_id, entity_id, writing=True)
            kind = _target_kind(runtime, uow, target)
            existing = uow.budgets.get(customer_id, entity_id, target)
            now = runtime.clock.now()
            budget = Budget(
                entity=entity_id,
                target=target,
                kind=kind,
                limit=limit,
                reset=reset,
                enforcement=enforcement,
                # The periods stay anchored at the budget's creation when it is changed.
                created_at=existing.created_at if existing else whole_second(now),
            )
            uow.budgets.save(customer_id, budget)
            runtime.entity_changed(uow, customer_id, entity_id)
            holds = runtime.live_holds(uow, customer_id, now)
            (figures,) = standings_in_job(uow, customer_id, [BudgetSlot(budget)], holds, now)
            return budget_view(figures), existing is None

        return await runtime.run(job)

    async def delete(self, customer_id: str, entity_id: str, target: str) -> DeletedBudget:
        runtime = self._runtime

        def job(uow: UnitOfWork) -> DeletedBudget:
            _entity_of(uow, customer_id, entity_id, writing=False)
            budget = uow.budgets.get(customer_id, entity_id, target)
            if budget is None:
                raise NotFound(f"entity {entity_id!r} has no budget on {target!r}.")
            now = runtime.clock.now()
            holds = runtime.live_holds(uow, customer_id, now)
            (figures,) = standings_in_job(uow, customer_id, [BudgetSlot(budget)], holds, now)
            uow.budgets.delete(customer_id, entity_id, target)
            runtime.entity_changed(uow, customer_id, entity_id)
            return deleted_budget(figures)

        return await runtime.run(job)


def _entity_of(uow: UnitOfWork, customer_id: str, entity_id: str, *, writing: bool) -> None:
    customer = uow.customers.get(customer_id)
    if customer is None:
        raise NotFound(f"no customer {customer_id!r}.", {"customer": customer_id})
    if writing and customer.is_archived:
        raise Conflict(f"customer {customer_id!r} is archived.")
    if uow.entities.get(customer_id, entity_id) is None:
        raise NotFound(f"customer {customer_id!r} has no entity {entity_id!r}.")


def _target_kind(runtime: Runtime, uow: UnitOfWork, target: str) -> BudgetKind:
    """A budget caps a metered feature (in its units) or a currency (in credits)."""
    catalog = runtime.catalog_in(uow)
    feature = catalog.features.get(target)
    if feature is not None:
        if feature.kind is not FeatureKind.METERED:
            raise InvalidRequest(
                f"feature {target!r} is {feature.kind}; budgets cap metered features and"
                " currencies only.",
                {"field": "target"},
            )
        return BudgetKind.FEATURE
    if target in catalog.currencies:
        return BudgetKind.CURRENCY
    raise InvalidRequest(
        f"{target!r} is neither a feature nor a currency of the catalog.", {"field": "target"}
    )
