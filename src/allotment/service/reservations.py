"""Reserve an estimate, run the work, commit the actual: ``POST /v1/reservations``.

A reservation is decided like an enforced usage report of its amount (usage limit, then the
credit pool, both net of the holds already live), and when granted it holds that amount against
the feature's limit, and its price in credits against the pool, until it ends. A commit records
the actual amount as usage and debits its price, more or less than was held, as usage with
``enforce: false`` would; a release frees everything; at ``expires_at`` it frees by itself.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from allotment.domain.budgets import NO_PATH, EntityPath
from allotment.domain.catalog import MeteredSpec
from allotment.domain.changes import HoldEnded, HoldPlaced
from allotment.domain.credits import EntryContext
from allotment.domain.decision import PoolStanding, credit_cost, decide_consumption
from allotment.domain.errors import Conflict, InvalidRequest, NotFound
from allotment.domain.identifiers import new_id
from allotment.domain.periods import period_containing
from allotment.domain.quantities import Micros, to_json_number
from allotment.domain.reservations import (
    Reservation,
    ReservationStatus,
    reserved_credits,
    reserved_usage,
)
from allotment.domain.resolution import DenialReason
from allotment.domain.timefmt import format_instant
from allotment.service import idempotency
from allotment.service.answers import BudgetFigures
from allotment.service.budgets import after_consuming, standings_in_job
from allotment.service.credits import CreditService
from allotment.service.events import reservation_ended, reservation_timer
from allotment.service.gate import admission_denial, require_metered
from allotment.service.outcomes import (
    RESERVATION_RECORD,
    ReservationOutcome,
    ReservationView,
    reservation_view,
)
from allotment.service.ports import UnitOfWork, UsageEvent
from allotment.service.runtime import Runtime, record_usage
from allotment.service.snapshots import CustomerSnapshot
from allotment.service.thresholds import budgets_reached, credits_moved, usage_reached

ROUTE = "reservations"
DEFAULT_TTL_SECONDS = 60
MAX_TTL_SECONDS = 7 * 86_400


@dataclass(frozen=True, slots=True)
class ReservationRequest:
    customer: str
    feature: str
    amount: Micros
    idempotency_key: str
    entity: str | None = None
    ttl_seconds: int = DEFAULT_TTL_SECONDS


class ReservationService:
    def __init__(self, runtime: Runtime, credits: CreditService) -> None:
        self._runtime = runtime
        self._credits = credits

    async def reserve(self, request: ReservationRequest) -> ReservationOutcome:
        if not 0 < request.ttl_seconds <= MAX_TTL_SECONDS:
            raise InvalidRequest(f"ttl_seconds must be between 1 and {MAX_TTL_SECONDS}.")
        payload = idempotency.fingerprint(
            request.feature, request.entity, request.amount, request.ttl_seconds
        )
        runtime = self._runtime

        def answer(uow: UnitOfWork, now: datetime) -> ReservationOutcome:
            reason, reservation = self._decide(uow, request, now)
            if reservation is not None:
                uow.reservations.save(reservation)
                runtime.reservations_changed(uow, request.customer)
                uow.record(HoldPlaced(reservation))
                reservation_timer(uow, reservation.customer, reservation.id, reservation.expires_at)
            return ReservationOutcome(
                id=reservation.id if reservation else None,
                granted=reservation is not None,
                replayed=False,
                access_denied_reason=reason,
                expires_at=format_instant(reservation.expires_at) if reservation else None,
                customer=request.customer,
                feature=request.feature,
                entity=request.entity,
                amount=to_json_number(request.amount),
            )

        def job(uow: UnitOfWork) -> ReservationOutcome:
            now = runtime.clock.now()
            key, customer = request.idempotency_key, request.customer
            return idempotency.once(
                uow,
                customer,
                ROUTE,
                key,
                payload,
                now,
                lambda: answer(uow, now),
                RESERVATION_RECORD,
            )

        return await runtime.run(job)

    async def commit(self, reservation_id: str, amount: Micros) -> ReservationView:
        runtime = self._runtime

        def job(uow: UnitOfWork) -> ReservationView:
            now = runtime.clock.now()
            held = self._live(uow, reservation_id, now)
            uow.hold_usage(held.customer)
            uow.hold_budgets(held.customer, held.entity_path)
            ended = replace(
                held, ended_at=now, ended_as=ReservationStatus.COMMITTED, committed_amount=amount
            )
            uow.reservations.save(ended)
            runtime.reservations_changed(uow, held.customer)
            self._record(uow, ended, amount, now)
            uow.record(HoldEnded(held.customer, held.id))
            reservation_ended(uow, held.id)
            return reservation_view(ended, now)

        return await runtime.run(job)

    async def release(self, reservation_id: str) -> ReservationView:
        runtime = self._runtime

        def job(uow: UnitOfWork) -> ReservationView:
            now = runtime.clock.now()
            held = self._live(uow, reservation_id, now)
            uow.hold_usage(held.customer)
            ended = replace(held, ended_at=now, ended_as=ReservationStatus.RELEASED)
            uow.reservations.save(ended)
            runtime.reservations_changed(uow, held.customer)
            uow.record(HoldEnded(held.customer, held.id))
            reservation_ended(uow, held.id)
            return reservation_view(ended, now)

        return await runtime.run(job)

    def _decide(
        self, uow: UnitOfWork, request: ReservationRequest, now: datetime
    ) -> tuple[DenialReason | None, Reservation | None]:
        runtime = self._runtime
        catalog = runtime.catalog_in(uow)
        feature = catalog.features.get(request.feature)
        require_metered(feature, "reservations are for")
        snapshot = runtime.snapshot_in(uow, request.customer)
        admission = admission_denial(snapshot, feature)
        if admission is not None:
            return admission, None
        assert snapshot is not None
        assert feature is not None
        found = None
        if request.entity is not None:
            found = runtime.entity_in(uow, snapshot, request.entity)
            if found is None:
                return DenialReason.ENTITY_NOT_FOUND, None
        resolution = snapshot.resolution(catalog, feature, now)
        if resolution.offer is None:
            return resolution.denial, None
        uow.hold_usage(request.customer)
        spec = resolution.offer.spec
        assert isinstance(spec, MeteredSpec)
        window = period_containing(resolution.offer.anchor, spec.reset, now)
        used = uow.usage.window_usage(request.customer, feature.id, window.start, window.end)
        live = runtime.live_holds(uow, request.customer, now)
        price = spec.credit_cost
        currency = price.currency if price is not None else None
        cost = credit_cost(request.amount, price.per_unit) if price is not None else 0
        path: EntityPath = NO_PATH
        budgets: list[BudgetFigures] = []
        if found is not None:
            along = found.budgets(feature.id, currency)
            path, on_path = along.path, along.slots
            uow.hold_budgets(request.customer, path)
            budgets = standings_in_job(uow, request.customer, on_path, live, now)
        reason = decide_consumption(
            units=request.amount,
            credits=cost,
            limit=spec,
            used=used,
            reserved=reserved_usage(live, feature.id, now),
            budgets=(figures.standing for figures in budgets),
        )
        if reason is None and currency is not None:
            # The pool is settled (which may write due entries) only for a reservation that the
            # limit and the budgets let through: a refused one writes nothing.
            pool = self._credits.settled_pool(uow, request.customer, currency, now)
            self._credits.save(uow, request.customer, currency, pool, now)
            limit = self._credits.overdraft_limit(uow, request.customer, currency, now)
            available = pool.available(reserved_credits(live, currency, now))
            reason = decide_consumption(
                units=request.amount, credits=cost, pool=PoolStanding(available, limit)
            )
            if reason is None and cost > 0:
                # The hold lowers what is available without a ledger write: it can cross the
                # currency's low balance threshold, or reach zero, as a debit would.
                threshold = catalog.currencies[currency].low_balance_threshold
                after = available - cost
                customer = request.customer
                credits_moved(
                    uow, customer, currency, threshold, available, after, pool.balance, now
                )
        if reason is not None:
            return reason, None
        return None, Reservation(
            id=new_id("res"),
            customer=request.customer,
            feature=feature.id,
            entity=request.entity,
            amount=request.amount,
            currency=currency,
            credits=cost,
            created_at=now,
            expires_at=now + timedelta(seconds=request.ttl_seconds),
            entity_path=path,
        )

    def _live(self, uow: UnitOfWork, reservation_id: str, now: datetime) -> Reservation:
        reservation = uow.reservations.get(reservation_id)
        if reservation is None:
            raise NotFound(f"no reservation {reservation_id}.", {"reservation": reservation_id})
        status = reservation.status(now)
        if status is not ReservationStatus.HELD:
            raise Conflict(
                f"reservation {reservation_id} has already ended: {status}.",
                {"reservation": reservation_id, "status": status},
            )
        return reservation

    def _record(self, uow: UnitOfWork, ended: Reservation, amount: Micros, now: datetime) -> None:
        """The committed amount as usage that already happened, and its price in credits."""
        runtime = self._runtime
        key = f"reservation:{ended.id}"
        path = ended.entity_path
        catalog = runtime.catalog_in(uow)
        snapshot = runtime.snapshot_in(uow, ended.customer)
        feature = catalog.features.get(ended.feature)
        offer = None
        if snapshot is not None and feature is not None:
            offer = snapshot.resolution(catalog, feature, now).offer
        spec = offer.spec if offer else None
        price = spec.credit_cost if isinstance(spec, MeteredSpec) else None
        budgets = self._budgets_on_path(uow, snapshot, ended, now) if amount > 0 else []
        record_usage(
            uow,
            UsageEvent(ended.customer, ended.feature, ended.entity, amount, now, now, key, path),
        )
        consumed = after_consuming(budgets, amount, 0, now)
        budgets_reached(uow, ended.customer, budgets, consumed, now)
        if offer is not None and isinstance(spec, MeteredSpec) and spec.limit and amount > 0:
            # The customer's thresholds, as a usage report reaches them (the window's usage,
            # read only when the limit is finite: a commit has no figure of it at hand).
            window = period_containing(offer.anchor, spec.reset, now)
            after = uow.usage.window_usage(ended.customer, ended.feature, window.start, window.end)
            customer, limit = ended.customer, spec.limit
            usage_reached(
                uow, customer, ended.feature, None, limit, after - amount, after, window, now
            )
        if ended.currency is None or amount == 0 or snapshot is None or feature is None:
            return
        # The price when committed; if the feature is no longer priced in that currency, the
        # price it was held at.
        if price is not None and price.currency == ended.currency:
            cost = credit_cost(amount, price.per_unit)
        else:
            cost = -((-amount * ended.credits) // ended.amount) if ended.amount else 0
        pool = self._credits.settled_pool(uow, ended.customer, ended.currency, now)
        order = catalog.currencies[ended.currency].burn_order
        pool.debit(cost, order, now, EntryContext(key, ended.entity, ended.feature, path))
        budgets_reached(uow, ended.customer, consumed, after_consuming(consumed, 0, cost, now), now)
        # The hold this job ended held its credits until now: they were not available before
        # the debit either, so the debit lowers available by what it spends beyond them.
        self._credits.save(uow, ended.customer, ended.currency, pool, now, released=ended.credits)

    def _budgets_on_path(
        self,
        uow: UnitOfWork,
        snapshot: CustomerSnapshot | None,
        ended: Reservation,
        now: datetime,
    ) -> list[BudgetFigures]:
        """The budgets the committed amount counts in, where they stand before it: those on
        the path the reservation was decided on, while the entity is still there. (An entity
        moved or deleted while its reservation was held has its usage counted on the old path,
        whose budgets send no threshold events for it.)"""
        if snapshot is None or ended.entity is None:
            return []
        found = self._runtime.entity_in(uow, snapshot, ended.entity)
        if found is None:
            return []
        along = found.budgets(ended.feature, ended.currency)  # the currency it is debited in
        if along.path != ended.entity_path:
            return []
        return standings_in_job(uow, ended.customer, along.slots, (), now)
