"""ISO-8601 UTC text for instants, as the contract writes them, and their stored form."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from allotment.domain.errors import InvalidRequest

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Instants the service accepts. Far enough on either side for any contract, near enough that
# adding a year, a trial or a period to one never leaves what datetime can hold.
EARLIEST_INSTANT = EPOCH
LATEST_INSTANT = datetime(3000, 1, 1, tzinfo=UTC)


def require_supported_instant(instant: datetime, field: str) -> datetime:
    """``instant`` in UTC, or a 400 when it lies outside the supported range."""
    if not EARLIEST_INSTANT <= instant < LATEST_INSTANT:
        raise InvalidRequest(
            f"{field} must lie between 1970-01-01 and 3000-01-01.", {"field": field}
        )
    return instant.astimezone(UTC)


def format_instant(instant: datetime) -> str:
    """``2026-11-24T10:00:00Z``, with a fraction only when the instant has one."""
    utc = instant.astimezone(UTC)
    if utc.microsecond:
        return utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return utc.strftime("%Y-%m-%dT%H:%M:%SZ")


def to_epoch_micros(instant: datetime) -> int:
    """Whole microseconds since the Unix epoch: how instants are stored."""
    delta = instant - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_epoch_micros(micros: int) -> datetime:
    return EPOCH + timedelta(microseconds=micros)


def whole_second(instant: datetime) -> datetime:
    """Anchors set to "now" (holdings, budgets) fall on a whole second, so periods read cleanly."""
    return instant.replace(microsecond=0)
