"""The SDK's cached state of one customer, and the decision on it: pure, and given ``now``.

An :class:`Entry` is what ``GET /v1/customers/{id}/state`` answered (a check result without a
request for every feature of the catalog, the pools they draw on, the change log's revision
they are exact at) for one customer and, optionally, one entity. The change feed's events past
that revision keep it in step: ``usage.recorded`` advances the usage of the feature's window and
of the budgets on its entity path, ``credits.changed`` sets the pool's balance and advances the
currency budgets its debits were attributed to. Every other change to the customer drops the
entry, which is read again when next needed.

A check with a request is decided here by the service's own decision,
:func:`allotment.domain.decision.decide_consumption`, on the entry's figures plus the reports
this client made that the feed has not shown yet (:class:`Pending`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

import msgspec

from allotment.domain.budgets import Budget, BudgetKind, Standing
from allotment.domain.catalog import Enforcement, FeatureKind, MeteredSpec, NumericSpec
from allotment.domain.decision import PoolStanding, credit_cost, decide, decide_consumption
from allotment.domain.periods import Period, ResetPeriod
from allotment.domain.quantities import MICROS_PER_UNIT, Micros, to_json_number
from allotment.domain.resolution import DenialReason
from allotment.domain.timefmt import to_epoch_micros
from allotment.service.answers import BudgetView, CheckAnswer, CreditBlock, CustomerState, Number

# A report timestamped this long before the state was read may belong to an earlier budget
# window, whose start the state does not carry: the entry is read again rather than guess.
BACKDATED_MICROS = 5 * MICROS_PER_UNIT

_CUSTOMER_DENIALS = frozenset({DenialReason.CUSTOMER_NOT_FOUND, DenialReason.CUSTOMER_ARCHIVED})
_RESOLVED = frozenset(
    {
        DenialReason.USAGE_LIMIT_EXCEEDED,
        DenialReason.BUDGET_EXCEEDED,
        DenialReason.INSUFFICIENT_CREDITS,
    }
)


def micros_of(value: Number) -> Micros:
    """A quantity as a decoded answer holds it (an int or a Decimal) in micro-units."""
    if isinstance(value, int):
        return value * MICROS_PER_UNIT
    if isinstance(value, Decimal):
        return int(value * MICROS_PER_UNIT)
    raise TypeError(f"not a quantity: {value!r}")


def instant_micros(text: str) -> int:
    return to_epoch_micros(datetime.fromisoformat(text))


@dataclass(slots=True)
class Pool:
    currency: str
    balance: Micros
    held: Micros
    overdraft_limit: Micros | None


@dataclass(frozen=True, slots=True)
class Pending:
    """A usage report this client made that the change feed has not shown yet."""

    idempotency_key: str
    feature: str
    entity: str | None
    amount: Micros
    credits: Micros  # what it costs in the feature's currency (0 when not priced in credits)


Shape = tuple[str, str | None, Micros]  # what the feed shows of a report: feature, entity, amount


@dataclass(slots=True)
class PendingReports:
    """One customer's pending reports, by key and by what the feed shows of them, with the
    totals an answer adds kept in step: every operation costs the same however many there are
    (an outage may leave thousands)."""

    by_key: dict[str, Pending] = field(default_factory=dict)
    by_shape: dict[Shape, deque[str]] = field(default_factory=dict)
    units: dict[str, Micros] = field(default_factory=dict)  # by feature
    entity_units: dict[tuple[str, str], Micros] = field(default_factory=dict)
    credits: Micros = 0

    def __len__(self) -> int:
        return len(self.by_key)

    def add(self, report: Pending) -> bool:
        """False when a report with its key is pending already."""
        key = report.idempotency_key
        if key in self.by_key:
            return False
        self.by_key[key] = report
        self.by_shape.setdefault(_shape(report), deque()).append(key)
        self._count(report, 1)
        return True

    def remove_key(self, key: str) -> Pending | None:
        report = self.by_key.pop(key, None)
        if report is None:
            return None
        keys = self.by_shape[_shape(report)]
        keys.remove(key)  # usually the first: reports are answered in order
        if not keys:
            del self.by_shape[_shape(report)]
        self._count(report, -1)
        return report

    def remove_shape(self, shape: Shape) -> Pending | None:
        """The oldest pending report the feed would show as ``shape``, removed."""
        keys = self.by_shape.get(shape)
        if not keys:
            return None
        return self.remove_key(keys[0])

    def _count(self, report: Pending, sign: int) -> None:
        self.units[report.feature] = self.units.get(report.feature, 0) + sign * report.amount
        if report.entity is not None:
            mine = (report.feature, report.entity)
            self.entity_units[mine] = self.entity_units.get(mine, 0) + sign * report.amount
        self.credits += sign * report.credits


NO_PENDING = PendingReports()


def _shape(report: Pending) -> Shape:
    return (report.feature, report.entity, report.amount)


@dataclass(slots=True)
class Figures:
    """A metered feature's counters, in micro-units, kept apart from its answer's text."""

    window_start: int | None  # epoch micros of usage_period_start
    window_end: int | None
    used: Micros
    budget_usage: list[Micros]
    budget_ends: list[int | None]


@dataclass(slots=True)
class Entry:
    customer: str
    entity: str | None
    revision: int | None
    read_at: int  # the service's clock when it read the state, epoch micros
    valid_until: int | None  # epoch micros, the service's clock: an answer changes by itself
    answers: dict[str, CheckAnswer]
    figures: dict[str, Figures]
    pools: dict[str, Pool]
    changed: int = 0  # counts the events applied, so that derived answers know they are stale

    @classmethod
    def of(cls, state: CustomerState) -> Entry:
        answers = {answer.feature: answer for answer in state.answers}
        figures = {}
        valid_until = None if state.valid_until is None else instant_micros(state.valid_until)
        for feature, answer in answers.items():
            if answer.kind is not FeatureKind.METERED or answer.current_usage is None:
                continue  # nothing counts for it: not metered, or denied before resolving
            ends = [
                None if b.usage_period_end is None else instant_micros(b.usage_period_end)
                for b in answer.budgets
            ]
            end = (
                None if answer.usage_period_end is None else instant_micros(answer.usage_period_end)
            )
            figures[feature] = Figures(
                window_start=None
                if answer.usage_period_start is None
                else instant_micros(answer.usage_period_start),
                window_end=end,
                used=micros_of(answer.current_usage or 0),
                budget_usage=[micros_of(b.usage or 0) for b in answer.budgets],
                budget_ends=ends,
            )
            for instant in (end, *ends):
                if instant is not None and (valid_until is None or instant < valid_until):
                    valid_until = instant
        pools = {
            pool.currency: Pool(
                pool.currency,
                micros_of(pool.balance),
                micros_of(pool.held),
                None if pool.overdraft_limit is None else micros_of(pool.overdraft_limit),
            )
            for pool in state.pools
        }
        return cls(
            customer=state.customer,
            entity=state.entity,
            revision=state.revision,
            read_at=instant_micros(state.now),
            valid_until=valid_until,
            answers=answers,
            figures=figures,
            pools=pools,
        )

    # ------------------------------------------------------------ following the feed

    def add_usage(
        self, seq: int, feature: str, path: Sequence[str], amount: Micros, at: int
    ) -> bool:
        """Count a ``usage.recorded`` event; False when the entry must be read again."""
        if self.revision is not None and seq <= self.revision:
            return True  # the state already counts it
        figures = self.figures.get(feature)
        if figures is None:
            return True  # not a metered feature with counters here
        if at < self.read_at - BACKDATED_MICROS:
            return False  # backdated: which windows it falls in is for the service to say
        start, end = figures.window_start, figures.window_end
        if (start is None or at >= start) and (end is None or at < end):
            figures.used += amount
        answer = self.answers[feature]
        for index, budget in enumerate(answer.budgets):
            ends = figures.budget_ends[index]
            if budget.target == feature and budget.entity in path and (ends is None or at < ends):
                figures.budget_usage[index] += amount
        self.changed += 1
        return True

    def set_pool(
        self,
        seq: int,
        currency: str,
        balance: Micros,
        overdraft_limit: Micros | None,
        spends: Iterable[tuple[Sequence[str], Micros]],
    ) -> None:
        """Apply a ``credits.changed`` event."""
        if self.revision is not None and seq <= self.revision:
            return
        pool = self.pools.get(currency)
        if pool is not None:
            pool.balance = balance
            pool.overdraft_limit = overdraft_limit
        for path, credits in spends:
            for feature, answer in self.answers.items():
                figures = self.figures.get(feature)
                if figures is None:
                    continue
                for index, budget in enumerate(answer.budgets):
                    if budget.target == currency and budget.entity in path:
                        figures.budget_usage[index] += credits
        self.changed += 1

    def valid_before(self, instant: int) -> None:
        """A time rule changes the answers by itself at ``instant`` (a grant a change added
        enters or leaves a pool): read again from then on."""
        if self.valid_until is None or instant < self.valid_until:
            self.valid_until = instant

    # ------------------------------------------------------------ answering

    @property
    def _admission(self) -> DenialReason | None:
        """Why the customer itself is refused (unknown, archived), which the service says
        before it looks at the feature."""
        for answer in self.answers.values():
            if answer.access_denied_reason in _CUSTOMER_DENIALS:
                return answer.access_denied_reason
            return None
        return None

    def answer(
        self, feature: str, requested: Micros | None, pending: PendingReports = NO_PENDING
    ) -> CheckAnswer:
        """The check result for ``feature`` with ``requested``, decided on the entry's figures
        and the pending reports, as the service would decide it on the same figures."""
        base = self.answers.get(feature)
        number = None if requested is None else to_json_number(requested)
        if base is None:
            return CheckAnswer(
                customer=self.customer,
                feature=feature,
                entity=self.entity,
                has_access=False,
                access_denied_reason=self._admission or DenialReason.FEATURE_NOT_FOUND,
                kind=None,
                requested=number,
            )
        reason = base.access_denied_reason
        if base.source is None or (reason is not None and reason not in _RESOLVED):
            # Denied before anything was resolved: a request changes nothing.
            return msgspec.structs.replace(base, requested=number)
        if base.kind is FeatureKind.BOOLEAN:
            return msgspec.structs.replace(base, requested=number)
        if base.kind is FeatureKind.NUMERIC:
            value = None if base.value is None else micros_of(base.value)
            denial = decide(NumericSpec(value), 0, 0, requested)
            return msgspec.structs.replace(
                base, has_access=denial is None, access_denied_reason=denial, requested=number
            )
        return self._metered(base, requested, number, pending)

    def _metered(
        self,
        base: CheckAnswer,
        requested: Micros | None,
        number: Number,
        pending: PendingReports,
    ) -> CheckAnswer:
        figures = self.figures[base.feature]
        used = figures.used + pending.units.get(base.feature, 0)
        pending_credits = pending.credits
        # Reports made for this very entity count for every budget on its path; those of
        # other entities only once the feed shows their path.
        own = 0 if self.entity is None else pending.entity_units.get((base.feature, self.entity), 0)
        limit = None if base.usage_limit is None else micros_of(base.usage_limit)
        enforcement = base.enforcement or Enforcement.HARD
        spec = MeteredSpec(limit, base.reset_period or ResetPeriod.NEVER, enforcement)
        reserved = micros_of(base.reserved or 0)
        standings, budget_views = self._budgets(base, figures, own)
        credits_block: CreditBlock | None = None
        pool_standing = None
        cost = None
        if base.credits is not None:
            currency = base.credits["currency"]
            per_unit = micros_of(base.credits["cost"])  # the state's answers request nothing
            pool = self.pools.get(currency)
            if pool is not None:
                available = pool.balance - pool.held - pending_credits
                units = MICROS_PER_UNIT if requested is None else requested
                cost = credit_cost(units, per_unit)
                pool_standing = PoolStanding(available, pool.overdraft_limit)
                credits_block = {
                    "currency": currency,
                    "cost": to_json_number(cost),
                    "available": to_json_number(available),
                }
        denial = decide_consumption(
            units=requested,
            credits=cost if requested is not None else None,
            limit=spec,
            used=used,
            reserved=reserved,
            budgets=standings,
            pool=pool_standing,
        )
        remaining = None if limit is None else max(0, limit - used - reserved)
        return msgspec.structs.replace(
            base,
            has_access=denial is None,
            access_denied_reason=denial,
            current_usage=to_json_number(used),
            remaining=None if remaining is None else to_json_number(remaining),
            requested=number,
            budgets=budget_views,
            credits=credits_block if credits_block is not None else base.credits,
        )

    def _budgets(
        self, base: CheckAnswer, figures: Figures, ours: Micros
    ) -> tuple[list[Standing], list[BudgetView]]:
        standings: list[Standing] = []
        views: list[BudgetView] = []
        for index, view in enumerate(base.budgets):
            usage = figures.budget_usage[index]
            kind = BudgetKind.FEATURE if view.target == base.feature else BudgetKind.CURRENCY
            if kind is BudgetKind.FEATURE:
                usage += ours
            limit = micros_of(view.limit) if view.limit is not None else 0
            budget = Budget(
                entity=view.entity,
                target=view.target,
                kind=kind,
                limit=limit,
                reset=view.reset,
                enforcement=view.enforcement,
                created_at=_EPOCH,
            )
            window = Period(_EPOCH, None)  # the decision reads usage and limits, not windows
            reserved = micros_of(view.reserved or 0)
            standings.append(Standing(budget, window, usage, reserved))
            views.append(msgspec.structs.replace(view, usage=to_json_number(usage)))
        return standings, views


_EPOCH = datetime.fromisoformat("1970-01-01T00:00:00+00:00")
