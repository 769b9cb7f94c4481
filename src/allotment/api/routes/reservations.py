"""``/v1/reservations``: reserve, commit, release."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from allotment.api.described import DescribedRoute, Doc, EmptyBody
from allotment.api.http import (
    Access,
    json_response,
    raw_json_response,
    read,
    read_body,
    route,
    server_id,
)
from allotment.api.openapi import examples
from allotment.api.presenters import write_json
from allotment.api.schemas import CommitIn, ReservationIn
from allotment.api.services import Services
from allotment.domain.errors import InvalidRequest
from allotment.domain.quantities import parse_quantity
from allotment.service.outcomes import ReservationOutcome, ReservationView
from allotment.service.reservations import ReservationRequest

TAG = "Request path"


def _reservation_id(request: Request) -> str:
    return server_id(request, "reservation", "res_")


@route(Access.SERVER)
async def reserve(request: Request, services: Services) -> Response:
    body = await read(request, ReservationIn)
    reservation = ReservationRequest(
        customer=body.customer,
        feature=body.feature,
        amount=parse_quantity(body.amount.value, "amount"),
        idempotency_key=body.idempotency_key,
        entity=body.entity,
        ttl_seconds=body.ttl_seconds,
    )
    return raw_json_response(write_json(await services.reservations.reserve(reservation)))


@route(Access.SERVER)
async def commit(request: Request, services: Services) -> Response:
    reservation_id = _reservation_id(request)
    body = await read(request, CommitIn)
    amount = parse_quantity(body.amount.value, "amount")
    return json_response(await services.reservations.commit(reservation_id, amount))


@route(Access.SERVER)
async def release(request: Request, services: Services) -> Response:
    reservation_id = _reservation_id(request)
    body = await read_body(request, services.settings.max_body_bytes)
    if body.strip() not in (b"", b"{}"):
        raise InvalidRequest("release takes no body (or {}).")
    return json_response(await services.reservations.release(reservation_id))


_ENDED = "409 once the reservation has ended (committed, released or expired)."

routes = [
    DescribedRoute(
        "/v1/reservations",
        reserve,
        "POST",
        Doc(
            "Reserve an amount of a feature before using it",
            Access.SERVER,
            ReservationOutcome,
            body=ReservationIn,
            idempotent=True,
            description="A decision, not an error: `granted` false carries the reason. A "
            "granted reservation counts as usage, and holds its credits, until it is committed, "
            "released or expires.",
            example=examples.RESERVE,
        ),
    ),
    DescribedRoute(
        "/v1/reservations/{reservation}/commit",
        commit,
        "POST",
        Doc(
            "Record what a reservation used and free the rest",
            Access.SERVER,
            ReservationView,
            body=CommitIn,
            errors=(404, 409),
            description=_ENDED,
        ),
    ),
    DescribedRoute(
        "/v1/reservations/{reservation}/release",
        release,
        "POST",
        Doc(
            "Release a reservation unused",
            Access.SERVER,
            ReservationView,
            body=EmptyBody,
            body_required=False,
            errors=(404, 409),
            description=_ENDED,
        ),
    ),
]
