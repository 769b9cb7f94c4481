"""Events read back, and webhook endpoints: registering, changing, replaying, pinging.

Delivering is ``service/webhook_delivery.py``, in the background: nothing here sends a request.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import partial

from msgspec import UNSET, UnsetType

from allotment.domain.changes import EventRecorded
from allotment.domain.errors import InvalidRequest, NotFound
from allotment.domain.events import SUBSCRIBABLE, Event, EventType
from allotment.domain.identifiers import new_id
from allotment.domain.webhook_rules import check_url, new_secret
from allotment.domain.webhooks import Delivery, DeliveryStatus, Endpoint, group_of
from allotment.service.ports import Page, UnitOfWork
from allotment.service.runtime import Runtime
from allotment.service.webhook_views import (
    CreatedEndpoint,
    DeliveryView,
    EndpointView,
    EventView,
    Pinged,
    Replayed,
    created_endpoint,
    delivery_view,
    endpoint_view,
    event_view,
)

ROTATION_OVERLAP = timedelta(hours=24)
"""After a rotation, deliveries are signed with the previous secret too for this long."""

REPLAY_LIMIT = 100_000
"""The most events one replay sends again (a narrower ``since``/``until`` sends the rest)."""

REPLAY_CHUNK = 1_000
"""Events a replay reads per store job."""


@dataclass(frozen=True, slots=True)
class EndpointChange:
    """What a ``PATCH`` changes; a field left ``UNSET`` stays as it is (``events: None``: every
    type)."""

    url: str | UnsetType = UNSET
    events: Sequence[str] | UnsetType | None = UNSET
    description: str | UnsetType | None = UNSET
    disabled: bool | UnsetType = UNSET


def _event_types(events: Sequence[str] | None) -> tuple[str, ...] | None:
    if events is None:
        return None
    unknown = [t for t in events if t not in SUBSCRIBABLE]
    if unknown:
        raise InvalidRequest(
            f"events names unknown types: {', '.join(map(repr, unknown))}.", {"field": "events"}
        )
    if not events:
        raise InvalidRequest("events must name at least one type, or be left out.")
    return tuple(dict.fromkeys(events))


class WebhookService:
    def __init__(self, runtime: Runtime, *, allow_private: bool) -> None:
        self._runtime = runtime
        self._allow_private = allow_private

    # ------------------------------------------------------------------ events

    async def events(
        self, event_type: str | None, customer: str | None, after: int, limit: int
    ) -> Page[EventView]:
        def job(uow: UnitOfWork) -> Page[EventView]:
            found = uow.events.list(event_type, customer, after, limit + 1)
            items = [event_view(e) for e in found[:limit]]
            more = len(found) > limit
            return Page(items, str(found[limit - 1].seq) if more else None)

        return await self._runtime.run(job)

    async def event(self, event_id: str) -> EventView:
        def job(uow: UnitOfWork) -> EventView:
            found = uow.events.get(event_id)
            if found is None:
                raise NotFound(f"no event {event_id!r}.", {"event": event_id})
            return event_view(found)

        return await self._runtime.run(job)

    # ------------------------------------------------------------------ endpoints

    async def create(
        self, url: str, events: Sequence[str] | None, description: str | None
    ) -> CreatedEndpoint:
        check_url(url, self._allow_private)
        types = _event_types(events)
        runtime = self._runtime

        def job(uow: UnitOfWork) -> CreatedEndpoint:
            endpoint = Endpoint(
                id=new_id("we"),
                url=url,
                events=types,
                description=description,
                disabled=False,
                secret=new_secret(secrets.token_bytes(24)),
                created_at=runtime.clock.now(),
                # Events committed from here on (any committed later takes a higher revision).
                cursor=uow.events.newest_seq(),
            )
            uow.webhooks.save_endpoint(endpoint)
            return created_endpoint(endpoint)

        return await runtime.run(job)

    async def get(self, endpoint_id: str) -> EndpointView:
        return await self._runtime.run(lambda uow: endpoint_view(_existing(uow, endpoint_id)))

    async def list(self, after: str | None, limit: int) -> Page[EndpointView]:
        page = await self._runtime.run(lambda uow: uow.webhooks.list_endpoints(after, limit))
        return Page([endpoint_view(e) for e in page.items], page.next_cursor)

    async def update(self, endpoint_id: str, change: EndpointChange) -> EndpointView:
        url, description, disabled = change.url, change.description, change.disabled
        if not isinstance(url, UnsetType):
            check_url(url, self._allow_private)
        events = change.events
        types = events if isinstance(events, UnsetType) else _event_types(events)

        def job(uow: UnitOfWork) -> EndpointView:
            endpoint = _existing(uow, endpoint_id)
            changed = replace(
                endpoint,
                url=endpoint.url if isinstance(url, UnsetType) else url,
                events=endpoint.events if isinstance(types, UnsetType) else types,
                description=endpoint.description
                if isinstance(description, UnsetType)
                else description,
                disabled=endpoint.disabled if isinstance(disabled, UnsetType) else disabled,
            )
            if endpoint.disabled and not changed.disabled:
                changed = replace(changed, failing_since=None)  # enabled again: a fresh start
            uow.webhooks.save_endpoint(changed)
            return endpoint_view(changed)

        return await self._runtime.run(job)

    async def delete(self, endpoint_id: str) -> EndpointView:
        def job(uow: UnitOfWork) -> EndpointView:
            endpoint = _existing(uow, endpoint_id)
            uow.webhooks.delete_endpoint(endpoint_id)
            return endpoint_view(endpoint)

        return await self._runtime.run(job)

    async def rotate_secret(self, endpoint_id: str) -> CreatedEndpoint:
        runtime = self._runtime

        def job(uow: UnitOfWork) -> CreatedEndpoint:
            endpoint = _existing(uow, endpoint_id)
            rotated = replace(
                endpoint,
                secret=new_secret(secrets.token_bytes(24)),
                previous_secret=endpoint.secret,
                previous_until=runtime.clock.now() + ROTATION_OVERLAP,
            )
            uow.webhooks.save_endpoint(rotated)
            return created_endpoint(rotated)

        return await runtime.run(job)

    # ------------------------------------------------------------------ deliveries

    async def deliveries(
        self, endpoint_id: str, status: DeliveryStatus | None, after: str | None, limit: int
    ) -> Page[DeliveryView]:
        def job(uow: UnitOfWork) -> Page[DeliveryView]:
            _existing(uow, endpoint_id)
            page = uow.webhooks.list_deliveries(endpoint_id, status, after, limit)
            return Page([delivery_view(d) for d in page.items], page.next_cursor)

        return await self._runtime.run(job)

    async def replay(
        self,
        endpoint_id: str,
        since: datetime,
        until: datetime | None,
        types: Sequence[str] | None,
    ) -> Replayed:
        if until is not None and until <= since:
            raise InvalidRequest("until must be after since.", {"field": "until"})
        wanted = _event_types(types)
        runtime = self._runtime

        def chunk(uow: UnitOfWork, after: int, room: int) -> tuple[int, int] | None:
            """One page of events past ``after``: (its last seq, how many it replays), or None
            when no event is left."""
            endpoint = _existing(uow, endpoint_id)
            found = uow.events.created_between(since, until, after, REPLAY_CHUNK)
            if not found:
                return None
            chosen = [
                logged
                for logged in found
                if logged.event.type is not EventType.PING
                and endpoint.wants(logged.event.type)
                and (wanted is None or logged.event.type in wanted)
            ][:room]
            now = runtime.clock.now()
            made = [_delivery(endpoint, logged.seq, logged.event, now) for logged in chosen]
            uow.webhooks.add_deliveries(made)
            return found[-1].seq, len(chosen)

        # A page per job, so that a long replay never holds the writes behind it.
        after, count = 0, 0
        while count < REPLAY_LIMIT:
            done = await runtime.run(partial(chunk, after=after, room=REPLAY_LIMIT - count))
            if done is None:
                break
            after, count = done[0], count + done[1]
        return Replayed(events=count)

    async def ping(self, endpoint_id: str) -> Pinged:
        runtime = self._runtime

        def job(uow: UnitOfWork) -> Pinged:
            endpoint = _existing(uow, endpoint_id)
            now = runtime.clock.now()
            event = Event(
                new_id("evt"),
                EventType.PING,
                None,
                now,
                b'{"endpoint":"%s"}' % endpoint.id.encode(),
            )
            uow.record(EventRecorded(event))
            # Its revision is given at commit; the delivery names the event, which it reads then.
            uow.webhooks.add_deliveries([_delivery(endpoint, 0, event, now)])
            return Pinged(event=event.id)

        return await runtime.run(job)


def deliveries_for(endpoint: Endpoint, seq: int, event: Event, now: datetime) -> Delivery | None:
    """The delivery of a new event to ``endpoint``, if it asked for its type."""
    if event.type is EventType.PING or not endpoint.wants(event.type):
        return None
    return _delivery(endpoint, seq, event, now)


def _delivery(endpoint: Endpoint, seq: int, event: Event, now: datetime) -> Delivery:
    return Delivery(
        id=new_id("whd"),
        endpoint=endpoint.id,
        event_seq=seq,
        event_id=event.id,
        group=group_of(event.customer, event.id, event.type is EventType.PING),
        status=DeliveryStatus.PENDING,
        attempts=0,
        next_attempt_at=now,
        created_at=now,
    )


def _existing(uow: UnitOfWork, endpoint_id: str) -> Endpoint:
    endpoint = uow.webhooks.get_endpoint(endpoint_id)
    if endpoint is None:
        raise NotFound(f"no webhook endpoint {endpoint_id!r}.", {"endpoint": endpoint_id})
    return endpoint
