"""``GET /v1/stream``: the change log as server-sent events.

Each change is one event: ``id`` is its revision, ``event`` its kind as the contract names it,
``data`` a JSON object with ``seq`` and what a cache needs to follow it. Changes no client acts
on (API keys) are sent as an ``id:`` line alone: it moves the client's ``Last-Event-ID`` without
dispatching anything, so revisions stay gap-free on the unfiltered stream. A reader that asks
for a revision the log no longer keeps, or one it never gave, first gets ``event: reset``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from allotment.api.described import LAST_EVENT_ID, STREAM_CUSTOMER, DescribedRoute, Doc
from allotment.api.http import Access, authenticate, authorize, error_response
from allotment.api.services import Services
from allotment.domain.changes import (
    ApiKeyChanged,
    CatalogChanged,
    Change,
    CreditsChanged,
    CustomerChanged,
    EventRecorded,
    HoldEnded,
    HoldPlaced,
    LoggedChange,
    UsageRecorded,
)
from allotment.domain.errors import AllotmentError, InvalidRequest
from allotment.domain.ids import is_client_id
from allotment.domain.quantities import to_json_number
from allotment.domain.timefmt import format_instant
from allotment.service.feed import ChangeFeed

TAG = "Change feed"
PAGE = 500
RETRY_MILLISECONDS = 1000
_encode = msgspec.json.Encoder(decimal_format="number").encode


async def stream(request: Request) -> Response:
    services: Services = request.app.state.services
    try:
        customer = request.query_params.get("customer")
        if customer is not None and not is_client_id(customer):
            raise InvalidRequest(f"{customer!r} is not a valid customer id.", {"field": "customer"})
        key = authorize(await authenticate(services, request), Access.CLIENT, customer)
    except AllotmentError as error:
        return error_response(error)
    feed = services.feed
    last_event_id = request.headers.get("last-event-id")
    # The starting point is fixed before anything is sent: a change committed after the reader
    # saw ": connected" is always streamed to it.
    bounds = await feed.bounds()
    runtime = services.runtime

    async def still_live() -> bool:
        found = await runtime.store.run(lambda uow: uow.keys.find_by_hash(key.key_hash))
        return found is not None and found.revoked_at is None

    reader = _Reader(key.key_hash, customer, services.settings.stream_keepalive_seconds)
    return StreamingResponse(
        reader.events(feed, last_event_id, bounds, still_live),
        media_type="text/event-stream",
        headers={"cache-control": "no-store", "x-accel-buffering": "no"},
    )


@dataclass(slots=True)
class _Reader:
    key_hash: str
    customer: str | None
    keepalive_seconds: float

    async def events(
        self,
        feed: ChangeFeed,
        last_event_id: str | None,
        bounds: tuple[int, int],
        still_live: Callable[[], Awaitable[bool]],
    ) -> AsyncIterator[bytes]:
        """The stream's bytes: every change after the starting point, a keep-alive comment
        whenever nothing was sent for a while; it ends when the reader's key is revoked, or
        when the server shuts down (the client then reconnects, to this or another process,
        with its ``Last-Event-ID``)."""
        feed.readers += 1
        try:
            oldest, head = bounds
            cursor = _resume_point(last_event_id, oldest, head)
            if cursor is None:
                yield f"retry: {RETRY_MILLISECONDS}\n: connected\n\n".encode()
                cursor = head
                yield _reset(head)
            else:
                # The starting point as an id without an event: a client learns the revision
                # the stream continues after (a cache must know what it will not be sent).
                yield f"retry: {RETRY_MILLISECONDS}\nid: {cursor}\n: connected\n\n".encode()
            sent_at = time.monotonic()
            while not feed.closed:
                published = feed.waiter()
                logged = await feed.after(cursor, PAGE)
                if logged and logged[0].seq != cursor + 1:
                    # Pruned while this reader was behind: what it holds can no longer be
                    # followed, and a revocation among what it missed must still end it.
                    _, cursor = await feed.bounds()
                    if not await still_live():
                        return
                    yield _reset(cursor)
                    sent_at = time.monotonic()
                    continue
                if logged:
                    cursor = logged[-1].seq
                    chunk = b"".join(_event(entry, self.customer) for entry in logged)
                    if chunk or time.monotonic() - sent_at >= self.keepalive_seconds:
                        # Other customers' changes alone send nothing: keep the line alive.
                        yield chunk or _KEEPALIVE
                        sent_at = time.monotonic()
                    if any(self._revokes(entry) for entry in logged):
                        return
                    continue
                quiet = time.monotonic() - sent_at
                try:
                    # Not wait_for, which on Python 3.11 can lose the cancellation of a reader
                    # that left just as a change was published.
                    async with asyncio.timeout(max(0.0, self.keepalive_seconds - quiet)):
                        await published.wait()
                except TimeoutError:
                    yield _KEEPALIVE
                    sent_at = time.monotonic()
        finally:
            feed.readers -= 1

    def _revokes(self, entry: LoggedChange) -> bool:
        change = entry.change
        return (
            isinstance(change, ApiKeyChanged)
            and change.key.key_hash == self.key_hash
            and change.key.revoked_at is not None
        )


_KEEPALIVE = b": keep-alive\n\n"


def _resume_point(last_event_id: str | None, oldest: int, head: int) -> int | None:
    """The revision to continue after, or None when the reader must start again."""
    if last_event_id is None:
        return head
    text = last_event_id.strip()
    if not (text.isascii() and text.isdigit() and len(text) <= 18):
        return None
    seq = int(text)
    if seq > head:
        return None  # a revision this log never gave (another database, or a bad id)
    if seq < head and seq + 1 < oldest:
        return None  # older than what the log keeps
    return seq


def _reset(head: int) -> bytes:
    return b"id: %d\nevent: reset\ndata: %s\n\n" % (head, _encode({"seq": head}))


def _event(entry: LoggedChange, customer: str | None) -> bytes:
    change = entry.change
    if customer is not None and change.customer not in (customer, None):
        return b""
    data = _data(change)
    if data is None:
        return b"" if customer is not None else b"id: %d\n\n" % entry.seq
    kind, fields = data
    # When the change was written (the system's clock, not the test clock): a reader's lag.
    body = _encode({"seq": entry.seq, **fields, "written_at": format_instant(entry.written_at)})
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (entry.seq, kind.encode(), body)


def _data(change: Change) -> tuple[str, dict[str, Any]] | None:
    """The contract's event kind and payload for ``change``; None when clients get no event."""
    match change:
        case UsageRecorded(customer, feature, entity, amount, timestamp, path):
            return "usage.recorded", {
                "customer": customer,
                "feature": feature,
                "entity": entity,
                "amount": to_json_number(amount),
                "timestamp": format_instant(timestamp),
                "entity_path": list(path),
            }
        case CreditsChanged(customer, currency, balance, overdraft_limit, valid_until, spends):
            return "credits.changed", {
                "customer": customer,
                "currency": currency,
                "balance": to_json_number(balance),
                "valid_until": None if valid_until is None else format_instant(valid_until),
                "overdraft_limit": None
                if overdraft_limit is None
                else to_json_number(overdraft_limit),
                "spends": [
                    {
                        "entity_path": list(spend.entity_path),
                        "credits": to_json_number(spend.credits),
                    }
                    for spend in spends
                ],
            }
        case CustomerChanged(customer, None):
            return "customer.changed", {"customer": customer}
        case CustomerChanged(customer, entity):
            return "customer.changed", {"customer": customer, "entity": entity}
        case HoldPlaced(reservation):
            return "customer.changed", {
                "customer": reservation.customer,
                "reservation": {
                    "id": reservation.id,
                    "status": "held",
                    "feature": reservation.feature,
                    "entity": reservation.entity,
                    "amount": to_json_number(reservation.amount),
                    "expires_at": format_instant(reservation.expires_at),
                },
            }
        case HoldEnded(customer, reservation_id):
            return "customer.changed", {
                "customer": customer,
                "reservation": {"id": reservation_id, "status": "ended"},
            }
        case CatalogChanged(object_kind, object_id, document):
            fields: dict[str, Any] = {"kind": object_kind, "id": object_id}
            if "versions" in document:  # a plan or add-on: its latest version and status
                fields["version"] = document["versions"][-1]["version"]
                fields["status"] = document["status"]
            return "catalog.changed", fields
        case ApiKeyChanged() | EventRecorded():
            return None  # events are read from GET /v1/events and delivered by webhooks
    raise AssertionError(f"no wire form for {change!r}")


