"""The access decision for one resolved feature, and what is left of its limit."""

from __future__ import annotations

from allotment.domain.catalog import BooleanSpec, Enforcement, NumericSpec, Spec
from allotment.domain.quantities import MICROS_PER_UNIT, Micros
from allotment.domain.resolution import DenialReason


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
