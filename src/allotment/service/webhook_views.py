"""What the event and webhook routes answer."""

from __future__ import annotations

from typing import Literal

import msgspec
from msgspec import Struct

from allotment.domain.events import SUBSCRIBABLE, EventType, LoggedEvent
from allotment.domain.timefmt import format_instant
from allotment.domain.webhooks import Delivery, DeliveryStatus, Endpoint
from allotment.service.answers import InstantText


class EventView(Struct, frozen=True, kw_only=True):
    """An event: ``GET /v1/events/{id}``, each item of ``GET /v1/events``, and the body of a
    webhook delivery. ``seq`` increases across the service; ``data`` depends on ``type``."""

    id: str
    seq: int
    type: EventType
    created_at: InstantText
    customer: str | None
    data: msgspec.Raw


class EndpointView(Struct, frozen=True, kw_only=True):
    """A webhook endpoint; its ``secret`` only when made or rotated (``CreatedEndpoint``)."""

    id: str
    url: str
    events: list[EventType]  # every type it receives (all of them when none were named)
    description: str | None
    disabled: bool
    created_at: InstantText


class CreatedEndpoint(EndpointView, frozen=True, kw_only=True):
    """``POST /v1/webhook-endpoints`` (201) and ``POST .../rotate-secret``: the endpoint with
    its signing ``secret``, shown in this answer only."""

    secret: str


class DeliveryView(Struct, frozen=True, kw_only=True):
    """Each item of ``GET /v1/webhook-endpoints/{id}/deliveries``."""

    id: str
    event: str
    status: DeliveryStatus
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: InstantText | None


class Replayed(Struct, frozen=True, kw_only=True):
    """``POST /v1/webhook-endpoints/{id}/replay`` (202): how many events will be delivered
    again."""

    events: int


class Pinged(Struct, frozen=True, kw_only=True):
    """``POST /v1/webhook-endpoints/{id}/ping`` (202): the ``ping`` event sent."""

    event: str
    type: Literal["ping"] = "ping"


def event_view(logged: LoggedEvent) -> EventView:
    event = logged.event
    return EventView(
        id=event.id,
        seq=logged.seq,
        type=event.type,
        created_at=format_instant(event.created_at),
        customer=event.customer,
        data=msgspec.Raw(event.data),
    )


def endpoint_view(endpoint: Endpoint) -> EndpointView:
    return EndpointView(
        id=endpoint.id,
        url=endpoint.url,
        events=list(SUBSCRIBABLE)
        if endpoint.events is None
        else [EventType(t) for t in endpoint.events],
        description=endpoint.description,
        disabled=endpoint.disabled,
        created_at=format_instant(endpoint.created_at),
    )


def created_endpoint(endpoint: Endpoint) -> CreatedEndpoint:
    view = endpoint_view(endpoint)
    return CreatedEndpoint(**msgspec.structs.asdict(view), secret=endpoint.secret)


def delivery_view(delivery: Delivery) -> DeliveryView:
    return DeliveryView(
        id=delivery.id,
        event=delivery.event_id,
        status=delivery.status,
        attempts=delivery.attempts,
        last_status_code=delivery.last_status_code,
        last_error=delivery.last_error,
        next_attempt_at=None
        if delivery.next_attempt_at is None
        else format_instant(delivery.next_attempt_at),
    )
