"""Request bodies as msgspec structs: strict types, unknown fields refused, ids checked.

Quantities decode as ``Decimal`` from JSON numbers or strings, exactly as written; the service
turns them into micro-units and applies the contract's range and precision rules.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

from allotment.domain.catalog import (
    BILLING_PERIODS,
    BURN_ORDER_KEYS,
    AddonMode,
    CreditCategory,
    Enforcement,
)
from allotment.domain.periods import ResetPeriod
from allotment.domain.timefmt import EARLIEST_INSTANT, LATEST_INSTANT

# The contract's id pattern. msgspec matches with re.search, where `$` also matches before a
# final newline ("acme\n" would pass): `\Z` is the end of the string only.
ClientId = Annotated[str, Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}\Z")]
Instant = Annotated[datetime, Meta(tz=True)]
Name = Annotated[str, Meta(min_length=1, max_length=500)]


def _one_of(values: Iterable[str]) -> Meta:
    """Names the values the service accepts, for the API description only: the service checks
    these fields itself, with the contract's messages, so msgspec must not refuse them first."""
    return Meta(extra_json_schema={"enum": sorted(values)})


ResetText = Annotated[str, _one_of(ResetPeriod)]
RecurringText = Annotated[str, _one_of(p for p in ResetPeriod if p is not ResetPeriod.NEVER)]
BillingPeriodText = Annotated[str, _one_of(BILLING_PERIODS)]
EnforcementText = Annotated[str, _one_of(Enforcement)]
ModeText = Annotated[str, _one_of(AddonMode)]
CategoryText = Annotated[str, _one_of(CreditCategory)]
BurnOrderKeyText = Annotated[str, _one_of(BURN_ORDER_KEYS)]


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
NUMBER_TEXT = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?")
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


def _zero() -> Quantity:
    return ZERO


# msgspec writes a field's default into the API description and cannot write a Quantity: these
# fields take theirs from a factory, and state it for the description.
_ZERO_DEFAULT = Meta(extra_json_schema={"default": 0})
ZeroByDefault = Annotated[Quantity, _ZERO_DEFAULT]


def decode_hook(kind: type, value: Any) -> Any:
    """Build the custom types of the request bodies from decoded JSON."""
    if kind is Quantity:
        if isinstance(value, str):
            if len(value) > MAX_NUMBER_CHARS or not NUMBER_TEXT.fullmatch(value):
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


IdempotencyKey = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=255,
        description="Scoped to the customer and the route. The first outcome is kept, a denial "
        "included: the same key with the same payload answers it again with `replayed: true` "
        "and applies nothing; with another payload it is 409 `idempotency_conflict`.",
    ),
]


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
    """A metered feature's price: ``per_unit`` credits of ``currency`` per unit used."""

    currency: ClientId
    per_unit: Quantity


class SpecIn(Body):
    """An entitlement spec; its fields follow the feature's kind: none for ``boolean``,
    ``value`` for ``numeric``, ``limit`` (required), ``reset`` (default ``month``),
    ``enforcement`` (default ``hard``) and ``credit_cost`` for ``metered``. A null ``value`` or
    ``limit`` is unlimited; a field that does not fit the kind is 400."""

    value: Quantity | UnsetType | None = UNSET
    limit: Quantity | UnsetType | None = UNSET
    reset: ResetText | UnsetType = UNSET
    enforcement: EnforcementText | UnsetType = UNSET
    credit_cost: CreditCostIn | UnsetType | None = UNSET


class AddonSpecIn(SpecIn):
    """An add-on's spec for a feature: a spec, and its ``mode`` (required)."""

    mode: ModeText | UnsetType = UNSET


class RecurringCreditsIn(Body):
    """Credits a plan or add-on grants at subscription start and every ``every`` period after
    it (``hour``, ``day``, ``week``, ``month`` or ``year``); a null ``overdraft_limit`` lets the
    pool owe without bound, 0 refuses at empty."""

    amount: Quantity
    every: RecurringText = "month"
    category: CategoryText = "paid"
    cost_basis: ZeroByDefault = msgspec.field(default_factory=_zero)
    overdraft_limit: Annotated[Quantity | None, _ZERO_DEFAULT] = msgspec.field(
        default_factory=_zero
    )


class FeatureIn(Body):
    """``PUT /v1/features/{id}``: a feature and the kind of spec plans give it."""

    name: Name
    kind: Literal["boolean", "numeric", "metered"]
    unit: Name | None = None


class CurrencyIn(Body):
    """``PUT /v1/currencies/{id}``: a credit currency. ``burn_order`` keys: ``priority``,
    ``expiry``, ``promotional_first``, ``paid_first``, ``created``, ``cheapest_first``,
    ``costliest_first`` (default ``priority, expiry, promotional_first, created``)."""

    name: Name
    unit: Name | None = None
    burn_order: list[BurnOrderKeyText] | None = None
    # ``credits.low`` fires when a pool's available credits fall below it (absent: never).
    low_balance_threshold: Quantity | None = None