routes = [
    DescribedRoute(
        "/v1/stream",
        stream,
        "GET",
        Doc(
            "Follow every change that can alter a decision, as server-sent events",
            Access.CLIENT,
            str,
            params=(STREAM_CUSTOMER, LAST_EVENT_ID),
            media_types=("text/event-stream",),
            description="Each event's `id` is its revision (gap-free, in commit order), "
            "`event` its kind (`catalog.changed`, `customer.changed`, `usage.recorded`, "
            "`credits.changed`, or `reset`: drop everything cached) and `data` a JSON object "
            "with `seq` and, except for catalog changes (which name the object's `kind` and `id`, "
            "and a plan's or add-on's latest `version` and `status`), `customer`; "
            "`usage.recorded` adds "
            "`feature`, `entity`, `amount`, `timestamp` and `entity_path` (the entity and "
            "its ancestors, nearest first, for budgets), `credits.changed` `currency`, "
            "`balance`, `overdraft_limit`, `valid_until` (the next instant the pool changes "
            "by itself) and `spends` (each debit's `entity_path` and `credits`, for currency "
            "budgets). Every event's `data` also carries `written_at`, when the change was "
            "written. The first block carries the revision the stream continues after as an "
            "`id` without an event. A comment line keeps an idle stream open. A "
            "client key must name its own customer with `?customer=`.",
        ),
    ),
]
