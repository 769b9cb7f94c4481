"""Check results: the answer to "may this run?", built from a resolution and usage figures.

One builder serves ``check``, ``usage`` (the result after the write) and the entitlements list,
so every route reports a decision the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from allotment.domain.catalog import BooleanSpec, Enforcement, FeatureKind, MeteredSpec, NumericSpec
from allotment.domain.decision import decide, remaining
from allotment.domain.periods import Period, ResetPeriod
from allotment.domain.quantities import Micros, to_json_number
from allotment.domain.resolution import DenialReason, Offer, Source
from allotment.domain.timefmt import format_instant


@dataclass(frozen=True, slots=True)
class CheckAnswer:
    customer: str
    feature: str
    entity: str | None
    has_access: bool
    access_denied_reason: DenialReason | None
    kind: FeatureKind | None
    requested: Micros | None
    is_unlimited: bool = False
    value: Micros | None = None
    usage_limit: Micros | None = None
    current_usage: Micros | None = None
    reserved: Micros | None = None
    remaining: Micros | None = None
    enforcement: Enforcement | None = None
    reset_period: ResetPeriod | None = None
    usage_period_start: datetime | None = None
    usage_period_end: datetime | None = None
    source: Source | None = None


def denied(
    customer: str,
    feature: str,
    entity: str | None,
    reason: DenialReason,
    kind: FeatureKind | None,
    requested: Micros | None,
) -> CheckAnswer:
    """An answer for a request denied before anything about the feature could be resolved."""
    return CheckAnswer(customer, feature, entity, False, reason, kind, requested)


def answer_for(
    customer: str,
    feature: str,
    entity: str | None,
    offer: Offer,
    *,
    kind: FeatureKind,
    period: Period | None,
    used: Micros,
    reserved: Micros,
    requested: Micros | None,
    decided: bool = False,
    reason: DenialReason | None = None,
) -> CheckAnswer:
    """The answer for a resolved feature: ``reason`` when ``decided``, else decided here."""
    spec = offer.spec
    if not decided:
        reason = decide(spec, used, reserved, requested)
    has_access = reason is None
    if isinstance(spec, BooleanSpec):
        return CheckAnswer(
            customer, feature, entity, has_access, reason, kind, requested, source=offer.source
        )
    if isinstance(spec, NumericSpec):
        return CheckAnswer(
            customer,
            feature,
            entity,
            has_access,
            reason,
            kind,
            requested,
            is_unlimited=spec.value is None,
            value=spec.value,
            source=offer.source,
        )
    assert isinstance(spec, MeteredSpec)
    return CheckAnswer(
        customer,
        feature,
        entity,
        has_access,
        reason,
        kind,
        requested,
        is_unlimited=spec.limit is None,
        usage_limit=spec.limit,
        current_usage=used,
        reserved=reserved,
        remaining=remaining(spec.limit, used, reserved),
        enforcement=spec.enforcement,
        reset_period=spec.reset,
        usage_period_start=period.start if period else None,
        usage_period_end=period.end if period else None,
        source=offer.source,
    )


def answer_document(answer: CheckAnswer) -> dict[str, Any]:
    """The check result as the contract writes it."""
    return {
        "customer": answer.customer,
        "feature": answer.feature,
        "entity": answer.entity,
        "has_access": answer.has_access,
        "access_denied_reason": answer.access_denied_reason,
        "kind": answer.kind,
        "is_unlimited": answer.is_unlimited,
        "value": _number(answer.value),
        "usage_limit": _number(answer.usage_limit),
        "current_usage": _number(answer.current_usage),
        "reserved": _number(answer.reserved),
        "remaining": _number(answer.remaining),
        "requested": _number(answer.requested),
        "enforcement": answer.enforcement,
        "reset_period": answer.reset_period,
        "usage_period_start": _instant(answer.usage_period_start),
        "usage_period_end": _instant(answer.usage_period_end),
        "source": None
        if answer.source is None
        else {"type": answer.source.type, "id": answer.source.id},
        "budgets": [],
        "credits": None,
        "is_fallback": False,
    }


def _number(micros: Micros | None) -> int | Any:
    return None if micros is None else to_json_number(micros)


def _instant(instant: datetime | None) -> str | None:
    return None if instant is None else format_instant(instant)