class ProductIn(Body):
    """``PUT /v1/products/{id}``."""

    name: Name


class PlanIn(Body):
    """``PUT /v1/plans/{id}``: a plan, the specs it grants per feature (inheriting its
    ``parent``'s) and the credits it grants per currency. ``billing_period`` is ``month`` or
    ``year``."""

    product: ClientId
    name: Name
    parent: ClientId | None = None
    trial_days: int | None = None
    billing_period: BillingPeriodText = "month"
    entitlements: dict[ClientId, SpecIn] = {}
    credits: dict[ClientId, RecurringCreditsIn] | None = None


class AddonIn(Body):
    """``PUT /v1/addons/{id}``: an add-on; each spec gives ``mode`` (``increment`` adds its
    value times the quantity, ``override`` replaces the plan's)."""

    product: ClientId
    name: Name
    entitlements: dict[ClientId, AddonSpecIn] = {}
    credits: dict[ClientId, RecurringCreditsIn] | None = None


class CatalogIn(Body):
    """``PUT /v1/catalog``: the catalog as one document, what ``GET /v1/catalog`` answers.
    Each section maps ids to the body its object's own ``PUT`` takes; any section may be
    missing, and objects the document does not name are left as they are."""

    features: dict[ClientId, FeatureIn] = {}
    currencies: dict[ClientId, CurrencyIn] = {}
    products: dict[ClientId, ProductIn] = {}
    plans: dict[ClientId, PlanIn] = {}
    addons: dict[ClientId, AddonIn] = {}


CATALOG_SECTIONS: dict[str, type[Body]] = {
    "features": FeatureIn,
    "currencies": CurrencyIn,
    "products": ProductIn,
    "plans": PlanIn,
    "addons": AddonIn,
}
"""Each section of the catalog document and the body of its objects, in the order they apply."""


class CustomerIn(Body):
    """``PUT /v1/customers/{id}``: creates or replaces the customer."""

    name: Name | None = None
    metadata: dict[str, Any] | None = None
    billing_id: Annotated[str, Meta(max_length=500)] | None = None


MAX_VERSION = 2**31 - 1
Version = Annotated[int, Meta(ge=1, le=MAX_VERSION)]


class AddonQuantityIn(Body):
    """An add-on attached to a subscription, and how many of it; ``version`` pins a version
    of the add-on (default: the one it is on already, else the latest)."""

    id: ClientId
    quantity: int = 1
    version: Version | None = None


class SubscriptionIn(TimedBody):
    """``POST /v1/customers/{id}/subscriptions``. ``starts_at`` defaults to now; with
    ``trial`` a trial of ``trial_days`` (from the body, else the plan) runs alongside."""

    plan: ClientId
    addons: list[AddonQuantityIn] = []
    trial: bool = False
    trial_days: int | None = None
    starts_at: Instant | None = None
    ends_at: Instant | None = None
    plan_version: Version | None = None


class MigrationIn(Body):
    """``POST /v1/plans/{id}/migrations`` (and ``/v1/addons/{id}/migrations``): move the live
    subscriptions on ``from_versions`` (default: every version older than the target) to
    ``to_version`` (default: the latest), ``now`` or at the end of each one's billing period."""

    at: Literal["now", "period_end"]
    from_versions: Annotated[list[Version], Meta(min_length=1, max_length=1000)] | None = None
    to_version: Version | None = None


class SubscriptionPatchIn(TimedBody):
    """``PATCH /v1/customers/{id}/subscriptions/{sub}``: replaces the add-ons, moves the
    end (``null`` removes it); omitted fields stay."""

    addons: list[AddonQuantityIn] | UnsetType = UNSET
    ends_at: Instant | UnsetType | None = UNSET


class PromotionIn(SpecIn, TimedBody, kw_only=True):
    """``POST /v1/customers/{id}/promotions``: a spec for ``feature`` granted from
    ``starts_at`` (default now) until ``ends_at``."""

    feature: ClientId
    starts_at: Instant | None = None
    ends_at: Instant | None = None
    reason: Annotated[str, Meta(max_length=1000)] | None = None


class CheckIn(Body):
    """``POST /v1/check``: may ``customer`` use ``feature`` (for ``entity``), optionally
    ``requested`` units of it?"""

    customer: ClientId
    feature: ClientId
    entity: ClientId | None = None
    requested: Quantity | None = None


