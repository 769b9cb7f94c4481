"""Budgets: caps per entity on a metered feature or a credit currency, rolled up the tree.

Consumption is attributed when it is recorded: a usage event or a debit names one entity, and
it counts for that entity and for every ancestor it had at that moment (its *path*, nearest
first). The path is stored with the event, so a budget's usage is a sum over the truth that a
later move or removal in the tree cannot change: what a team spent stays spent by that team.

A budget's periods are anchored at its creation. It grants ``requested`` while
``usage + reserved + requested <= limit`` (without a request, while something is left); a soft
budget never denies. Everything here is pure and takes ``now``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TypeVar

from allotment.domain.catalog import Enforcement
from allotment.domain.periods import Period, ResetPeriod, period_containing
from allotment.domain.quantities import Micros
from allotment.domain.reservations import Reservation

T = TypeVar("T")

EntityPath = tuple[str, ...]
"""An entity and its ancestors, nearest first; empty when a request names no entity."""

NO_PATH: EntityPath = ()


class BudgetKind(StrEnum):
    """Whether a budget counts usage units of a metered feature or credits of a currency."""

    FEATURE = "feature"  # counts usage units of a metered feature
    CURRENCY = "currency"  # counts credits debited from a pool


@dataclass(frozen=True, slots=True)
class Budget:
    entity: str
    target: str  # a metered feature or a currency id (they share one namespace)
    kind: BudgetKind
    limit: Micros
    reset: ResetPeriod
    enforcement: Enforcement
    created_at: datetime

    def window(self, now: datetime) -> Period:
        return period_containing(self.created_at, self.reset, now)


@dataclass(frozen=True, slots=True)
class Standing:
    """A budget at one instant: its current window, what was used in it and what is held."""

    budget: Budget
    window: Period
    usage: Micros
    reserved: Micros

    def exceeded_by(self, requested: Micros | None) -> bool:
        """Whether ``requested`` (None: any further use) would pass this budget's hard limit."""
        if self.budget.enforcement is Enforcement.SOFT:
            return False
        committed = self.usage + self.reserved
        if requested is None:
            return committed >= self.budget.limit
        return committed + requested > self.budget.limit


def budget_rank(budget: Budget, feature: str | None, currency: str | None) -> int | None:
    """Whether a budget of an entity on a request's path applies to it, and in which place
    among that entity's: its budget on the feature (0) before its budget on the currency (1).
    None when it applies to neither (an entity has one budget per target at most)."""
    if budget.kind is BudgetKind.FEATURE:
        return 0 if budget.target == feature else None
    return 1 if budget.target == currency else None


def budgets_on_path(
    budgets: Mapping[str, Sequence[Budget]],
    path: EntityPath,
    feature: str | None,
    currency: str | None,
) -> list[Budget]:
    """The budgets that apply to a request along ``path``: nearest entity first, and for each
    entity its budget on the feature before its budget on the currency."""
    return pick_on_path((budgets.get(entity, ()) for entity in path), _itself, feature, currency)


def pick_on_path(
    levels: Iterable[Iterable[T]],
    budget_of: Callable[[T], Budget],
    feature: str | None,
    currency: str | None,
) -> list[T]:
    """``budgets_on_path`` over anything that carries a budget (a cache's slots, say), given
    the path's levels nearest first, each its entity's own."""
    found: list[T] = []
    for level in levels:
        ranked: list[T | None] = [None, None]
        for item in level:
            rank = budget_rank(budget_of(item), feature, currency)
            if rank is not None:
                ranked[rank] = item
        found += [item for item in ranked if item is not None]
    return found


def _itself(budget: Budget) -> Budget:
    return budget


def held_for(budget: Budget, holds: Iterable[Reservation], now: datetime) -> Micros:
    """What live reservations made for the budget's entity or its subtree hold against it."""
    held = 0
    for hold in holds:
        if budget.entity not in hold.entity_path or not hold.holds(now):
            continue
        if budget.kind is BudgetKind.FEATURE and hold.feature == budget.target:
            held += hold.amount
        elif budget.kind is BudgetKind.CURRENCY and hold.currency == budget.target:
            held += hold.credits
    return held


def first_exceeded(
    standings: Iterable[Standing], units: Micros | None, credits: Micros | None
) -> Standing | None:
    """The nearest hard budget that a request of ``units`` (and ``credits``) would pass.

    None for either figure means a check without a request: it passes while something is left.
    """
    for standing in standings:
        requested = units if standing.budget.kind is BudgetKind.FEATURE else credits
        if standing.exceeded_by(requested):
            return standing
    return None


def roll_up(consumption: Iterable[tuple[EntityPath, Micros]]) -> dict[str, Micros]:
    """Each entity's total of the consumption attributed along the given paths: the definition
    that the stored budget counters, kept in step one event at a time, must always equal."""
    totals: dict[str, Micros] = {}
    for path, amount in consumption:
        for entity in path:
            totals[entity] = totals.get(entity, 0) + amount
    return totals
