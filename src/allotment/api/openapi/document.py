"""The OpenAPI 3.1 document: every route's declaration (``api/described.py``) and the schemas
msgspec generates from the structs those declarations name (``components.py``).

What is derived rather than declared: path parameters (from the path and the id rules), the
statuses every route of a kind answers (401 and 403 with a key, 400 with a body or parameters,
413 with a body), the error codes of each status (``api/errors.py``'s table), and the security
requirement of each scope.
"""

from __future__ import annotations

import functools
import importlib.metadata
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import msgspec

from allotment.api.described import CLIENT_ID_SCHEMA, Doc, Operation, Param
from allotment.api.http import Access
from allotment.api.openapi import components
from allotment.api.openapi.errors import (
    DECLARED_STATUSES,
    NOT_AN_OPERATION_STATUS,
    ErrorAnswer,
    codes_by_status,
    error_response,
    every_code,
    status_phrase,
)

OPENAPI_VERSION = "3.1.0"
TITLE = "Allotment"
DESCRIPTION = """\
Entitlements, usage limits and credits, answered on every request.

- JSON bodies with snake_case fields; unknown fields are 400.
- Quantities (usage, limits, credits, cost basis) are exact decimals with at most 6 fractional \
digits and an absolute value below 10^12: accepted as JSON numbers or strings, answered as JSON \
numbers, never floats.
- Instants are ISO-8601 with a zone (`Z` or an offset); answers write UTC with `Z`.
- Client-chosen ids match `^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$`; server-made ids carry a \
prefix (`sub_`, `promo_`, `grant_`, `res_`, `key_`, `led_`).
- Lists answer `{"data": [...], "next": cursor | null}`, oldest first; pass `next` as \
`?after=` for the following page, with `?limit=` (default 100, at most 1000).
- Errors answer `{"error": {"code", "message", "details"}}`; a rejected request changes \
nothing. A decision (check, usage, reservation, debit) is not an error: a denial answers 200 \
with `access_denied_reason`.
- Send the API key as `Authorization: Bearer <key>`. A key's scope (`client`, `server`, \
`admin`) grants every route of its level and the levels below it.
"""

# Areas of the API, in the document's order; the routes of each module carry its TAG.
TAGS = {
    "Request path": "Checks, usage, reservations and debits: what a product calls on every "
    "request.",
    "Catalog": "Features, currencies, products, plans and add-ons; the versions of plans and "
    "add-ons and migrations between them; the whole catalog as one document.",
    "Customers": "Customers, their subscriptions, promotions and overrides.",
    "Entities and budgets": "A customer's tree of departments, teams, seats or agents, and the "
    "budgets on each.",
    "Credits": "Credit pools: grants, balances, the ledger and revenue.",
    "API keys": "Keys and their scopes.",
    "Change feed": "Every change that can alter a decision, as it commits.",
    "Events and webhooks": "Events kept for reading, and webhook endpoints they are delivered "
    "to, signed and in order.",
    "Operations": "Probes, metrics, this description and the test clock.",
}

_SECURITY_SCHEMES = {
    "clientKey": "A `client` key: checks and entitlement reads for the one customer it is "
    "bound to.",
    "serverKey": "A `server` key: the request path and every read.",
    "adminKey": "An `admin` key: everything. `ALLOTMENT_ADMIN_KEY` bootstraps one.",
}
_SCHEMES_BY_ACCESS = {
    Access.CLIENT: ("clientKey", "serverKey", "adminKey"),
    Access.SERVER: ("serverKey", "adminKey"),
    Access.ADMIN: ("adminKey",),
}
_SCOPE_TEXT = {
    None: "No API key.",
    Access.CLIENT: "Scope: `client` (for its own customer), `server` or `admin`.",
    Access.SERVER: "Scope: `server` or `admin`.",
    Access.ADMIN: "Scope: `admin`.",
}
_IDEMPOTENT = (
    "Idempotent by `idempotency_key`, scoped to the customer and the route: the first outcome "
    "is kept, a denial included; a replay with the same payload answers it with "
    "`replayed: true` and applies nothing; the same key with another payload is 409 "
    "`idempotency_conflict`. A request refused with an error keeps nothing."
)
_TEST_CLOCK = (
    "Served only when the server runs with `ALLOTMENT_TEST_CLOCK=1`; otherwise the path is 404."
)

