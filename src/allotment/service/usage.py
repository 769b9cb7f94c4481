"""Usage reports: idempotent, delta or set, enforced atomically or recorded as they happened.

Each report runs as one store job: the idempotency record, the limit check against the window's
counter and the appended event are read and written in one transaction, and jobs run one at a
time, so concurrent ``enforce: true`` reports can never together pass a hard limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from allotment.domain.budgets import NO_PATH, BudgetKind, EntityPath
from allotment.domain.catalog import MeteredSpec
from allotment.domain.credits import EntryContext
from allotment.domain.decision import PoolStanding, credit_cost, decide_consumption
from allotment.domain.errors import InvalidRequest
from allotment.domain.periods import period_containing
from allotment.domain.quantities import Micros
from allotment.domain.reservations import reserved_credits, reserved_usage
from allotment.domain.resolution import DenialReason
from allotment.domain.timefmt import format_instant, to_epoch_micros
from allotment.service.answers import (
    BudgetFigures,
    CheckAnswer,
    CreditFigures,
    answer_for,
    denied,
)
from allotment.service.budgets import after_consuming, standings_in_job
from allotment.service.credits import CreditService
from allotment.service.entity_tree import BudgetSlot
from allotment.service.gate import admission_denial, require_metered
from allotment.service.idempotency import fingerprint, once
from allotment.service.outcomes import USAGE_RECORD, UsageOutcome
from allotment.service.ports import USAGE_ROUTE, UnitOfWork, UsageEvent
from allotment.service.runtime import Runtime, record_usage
from allotment.service.thresholds import budgets_reached, usage_reached

ROUTE = USAGE_ROUTE
MAX_FUTURE_SKEW = timedelta(minutes=5)  # clocks of reporting clients run a little ahead


class UsageBehavior(StrEnum):
    DELTA = "delta"
    SET = "set"


@dataclass(frozen=True, slots=True)
class UsageReport:
    customer: str
    feature: str
    amount: Micros
    idempotency_key: str
    entity: str | None = None
    enforce: bool = False
    behavior: UsageBehavior = UsageBehavior.DELTA
    timestamp: datetime | None = None

    def fingerprint(self) -> bytes:
        timestamp = None if self.timestamp is None else to_epoch_micros(self.timestamp)
        return fingerprint(
            self.feature, self.entity, self.amount, self.enforce, self.behavior, timestamp
        )


class UsageService:
    def __init__(self, runtime: Runtime, credits: CreditService) -> None:
        self._runtime = runtime
        self._credits = credits

    async def report(self, report: UsageReport) -> UsageOutcome:
        """Record (or refuse) the report; its outcome, replays included."""
        if report.behavior is UsageBehavior.SET and report.entity is not None:
            # "set" replaces the customer's usage of the period; the difference it records was
            # consumed by no entity in particular, and would let one entity undo another's.
            raise InvalidRequest(
                'behavior "set" applies to the customer\'s usage and cannot name an entity;'
                " report deltas for entities.",
                {"field": "behavior"},
            )
        return await self._runtime.run(lambda uow: self.report_in_job(uow, report))

    def report_in_job(self, uow: UnitOfWork, report: UsageReport) -> UsageOutcome:
        now = self._runtime.clock.now()
        if report.timestamp is not None and report.timestamp > now + MAX_FUTURE_SKEW:
            # Usage dated in a later period would be decided against that period's limits
            # and budgets, not the current ones: an enforced report could step around them.
            raise InvalidRequest(
                f"timestamp may be at most {MAX_FUTURE_SKEW.seconds} seconds ahead of the"
                " service's clock.",
                {"field": "timestamp"},
            )

        def answer() -> UsageOutcome:
            recorded, result = self._apply(uow, report, now)
            return UsageOutcome(recorded, False, result)

        key, payload = report.idempotency_key, report.fingerprint()
        return once(uow, report.customer, ROUTE, key, payload, now, answer, USAGE_RECORD)

    def _apply(
        self, uow: UnitOfWork, report: UsageReport, now: datetime
    ) -> tuple[bool, CheckAnswer]:
        runtime = self._runtime
        customer, feature_id, entity = report.customer, report.feature, report.entity
        catalog = runtime.catalog_in(uow)
        feature = catalog.features.get(feature_id)
        kind = feature.kind if feature else None

        def refuse(reason: DenialReason) -> tuple[bool, CheckAnswer]:
            return False, denied(customer, feature_id, entity, reason, kind, report.amount)

        require_metered(feature, "usage is reported for")
        snapshot = runtime.snapshot_in(uow, customer)
        admission = admission_denial(snapshot, feature)
        if admission is not None:
            return refuse(admission)
        assert snapshot is not None
        assert feature is not None
        found = None if entity is None else runtime.entity_in(uow, snapshot, entity)
        if entity is not None and found is None:
            return refuse(DenialReason.ENTITY_NOT_FOUND)
        uow.hold_usage(customer)
        timestamp = report.timestamp or now
        at = snapshot.derived_for(catalog, now).feature_at(snapshot, feature, now)
        offer = at.offer
        if offer is None:
            assert at.denial is not None
            if report.enforce or report.behavior is UsageBehavior.SET:
                return refuse(at.denial)
            # Usage that already happened is the truth even without an entitlement to it.
            unentitled_path = NO_PATH if found is None else found.path
            uow.hold_budgets(customer, unentitled_path)
            self._append(uow, report, report.amount, timestamp, now, unentitled_path)
            return True, denied(customer, feature_id, entity, at.denial, kind, report.amount)
        spec = offer.spec
        assert isinstance(spec, MeteredSpec)
        current = at.window
        assert current is not None  # a metered feature with an offer has a window
        if report.enforce:
            _require_current(timestamp, current.period.start)
        window = current.period
        if not window.contains(timestamp):
            window = period_containing(offer.anchor, spec.reset, timestamp)
        used = uow.usage.window_usage(customer, feature_id, window.start, window.end)
        delta = report.amount - used if report.behavior is UsageBehavior.SET else report.amount
        # A credit-priced feature debits delta x price in the same step (only what it consumes:
        # lowering usage with "set" gives no credits back).
        price = spec.credit_cost
        cost = credit_cost(delta, price.per_unit) if price is not None and delta > 0 else 0
        live = runtime.live_holds(uow, customer, now)
        reserved = reserved_usage(live, feature_id, now)
        budgets: list[BudgetFigures] = []
        path: EntityPath = NO_PATH
        on_path: list[BudgetSlot] = []
        if found is not None:
            currency = price.currency if price is not None else None
            along = found.budgets(feature_id, currency)
            path, on_path = along.path, along.slots
            if report.enforce:
                for slot in on_path:
                    if slot.budget.kind is BudgetKind.FEATURE:
                        _require_current(timestamp, slot.window_at(now)[0].period.start)
            uow.hold_budgets(customer, path)
            budgets = standings_in_job(uow, customer, on_path, live, now, timestamp)
        pool = figures = None
        standing = None
        if price is not None:
            pool = self._credits.settled_pool(uow, customer, price.currency, now)
            limit = self._credits.overdraft_limit(uow, customer, price.currency, now)
            held = reserved_credits(live, price.currency, now)
            if cost > 0:
                standing = PoolStanding(pool.available(held), limit)
        # Lowering usage consumes nothing, so no limit, budget or pool can refuse it.
        reason = None
        if delta > 0:
            reason = decide_consumption(
                units=delta,
                credits=cost,
                limit=spec,
                used=used,
                reserved=reserved,
                budgets=(figures.standing for figures in budgets),
                pool=standing,
            )
        recorded = reason is None or not report.enforce
        if recorded:
            self._append(uow, report, delta, timestamp, now, path)
            consumed = after_consuming(budgets, delta, 0, timestamp)
            if delta > 0:  # what the events of thresholds are computed from, at no read
                usage_reached(
                    uow, customer, feature_id, None, spec.limit, used, used + delta, window, now
                )
                budgets_reached(uow, customer, budgets, consumed, now)
            budgets = consumed
        if report.timestamp is not None and budgets:
            # The answer shows the budgets' current windows, as it does the customer's.
            budgets = standings_in_job(uow, customer, on_path, live, now)
        if pool is not None and price is not None:
            if recorded and cost > 0:
                context = EntryContext(report.idempotency_key, entity, feature_id, path)
                order = catalog.currencies[price.currency].burn_order
                pool.debit(cost, order, now, context)
                # Read before this debit in either case: the credits count from now.
                spent = after_consuming(budgets, 0, cost, now)
                budgets_reached(uow, customer, budgets, spent, now)  # the currency budgets
                budgets = spent
            self._credits.save(uow, customer, price.currency, pool, now)
            figures = CreditFigures(price.currency, pool.available(held), limit)
        if current.period == window:
            used_now = used + delta if recorded else used
        else:
            period = current.period
            used_now = uow.usage.window_usage(customer, feature_id, period.start, period.end)
        answer = answer_for(
            customer,
            feature_id,
            entity,
            offer,
            kind=feature.kind,
            window=current,
            used=used_now,
            reserved=reserved,
            requested=report.amount,
            decided=True,
            reason=reason,
            credits=figures,
            cost=cost,
            budgets=budgets,
        )
        return recorded, answer

    def _append(
        self,
        uow: UnitOfWork,
        report: UsageReport,
        delta: Micros,
        timestamp: datetime,
        now: datetime,
        path: EntityPath,
    ) -> None:
        event = UsageEvent(
            customer=report.customer,
            feature=report.feature,
            entity=report.entity,
            amount=delta,
            timestamp=timestamp,
            recorded_at=now,
            idempotency_key=report.idempotency_key,
            entity_path=path,
        )
        record_usage(uow, event)


def _require_current(timestamp: datetime, window_start: datetime) -> None:
    """Refuse an enforced report dated before a window it is decided against began.

    Enforcement gates consumption that happens now: decided in an older window, whose limit or
    budget may still have room, a report would step around the current one."""
    if timestamp < window_start:
        raise InvalidRequest(
            "an enforced report's timestamp may not precede the current window of the limit or"
            f" budget it is decided against (which began {format_instant(window_start)});"
            " report past usage with enforce: false.",
            {"field": "timestamp"},
        )