class UsageIn(TimedBody):
    """``POST /v1/usage``: report ``amount`` of ``feature``. ``enforce`` makes it an atomic
    check-and-consume; ``behavior: set`` makes ``amount`` the period's usage."""

    customer: ClientId
    feature: ClientId
    amount: Quantity
    idempotency_key: IdempotencyKey
    entity: ClientId | None = None
    enforce: bool = False
    behavior: Literal["delta", "set"] = "delta"
    timestamp: Instant | None = None


class ApiKeyIn(Body):
    """``POST /v1/api-keys``: a ``client`` key names its ``customer``; others must not."""

    name: Name
    scope: Literal["admin", "server", "client"]
    customer: ClientId | None = None


EventTypeText = Literal[
    "customer.created",
    "customer.updated",
    "customer.archived",
    "subscription.created",
    "subscription.updated",
    "subscription.canceled",
    "subscription.expired",
    "subscription.migrated",
    "trial.started",
    "trial.will_end",
    "trial.ended",
    "usage.threshold_reached",
    "credits.granted",
    "credits.low",
    "credits.depleted",
    "credits.expired",
    "plan.published",
    "addon.published",
    "migration.completed",
    "reservation.expired",
    "webhook_endpoint.disabled",
]
WebhookUrl = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=2048,
        # For the API description only, as _one_of: the service checks the URL itself (host,
        # port, addresses) with the contract's messages. An http(s) URL (the scheme in any
        # case) of the characters a URL may hold: no credentials (no @ before the path) and
        # no fragment (#).
        extra_json_schema={
            "pattern": (
                r"^[Hh][Tt][Tt][Pp][Ss]?://[A-Za-z0-9._~:\[\]!$&'()*+,;=%-]+"
                r"(?:[/?][A-Za-z0-9._~:/?\[\]@!$&'()*+,;=%-]*)?$"
            )
        },
    ),
]
EventTypes = Annotated[list[EventTypeText], Meta(min_length=1, max_length=64)]


class WebhookEndpointIn(Body):
    """``POST /v1/webhook-endpoints``: ``events`` left out means every type."""

    url: WebhookUrl
    events: EventTypes | None = None
    description: Name | None = None


class WebhookEndpointPatch(Body):
    """``PATCH /v1/webhook-endpoints/{id}``: what is sent changes; ``events: null`` means every
    type again."""

    url: WebhookUrl | UnsetType = UNSET
    events: EventTypes | UnsetType | None = UNSET
    description: Name | UnsetType | None = UNSET
    disabled: bool | UnsetType = UNSET


class ReplayIn(TimedBody):
    """``POST /v1/webhook-endpoints/{id}/replay``: the events made in [since, until), of
    ``types`` when given."""

    since: Instant
    until: Instant | None = None
    types: EventTypes | None = None


class ClockIn(TimedBody):
    """``POST /v1/test/clock``: exactly one of ``advance_seconds`` and ``now`` (never
    backwards)."""

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
    """``POST /v1/customers/{id}/credits/{currency}/grants``: credits entering the pool at
    ``effective_at`` (default now), leaving at ``expires_at``; lower ``priority`` burns first."""

    amount: Quantity
    category: Literal["paid", "promotional"]
    idempotency_key: IdempotencyKey
    cost_basis: ZeroByDefault = msgspec.field(default_factory=_zero)
    priority: int = 50
    effective_at: Instant | None = None
    expires_at: Instant | None = None
    reason: Annotated[str, Meta(max_length=1000)] | None = None


class DebitIn(Body):
    """``POST /v1/customers/{id}/credits/{currency}/debits``: take ``amount`` credits from the
    pool in its burn order; ``enforce`` (default) refuses past the overdraft limit."""

    amount: Quantity
    idempotency_key: IdempotencyKey
    entity: ClientId | None = None
    feature: ClientId | None = None
    enforce: bool = True


class ReservationIn(Body):
    """``POST /v1/reservations``: hold ``amount`` of ``feature`` (and its credits) for
    ``ttl_seconds``, until committed or released."""

    customer: ClientId
    feature: ClientId
    amount: Quantity
    idempotency_key: IdempotencyKey
    entity: ClientId | None = None
    ttl_seconds: int = 60


class CommitIn(Body):
    """``POST /v1/reservations/{id}/commit``: record ``amount`` (more or less than held) and
    free the rest."""

    amount: Quantity


class EntityIn(Body):
    """``PUT /v1/customers/{id}/entities/{entity}``: replaces the entity; an omitted
    ``parent`` makes it a root."""

    parent: ClientId | None = None
    kind: Annotated[str, Meta(min_length=1, max_length=100)] | None = None
    name: Name | None = None


class BudgetIn(Body):
    """``PUT /v1/customers/{id}/entities/{entity}/budgets/{feature_or_currency}``."""

    limit: Quantity
    reset: Literal["hour", "day", "week", "month", "year", "never"] = "month"
    enforcement: Literal["hard", "soft"] = "hard"
