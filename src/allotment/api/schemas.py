"""Request bodies as msgspec structs: strict types, unknown fields refused, ids checked.

Quantities decode as ``Decimal`` from JSON numbers or strings, exactly as written; the service
turns them into micro-units and applies the contract's range and precision rules.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

from allotment.domain.timefmt import EARLIEST_INSTANT, LATEST_INSTANT

# The contract's id pattern. msgspec matches with re.search, where `$` also matches before a
# final newline ("acme\n" would pass): `\Z` is the end of the string only.
ClientId = Annotated[str, Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}\Z")]
Instant = Annotated[datetime, Meta(tz=True)]
Name = Annotated[str, Meta(min_length=1, max_length=500)]


class Quantity:
    """An exact quantity as the contract accepts it: a JSON number, or a string written the way
    JSON writes numbers. ``value`` is an ``int`` for a whole JSON number (the fast path), else
    an exact ``Decimal``: numbers are never read as floats (the decoder's float hook)."""

    __slots__ = ("value",)

    def __init__(self, value: int | Decimal) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Quantity) and self.value == other.value

    def __hash__(self) -> int:
        return hash(self.value)

    def __repr__(self) -> str:
        return f"Quantity({self.value!r})"


ZERO = Quantity(0)
_NUMBER_TEXT = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?")
# Far more than any quantity needs (at most 18 significant digits), however it is written; a
# longer number is refused before it is converted, so a million digits cost nothing.
MAX_NUMBER_CHARS = 100


def exact_number(text: str) -> Decimal:
    """The decoders' float hook: a JSON number with a fraction or an exponent, exactly.

    A ``ValueError`` here is a validation error of the field the number is in."""
    if len(text) > MAX_NUMBER_CHARS:
        raise ValueError(f"a number may be written with at most {MAX_NUMBER_CHARS} characters")
    try:
        return Decimal(text)
    except ArithmeticError:  # an exponent past what Decimal holds (more than 18 digits)
        raise ValueError("a number's exponent is out of range") from None


def decode_hook(kind: type, value: Any) -> Any:
    """Build the custom types of the request bodies from decoded JSON."""
    if kind is Quantity:
        if isinstance(value, str):
            if len(value) > MAX_NUMBER_CHARS or not _NUMBER_TEXT.fullmatch(value):
                raise ValueError(
                    f"a quantity must be a decimal number of at most {MAX_NUMBER_CHARS} characters"
                )
            return Quantity(exact_number(value))
        if isinstance(value, bool) or not isinstance(value, int | Decimal):
            raise TypeError("a quantity must be a number or a string holding one")
        return Quantity(value)
    raise NotImplementedError(f"no decoder for {kind}")


def quantity_value(quantity: Quantity) -> int | Decimal:
    return quantity.value


IdempotencyKey = Annotated[str, Meta(min_length=1, max_length=255)]


class FieldError(ValueError):
    """A body's own check failed on ``field``; the decoder keeps it as the cause of its error,
    so the answer can name the field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class Body(Struct, forbid_unknown_fields=True, omit_defaults=False):
    """Base of every request body."""


class TimedBody(Body):
    """A body with instants: each is brought to UTC and must lie in the supported range."""

    def __post_init__(self) -> None:
        for name in self.__struct_fields__:
            value = getattr(self, name)
            if isinstance(value, datetime):
                if not EARLIEST_INSTANT <= value < LATEST_INSTANT:
                    raise FieldError(name, f"{name} must lie between 1970-01-01 and 3000-01-01")
                setattr(self, name, value.astimezone(UTC))


class CreditCostIn(Body):
    currency: ClientId
    per_unit: Quantity


class SpecIn(Body):
    """Any entitlement spec; which fields fit is decided by the feature's kind."""

    value: Quantity | UnsetType | None = UNSET
    limit: Quantity | UnsetType | None = UNSET
    reset: str | UnsetType = UNSET
    enforcement: str | UnsetType = UNSET
    credit_cost: CreditCostIn | UnsetType | None = UNSET


class AddonSpecIn(SpecIn):
    mode: str | UnsetType = UNSET


class RecurringCreditsIn(Body):
    amount: Quantity
    every: str = "month"
    category: str = "paid"
    cost_basis: Quantity = ZERO
    overdraft_limit: Quantity | None = ZERO


class FeatureIn(Body):
    name: Name
    kind: Literal["boolean", "numeric", "metered"]
    unit: Name | None = None


