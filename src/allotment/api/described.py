"""What the API description needs of each route, declared beside the route itself.

Every route is a :class:`DescribedRoute`: its path and method are Starlette's, and its
:class:`Doc` says who may call it, which request struct it decodes, which typed answer it
encodes, and the statuses it adds to those every route of its kind can answer. The request path
in front of Starlette (``api/hot.py``) declares the same for its paths. ``api/openapi/`` builds
the document from these declarations and the msgspec definitions they name; a test fails for a
route served without one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, cast

from msgspec import Struct
from starlette.routing import Route

from allotment.api.http import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, Access
from allotment.domain.ids import CLIENT_ID_PATTERN

T = TypeVar("T")


# What api.http.page_response writes for a Page of answers.
class ListPage(Struct, Generic[T], frozen=True):
    """One page of a list, oldest first: ``next`` is the cursor to pass as ``?after=`` for the
    page after this one, null on the last page."""

    data: list[T]
    next: str | None


def page_of(item: type[Struct]) -> Any:
    """``ListPage[item]`` for an item type known only at run time."""
    return cast(Any, ListPage)[item]


class EmptyBody(Struct, forbid_unknown_fields=True):
    """No body, or ``{}``."""


@dataclass(frozen=True, slots=True)
class Param:
    """A query, header or path parameter (a path parameter the id rules do not cover)."""

    name: str
    description: str
    schema: Mapping[str, Any]
    location: str = "query"


CLIENT_ID_SCHEMA: Mapping[str, Any] = {
    "type": "string",
    "pattern": f"^{CLIENT_ID_PATTERN.pattern}$",
}
LIMIT = Param(
    "limit",
    f"How many items to answer, {DEFAULT_PAGE_SIZE} by default.",
    {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE, "default": DEFAULT_PAGE_SIZE},
)
AFTER_ID = Param(
    "after", "The `next` of the previous page: the id of its last item.", CLIENT_ID_SCHEMA
)
AFTER_SEQ = Param(
    "after",
    "The `next` of the previous page: a sequence number.",
    {"type": "string", "pattern": "^[0-9]{1,18}$"},
)
ENTITY = Param("entity", "Check for this entity of the customer's tree.", CLIENT_ID_SCHEMA)
STREAM_CUSTOMER = Param(
    "customer",
    "Only this customer's changes (and catalog changes). Required with a client key.",
    CLIENT_ID_SCHEMA,
)
LAST_EVENT_ID = Param(
    "Last-Event-ID",
    "The `id` of the last event received: the stream continues after it, or starts with "
    "`event: reset` when the log no longer holds what follows it.",
    {"type": "string"},
    location="header",
)
PAGE_BY_ID = (AFTER_ID, LIMIT)
PAGE_BY_SEQ = (AFTER_SEQ, LIMIT)


@dataclass(frozen=True, slots=True)
class Example:
    """A request that works against the demo (``allotment demo``): path parameters and body."""

    summary: str
    path: Mapping[str, str] = field(default_factory=dict)
    body: Any = None


@dataclass(frozen=True, slots=True)
class Doc:
    """What a route's description is made of; everything else is derived.

    ``access`` is the least scope that may call it (None: no key). ``answer`` is the type its
    success encodes (a struct, ``ListPage[...]``, or ``str`` for non-JSON ``media_types``).
    Every route with a key answers 401 and 403; with a body, path or query parameter 400; with a
    body 413; ``errors`` adds the rest (404 for what the path names, 409 for conflicts).
    ``replaces`` marks a ``PUT`` answering 201 when it created and 200 when it replaced.
    """

    summary: str
    access: Access | None
    answer: Any
    body: type[Struct] | None = None
    status: int = 200
    replaces: bool = False
    errors: tuple[int, ...] = ()
    params: tuple[Param, ...] = ()
    description: str = ""
    example: Example | None = None
    idempotent: bool = False
    test_clock: bool = False
    media_types: tuple[str, ...] = ("application/json",)
    body_required: bool = True
    extra_answers: Mapping[int, tuple[str, Any]] = field(default_factory=dict)  # None: no body
    operation_id: str | None = None


@dataclass(frozen=True, slots=True)
class Operation:
    """One method on one path, as the document lists it."""

    method: str
    path: str
    operation_id: str
    doc: Doc


class DescribedRoute(Route):
    """A Starlette route for one method, carrying its :class:`Doc`."""

    def __init__(self, path: str, endpoint: Callable[..., Any], method: str, doc: Doc) -> None:
        super().__init__(path, endpoint, methods=[method])
        self.operation = Operation(method, path, doc.operation_id or endpoint.__name__, doc)
