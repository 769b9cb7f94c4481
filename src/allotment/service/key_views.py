"""What the API key routes answer: a key as stored (never its secret), and a new key with its
secret, shown in that one answer only."""

from __future__ import annotations

from msgspec import Struct
from msgspec.structs import asdict

from allotment.domain.customers import ApiKey, Scope
from allotment.domain.timefmt import format_instant
from allotment.service.answers import InstantText


class ApiKeyView(Struct, frozen=True, kw_only=True):
    """``DELETE /v1/api-keys/{id}`` (revoke), and each item of ``GET /v1/api-keys``. Only a
    ``client`` key names a ``customer``."""

    id: str
    name: str
    scope: Scope
    customer: str | None
    created_at: InstantText
    revoked_at: InstantText | None


class CreatedApiKey(ApiKeyView, frozen=True, kw_only=True):
    """``POST /v1/api-keys`` (201): the new key, with its secret ``key``."""

    key: str


def key_view(key: ApiKey) -> ApiKeyView:
    return ApiKeyView(
        id=key.id,
        name=key.name,
        scope=key.scope,
        customer=key.customer,
        created_at=format_instant(key.created_at),
        revoked_at=None if key.revoked_at is None else format_instant(key.revoked_at),
    )


def created_key(key: ApiKey, secret: str) -> CreatedApiKey:
    return CreatedApiKey(**asdict(key_view(key)), key=secret)
