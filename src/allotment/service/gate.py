"""What every decision asks first: does the customer exist and may it act, does the feature
exist, and for writes, is it a feature that can be consumed."""

from __future__ import annotations

from allotment.domain.catalog import Feature, FeatureKind
from allotment.domain.errors import InvalidRequest
from allotment.domain.resolution import DenialReason
from allotment.service.snapshots import CustomerSnapshot


def admission_denial(
    snapshot: CustomerSnapshot | None, feature: Feature | None
) -> DenialReason | None:
    """The reason to deny before resolving anything, in the contract's order, or None. An
    unknown entity comes next (``entity_not_found``): callers look the entity up themselves,
    from the snapshot or the store (``Runtime.entity_in``)."""
    if snapshot is None:
        return DenialReason.CUSTOMER_NOT_FOUND
    if snapshot.archived:
        return DenialReason.CUSTOMER_ARCHIVED
    if feature is None:
        return DenialReason.FEATURE_NOT_FOUND
    return None


def require_metered(feature: Feature | None, what: str) -> None:
    """Only metered features are consumed: usage or reservations of others are a 400."""
    if feature is not None and feature.kind is not FeatureKind.METERED:
        raise InvalidRequest(
            f"feature {feature.id!r} is {feature.kind}; {what} metered features only.",
            {"field": "feature"},
        )
