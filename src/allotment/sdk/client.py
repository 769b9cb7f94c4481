"""``Client``: the service's API from Python, with checks answered in process.

Checks are answered from a local cache of each customer's state (``local.py``, ``cache.py``),
kept current by one stream of the change feed per client, with a poll as the safety net.
Usage reports go to a durable local buffer first and are delivered in the background
(``buffer.py``). Nothing in here blocks on the network at construction, ``check`` never raises
for a transport problem, and every background thread is a daemon that ``close`` ends within its
timeout. A client made before ``os.fork`` works in the child: the child gets its own
connections, stream and buffer connection the first time it uses the client.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid
import weakref
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from types import TracebackType
from typing import Any, Literal, TypeVar

import httpx
import msgspec

from allotment.domain.decision import credit_cost
from allotment.domain.ids import IDEMPOTENCY_KEY_MAX_LENGTH, is_client_id
from allotment.domain.quantities import MICROS_PER_UNIT, Micros, parse_quantity
from allotment.domain.resolution import DenialReason
from allotment.sdk.buffer import Answer, Backoff, BufferedReport, UsageBuffer, UsageDelivery
from allotment.sdk.cache import HOT_SECONDS, Held, LocalCache, answer_of
from allotment.sdk.errors import ApiError, InvalidReport, ServiceUnavailable
from allotment.sdk.fallback import Fallback, FallbackValue
from allotment.sdk.feed import FeedFollower, FeedState, StreamRefused
from allotment.sdk.local import Pending, micros_of
from allotment.sdk.post import UsagePoster
from allotment.sdk.results import CheckResult, Page, UsageReport, UsageResult
from allotment.service.answers import CustomerState, Entitlements
from allotment.service.catalog_views import (
    AddonView,
    CatalogApplied,
    CatalogDocument,
    CurrencyView,
    FeatureView,
    MigrationView,
    PlanVersionView,
    PlanView,
    ProductView,
)
from allotment.service.credit_views import GrantView, LedgerEntryView, PoolBalance, Revenue
from allotment.service.customer_views import CustomerView, SubscriptionView
from allotment.service.key_views import ApiKeyView, CreatedApiKey
from allotment.service.outcomes import (
    DebitOutcome,
    GrantOutcome,
    ReservationOutcome,
    ReservationView,
)

log = logging.getLogger("allotment.sdk")

T = TypeVar("T")
QuantityIn = int | Decimal | str
_encode = msgspec.json.Encoder(decimal_format="number").encode
_decode_loose = msgspec.json.Decoder(float_hook=Decimal).decode
_UNSET: Any = object()
_STREAM_READ_TIMEOUT = 45.0  # three of the service's 15-second keep-alives


class OfflinePolicy(StrEnum):
    """What an enforced usage report does while the service is unreachable.

    ``deny``: refuse it. ``cache``: allow it when the cached state shows room for it (the
    decision a check with ``requested`` makes), else refuse. ``allow``: allow it. An allowed
    report is buffered as ``enforce: false`` (the work it describes went ahead) and delivered
    later; the service then records it past any limit."""

    DENY = "deny"
    CACHE = "cache"
    ALLOW = "allow"


class Client:
    """The Allotment API for one service and one API key.

    ``fallback`` answers checks of what the cache never saw while the service is unreachable
    (``Fallback``; by default, denied). ``buffer_path`` is the SQLite file usage waits in until
    delivered (None: in memory, lost with the process). ``max_staleness`` (seconds) bounds the
    age of any cached answer: older data is read again, and while it cannot be, the fallback
    answers. ``offline`` sets an ``OfflinePolicy`` per feature for enforced reports (``"*"``:
    the default, ``cache``). ``customer`` names the one customer of a ``client`` key (its
    stream is narrowed to it). ``follow=False`` does without the change feed (answers are then
    current to ``poll_interval``).
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str,
        fallback: Fallback | Mapping[str, FallbackValue] | bool | None = None,
        buffer_path: str | os.PathLike[str] | None = None,
        max_staleness: float = 600.0,
        timeout: float = 5.0,
        poll_interval: float = 30.0,
        refresh_interval: float = 600.0,
        offline: Mapping[str, OfflinePolicy | str] | None = None,
        customer: str | None = None,
        follow: bool = True,
        max_cached: int = 10_000,
        max_buffered: int = 100_000,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self.fallback = Fallback.of(fallback)
        self.max_staleness = max_staleness
        self.timeout = timeout
        self.poll_interval = poll_interval
        self.refresh_interval = refresh_interval
        policies = {k: OfflinePolicy(v) for k, v in (offline or {}).items()}
        self._offline_default = policies.pop("*", OfflinePolicy.CACHE)
        self._offline = policies
        self._stream_customer = customer
        self._follow = follow
        self._transport = transport
        self.cache = LocalCache(max_entries=max_cached, filtered=customer is not None)
        self.buffer = UsageBuffer(
            None if buffer_path is None else os.fspath(buffer_path), max_reports=max_buffered
        )
        self._lock = threading.Lock()
        self._closed = False
        self._http = self._new_http()
        self._stream_http = self._new_http(read=_STREAM_READ_TIMEOUT)
        self.feed = FeedFollower(
            self._open_stream,
            self.cache.apply,
            heard=self.cache.heard,
            live=self._service_back,
            # Reconnecting often is cheap, and the feed going live is what tells the delivery
            # the service is back: at most 5 s between attempts.
            backoff=Backoff(cap=5.0),
        )
        self._stream_socket: socket.socket | None = None
        self._poster = (
            UsagePoster(self.base_url, api_key, timeout, _USER_AGENT) if transport is None else None
        )
        self.delivery = UsageDelivery(
            self.buffer, self._poster or self._post_usage, on_answer=self._delivered
        )
        self._poller: threading.Thread | None = None
        self._poll_stop = threading.Event()
        self._unreachable_until = 0.0  # time.monotonic(): loads wait until then after a failure
        self.fallbacks = 0
        self.upstream_errors = 0
        self._running_in: int | None = None
        self._count_held_reports()
        _CLIENTS.add(self)
        self._ensure_running()

    # ------------------------------------------------------------ lifecycle

    def _ensure_running(self) -> None:
        """Start the background threads in this process: at first use, and again in a forked
        child (found by its process id too, for servers that fork without running Python's
        fork hooks, as uWSGI does unless told to)."""
        pid = os.getpid()
        if self._running_in == pid or self._closed:
            return
        if self._running_in is not None:
            self._after_fork()  # forked, and no hook said so
        with self._lock:
            if self._running_in == pid or self._closed:
                return
            if self._follow:
                self.feed.start()
            self.delivery.start()
            self._poll_stop = threading.Event()
            self._poller = threading.Thread(
                target=self._poll_loop, name="allotment-poll", daemon=True
            )
            self._poller.start()
            self._running_in = pid

    def _count_held_reports(self) -> None:
        """Reports a file buffer holds from before this client (a restart during an outage)
        count in its checks until the feed shows them, as its own reports do."""
        for report in self.buffer.held():
            try:
                body = _decode_loose(report.body)
                if body.get("behavior", "delta") != "delta":
                    continue
                customer, feature = body["customer"], body["feature"]
                amount = _micros(_number(body["amount"]), "amount")
            except (msgspec.DecodeError, KeyError, TypeError, ValueError, AttributeError):
                continue  # not a report this SDK wrote; delivered as it is all the same
            pending = Pending(report.idempotency_key, feature, body.get("entity"), amount, 0)
            self.cache.add_pending(customer, pending)

    def _after_fork(self) -> None:
        """In a forked child: the parent's threads are gone and its sockets and SQLite
        handle are not ours to use. Fresh ones are made on first use."""
        self._lock = threading.Lock()
        self._http = self._new_http()
        self._stream_http = self._new_http(read=_STREAM_READ_TIMEOUT)
        self.cache.after_fork()
        if self._poster is not None:
            self._poster.after_fork()
        self.buffer.after_fork()
        self.delivery.after_fork()
        self.feed.after_fork()
        self._stream_socket = None  # the parent's: never to be shut down from here
        self._poller = None
        self._running_in = None

    def _service_back(self) -> None:
        """The feed is live again: the service answers, so held reports need not wait out
        the delivery's backoff, and reads need not wait out theirs."""
        self._unreachable_until = 0.0
        self.delivery.retry_now()

    def wait_until_ready(self, timeout: float) -> bool:
        """Wait until the change feed is live (checks are then kept current); False when
        ``timeout`` seconds passed first."""
        self._ensure_running()
        if not self._follow:
            return True
        return self.feed.wait_live(timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Stop every background thread and close every connection, within ``timeout``
        seconds whatever the network does. Idempotent; reports still in a file buffer stay
        there for the next client on that file."""
        if self._closed:
            return
        self._closed = True
        deadline = time.monotonic() + max(0.0, timeout)
        _CLIENTS.discard(self)
        self._poll_stop.set()
        steps = [
            self._cut_stream,
            lambda: self.feed.stop(_left(deadline) / 2),
            lambda: self.delivery.stop(_left(deadline) / 2),
            lambda: _join(self._poller, _left(deadline)),
            lambda: _close_soon(self._http, _left(deadline)),
            lambda: _close_soon(self._stream_http, _left(deadline)),
            self._close_poster,
            self.buffer.close,
        ]
        for step in steps:
            try:
                step()
            except Exception:
                log.exception("closing the client: one part failed; closing the rest")

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------ check

    def check(
        self,
        customer: str,
        feature: str,
        *,
        entity: str | None = None,
        requested: QuantityIn | None = None,
        fallback: FallbackValue | None = None,
    ) -> CheckResult:
        """May ``customer`` use ``feature`` (``requested`` more of it)? Answered from the
        cache; never raises for a transport problem (see ``Client``)."""
        hot = self.cache.hot((customer, feature, entity, requested))
        if hot is not None:
            self.cache.stats.hits += 1
            return hot
        return self._check(customer, feature, entity, requested, fallback)

    def check_cached(
        self,
        customer: str,
        feature: str,
        *,
        entity: str | None = None,
        requested: QuantityIn | None = None,
    ) -> CheckResult | None:
        """The check answered from the cache alone, or None when it needs the service (the
        customer is not cached, its data passed its validity or ``max_staleness``). Never
        touches the network: for callers that must not block (an event loop)."""
        cache = self.cache
        hot = cache.hot((customer, feature, entity, requested))
        if hot is not None:
            cache.stats.hits += 1
            return hot
        amount = None if requested is None else _micros(requested, "requested")
        held = cache.held(customer, entity)
        wall = time.time()
        if held is None or held.expired(wall) or cache.age(held, wall) > self.max_staleness:
            return None
        cache.stats.hits += 1
        return self._answer(held, customer, feature, entity, requested, amount)

    def _check(
        self,
        customer: str,
        feature: str,
        entity: str | None,
        requested: QuantityIn | None,
        fallback: FallbackValue | None,
    ) -> CheckResult:
        self._ensure_running()
        cached = self.check_cached(customer, feature, entity=entity, requested=requested)
        if cached is not None:
            return cached
        amount = None if requested is None else _micros(requested, "requested")
        cache = self.cache
        cache.stats.misses += 1
        held = self._load(customer, entity) or cache.held(customer, entity)
        if held is None or cache.age(held, time.time()) > self.max_staleness:
            self.fallbacks += 1
            return self.fallback.answer(customer, feature, entity, requested, fallback)
        return self._answer(held, customer, feature, entity, requested, amount)

    def _answer(
        self,
        held: Held,
        customer: str,
        feature: str,
        entity: str | None,
        requested: QuantityIn | None,
        amount: Micros | None,
    ) -> CheckResult:
        """The answer from ``held``, kept for repeated checks while the entry is cached."""
        cache = self.cache
        with cache.lock:
            answer = held.entry.answer(feature, amount, cache.pending(customer))
            age = cache.age(held, time.time())
            result = answer_of(answer, age)
            if cache.held(customer, entity) is held:
                until = time.monotonic() + min(HOT_SECONDS, self.max_staleness - age)
                cache.keep_hot((customer, feature, entity, requested), result, until)
        return result

    def _load(self, customer: str, entity: str | None) -> Held | None:
        """Read the customer's state and cache it; None when the service cannot answer (then
        loads wait a second before trying again, so an outage costs each check nothing)."""
        if time.monotonic() < self._unreachable_until:
            return None
        params = {"entity": entity} if entity is not None else None
        sent = time.time()
        try:
            state = self._call(
                "GET", _path("/v1/customers/{}/state", customer), CustomerState, params=params
            )
        except (ServiceUnavailable, ApiError) as error:
            if isinstance(error, ApiError) and error.status == 400:
                raise  # an id or entity the service refuses: the caller's to fix
            self.upstream_errors += 1
            self._unreachable_until = time.monotonic() + 1.0
            log.warning("could not read %s's state (%s): answering without it", customer, error)
            return None
        self._unreachable_until = 0.0
        return self.cache.install(state, sent, time.time())

    def entitlements(self, customer: str, *, entity: str | None = None) -> Entitlements:
        """``GET /v1/customers/{id}/entitlements``, answered from the cache: a check result
        for every feature some source grants the customer. ``ApiError`` (404) for an unknown
        customer; ``ServiceUnavailable`` when the service is unreachable and the customer is
        not cached."""
        self._ensure_running()
        cache = self.cache
        wall = time.time()
        held = cache.held(customer, entity)
        if held is None or held.expired(wall) or cache.age(held, wall) > self.max_staleness:
            held = self._load(customer, entity) or held
        if held is None or cache.age(held, time.time()) > self.max_staleness:
            raise ServiceUnavailable(f"{customer}'s entitlements: the service is unreachable")
        with cache.lock:
            entry = held.entry
            answers = list(entry.answers.values())
            if answers and all(
                a.access_denied_reason is DenialReason.CUSTOMER_NOT_FOUND for a in answers
            ):
                raise ApiError(404, "not_found", f"no customer {customer!r}.", {})
            pending = cache.pending(customer)
            age = cache.age(held, time.time())
            granted = [
                answer_of(entry.answer(a.feature, None, pending), age)
                for a in answers
                if a.source is not None
            ]
        return Entitlements(customer, list(granted))

    # ------------------------------------------------------------ usage

    def report_usage(
        self,
        customer: str,
        feature: str,
        amount: QuantityIn,
        *,
        entity: str | None = None,
        idempotency_key: str | None = None,
        enforce: bool = False,
        behavior: Literal["delta", "set"] = "delta",
        timestamp: datetime | str | None = None,
    ) -> UsageReport:
        """Report usage. Without ``enforce`` it is written to the local buffer (durable when
        this returns; ``BufferFull`` when the buffer holds its bound) and delivered in the
        background with its idempotency key and exact payload; cached checks count it at
        once. With ``enforce`` the service decides, atomically; while it is unreachable the
        feature's ``OfflinePolicy`` does (``UsageReport.decided_offline``)."""
        self._ensure_running()
        key = idempotency_key or f"sdk-{uuid.uuid4().hex}"
        micros = _checked_report(customer, feature, entity, amount, key, behavior, timestamp)
        body: dict[str, Any] = {
            "customer": customer,
            "feature": feature,
            "amount": _number(amount),
            "idempotency_key": key,
        }
        if entity is not None:
            body["entity"] = entity
        if behavior != "delta":
            body["behavior"] = behavior
        if timestamp is not None:
            body["timestamp"] = timestamp if isinstance(timestamp, str) else timestamp.isoformat()
        if not enforce:
            return self._buffer(customer, feature, entity, micros, key, body, behavior)
        try:
            result = self._call("POST", "/v1/usage", UsageResult, body={**body, "enforce": True})
        except ServiceUnavailable:
            return self._offline_report(customer, feature, entity, micros, key, body, behavior)
        return UsageReport(
            idempotency_key=key,
            recorded=result.recorded,
            buffered=False,
            access_denied_reason=result.access_denied_reason,
            result=result,
        )

    def _buffer(
        self,
        customer: str,
        feature: str,
        entity: str | None,
        micros: Micros,
        key: str,
        body: dict[str, Any],
        behavior: str,
    ) -> UsageReport:
        # Counted before it is written: once written it may be delivered and shown by the
        # feed at any moment, and the feed's event must find it pending.
        counted = False
        if behavior == "delta":
            credits = self._credits_of(customer, feature, entity, micros)
            pending = Pending(key, feature, entity, micros, credits)
            counted = self.cache.add_pending(customer, pending)
        try:
            self.buffer.append(key, _encode(body))
        except BaseException:
            if counted:
                self.cache.drop_pending(customer, key)
            raise
        self.delivery.wake()
        return UsageReport(idempotency_key=key, recorded=True, buffered=True)

    def _credits_of(self, customer: str, feature: str, entity: str | None, micros: Micros) -> int:
        """What a report costs in credits by the cached state (0 when not priced or unknown)."""
        held = self.cache.held(customer, entity) or self.cache.held(customer, None)
        if held is None:
            return 0
        answer = held.entry.answers.get(feature)
        if answer is None or answer.credits is None:
            return 0
        return credit_cost(micros, micros_of(answer.credits["cost"]))

    def _offline_report(
        self,
        customer: str,
        feature: str,
        entity: str | None,
        micros: Micros,
        key: str,
        body: dict[str, Any],
        behavior: str,
    ) -> UsageReport:
        policy = self._offline.get(feature, self._offline_default)
        reason: DenialReason | None = None
        if policy is OfflinePolicy.CACHE:
            check = self.check(customer, feature, entity=entity, requested=_number_text(micros))
            if check.is_fallback or not check.has_access:
                reason = check.access_denied_reason or DenialReason.USAGE_LIMIT_EXCEEDED
        elif policy is OfflinePolicy.DENY:
            reason = DenialReason.USAGE_LIMIT_EXCEEDED
        if reason is not None:
            return UsageReport(
                idempotency_key=key,
                recorded=False,
                buffered=False,
                decided_offline=True,
                access_denied_reason=reason,
            )
        report = self._buffer(customer, feature, entity, micros, key, body, behavior)
        return msgspec.structs.replace(report, decided_offline=True)

    def _post_usage(self, body: bytes) -> Answer:
        """The delivery thread's post through httpx, when the client was given a transport
        (tests); otherwise ``UsagePoster`` posts."""
        response = self._http.post(
            "/v1/usage", content=body, headers={"content-type": "application/json"}
        )
        retry = response.headers.get("retry-after")
        retry_after = float(retry) if retry is not None and retry.isdigit() else None
        return Answer(response.status_code, response.content, retry_after)

    def _delivered(self, report: BufferedReport, answer: Answer) -> None:
        try:
            sent = msgspec.json.decode(report.body)
            customer = sent["customer"]
        except (msgspec.DecodeError, KeyError, TypeError):
            return
        recorded = False
        if 200 <= answer.status < 300:
            try:
                got = msgspec.json.decode(answer.body)
                recorded = bool(got.get("recorded")) and not got.get("replayed")
            except msgspec.DecodeError:
                recorded = False
        self.cache.answered(customer, report.idempotency_key, recorded)

    # ------------------------------------------------------------ reservations

    def reserve(
        self,
        customer: str,
        feature: str,
        amount: QuantityIn,
        *,
        entity: str | None = None,
        ttl_seconds: int = 60,
        idempotency_key: str | None = None,
    ) -> Reservation:
        """``POST /v1/reservations``. Usable as a context manager: the block sets
        ``reservation.used``; on leaving it that amount is committed (all of it when the
        block set nothing), and on an exception the reservation is released."""
        body: dict[str, Any] = {
            "customer": customer,
            "feature": feature,
            "amount": _number(amount),
            "ttl_seconds": ttl_seconds,
            "idempotency_key": idempotency_key or f"sdk-{uuid.uuid4().hex}",
        }
        if entity is not None:
            body["entity"] = entity
        outcome = self._call("POST", "/v1/reservations", ReservationOutcome, body=body)
        return Reservation(self, outcome)

    def commit_reservation(self, reservation_id: str, amount: QuantityIn) -> ReservationView:
        return self._call(
            "POST",
            _path("/v1/reservations/{}/commit", reservation_id),
            ReservationView,
            body={"amount": _number(amount)},
        )

    def release_reservation(self, reservation_id: str) -> ReservationView:
        return self._call(
            "POST", _path("/v1/reservations/{}/release", reservation_id), ReservationView, body={}
        )

    # ------------------------------------------------------------ credits

    def grant_credits(
        self,
        customer: str,
        currency: str,
        amount: QuantityIn,
        *,
        category: Literal["paid", "promotional"],
        idempotency_key: str,
        cost_basis: QuantityIn | None = None,
        priority: int | None = None,
        effective_at: str | None = None,
        expires_at: str | None = None,
        reason: str | None = None,
    ) -> GrantOutcome:
        body = _without_none(
            amount=_number(amount),
            category=category,
            idempotency_key=idempotency_key,
            cost_basis=None if cost_basis is None else _number(cost_basis),
            priority=priority,
            effective_at=effective_at,
            expires_at=expires_at,
            reason=reason,
        )
        path = _path("/v1/customers/{}/credits/{}/grants", customer, currency)
        return self._call("POST", path, GrantOutcome, body=body)

    def void_grant(self, customer: str, currency: str, grant: str) -> GrantView:
        path = _path("/v1/customers/{}/credits/{}/grants/{}/void", customer, currency, grant)
        return self._call("POST", path, GrantView, body={})

    def debit_credits(
        self,
        customer: str,
        currency: str,
        amount: QuantityIn,
        *,
        idempotency_key: str,
        entity: str | None = None,
        feature: str | None = None,
        enforce: bool = True,
    ) -> DebitOutcome:
        body = _without_none(
            amount=_number(amount),
            idempotency_key=idempotency_key,
            entity=entity,
            feature=feature,
            enforce=enforce,
        )
        path = _path("/v1/customers/{}/credits/{}/debits", customer, currency)
        return self._call("POST", path, DebitOutcome, body=body)

    def credit_pool(self, customer: str, currency: str) -> PoolBalance:
        return self._call(
            "GET", _path("/v1/customers/{}/credits/{}", customer, currency), PoolBalance
        )

    def credit_ledger(
        self, customer: str, currency: str, *, after: str | None = None, limit: int | None = None
    ) -> Page[LedgerEntryView]:
        path = _path("/v1/customers/{}/credits/{}/ledger", customer, currency)
        params = _without_none(after=after, limit=limit)
        return self._call("GET", path, Page[LedgerEntryView], params=params)

    def credit_grants(
        self, customer: str, currency: str, *, after: str | None = None, limit: int | None = None
    ) -> Page[GrantView]:
        path = _path("/v1/customers/{}/credits/{}/grants", customer, currency)
        params = _without_none(after=after, limit=limit)
        return self._call("GET", path, Page[GrantView], params=params)

    def credit_revenue(self, customer: str, currency: str) -> Revenue:
        return self._call(
            "GET", _path("/v1/customers/{}/credits/{}/revenue", customer, currency), Revenue
        )

    # ------------------------------------------------------------ catalog (admin)

    def put_feature(self, feature: str, definition: Mapping[str, Any]) -> FeatureView:
        return self._call("PUT", _path("/v1/features/{}", feature), FeatureView, body=definition)

    def put_currency(self, currency: str, definition: Mapping[str, Any]) -> CurrencyView:
        return self._call(
            "PUT", _path("/v1/currencies/{}", currency), CurrencyView, body=definition
        )

    def put_product(self, product: str, definition: Mapping[str, Any]) -> ProductView:
        return self._call("PUT", _path("/v1/products/{}", product), ProductView, body=definition)

    def put_plan(self, plan: str, definition: Mapping[str, Any]) -> PlanView:
        return self._call("PUT", _path("/v1/plans/{}", plan), PlanView, body=definition)

    def put_addon(self, addon: str, definition: Mapping[str, Any]) -> AddonView:
        return self._call("PUT", _path("/v1/addons/{}", addon), AddonView, body=definition)

    def features(self) -> Page[FeatureView]:
        return self._call("GET", "/v1/features", Page[FeatureView])

    def plans(self) -> Page[PlanView]:
        return self._call("GET", "/v1/plans", Page[PlanView])

    def plan_versions(self, plan: str) -> Page[PlanVersionView]:
        """Every version of the plan, oldest first, each with its live subscriptions."""
        return self._call("GET", _path("/v1/plans/{}/versions", plan), Page[PlanVersionView])

    def archive_plan(self, plan: str) -> PlanView:
        return self._call("DELETE", _path("/v1/plans/{}", plan), PlanView)

    def migrate_plan(
        self,
        plan: str,
        *,
        at: Literal["now", "period_end"],
        from_versions: Sequence[int] | None = None,
        to_version: int | None = None,
    ) -> MigrationView:
        """Move the plan's live subscriptions on ``from_versions`` (default: every older one)
        to ``to_version`` (default: the latest), now or at the end of each one's period."""
        body = _without_none(
            at=at,
            from_versions=None if from_versions is None else list(from_versions),
            to_version=to_version,
        )
        path = _path("/v1/plans/{}/migrations", plan)
        return self._call("POST", path, MigrationView, body=body)

    def catalog(self) -> CatalogDocument:
        """The whole catalog as one document (``GET /v1/catalog``)."""
        return self._call("GET", "/v1/catalog", CatalogDocument)

    def apply_catalog(
        self, document: Mapping[str, Any], *, dry_run: bool = False
    ) -> CatalogApplied:
        """Apply a catalog document in one transaction; with ``dry_run``, only say what it
        would change."""
        path = "/v1/catalog?dry_run=true" if dry_run else "/v1/catalog"
        return self._call("PUT", path, CatalogApplied, body=document)

    # ------------------------------------------------------------ customers (admin)

    def put_customer(self, customer: str, definition: Mapping[str, Any]) -> CustomerView:
        return self._call("PUT", _path("/v1/customers/{}", customer), CustomerView, body=definition)

    def get_customer(self, customer: str) -> CustomerView:
        return self._call("GET", _path("/v1/customers/{}", customer), CustomerView)

    def archive_customer(self, customer: str) -> CustomerView:
        return self._call("DELETE", _path("/v1/customers/{}", customer), CustomerView)

    def subscribe(self, customer: str, plan: str, **fields: Any) -> SubscriptionView:
        body = {"plan": plan, **fields}
        path = _path("/v1/customers/{}/subscriptions", customer)
        return self._call("POST", path, SubscriptionView, body=body)

    def subscriptions(self, customer: str) -> Page[SubscriptionView]:
        path = _path("/v1/customers/{}/subscriptions", customer)
        return self._call("GET", path, Page[SubscriptionView])

    def update_subscription(
        self, customer: str, subscription: str, **fields: Any
    ) -> SubscriptionView:
        path = _path("/v1/customers/{}/subscriptions/{}", customer, subscription)
        return self._call("PATCH", path, SubscriptionView, body=fields)

    def cancel_subscription(self, customer: str, subscription: str) -> SubscriptionView:
        path = _path("/v1/customers/{}/subscriptions/{}", customer, subscription)
        return self._call("DELETE", path, SubscriptionView)

    # ------------------------------------------------------------ API keys (admin)

    def create_api_key(
        self, name: str, scope: Literal["admin", "server", "client"], customer: str | None = None
    ) -> CreatedApiKey:
        body = _without_none(name=name, scope=scope, customer=customer)
        return self._call("POST", "/v1/api-keys", CreatedApiKey, body=body)

    def api_keys(self) -> Page[ApiKeyView]:
        return self._call("GET", "/v1/api-keys", Page[ApiKeyView])

    def revoke_api_key(self, key_id: str) -> ApiKeyView:
        return self._call("DELETE", _path("/v1/api-keys/{}", key_id), ApiKeyView)

    # ------------------------------------------------------------ HTTP

    def _new_http(self, read: float | None = None) -> httpx.Client:
        timeout = httpx.Timeout(self.timeout, read=read if read is not None else self.timeout)
        return httpx.Client(
            base_url=self.base_url,
            headers={"authorization": f"Bearer {self._api_key}", "user-agent": _USER_AGENT},
            timeout=timeout,
            transport=self._transport,
        )

    def _call(
        self,
        method: str,
        path: str,
        answer: type[T],
        *,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> T:
        """One request; the answer decoded as ``answer``, or the contract's error raised."""
        content = None if body is None else _encode(body)
        headers = None if content is None else {"content-type": "application/json"}
        try:
            response = self._http.request(
                method, path, content=content, params=params, headers=headers
            )
        except httpx.TransportError as error:
            raise ServiceUnavailable(f"{method} {path}: {error}") from error
        status = response.status_code
        if status == 429 or status >= 500:
            raise ServiceUnavailable(f"{method} {path}: {status} {response.text[:200]}")
        if status >= 400:
            raise _api_error(response)
        if self._unreachable_until:
            self._service_back()
        try:
            return msgspec.json.decode(response.content, type=answer)
        except (msgspec.DecodeError, msgspec.ValidationError) as error:
            # Not the service's answer (a proxy's page, another version): as good as no answer.
            detail = f"{method} {path}: an answer not in the API's form: {error}"
            raise ServiceUnavailable(detail) from error

    def _close_poster(self) -> None:
        if self._poster is not None:
            self._poster.close()

    def _cut_stream(self) -> None:
        """End the stream's blocked read at once (closing a socket another thread reads
        from does not wake the read; shutting it down does)."""
        sock = self._stream_socket
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    @contextmanager
    def _open_stream(self, after: int | None) -> Iterator[Iterator[str]]:
        headers = {"accept": "text/event-stream"}
        if after is not None:
            headers["last-event-id"] = str(after)
        params = {"customer": self._stream_customer} if self._stream_customer else None
        with self._stream_http.stream("GET", "/v1/stream", headers=headers, params=params) as r:
            if r.status_code != 200:
                r.read()
                raise StreamRefused(r.status_code, r.text)
            network = r.extensions.get("network_stream")
            found = network.get_extra_info("socket") if network is not None else None
            self._stream_socket = found if isinstance(found, socket.socket) else None
            try:
                yield r.iter_lines()
            finally:
                self._stream_socket = None

    # ------------------------------------------------------------ the safety net

    def _poll_loop(self) -> None:
        """Every ``poll_interval``: read again what the feed has not kept current (it was
        down, or a time rule changed an answer). Never dies: a failed round is logged."""
        stop = self._poll_stop
        while not stop.wait(self.poll_interval):
            try:
                self.poll_once()
            except Exception:
                log.exception("refreshing cached customers failed; trying again later")

    def poll_once(self) -> int:
        """Refresh every cached entry past its validity, older than ``poll_interval`` (the
        feed was down), or read more than ``refresh_interval`` ago however live the feed (the
        net under anything the feed could not say); the number read again."""
        wall = time.time()
        stale = [
            key
            for key, held in self.cache.entries()
            if held.expired(wall)
            or self.cache.age(held, wall) > self.poll_interval
            or wall - held.loaded_at > self.refresh_interval
        ]
        refreshed = 0
        for customer, entity in stale:
            if self._load(customer, entity) is not None:
                refreshed += 1
        return refreshed

    # ------------------------------------------------------------ figures

    @property
    def feed_state(self) -> FeedState:
        return self.feed.state


class Reservation:
    """A reservation the service answered; a context manager (``Client.reserve``)."""

    def __init__(self, client: Client, outcome: ReservationOutcome) -> None:
        self._client = client
        self.outcome = outcome
        self.used: QuantityIn | None = None
        self.ended: ReservationView | None = None

    @property
    def granted(self) -> bool:
        return self.outcome.granted

    @property
    def id(self) -> str | None:
        return self.outcome.id

    def commit(self, amount: QuantityIn | None = None) -> ReservationView:
        assert self.outcome.id is not None, "a refused reservation has nothing to commit"
        used = amount if amount is not None else self.used
        self.ended = self._client.commit_reservation(
            self.outcome.id, used if used is not None else self.outcome.amount
        )
        return self.ended

    def release(self) -> ReservationView:
        assert self.outcome.id is not None, "a refused reservation has nothing to release"
        self.ended = self._client.release_reservation(self.outcome.id)
        return self.ended

    def __enter__(self) -> Reservation:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if not self.granted or self.ended is not None:
            return
        if error is not None:
            self.release()
        else:
            self.commit()


# ---------------------------------------------------------------- helpers

_USER_AGENT = "allotment-python"
_CLIENTS: weakref.WeakSet[Client] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for client in list(_CLIENTS):
        try:
            client._after_fork()
        except Exception:
            log.exception("making the client ready after a fork failed")


os.register_at_fork(after_in_child=_after_fork_in_child)


def _checked_report(
    customer: str,
    feature: str,
    entity: str | None,
    amount: QuantityIn,
    key: str,
    behavior: str,
    timestamp: datetime | str | None,
) -> Micros:
    """The report's amount in micro-units, once every rule the service would refuse it by
    holds (``InvalidReport`` otherwise)."""
    for field, value in (("customer", customer), ("feature", feature), ("entity", entity)):
        if value is not None and (not isinstance(value, str) or not is_client_id(value)):
            raise InvalidReport(f"{field} {value!r} is not a valid id", field)
    if not 0 < len(key) <= IDEMPOTENCY_KEY_MAX_LENGTH:
        raise InvalidReport("idempotency_key must hold 1 to 255 characters", "idempotency_key")
    if behavior not in ("delta", "set"):
        raise InvalidReport(f"behavior {behavior!r} is neither delta nor set", "behavior")
    if behavior == "set" and entity is not None:
        raise InvalidReport('behavior "set" applies to the customer and names no entity', "entity")
    if timestamp is not None:
        try:
            instant = timestamp if isinstance(timestamp, datetime) else _instant(timestamp)
        except ValueError as error:
            raise InvalidReport(f"timestamp: {error}", "timestamp") from error
        if instant.tzinfo is None:
            raise InvalidReport("timestamp must carry a zone (Z or an offset)", "timestamp")
    try:
        return _micros(amount, "amount")
    except (TypeError, ValueError) as error:
        raise InvalidReport(str(error), "amount") from error


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _micros(value: QuantityIn, field: str, *, allow_negative: bool = False) -> Micros:
    if isinstance(value, bool) or not isinstance(value, int | Decimal | str):
        raise TypeError(f"{field} must be an int, a Decimal or a decimal string")
    number = Decimal(value) if isinstance(value, str) else value
    try:
        return parse_quantity(number, field, allow_negative=allow_negative)
    except Exception as error:
        raise ValueError(str(error)) from error


def _number(value: QuantityIn) -> int | Decimal:
    return Decimal(value) if isinstance(value, str) else value


def _number_text(micros: Micros) -> Decimal:
    return Decimal(micros) / MICROS_PER_UNIT


def _path(template: str, *ids: str) -> str:
    """``template`` with each ``{}`` an id, checked against the contract's id pattern first: an
    id from outside (a customer name a user typed) must never change which route is asked."""
    for value in ids:
        if not isinstance(value, str) or not is_client_id(value):
            raise ValueError(f"{value!r} is not a valid id (^[A-Za-z0-9][A-Za-z0-9._:-]{{0,127}}$)")
    return template.format(*ids)


def _without_none(**fields: Any) -> dict[str, Any]:
    return {name: value for name, value in fields.items() if value is not None}


def _api_error(response: httpx.Response) -> ApiError:
    try:
        error = msgspec.json.decode(response.content)["error"]
        return ApiError(
            response.status_code, error["code"], error["message"], error.get("details") or {}
        )
    except (msgspec.DecodeError, KeyError, TypeError):
        return ApiError(response.status_code, "unknown", response.text[:200], {})


def _left(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())


def _join(thread: threading.Thread | None, timeout: float) -> None:
    if thread is not None and thread is not threading.current_thread():
        thread.join(timeout)


def _close_soon(http: httpx.Client, timeout: float) -> None:
    """Close ``http`` from a daemon thread, waiting at most ``timeout``: a connection stuck
    in the resolver or the network must not hold ``close`` past its timeout."""
    closer = threading.Thread(target=http.close, name="allotment-close", daemon=True)
    closer.start()
    closer.join(timeout)