_SERVER_ID_PREFIXES = {
    "subscription": "sub_",
    "promotion": "promo_",
    "grant": "grant_",
    "reservation": "res_",
    "key": "key_",
    "endpoint": "we_",
    "event": "evt_",
}
_CLIENT_ID_PARAMS = {
    "customer": "The customer's id.",
    "currency": "The currency's id.",
    "entity": "The entity's id, in the customer's tree.",
    "feature": "The feature's id.",
    "target": "A metered feature's id or a currency's id.",
    "id": "The object's id.",
}
_PATH_PARAM = re.compile(r"{(\w+)}")
# Answers that are not JSON structs: what their media type holds.
_PLAIN_ANSWERS: Mapping[Any, Mapping[str, Any]] = {
    str: {"type": "string"},
    bytes: {"type": "string", "format": "binary"},
    dict: {"type": "object"},
}


def operations() -> Iterator[tuple[str, Operation]]:
    """Every operation the application serves, with its area, in the document's order."""
    # Imported here: the routes import the package this module is in (for their examples).
    from allotment.api import hot
    from allotment.api.openapi import serving
    from allotment.api.routes import (
        catalog,
        catalog_document,
        credits,
        customers,
        entities,
        keys,
        operations,
        request_path,
        reservations,
        stream,
        webhooks,
    )

    yield from ((hot.TAG, operation) for operation in hot.OPERATIONS)
    modules = (
        request_path,
        reservations,
        catalog_document,
        catalog,
        customers,
        entities,
        credits,
        keys,
        stream,
        webhooks,
        operations,
        serving,
    )
    for module in modules:
        for route in (*module.routes, *getattr(module, "test_clock_routes", ())):
            yield module.TAG, route.operation


def build() -> dict[str, Any]:
    listed = list(operations())
    docs = [operation.doc for _, operation in listed]
    requests = [doc.body for doc in docs if doc.body is not None]
    answers: list[Any] = [ErrorAnswer]
    for doc in docs:
        extra = (kind for _, kind in doc.extra_answers.values() if kind is not None)
        answers += [doc.answer, *extra]
    refs, schemas = components.generate(
        requests, (kind for kind in answers if kind not in _PLAIN_ANSWERS)
    )
    schemas["ErrorDetail"]["properties"]["code"]["enum"] = every_code()
    paths: dict[str, dict[str, Any]] = {}
    statuses: set[int] = set()
    for tag, operation in listed:
        described = _operation(tag, operation, refs)
        statuses.update(_error_statuses(operation))
        paths.setdefault(operation.path, {})[operation.method.lower()] = described
    codes = codes_by_status()
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": TITLE,
            "version": importlib.metadata.version("allotment"),
            "description": DESCRIPTION,
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "tags": [{"name": name, "description": text} for name, text in TAGS.items()],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "responses": {
                _error_name(status): error_response(status, codes[status], schemas)
                for status in sorted(statuses)
            },
            "securitySchemes": {
                name: {"type": "http", "scheme": "bearer", "description": text}
                for name, text in _SECURITY_SCHEMES.items()
            },
        },
    }


@functools.cache
def document_bytes() -> bytes:
    """The document as served: built once per process."""
    return msgspec.json.Encoder(decimal_format="number").encode(build())


def document() -> dict[str, Any]:
    """A fresh copy of the document, as a client reads it."""
    parsed: dict[str, Any] = msgspec.json.decode(document_bytes())
    return parsed


def _operation(tag: str, operation: Operation, refs: Mapping[Any, Any]) -> dict[str, Any]:
    doc = operation.doc
    described: dict[str, Any] = {
        "operationId": operation.operation_id,
        "summary": doc.summary,
        "description": _description(doc),
        "tags": [tag],
        "security": [{name: []} for name in _SCHEMES_BY_ACCESS.get(doc.access, ())]
        if doc.access is not None
        else [],
        "x-scope": doc.access.name.lower() if doc.access is not None else None,
    }
    if doc.test_clock:
        described["x-test-clock"] = True
    parameters = list(_parameters(operation))
    if parameters:
        described["parameters"] = parameters
    if doc.body is not None:
        media: dict[str, Any] = {"schema": refs[doc.body]}
        if doc.example is not None and doc.example.body is not None:
            media["examples"] = {
                "demo": {"summary": doc.example.summary, "value": doc.example.body}
            }
        described["requestBody"] = {
            "required": doc.body_required,
            "content": {"application/json": media},
        }
    described["responses"] = _responses(operation, refs)
    return described