class CurrencyIn(Body):
    name: Name
    unit: Name | None = None
    burn_order: list[str] | None = None


class ProductIn(Body):
    name: Name


class PlanIn(Body):
    product: ClientId
    name: Name
    parent: ClientId | None = None
    trial_days: int | None = None
    billing_period: str = "month"
    entitlements: dict[ClientId, SpecIn] = {}
    credits: dict[ClientId, RecurringCreditsIn] | None = None


class AddonIn(Body):
    product: ClientId
    name: Name
    entitlements: dict[ClientId, AddonSpecIn] = {}
    credits: dict[ClientId, RecurringCreditsIn] | None = None


class CustomerIn(Body):
    name: Name | None = None
    metadata: dict[str, Any] | None = None
    billing_id: Annotated[str, Meta(max_length=500)] | None = None


class AddonQuantityIn(Body):
    id: ClientId
    quantity: int = 1


class SubscriptionIn(TimedBody):
    plan: ClientId
    addons: list[AddonQuantityIn] = []
    trial: bool = False
    trial_days: int | None = None
    starts_at: Instant | None = None
    ends_at: Instant | None = None


class SubscriptionPatchIn(TimedBody):
    addons: list[AddonQuantityIn] | UnsetType = UNSET
    ends_at: Instant | UnsetType | None = UNSET


class PromotionIn(SpecIn, TimedBody, kw_only=True):
    feature: ClientId
    starts_at: Instant | None = None
    ends_at: Instant | None = None
    reason: Annotated[str, Meta(max_length=1000)] | None = None


class CheckIn(Body):
    customer: ClientId
    feature: ClientId
    entity: ClientId | None = None
    requested: Quantity | None = None


class UsageIn(TimedBody):
    customer: ClientId
    feature: ClientId
    amount: Quantity
    idempotency_key: IdempotencyKey
    entity: ClientId | None = None
    enforce: bool = False
    behavior: Literal["delta", "set"] = "delta"
    timestamp: Instant | None = None


class ApiKeyIn(Body):
    name: Name
    scope: Literal["admin", "server", "client"]
    customer: ClientId | None = None


class ClockIn(TimedBody):
    advance_seconds: Annotated[int, Meta(ge=0, le=100 * 366 * 86_400)] | UnsetType = UNSET
    now: Instant | UnsetType = UNSET


def present_fields(struct: Struct, names: tuple[str, ...]) -> dict[str, Any]:
    """The fields of ``struct`` among ``names`` that the body gave, as plain values."""
    fields: dict[str, Any] = {}
    for name in names:
        value = getattr(struct, name)
        if value is UNSET:
            continue
        if isinstance(value, Struct):
            value = to_document(value)
        elif isinstance(value, Quantity):
            value = value.value
        fields[name] = value
    return fields


def to_document(struct: Struct) -> Any:
    """A body as plain JSON values with its quantities still exact; absent fields left out."""
    return msgspec.to_builtins(struct, builtin_types=(Decimal, datetime), enc_hook=quantity_value)


SPEC_FIELDS = ("value", "limit", "reset", "enforcement", "credit_cost")
ADDON_SPEC_FIELDS = (*SPEC_FIELDS, "mode")


class GrantIn(TimedBody):
    amount: Quantity
    category: Literal["paid", "promotional"]
    idempotency_key: IdempotencyKey
    cost_basis: Quantity = ZERO
    priority: int = 50
    effective_at: Instant | None = None
    expires_at: Instant | None = None
    reason: Annotated[str, Meta(max_length=1000)] | None = None


class DebitIn(Body):
    amount: Quantity
    idempotency_key: IdempotencyKey
    entity: ClientId | None = None
    feature: ClientId | None = None
    enforce: bool = True


class ReservationIn(Body):
    customer: ClientId
    feature: ClientId
    amount: Quantity
    idempotency_key: IdempotencyKey
    entity: ClientId | None = None
    ttl_seconds: int = 60


class CommitIn(Body):
    amount: Quantity


class EntityIn(Body):
    parent: ClientId | None = None
    kind: Annotated[str, Meta(min_length=1, max_length=100)] | None = None
    name: Name | None = None


class BudgetIn(Body):
    limit: Quantity
    reset: Literal["hour", "day", "week", "month", "year", "never"] = "month"
    enforcement: Literal["hard", "soft"] = "hard"
