"""Check results: the answer to "may this run?", built from a resolution and usage figures.

One builder serves ``check``, ``usage`` (the result after the write) and the entitlements list,
so every route reports a decision the same way. The answer is a msgspec struct in the contract's
wire form (quantities as exact numbers, instants as text), because the check path encodes it
directly and that is the costliest step left on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, TypedDict

import msgspec

from allotment.domain.budgets import Standing
from allotment.domain.catalog import BooleanSpec, Enforcement, FeatureKind, MeteredSpec, NumericSpec
from allotment.domain.decision import PoolStanding, credit_cost, decide_consumption, remaining
from allotment.domain.periods import Period, ResetPeriod
from allotment.domain.quantities import MICROS_PER_UNIT, Micros, to_json_number
from allotment.domain.resolution import DenialReason, Offer, SourceType
from allotment.domain.timefmt import format_instant, to_epoch_micros

Quantity = int | Decimal
"""An exact quantity as the contract writes it: a JSON number (``decimal_format="number"``)."""
Number = int | Decimal | None
InstantText = Annotated[str, msgspec.Meta(extra_json_schema={"format": "date-time"})]
"""An instant as the contract writes it: ISO-8601 UTC text (``format_instant``). The annotation
only tells the API description; encoding and decoding see a plain ``str``."""


class SourceView(msgspec.Struct, frozen=True):
    """The source that won the resolution: a plan, a trial, a promotion or an override."""

    type: SourceType
    id: str


class BudgetView(msgspec.Struct, frozen=True):
    """A budget on the request's path, with its entity's own usage and what is held."""

    entity: str
    target: str
    limit: Number
    usage: Number
    reserved: Number
    reset: ResetPeriod
    enforcement: Enforcement
    usage_period_end: InstantText | None


# A mapping rather than a struct: the answer has always carried a plain object here, and
# callers compare it with one.
class CreditBlock(TypedDict):
    """A credit-priced feature's pool as a check sees it: what this request costs in
    ``currency`` (``requested`` units, or one unit without it) and what the pool has
    ``available``."""

    currency: str
    cost: Quantity
    available: Quantity


class CheckAnswer(msgspec.Struct, frozen=True, kw_only=True):
    """The check result of the contract, field for field and in its order: ``POST /v1/check``,
    each of ``GET /v1/customers/{id}/entitlements``, and (after ``recorded`` and ``replayed``)
    ``POST /v1/usage``."""

    customer: str
    feature: str
    entity: str | None
    has_access: bool
    access_denied_reason: DenialReason | None
    kind: FeatureKind | None
    is_unlimited: bool = False
    value: Number = None
    usage_limit: Number = None
    current_usage: Number = None
    reserved: Number = None
    remaining: Number = None
    requested: Number = None
    enforcement: Enforcement | None = None
    reset_period: ResetPeriod | None = None
    usage_period_start: InstantText | None = None
    usage_period_end: InstantText | None = None
    source: SourceView | None = None
    budgets: list[BudgetView] = msgspec.field(default_factory=list)
    credits: CreditBlock | None = None
    is_fallback: bool = False


class Entitlements(msgspec.Struct, frozen=True):
    """``GET /v1/customers/{id}/entitlements``: a check result for every feature some source
    grants the customer."""

    customer: str
    entitlements: list[CheckAnswer]


class PoolState(msgspec.Struct, frozen=True):
    """A credit pool as a local cache follows it: ``available`` is ``balance - held``, and a
    ``credits.changed`` event carries the pool's next ``balance``."""

    currency: str
    balance: Quantity
    held: Quantity  # what live reservations hold in the pool
    overdraft_limit: Number  # null: a soft pool, without a bound


