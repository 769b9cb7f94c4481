"""API keys: created with a scope, shown once, stored as SHA-256 digests, revoked at once.

Keys are long random secrets, so a fast digest is the right hash: nothing about them can be
guessed, and the digest is what authentication looks up on every request. Live keys are cached
by the projector, which follows every creation and revocation in the change log, this
process's and every other's; an unknown digest is looked up in the store before a 401.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime

from allotment.domain.changes import ApiKeyChanged
from allotment.domain.customers import ApiKey, Scope
from allotment.domain.errors import InvalidRequest, NotFound
from allotment.domain.identifiers import new_id
from allotment.domain.ids import require_client_id
from allotment.service.key_views import ApiKeyView, CreatedApiKey, created_key, key_view
from allotment.service.ports import Page, UnitOfWork
from allotment.service.projector import KeyFound
from allotment.service.runtime import Runtime

BOOTSTRAP_KEY_ID = "key_bootstrap"
KEY_PREFIX = "alt_"
MAX_NAME_LENGTH = 200


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class KeyService:
    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._by_digest = runtime.cache.keys

    def load(self, bootstrap_secret: str | None) -> None:
        """Read every live key at start-up; make ``bootstrap_secret`` an admin key if given."""
        runtime = self._runtime

        def job(uow: UnitOfWork) -> None:
            if bootstrap_secret:
                existing = uow.keys.get(BOOTSTRAP_KEY_ID)
                bootstrap = ApiKey(
                    id=BOOTSTRAP_KEY_ID,
                    name="bootstrap admin key (ALLOTMENT_ADMIN_KEY)",
                    scope=Scope.ADMIN,
                    customer=None,
                    key_hash=digest(bootstrap_secret),
                    created_at=existing.created_at if existing else runtime.clock.now(),
                )
                if bootstrap != existing:
                    uow.keys.save(bootstrap)
                    uow.record(ApiKeyChanged(bootstrap))
                    if existing is not None and existing.key_hash != bootstrap.key_hash:
                        # The old secret stops working everywhere.
                        uow.record(ApiKeyChanged(_revoked(existing, runtime.clock.now())))
            after = None
            while True:
                page = uow.keys.list(after, 1000)
                for key in page.items:
                    uow.fill(KeyFound(key))
                if page.next_cursor is None:
                    return
                after = page.next_cursor

        runtime.store.run_blocking(job)

    def authenticate_cached(self, secret: str) -> ApiKey | None:
        return self._by_digest.get(digest(secret))

    async def authenticate(self, secret: str) -> ApiKey | None:
        key_hash = digest(secret)
        key = self._by_digest.get(key_hash)
        if key is not None:
            return key

        def job(uow: UnitOfWork) -> ApiKey | None:
            found = uow.keys.find_by_hash(key_hash)
            if found is None or found.revoked_at is not None:
                return None
            # Cached by the projector, in order: a revocation committed after this read is
            # applied after this fill and is never undone by it.
            uow.fill(KeyFound(found))
            return found

        return await self._runtime.run(job)

    async def create(self, name: str, scope: Scope, customer: str | None) -> CreatedApiKey:
        if not 0 < len(name) <= MAX_NAME_LENGTH:
            raise InvalidRequest(f"name must hold 1 to {MAX_NAME_LENGTH} characters.")
        if scope is Scope.CLIENT and customer is None:
            raise InvalidRequest("a client key is bound to one customer: customer is required.")
        if scope is not Scope.CLIENT and customer is not None:
            raise InvalidRequest("only client keys are bound to a customer.")
        if customer is not None:
            require_client_id(customer, "customer")
        runtime = self._runtime
        secret = KEY_PREFIX + secrets.token_urlsafe(32)

        def job(uow: UnitOfWork) -> ApiKey:
            if customer is not None and uow.customers.get(customer) is None:
                raise InvalidRequest(f"customer: no customer {customer!r}.", {"field": "customer"})
            key = ApiKey(
                id=new_id("key"),
                name=name,
                scope=scope,
                customer=customer,
                key_hash=digest(secret),
                created_at=runtime.clock.now(),
            )
            uow.keys.save(key)
            uow.record(ApiKeyChanged(key))
            return key

        key = await runtime.run(job)
        return created_key(key, secret)

    async def revoke(self, key_id: str) -> ApiKeyView:
        runtime = self._runtime

        def job(uow: UnitOfWork) -> ApiKey:
            key = uow.keys.get(key_id)
            if key is None:
                raise NotFound(f"no API key {key_id}.", {"id": key_id})
            if key.revoked_at is None:
                key = _revoked(key, runtime.clock.now())
                uow.keys.save(key)
                uow.record(ApiKeyChanged(key))
            return key

        return key_view(await runtime.run(job))

    async def list(self, after: str | None, limit: int) -> Page[ApiKeyView]:
        page = await self._runtime.run(lambda s: s.keys.list(after, limit))
        return Page([key_view(key) for key in page.items], page.next_cursor)


def _revoked(key: ApiKey, at: datetime) -> ApiKey:
    return ApiKey(key.id, key.name, key.scope, key.customer, key.key_hash, key.created_at, at)
