"""Exact quantities as integers of micro-units.

Every quantity of the contract (usage, limits, credits, cost basis) has at most six fractional
digits and an absolute value below 10^12, so an ``int`` of millionths represents it exactly and
keeps the hot path in integer arithmetic. ``Decimal`` is used only at the edges, to read and
write the decimal text.
"""

from __future__ import annotations

from decimal import Decimal

from allotment.domain.errors import InvalidRequest

MICROS_PER_UNIT = 1_000_000
MAX_ABS_UNITS = 10**12
MAX_ABS_MICROS = MAX_ABS_UNITS * MICROS_PER_UNIT

MAX_COUNTER = 2**63 - 1
"""The largest figure, either sign, that a counter of usage or credits may hold (64 bits)."""

Micros = int
"""A quantity in millionths of its unit."""


def parse_quantity(value: Decimal | int, field: str, *, allow_negative: bool = False) -> Micros:
    """Turn a decoded decimal into micro-units, refusing anything the contract does not allow."""
    if type(value) is int:
        # The common case of a whole number, without building a Decimal.
        if not -MAX_ABS_UNITS < value < MAX_ABS_UNITS:
            raise InvalidRequest(
                f"{field} must be below 10^12 in absolute value.", {"field": field}
            )
        if value < 0 and not allow_negative:
            raise InvalidRequest(f"{field} must not be negative.", {"field": field})
        return value * MICROS_PER_UNIT
    if isinstance(value, bool) or not isinstance(value, Decimal | int):
        raise InvalidRequest(f"{field} must be a number.", {"field": field})
    decimal_value = Decimal(value)
    if not decimal_value.is_finite():
        raise InvalidRequest(f"{field} must be a finite number.", {"field": field})
    # Compare by magnitude first: arithmetic on an exponent like 1E+999999999 would overflow.
    if decimal_value and decimal_value.adjusted() >= 12:
        raise InvalidRequest(f"{field} must be below 10^12 in absolute value.", {"field": field})
    if decimal_value < 0 and not allow_negative:
        raise InvalidRequest(f"{field} must not be negative.", {"field": field})
    if not decimal_value:
        return 0  # zero with any exponent, even 0E+999999999
    # Work on the digits themselves: decimal arithmetic would round to the context's precision.
    sign, digits, exponent = decimal_value.as_tuple()
    assert isinstance(exponent, int)
    shift = exponent + 6
    if shift < 0:
        kept = max(len(digits) + shift, 0)
        if any(digits[kept:]):
            raise InvalidRequest(f"{field} has more than 6 fractional digits.", {"field": field})
        digits, shift = digits[:kept], 0
    # Below 10^12 in millionths, what is left is at most 18 digits however many zeros the text
    # trailed: int() refuses a string of more than 4,300.
    micros: int = int("".join(map(str, digits))) * 10**shift
    return -micros if sign else micros


def to_decimal(micros: Micros) -> Decimal:
    """The exact decimal value of ``micros`` in plain notation, without trailing zeros."""
    sign = "-" if micros < 0 else ""
    whole, fraction = divmod(abs(micros), MICROS_PER_UNIT)
    if fraction == 0:
        return Decimal(f"{sign}{whole}")
    return Decimal(f"{sign}{whole}.{fraction:06d}".rstrip("0"))


def to_json_number(micros: Micros) -> int | Decimal:
    """The value to put in a JSON document: an ``int`` when whole, else an exact ``Decimal``."""
    if micros % MICROS_PER_UNIT == 0:
        return micros // MICROS_PER_UNIT
    return to_decimal(micros)