class CustomerState(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /v1/customers/{id}/state``: what a local cache (the SDK's, the sidecar's) needs to
    answer this customer's checks itself, read as one state of the change log.

    ``answers`` holds a check result, without a request, for every feature of the catalog;
    ``revision`` is the change log's revision they are exact at: a cache applies the change
    feed's events after it, and none before. Null when the service could not read them as one
    revision (the cache then answers with them once and reads again). ``valid_until`` is the
    next instant a time rule changes an answer by itself (a holding starts or ends, a grant
    enters or leaves a pool, a reservation expires); the reset windows' ends are in the
    answers. ``now`` is the service's clock as it read them."""

    customer: str
    entity: str | None
    revision: int | None
    now: InstantText
    valid_until: InstantText | None
    answers: list[CheckAnswer]
    pools: list[PoolState]


@dataclass(frozen=True, slots=True)
class PeriodView:
    """A reset window with what answers and caches need of it, computed once per window."""

    period: Period
    start_micros: int
    end_micros: int | None
    start_text: str
    end_text: str | None

    @classmethod
    def of(cls, period: Period) -> PeriodView:
        end = period.end
        return cls(
            period=period,
            start_micros=to_epoch_micros(period.start),
            end_micros=None if end is None else to_epoch_micros(end),
            start_text=format_instant(period.start),
            end_text=None if end is None else format_instant(end),
        )


@dataclass(slots=True)
class BudgetFigures:
    """A budget's standing, with its window's text for the answer (rendered once)."""

    standing: Standing
    window: PeriodView
    _view: BudgetView | None = None

    def view(self) -> BudgetView:
        if self._view is None:
            self._view = self._render()
        return self._view

    def _render(self) -> BudgetView:
        standing, budget = self.standing, self.standing.budget
        return BudgetView(
            entity=budget.entity,
            target=budget.target,
            limit=to_json_number(budget.limit),
            usage=to_json_number(standing.usage),
            reserved=to_json_number(standing.reserved),
            reset=budget.reset,
            enforcement=budget.enforcement,
            usage_period_end=self.window.end_text,
        )


@dataclass(frozen=True, slots=True)
class CreditFigures:
    """The pool a credit-priced feature draws on, as a check sees it."""

    currency: str
    available: Micros
    overdraft_limit: Micros | None


def denied(
    customer: str,
    feature: str,
    entity: str | None,
    reason: DenialReason,
    kind: FeatureKind | None,
    requested: Micros | None,
) -> CheckAnswer:
    """An answer for a request denied before anything about the feature could be resolved."""
    return CheckAnswer(
        customer=customer,
        feature=feature,
        entity=entity,
        has_access=False,
        access_denied_reason=reason,
        kind=kind,
        requested=_number(requested),
    )


def answer_for(
    customer: str,
    feature: str,
    entity: str | None,
    offer: Offer,
    *,
    kind: FeatureKind,
    window: PeriodView | None,
    used: Micros,
    reserved: Micros,
    requested: Micros | None,
    decided: bool = False,
    reason: DenialReason | None = None,
    credits: CreditFigures | None = None,
    cost: Micros | None = None,
    budgets: Sequence[BudgetFigures] = (),
    source: SourceView | None = None,
) -> CheckAnswer:
    """The answer for a resolved feature: ``reason`` when ``decided``, else decided here.

    ``credits`` are the figures of the pool a credit-priced feature draws on; ``cost`` what
    this request costs there (by default ``requested`` units, or one unit, at the feature's
    price). ``budgets`` are those on the entity's path, nearest first. A request is refused by
    the customer's limit first, then by a budget, then by the credit pool. ``source`` is the
    offer's source as answers write it, when the caller has it already.
    """
    spec = offer.spec
    credit_block: CreditBlock | None = None
    if credits is not None and isinstance(spec, MeteredSpec) and spec.credit_cost is not None:
        if cost is None:
            units = MICROS_PER_UNIT if requested is None else requested
            cost = credit_cost(units, spec.credit_cost.per_unit)
        credit_block = {
            "currency": credits.currency,
            "cost": to_json_number(cost),
            "available": to_json_number(credits.available),
        }
    if not decided:
        pool = None
        if credit_block is not None and credits is not None:
            pool = PoolStanding(credits.available, credits.overdraft_limit)
        reason = decide_consumption(
            units=requested,
            credits=cost if requested is not None else None,
            limit=spec,
            used=used,
            reserved=reserved,
            budgets=(figures.standing for figures in budgets),
            pool=pool,
        )
    if source is None:
        source = SourceView(offer.source.type, offer.source.id)
    if isinstance(spec, BooleanSpec):
        return CheckAnswer(
            customer=customer,
            feature=feature,
            entity=entity,
            has_access=reason is None,
            access_denied_reason=reason,
            kind=kind,
            requested=_number(requested),
            source=source,
        )
    if isinstance(spec, NumericSpec):
        return CheckAnswer(
            customer=customer,
            feature=feature,
            entity=entity,
            has_access=reason is None,
            access_denied_reason=reason,
            kind=kind,
            is_unlimited=spec.value is None,
            value=_number(spec.value),
            requested=_number(requested),
            source=source,
        )
    assert isinstance(spec, MeteredSpec)
    return CheckAnswer(
        customer=customer,
        feature=feature,
        entity=entity,
        has_access=reason is None,
        access_denied_reason=reason,
        kind=kind,
        is_unlimited=spec.limit is None,
        usage_limit=_number(spec.limit),
        current_usage=_number(used),
        reserved=_number(reserved),
        remaining=_number(remaining(spec.limit, used, reserved)),
        requested=_number(requested),
        enforcement=spec.enforcement,
        reset_period=spec.reset,
        usage_period_start=window.start_text if window else None,
        usage_period_end=window.end_text if window else None,
        source=source,
        budgets=[figures.view() for figures in budgets],
        credits=credit_block,
    )


def _number(micros: Micros | None) -> Number:
    return None if micros is None else to_json_number(micros)
