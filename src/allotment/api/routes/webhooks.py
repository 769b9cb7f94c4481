"""``/v1/events`` and ``/v1/webhook-endpoints``."""

from __future__ import annotations

from msgspec import UNSET
from starlette.requests import Request
from starlette.responses import Response

from allotment.api.described import (
    AFTER_SEQ,
    CLIENT_ID_SCHEMA,
    LIMIT,
    PAGE_BY_SEQ,
    DescribedRoute,
    Doc,
    ListPage,
    Param,
)
from allotment.api.http import (
    Access,
    json_response,
    page_params,
    page_response,
    read,
    route,
    seq_cursor,
    server_id,
)
from allotment.api.schemas import ReplayIn, WebhookEndpointIn, WebhookEndpointPatch
from allotment.api.services import Services
from allotment.domain.errors import InvalidRequest
from allotment.domain.events import EventType
from allotment.domain.ids import require_client_id
from allotment.domain.webhooks import DeliveryStatus
from allotment.service.webhook_views import (
    CreatedEndpoint,
    DeliveryView,
    EndpointView,
    EventView,
    Pinged,
    Replayed,
)
from allotment.service.webhooks import EndpointChange

TAG = "Events and webhooks"

_ENDPOINT = "/v1/webhook-endpoints/{endpoint}"


@route(Access.SERVER)
async def list_events(request: Request, services: Services) -> Response:
    after, limit = page_params(request)
    query = request.query_params
    event_type = query.get("type") or None
    if event_type is not None and event_type not in set(EventType):
        raise InvalidRequest(f"type {event_type!r} is not an event type.", {"field": "type"})
    customer = query.get("customer") or None
    if customer is not None:
        require_client_id(customer, "customer")
    cursor = seq_cursor(after)
    page = await services.webhooks.events(
        event_type, customer, 0 if cursor is None else int(cursor), limit
    )
    return page_response(page)


@route(Access.SERVER)
async def get_event(request: Request, services: Services) -> Response:
    return json_response(await services.webhooks.event(server_id(request, "event", "evt_")))


@route(Access.ADMIN)
async def create_endpoint(request: Request, services: Services) -> Response:
    body = await read(request, WebhookEndpointIn)
    created = await services.webhooks.create(body.url, body.events, body.description)
    return json_response(created, 201)


@route(Access.ADMIN)
async def list_endpoints(request: Request, services: Services) -> Response:
    after, limit = page_params(request)
    return page_response(await services.webhooks.list(seq_cursor(after), limit))


@route(Access.ADMIN)
async def get_endpoint(request: Request, services: Services) -> Response:
    return json_response(await services.webhooks.get(server_id(request, "endpoint", "we_")))


@route(Access.ADMIN)
async def update_endpoint(request: Request, services: Services) -> Response:
    endpoint = server_id(request, "endpoint", "we_")
    body = await read(request, WebhookEndpointPatch)
    change = EndpointChange(
        url=body.url, events=body.events, description=body.description, disabled=body.disabled
    )
    updated = await services.webhooks.update(endpoint, change)
    if body.disabled is False or body.url is not UNSET:  # deliveries may go again now
        services.delivery.nudge()
    return json_response(updated)


@route(Access.ADMIN)
async def delete_endpoint(request: Request, services: Services) -> Response:
    return json_response(await services.webhooks.delete(server_id(request, "endpoint", "we_")))


@route(Access.ADMIN)
async def rotate_secret(request: Request, services: Services) -> Response:
    endpoint = server_id(request, "endpoint", "we_")
    return json_response(await services.webhooks.rotate_secret(endpoint))


@route(Access.ADMIN)
async def list_deliveries(request: Request, services: Services) -> Response:
    endpoint = server_id(request, "endpoint", "we_")
    after, limit = page_params(request)
    raw_status = request.query_params.get("status") or None
    if raw_status is not None and raw_status not in set(DeliveryStatus):
        raise InvalidRequest("status must be pending, succeeded or failed.", {"field": "status"})
    status = None if raw_status is None else DeliveryStatus(raw_status)
    page = await services.webhooks.deliveries(endpoint, status, seq_cursor(after), limit)
    return page_response(page)


