"""Exact quantities: decimal text in, integer micro-units inside, exact decimals out."""

from __future__ import annotations

from decimal import Decimal

import pytest

from allotment.domain.errors import InvalidRequest
from allotment.domain.quantities import (
    MAX_ABS_MICROS,
    MICROS_PER_UNIT,
    parse_quantity,
    to_decimal,
    to_json_number,
)


@pytest.mark.parametrize(
    ("value", "micros"),
    [
        (0, 0),
        (1, 1_000_000),
        (1000, 1_000_000_000),
        (Decimal("0.000001"), 1),
        (Decimal("0.5"), 500_000),
        (Decimal("1.25"), 1_250_000),
        (Decimal("123.456789"), 123_456_789),
        (Decimal("1e3"), 1_000_000_000),
        (Decimal("2.500000000"), 2_500_000),
        (Decimal("999999999999.999999"), 999_999_999_999_999_999),
    ],
)
def test_parse_quantity_gives_exact_micro_units(value: Decimal | int, micros: int) -> None:
    assert parse_quantity(value, "amount") == micros


def test_parse_quantity_result_is_a_plain_int() -> None:
    result = parse_quantity(Decimal("1.5"), "amount")
    assert type(result) is int


def test_one_unit_is_one_million_micros() -> None:
    assert MICROS_PER_UNIT == 1_000_000
    assert parse_quantity(1, "amount") == MICROS_PER_UNIT


def test_negative_quantity_is_refused_by_default() -> None:
    with pytest.raises(InvalidRequest) as raised:
        parse_quantity(Decimal("-1"), "amount")
    assert "amount" in raised.value.message
    assert "negative" in raised.value.message
    assert raised.value.details == {"field": "amount"}


def test_negative_quantity_is_accepted_when_allowed() -> None:
    assert parse_quantity(Decimal("-2.5"), "delta", allow_negative=True) == -2_500_000


def test_negative_zero_is_zero() -> None:
    assert parse_quantity(Decimal("-0"), "amount") == 0


def test_seventh_fractional_digit_is_refused() -> None:
    with pytest.raises(InvalidRequest) as raised:
        parse_quantity(Decimal("0.0000001"), "limit")
    assert "more than 6 fractional digits" in raised.value.message
    assert raised.value.message.startswith("limit")


def test_trailing_zeros_beyond_six_digits_are_not_extra_precision() -> None:
    assert parse_quantity(Decimal("0.1000000"), "amount") == 100_000


@pytest.mark.parametrize(
    "value",
    [Decimal("1000000000000"), Decimal("1e12"), Decimal("-1000000000000")],
)
def test_absolute_value_of_ten_to_the_twelve_is_refused(value: Decimal) -> None:
    with pytest.raises(InvalidRequest) as raised:
        parse_quantity(value, "amount", allow_negative=True)
    assert "10^12" in raised.value.message


def test_largest_negative_quantity_below_the_bound_is_accepted() -> None:
    value = Decimal("-999999999999.999999")
    assert parse_quantity(value, "amount", allow_negative=True) == -999_999_999_999_999_999
    assert MAX_ABS_MICROS == 10**18


@pytest.mark.parametrize("value", [Decimal("NaN"), Decimal("Infinity"), Decimal("-Infinity")])
def test_non_finite_decimals_are_refused(value: Decimal) -> None:
    with pytest.raises(InvalidRequest) as raised:
        parse_quantity(value, "amount", allow_negative=True)
    assert "finite" in raised.value.message


@pytest.mark.parametrize("value", [True, False, 1.5, 1.0, "1", None, [1]])
def test_non_numbers_are_refused(value: object) -> None:
    """Booleans, floats and strings are not quantities at this layer."""
    with pytest.raises(InvalidRequest) as raised:
        parse_quantity(value, "amount")  # type: ignore[arg-type]
    assert raised.value.message == "amount must be a number."


@pytest.mark.parametrize(
    ("micros", "text"),
    [
        (0, "0"),
        (1, "0.000001"),
        (1_000_000, "1"),
        (1_500_000, "1.5"),
        (1_250_000, "1.25"),
        (123_456_789, "123.456789"),
        (10_000_000, "10"),
        (-1, "-0.000001"),
        (-2_500_000, "-2.5"),
        (-3_000_000, "-3"),
    ],
)
def test_to_decimal_writes_plain_notation_without_trailing_zeros(micros: int, text: str) -> None:
    value = to_decimal(micros)
    assert str(value) == text
    assert value == Decimal(text)


def test_to_decimal_never_uses_exponent_notation_for_large_whole_numbers() -> None:
    assert str(to_decimal(1_000_000_000 * MICROS_PER_UNIT)) == "1000000000"


def test_to_json_number_is_an_int_when_whole() -> None:
    assert to_json_number(7_000_000) == 7
    assert type(to_json_number(7_000_000)) is int
    assert to_json_number(-7_000_000) == -7
    assert type(to_json_number(0)) is int


def test_to_json_number_is_an_exact_decimal_when_fractional() -> None:
    value = to_json_number(1_000_001)
    assert isinstance(value, Decimal)
    assert value == Decimal("1.000001")
    assert to_json_number(-500_000) == Decimal("-0.5")


@pytest.mark.parametrize(
    "text", ["0", "0.1", "0.000001", "42", "-17.25", "999999999999.999999", "1.010101"]
)
def test_parse_then_to_decimal_round_trips(text: str) -> None:
    micros = parse_quantity(Decimal(text), "amount", allow_negative=True)
    assert to_decimal(micros) == Decimal(text)


@pytest.mark.parametrize("text", ["1E+999999999", "-1E+999999999", "9.99E+12"])
def test_huge_exponents_are_refused_as_out_of_range(text: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        parse_quantity(Decimal(text), "amount", allow_negative=True)
    assert "10^12" in raised.value.message


@pytest.mark.parametrize(
    "text",
    [
        "1E-7",
        "1E-1000030",
        "1E-1000033",  # past the default context's Etiny: must not underflow to 0
        "1E-999999999",
    ],
)
def test_tiny_exponents_are_refused_as_too_precise(text: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        parse_quantity(Decimal(text), "amount")
    assert "more than 6 fractional digits" in raised.value.message


def test_zero_with_any_exponent_is_zero() -> None:
    assert parse_quantity(Decimal("0E+999999999"), "amount") == 0
    assert parse_quantity(Decimal("0E-999999999"), "amount") == 0


@pytest.mark.parametrize(
    "text",
    [
        "1.0000001",
        "1.000000000000000000001",  # 22 significant digits: still exact in the context
        # More significant digits than the default context's 28: must not be rounded away.
        "1.00000000000000000000000000000000000001",
        "999999999999.0000000000000000000001",
    ],
)
def test_a_nonzero_digit_past_the_sixth_is_refused_however_long_the_number(text: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        parse_quantity(Decimal(text), "amount")
    assert "more than 6 fractional digits" in raised.value.message


def test_parse_quantity_reads_thousands_of_trailing_zeros() -> None:
    # Only the digits kept are made an int: int() refuses more than 4,300 digits.
    assert parse_quantity(Decimal("1." + "0" * 5000), "amount") == MICROS_PER_UNIT
    assert parse_quantity(Decimal("1" + "0" * 5000 + "e-5000"), "amount") == MICROS_PER_UNIT


@pytest.mark.parametrize("text", ["0." + "9" * 5000, "9" * 5000 + "e-5000", "1e-5000"])
def test_parse_quantity_refuses_thousands_of_fractional_digits(text: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        parse_quantity(Decimal(text), "amount")
    assert refused.value.details == {"field": "amount"}
