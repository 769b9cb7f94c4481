"""What the entity and budget routes answer: an entity of a customer's tree, with the budgets
it holds and where each stands now."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from msgspec import Struct
from msgspec.structs import asdict

from allotment.domain.budgets import BudgetKind
from allotment.domain.catalog import Enforcement
from allotment.domain.entities import Entity
from allotment.domain.periods import ResetPeriod
from allotment.domain.quantities import to_json_number
from allotment.domain.timefmt import format_instant
from allotment.service.answers import BudgetFigures, InstantText, Quantity


class EntityBudgetView(Struct, frozen=True, kw_only=True):
    """``PUT /v1/customers/{id}/entities/{entity}/budgets/{feature_or_currency}``, and each of
    an entity's ``budgets``: the budget, with the entity's usage in its current window and what
    live reservations hold against it. ``kind`` says whether ``target`` is a metered feature
    (units) or a currency (credits)."""

    entity: str
    target: str
    kind: BudgetKind
    limit: Quantity
    usage: Quantity
    reserved: Quantity
    reset: ResetPeriod
    enforcement: Enforcement
    usage_period_start: InstantText
    usage_period_end: InstantText | None
    created_at: InstantText


class DeletedBudget(EntityBudgetView, frozen=True, kw_only=True):
    """``DELETE /v1/customers/{id}/entities/{entity}/budgets/{feature_or_currency}``: the
    budget removed, as it stood."""

    deleted: Literal[True]


class EntityView(Struct, frozen=True, kw_only=True):
    """``PUT``/``GET /v1/customers/{id}/entities/{entity}``: the entity, the ids of its
    children and its own budgets."""

    id: str
    parent: str | None
    kind: str | None
    name: str | None
    children: list[str]
    budgets: list[EntityBudgetView]
    created_at: InstantText


class DeletedEntity(EntityView, frozen=True, kw_only=True):
    """``DELETE /v1/customers/{id}/entities/{entity}``: the entity removed."""

    deleted: Literal[True]


def budget_view(figures: BudgetFigures) -> EntityBudgetView:
    standing, budget = figures.standing, figures.standing.budget
    return EntityBudgetView(
        entity=budget.entity,
        target=budget.target,
        kind=budget.kind,
        limit=to_json_number(budget.limit),
        usage=to_json_number(standing.usage),
        reserved=to_json_number(standing.reserved),
        reset=budget.reset,
        enforcement=budget.enforcement,
        usage_period_start=figures.window.start_text,
        usage_period_end=figures.window.end_text,
        created_at=format_instant(budget.created_at),
    )


def deleted_budget(figures: BudgetFigures) -> DeletedBudget:
    return DeletedBudget(**asdict(budget_view(figures)), deleted=True)


def entity_view(
    entity: Entity, children: Sequence[str], budgets: Sequence[BudgetFigures]
) -> EntityView:
    return EntityView(
        id=entity.id,
        parent=entity.parent,
        kind=entity.kind,
        name=entity.name,
        children=list(children),
        budgets=[budget_view(figures) for figures in budgets],
        created_at=format_instant(entity.created_at),
    )


def deleted_entity(entity: Entity, budgets: Sequence[BudgetFigures]) -> DeletedEntity:
    """A removed entity has no children: removing one that has any is refused."""
    return DeletedEntity(**asdict(entity_view(entity, [], budgets)), deleted=True)