@route(Access.ADMIN)
async def replay(request: Request, services: Services) -> Response:
    endpoint = server_id(request, "endpoint", "we_")
    body = await read(request, ReplayIn)
    replayed = await services.webhooks.replay(endpoint, body.since, body.until, body.types)
    services.delivery.nudge()
    return json_response(replayed, 202)


@route(Access.ADMIN)
async def ping(request: Request, services: Services) -> Response:
    endpoint = server_id(request, "endpoint", "we_")
    pinged = await services.webhooks.ping(endpoint)
    services.delivery.nudge()
    return json_response(pinged, 202)


EVENT_TYPE = Param(
    "type", "Only events of this type.", {"type": "string", "enum": [t.value for t in EventType]}
)
EVENT_CUSTOMER = Param("customer", "Only this customer's events.", CLIENT_ID_SCHEMA)
DELIVERY_STATUS = Param(
    "status",
    "Only deliveries with this status.",
    {"type": "string", "enum": [s.value for s in DeliveryStatus]},
)

routes = [
    DescribedRoute(
        "/v1/events",
        list_events,
        "GET",
        Doc(
            "List events in seq order",
            Access.SERVER,
            ListPage[EventView],
            params=(EVENT_TYPE, EVENT_CUSTOMER, AFTER_SEQ, LIMIT),
            description="Events are kept at least 30 days. `after` is a `seq`.",
        ),
    ),
    DescribedRoute(
        "/v1/events/{event}",
        get_event,
        "GET",
        Doc("Read an event", Access.SERVER, EventView, errors=(404,)),
    ),
    DescribedRoute(
        "/v1/webhook-endpoints",
        create_endpoint,
        "POST",
        Doc(
            "Register a webhook endpoint",
            Access.ADMIN,
            CreatedEndpoint,
            body=WebhookEndpointIn,
            status=201,
            description="The signing `secret` is in this answer only.",
        ),
    ),
    DescribedRoute(
        "/v1/webhook-endpoints",
        list_endpoints,
        "GET",
        Doc("List webhook endpoints", Access.ADMIN, ListPage[EndpointView], params=PAGE_BY_SEQ),
    ),
    DescribedRoute(
        _ENDPOINT,
        get_endpoint,
        "GET",
        Doc("Read a webhook endpoint", Access.ADMIN, EndpointView, errors=(404,)),
    ),
    DescribedRoute(
        _ENDPOINT,
        update_endpoint,
        "PATCH",
        Doc(
            "Change a webhook endpoint",
            Access.ADMIN,
            EndpointView,
            body=WebhookEndpointPatch,
            errors=(404,),
        ),
    ),
    DescribedRoute(
        _ENDPOINT,
        delete_endpoint,
        "DELETE",
        Doc(
            "Delete a webhook endpoint and its deliveries",
            Access.ADMIN,
            EndpointView,
            errors=(404,),
        ),
    ),
    DescribedRoute(
        f"{_ENDPOINT}/rotate-secret",
        rotate_secret,
        "POST",
        Doc(
            "Give a webhook endpoint a new secret",
            Access.ADMIN,
            CreatedEndpoint,
            errors=(404,),
            body_required=False,
            description="Deliveries are signed with the previous secret too for 24 hours.",
        ),
    ),
    DescribedRoute(
        f"{_ENDPOINT}/deliveries",
        list_deliveries,
        "GET",
        Doc(
            "List an endpoint's deliveries",
            Access.ADMIN,
            ListPage[DeliveryView],
            params=(DELIVERY_STATUS, *PAGE_BY_SEQ),
            errors=(404,),
        ),
    ),
    DescribedRoute(
        f"{_ENDPOINT}/replay",
        replay,
        "POST",
        Doc(
            "Deliver events again, with their original webhook-id",
            Access.ADMIN,
            Replayed,
            body=ReplayIn,
            status=202,
            errors=(404,),
        ),
    ),
    DescribedRoute(
        f"{_ENDPOINT}/ping",
        ping,
        "POST",
        Doc(
            "Send a ping event to an endpoint at once",
            Access.ADMIN,
            Pinged,
            status=202,
            errors=(404,),
            body_required=False,
        ),
    ),
]
