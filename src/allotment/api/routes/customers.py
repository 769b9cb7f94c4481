"""Customers, subscriptions, promotions and overrides."""

from __future__ import annotations

from msgspec import UNSET
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from allotment.api.http import (
    Access,
    json_response,
    page_params,
    page_response,
    path_id,
    read,
    route,
    seq_cursor,
)
from allotment.api.schemas import (
    SPEC_FIELDS,
    CustomerIn,
    PromotionIn,
    SpecIn,
    SubscriptionIn,
    SubscriptionPatchIn,
    present_fields,
)
from allotment.api.services import Services
from allotment.domain.errors import InvalidRequest
from allotment.service.customers import SubscriptionRequest


def _server_id(request: Request, name: str, prefix: str) -> str:
    value: str = request.path_params[name]
    if not value.startswith(prefix) or len(value) > 100:
        raise InvalidRequest(f"{value!r} is not a valid {name} id.", {"field": name})
    return value


@route(Access.ADMIN)
async def put_customer(request: Request, services: Services) -> Response:
    customer_id = path_id(request, "customer")
    body = await read(request, CustomerIn)
    document, created = await services.customers.put_customer(
        customer_id, name=body.name, metadata=body.metadata, billing_id=body.billing_id
    )
    return json_response(document, 201 if created else 200)


@route(Access.SERVER)
async def get_customer(request: Request, services: Services) -> Response:
    return json_response(await services.customers.get_customer(path_id(request, "customer")))


@route(Access.ADMIN)
async def archive_customer(request: Request, services: Services) -> Response:
    return json_response(await services.customers.archive_customer(path_id(request, "customer")))


@route(Access.SERVER)
async def list_customers(request: Request, services: Services) -> Response:
    after, limit = page_params(request)
    return page_response(await services.customers.list_customers(seq_cursor(after), limit))


@route(Access.ADMIN)
async def subscribe(request: Request, services: Services) -> Response:
    customer_id = path_id(request, "customer")
    body = await read(request, SubscriptionIn)
    subscription = await services.customers.subscribe(
        customer_id,
        SubscriptionRequest(
            plan=body.plan,
            addons=[(a.id, a.quantity) for a in body.addons],
            trial=body.trial,
            trial_days=body.trial_days,
            starts_at=body.starts_at,
            ends_at=body.ends_at,
        ),
    )
    return json_response(subscription, 201)


@route(Access.SERVER)
async def list_subscriptions(request: Request, services: Services) -> Response:
    after, limit = page_params(request)
    customer_id = path_id(request, "customer")
    page = await services.customers.list_subscriptions(customer_id, seq_cursor(after), limit)
    return page_response(page)


@route(Access.ADMIN)
async def update_subscription(request: Request, services: Services) -> Response:
    customer_id = path_id(request, "customer")
    subscription_id = _server_id(request, "subscription", "sub_")
    body = await read(request, SubscriptionPatchIn)
    changes: dict[str, object] = {}
    if body.addons is not UNSET:
        changes["addons"] = [(a.id, a.quantity) for a in body.addons]
    if body.ends_at is not UNSET:
        changes["ends_at"] = body.ends_at
    subscription = await services.customers.update_subscription(
        customer_id,
        subscription_id,
        **changes,  # type: ignore[arg-type]
    )
    return json_response(subscription)


@route(Access.ADMIN)
async def cancel_subscription(request: Request, services: Services) -> Response:
    customer_id = path_id(request, "customer")
    subscription_id = _server_id(request, "subscription", "sub_")
    return json_response(await services.customers.cancel_subscription(customer_id, subscription_id))


@route(Access.ADMIN)
async def grant_promotion(request: Request, services: Services) -> Response:
    customer_id = path_id(request, "customer")
    body = await read(request, PromotionIn)
    promotion = await services.customers.grant_promotion(
        customer_id,
        body.feature,
        present_fields(body, SPEC_FIELDS),
        starts_at=body.starts_at,
        ends_at=body.ends_at,
        reason=body.reason,
    )
    return json_response(promotion, 201)


@route(Access.ADMIN)
async def revoke_promotion(request: Request, services: Services) -> Response:
    customer_id = path_id(request, "customer")
    promotion_id = _server_id(request, "promotion", "promo_")
    return json_response(await services.customers.revoke_promotion(customer_id, promotion_id))


@route(Access.ADMIN)
async def put_override(request: Request, services: Services) -> Response:
    customer_id = path_id(request, "customer")
    feature_id = path_id(request, "feature")
    body = await read(request, SpecIn)
    document, created = await services.customers.put_override(
        customer_id, feature_id, present_fields(body, SPEC_FIELDS)
    )
    return json_response(document, 201 if created else 200)


@route(Access.ADMIN)
async def delete_override(request: Request, services: Services) -> Response:
    customer_id = path_id(request, "customer")
    feature_id = path_id(request, "feature")
    return json_response(await services.customers.delete_override(customer_id, feature_id))


_CUSTOMER = "/v1/customers/{customer}"

routes = [
    Route("/v1/customers", list_customers, methods=["GET"]),
    Route(_CUSTOMER, put_customer, methods=["PUT"]),
    Route(_CUSTOMER, get_customer, methods=["GET"]),
    Route(_CUSTOMER, archive_customer, methods=["DELETE"]),
    Route(f"{_CUSTOMER}/subscriptions", subscribe, methods=["POST"]),
    Route(f"{_CUSTOMER}/subscriptions", list_subscriptions, methods=["GET"]),
    Route(f"{_CUSTOMER}/subscriptions/{{subscription}}", update_subscription, methods=["PATCH"]),
    Route(f"{_CUSTOMER}/subscriptions/{{subscription}}", cancel_subscription, methods=["DELETE"]),
    Route(f"{_CUSTOMER}/promotions", grant_promotion, methods=["POST"]),
    Route(f"{_CUSTOMER}/promotions/{{promotion}}", revoke_promotion, methods=["DELETE"]),
    Route(f"{_CUSTOMER}/overrides/{{feature}}", put_override, methods=["PUT"]),
    Route(f"{_CUSTOMER}/overrides/{{feature}}", delete_override, methods=["DELETE"]),
]
