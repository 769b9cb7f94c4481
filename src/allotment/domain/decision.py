"""The access decision for one resolved feature, and what is left of its limit."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from allotment.domain.budgets import Standing, first_exceeded
from allotment.domain.catalog import BooleanSpec, Enforcement, NumericSpec, Spec
from allotment.domain.quantities import MICROS_PER_UNIT, Micros
from allotment.domain.resolution import DenialReason


@dataclass(frozen=True, slots=True)
class PoolStanding:
    """A credit pool as a decision reads it: what is available after live holds, and how far
    below zero a hard decision may take it (None: soft without bound)."""

    available: Micros
    overdraft_limit: Micros | None


def decide_consumption(
    *,
    units: Micros | None,
    credits: Micros | None,
    limit: Spec | None = None,
    used: Micros = 0,
    reserved: Micros = 0,
    budgets: Iterable[Standing] = (),
    pool: PoolStanding | None = None,
) -> DenialReason | None:
    """The one decision on consuming, for checks, usage, reservations and debits.

    A request of ``units`` that costs ``credits`` (None for either: a check without a request,
    which passes while something is left) is refused first by the customer's ``limit`` (with
    ``used`` and ``reserved`` counted against it), then by the nearest hard budget on the
    entity's path it would pass, then by the credit ``pool``; the first that refuses names the
    reason. A caller leaves out what does not apply: a debit has no feature limit, a report
    that costs nothing no pool.
    """
    if limit is not None:
        reason = decide(limit, used, reserved, units)
        if reason is not None:
            return reason
    if first_exceeded(budgets, units, credits) is not None:
        return DenialReason.BUDGET_EXCEEDED
    if pool is not None:
        requested = credits is not None
        return decide_credits(credits or 0, pool.available, pool.overdraft_limit, requested)
    return None


def decide(
    spec: Spec, used: Micros, reserved: Micros, requested: Micros | None
) -> DenialReason | None:
    """Why ``requested`` (or, when None, any further use) is denied under ``spec``, if it is.

    A hard metered limit grants ``requested`` while ``used + reserved + requested <= limit``, and
    without a request while something is left; a soft or unlimited one always grants. A numeric
    feature grants a request up to its value.
    """
    if isinstance(spec, BooleanSpec):
        return None
    if isinstance(spec, NumericSpec):
        if requested is not None and spec.value is not None and requested > spec.value:
            return DenialReason.USAGE_LIMIT_EXCEEDED
        return None
    if spec.limit is None or spec.enforcement is Enforcement.SOFT:
        return None
    committed = used + reserved
    fits = committed + requested <= spec.limit if requested is not None else committed < spec.limit
    return None if fits else DenialReason.USAGE_LIMIT_EXCEEDED


def credit_cost(amount: Micros, per_unit: Micros) -> Micros:
    """Credits for ``amount`` units at ``per_unit`` each, rounded up to the micro-credit: a
    fraction of a micro-credit is charged, never given away."""
    return -((-amount * per_unit) // MICROS_PER_UNIT)


def decide_credits(
    cost: Micros, available: Micros, overdraft_limit: Micros | None, requested: bool
) -> DenialReason | None:
    """A hard pool grants ``cost`` while available may fall to -limit (None: no bound); without
    a request, while something is left above that floor."""
    if overdraft_limit is None:
        return None
    floor = -overdraft_limit
    fits = available - cost >= floor if requested else available > floor
    return None if fits else DenialReason.INSUFFICIENT_CREDITS


def remaining(limit: Micros | None, used: Micros, reserved: Micros) -> Micros | None:
    """What is left of ``limit``: never negative, None when unlimited."""
    if limit is None:
        return None
    return max(0, limit - used - reserved)
