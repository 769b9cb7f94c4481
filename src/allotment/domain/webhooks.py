"""Webhook endpoints and their deliveries, as values.

An endpoint follows the events with a cursor: every event past ``cursor`` that it asked for
becomes one delivery. Deliveries of one endpoint and one customer (``group``) go out one at a
time in ``seq`` order: a later one waits while an earlier one is pending.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Endpoint:
    id: str  # we_...
    url: str
    events: tuple[str, ...] | None  # None: every type
    description: str | None
    disabled: bool
    secret: str  # whsec_...
    created_at: datetime
    cursor: int  # the newest event seq fanned out to deliveries
    # The secret replaced by the last rotation, still signed with until ``previous_until``.
    previous_secret: str | None = None
    previous_until: datetime | None = None
    failing_since: datetime | None = None  # the first failed attempt since the last success

    def wants(self, event_type: str) -> bool:
        return self.events is None or event_type in self.events

    def signing_secrets(self, now: datetime) -> tuple[str, ...]:
        """The secrets a delivery at ``now`` is signed with: the current one, and the previous
        one while the rotation's overlap lasts."""
        if self.previous_secret is not None and (
            self.previous_until is None or now < self.previous_until
        ):
            return (self.secret, self.previous_secret)
        return (self.secret,)


def group_of(customer: str | None, event_id: str, ping: bool) -> str:
    """The ordering group of a delivery: its customer's events go one at a time; events with no
    customer form one group of their own; a ping waits for nothing."""
    if ping:
        return f"ping:{event_id}"
    return "" if customer is None else f"c:{customer}"


@dataclass(frozen=True, slots=True)
class Delivery:
    id: str  # whd_...
    endpoint: str
    event_seq: int
    event_id: str
    group: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime | None  # the service's clock; None once it is no longer pending
    created_at: datetime
    last_status_code: int | None = None
    last_error: str | None = None
    seq: int = 0  # the order deliveries were made in; given by the store

    def succeeded(self, status_code: int) -> Delivery:
        return replace(
            self,
            status=DeliveryStatus.SUCCEEDED,
            attempts=self.attempts + 1,
            next_attempt_at=None,
            last_status_code=status_code,
            last_error=None,
        )

    def attempt_failed(
        self, status_code: int | None, error: str, retry_at: datetime | None
    ) -> Delivery:
        """One more failed attempt; retried at ``retry_at``, or ``failed`` when None."""
        return replace(
            self,
            status=DeliveryStatus.PENDING if retry_at is not None else DeliveryStatus.FAILED,
            attempts=self.attempts + 1,
            next_attempt_at=retry_at,
            last_status_code=status_code,
            last_error=error,
        )