def _description(doc: Doc) -> str:
    parts = [doc.description, _SCOPE_TEXT[doc.access]]
    if doc.idempotent:
        parts.append(_IDEMPOTENT)
    if doc.test_clock:
        parts.append(_TEST_CLOCK)
    return "\n\n".join(part for part in parts if part)


def _parameters(operation: Operation) -> Iterator[dict[str, Any]]:
    doc = operation.doc
    declared = {param.name: param for param in doc.params if param.location == "path"}
    examples = doc.example.path if doc.example is not None else {}
    for name in _PATH_PARAM.findall(operation.path):
        described = _path_parameter(declared.get(name) or _known_path_parameter(name))
        if name in examples:
            described["example"] = examples[name]
        yield described
    for param in doc.params:
        if param.location != "path":
            yield {
                "name": param.name,
                "in": param.location,
                "required": False,
                "description": param.description,
                "schema": dict(param.schema),
            }


def _path_parameter(param: Param) -> dict[str, Any]:
    return {
        "name": param.name,
        "in": "path",
        "required": True,
        "description": param.description,
        "schema": dict(param.schema),
    }


def _known_path_parameter(name: str) -> Param:
    if name in _CLIENT_ID_PARAMS:
        return Param(name, _CLIENT_ID_PARAMS[name], CLIENT_ID_SCHEMA, "path")
    prefix = _SERVER_ID_PREFIXES[name]  # a new kind of path parameter needs a rule here
    return Param(
        name,
        f"The {name}'s id, as the service made it.",
        {"type": "string", "pattern": f"^{prefix}", "maxLength": 100},
        "path",
    )


def _responses(operation: Operation, refs: Mapping[Any, Any]) -> dict[str, Any]:
    doc = operation.doc
    content = _content(doc.media_types, doc.answer, refs)
    responses: dict[str, Any] = {}
    if doc.replaces:
        responses["200"] = {"description": "Replaced an existing one.", "content": content}
        responses["201"] = {"description": "Created.", "content": content}
    else:
        responses[str(doc.status)] = {
            "description": f"{status_phrase(doc.status)}.",
            "content": content,
        }
    for status, (text, kind) in doc.extra_answers.items():
        responses[str(status)] = {
            "description": text,
            **({} if kind is None else {"content": _content(doc.media_types, kind, refs)}),
        }
    for status in sorted(_error_statuses(operation)):
        responses[str(status)] = {"$ref": f"#/components/responses/{_error_name(status)}"}
    return responses


def _content(media_types: Sequence[str], answer: Any, refs: Mapping[Any, Any]) -> dict[str, Any]:
    schema = _PLAIN_ANSWERS.get(answer) or refs[answer]
    return {media_type: {"schema": dict(schema)} for media_type in media_types}


def _error_statuses(operation: Operation) -> set[int]:
    doc = operation.doc
    statuses = set(doc.errors)
    declared = {param.name for param in doc.params if param.location == "path"}
    # Ids in the path are checked against the id rules; a declared path parameter is not.
    checked_ids = any(name not in declared for name in _PATH_PARAM.findall(operation.path))
    has_parameters = checked_ids or any(param.location == "query" for param in doc.params)
    if doc.idempotent:
        statuses.add(409)
    if doc.body is not None:
        statuses.update((400, 413))
    if has_parameters:
        statuses.add(400)
    if doc.access is not None:
        statuses.update((401, 403))
        statuses.update(_statuses_for_every_keyed_route())
    return statuses


def _statuses_for_every_keyed_route() -> Sequence[int]:
    """Statuses of the error table that no declaration names: each may come from any route
    that reads the store."""
    ignored = {*DECLARED_STATUSES, NOT_AN_OPERATION_STATUS, 500}
    return [status for status in codes_by_status() if status not in ignored]


def _error_name(status: int) -> str:
    return f"Error{status}"
