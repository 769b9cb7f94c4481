"""Customers, subscriptions, promotions and overrides."""

from __future__ import annotations

from msgspec import UNSET
from starlette.requests import Request
from starlette.responses import Response

from allotment.api.described import PAGE_BY_SEQ, DescribedRoute, Doc, ListPage
from allotment.api.http import (
    Access,
    json_response,
    page_params,
    page_response,
    path_id,
    read,
    route,
    seq_cursor,
    server_id,
)
from allotment.api.openapi import examples
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
from allotment.service.customer_views import (
    CustomerView,
    DeletedOverride,
    OverrideView,
    PromotionView,
    SubscriptionView,
)
from allotment.service.customers import AddonRequest, SubscriptionRequest

TAG = "Customers"


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
            plan_version=body.plan_version,
            addons=[AddonRequest(a.id, a.quantity, a.version) for a in body.addons],
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
    subscription_id = server_id(request, "subscription", "sub_")
    body = await read(request, SubscriptionPatchIn)
    changes: dict[str, object] = {}
    if body.addons is not UNSET:
        changes["addons"] = [AddonRequest(a.id, a.quantity, a.version) for a in body.addons]
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
    subscription_id = server_id(request, "subscription", "sub_")
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
    promotion_id = server_id(request, "promotion", "promo_")
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
_SUBSCRIPTION = f"{_CUSTOMER}/subscriptions/{{subscription}}"
_OVERRIDE = f"{_CUSTOMER}/overrides/{{feature}}"

routes = [
    DescribedRoute(
        "/v1/customers",
        list_customers,
        "GET",
        Doc("List customers", Access.SERVER, ListPage[CustomerView], params=PAGE_BY_SEQ),
    ),
    DescribedRoute(
        _CUSTOMER,
        put_customer,
        "PUT",
        Doc(
            "Create or replace a customer",
            Access.ADMIN,
            CustomerView,
            body=CustomerIn,
            replaces=True,
            errors=(409,),
            description="409 for an archived customer.",
            example=examples.CUSTOMER,
        ),
    ),
    DescribedRoute(
        _CUSTOMER,
        get_customer,
        "GET",
        Doc("Read a customer", Access.SERVER, CustomerView, errors=(404,)),
    ),
    DescribedRoute(
        _CUSTOMER,
        archive_customer,
        "DELETE",
        Doc(
            "Archive a customer",
            Access.ADMIN,
            CustomerView,
            errors=(404,),
            description="Nothing is erased; checks then deny with `customer_archived`.",
        ),
    ),
    DescribedRoute(
        f"{_CUSTOMER}/subscriptions",
        subscribe,
        "POST",
        Doc(
            "Subscribe a customer to a plan, or start a trial",
            Access.ADMIN,
            SubscriptionView,
            body=SubscriptionIn,
            status=201,
            errors=(404, 409),
            description="A new paid subscription takes over from the current one of its "
            "product and keeps its period anchor. 409 for an archived customer or a second "
            "trial of a product.",
            example=examples.SUBSCRIBE,
        ),
    ),
    DescribedRoute(
        f"{_CUSTOMER}/subscriptions",
        list_subscriptions,
        "GET",
        Doc(
            "List a customer's subscriptions, ended ones included",
            Access.SERVER,
            ListPage[SubscriptionView],
            params=PAGE_BY_SEQ,
            errors=(404,),
        ),
    ),
    DescribedRoute(
        _SUBSCRIPTION,
        update_subscription,
        "PATCH",
        Doc(
            "Change a subscription's add-ons or end",
            Access.ADMIN,
            SubscriptionView,
            body=SubscriptionPatchIn,
            errors=(404, 409),
            description="409 once it has ended, or for an archived customer.",
        ),
    ),
    DescribedRoute(
        _SUBSCRIPTION,
        cancel_subscription,
        "DELETE",
        Doc(
            "Cancel a subscription now",
            Access.ADMIN,
            SubscriptionView,
            errors=(404, 409),
            description="409 once it has ended.",
        ),
    ),
    DescribedRoute(
        f"{_CUSTOMER}/promotions",
        grant_promotion,
        "POST",
        Doc(
            "Grant a customer a promotion for a feature",
            Access.ADMIN,
            PromotionView,
            body=PromotionIn,
            status=201,
            errors=(404, 409),
        ),
    ),
    DescribedRoute(
        f"{_CUSTOMER}/promotions/{{promotion}}",
        revoke_promotion,
        "DELETE",
        Doc(
            "Revoke a promotion",
            Access.ADMIN,
            PromotionView,
            errors=(404, 409),
            description="409 when already revoked.",
        ),
    ),
    DescribedRoute(
        _OVERRIDE,
        put_override,
        "PUT",
        Doc(
            "Set the operator's last word on a feature for a customer",
            Access.ADMIN,
            OverrideView,
            body=SpecIn,
            replaces=True,
            errors=(404, 409),
            description="Its periods are anchored at its creation; replacing it keeps the "
            "anchor. 404 for an unknown customer or feature.",
        ),
    ),
    DescribedRoute(
        _OVERRIDE,
        delete_override,
        "DELETE",
        Doc("Remove an override", Access.ADMIN, DeletedOverride, errors=(404,)),
    ),
]
