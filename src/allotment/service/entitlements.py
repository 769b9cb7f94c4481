"""Check and the entitlements list: the hot path, answered from snapshots in memory.

A check reads the customer's snapshot, resolves the feature (cached until a holding starts or
ends or the catalog changes) and reads the usage of the current window from the snapshot, and,
with an entity, that of each budget window on its path. When something is not cached yet, one
store job reads it all (the snapshot, the entity's path, the windows), answers, and fills the
cache with what it read: the next check is answered from memory.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from allotment.domain.budgets import held_for
from allotment.domain.catalog import Catalog, Feature, MeteredSpec
from allotment.domain.errors import NotFound
from allotment.domain.quantities import Micros, to_json_number
from allotment.domain.reservations import reserved_credits, reserved_usage
from allotment.domain.resolution import DenialReason
from allotment.domain.timefmt import format_instant
from allotment.service.answers import (
    BudgetFigures,
    CheckAnswer,
    CreditFigures,
    CustomerState,
    Entitlements,
    PoolState,
    answer_for,
    denied,
)
from allotment.service.budgets import standings_in_job
from allotment.service.credits import CreditService
from allotment.service.entity_tree import BudgetSlot, EntityAt, NotLoaded, located_in
from allotment.service.gate import admission_denial
from allotment.service.ports import UnitOfWork
from allotment.service.projector import BudgetWindowLoaded, WindowLoaded
from allotment.service.runtime import Runtime
from allotment.service.snapshots import CustomerSnapshot


@dataclass(frozen=True, slots=True)
class CacheMiss:
    """What a check needs is not all in memory: the customer's snapshot, the entity's path, a
    usage window, or a credit pool's figures (read and settled in the store)."""

    missing: str


_SNAPSHOT = CacheMiss("snapshot")
_PATH = CacheMiss("entity path")
_WINDOWS = CacheMiss("usage windows")
_POOL = CacheMiss("credit pool")
_MOVING = CacheMiss("a change being applied")
# Reading a state from memory after warming it rarely misses twice; past this, the answer is
# read in a job, without a revision.
_STATE_ATTEMPTS = 3
CreditLookup = Callable[[str], CreditFigures]
EntityLookup = Callable[[CustomerSnapshot, str], EntityAt | NotLoaded | None]


def _cached_entity(snapshot: CustomerSnapshot, entity: str) -> EntityAt | NotLoaded | None:
    return located_in(snapshot.tree, entity)


class EntitlementService:
    def __init__(self, runtime: Runtime, credits: CreditService) -> None:
        self._runtime = runtime
        self._credits = credits

    async def check(
        self, customer_id: str, feature_id: str, entity: str | None, requested: Micros | None
    ) -> CheckAnswer:
        answer = self.check_cached(customer_id, feature_id, entity, requested)
        if isinstance(answer, CheckAnswer):
            return answer
        # One job reads whatever was missing, answers, and fills the cache with what it read,
        # so that the next check of this customer, entity and feature is answered from memory.
        # It waits behind writes (a fill): after a restart, thousands of these come at once.
        return await self._runtime.run(
            lambda uow: self.check_in_job(uow, customer_id, feature_id, entity, requested),
            fill=True,
        )

    def check_cached(
        self, customer_id: str, feature_id: str, entity: str | None, requested: Micros | None
    ) -> CheckAnswer | CacheMiss:
        """The answer from memory alone, or what it lacks."""
        snapshot = self._runtime.snapshots.lookup(customer_id)
        if snapshot is False:
            return _SNAPSHOT
        assert not isinstance(snapshot, bool)
        catalog = self._runtime.catalog.current
        now = self._runtime.clock.now()
        return _evaluate(
            catalog,
            snapshot,
            customer_id,
            feature_id,
            entity,
            requested,
            now,
            None,
            None,
            _cached_entity,
        )

    def check_in_job(
        self,
        uow: UnitOfWork,
        customer_id: str,
        feature_id: str,
        entity: str | None,
        requested: Micros | None,
    ) -> CheckAnswer:
        snapshot = self._runtime.snapshot_in(uow, customer_id)
        now = self._runtime.clock.now()
        answer = _evaluate(
            self._runtime.catalog_in(uow),
            snapshot,
            customer_id,
            feature_id,
            entity,
            requested,
            now,
            uow,
            self._credit_lookup(uow, customer_id, now),
            self._entity_lookup(uow),
        )
        assert isinstance(answer, CheckAnswer)
        return answer

    async def entitlements(self, customer_id: str, entity: str | None) -> Entitlements:
        """A check result for every feature some source grants the customer."""
        runtime = self._runtime

        def job(uow: UnitOfWork) -> Entitlements:
            snapshot = runtime.snapshot_in(uow, customer_id)
            if snapshot is None:
                raise NotFound(f"no customer {customer_id!r}.", {"customer": customer_id})
            catalog, now = runtime.catalog_in(uow), runtime.clock.now()
            find_entity = self._entity_lookup(uow)
            answers = []
            for feature in catalog.features.values():
                if snapshot.resolution(catalog, feature, now).offer is None:
                    continue
                answer = _evaluate(
                    catalog,
                    snapshot,
                    customer_id,
                    feature.id,
                    entity,
                    None,
                    now,
                    uow,
                    self._credit_lookup(uow, customer_id, now),
                    find_entity,
                )
                assert isinstance(answer, CheckAnswer)
                answers.append(answer)
            return Entitlements(customer_id, answers)

        return await runtime.run(job)

    async def state(self, customer_id: str, entity: str | None) -> CustomerState:
        """Every feature's answer and the pools they draw on, exact at one revision of the log
        (``CustomerState``): read from memory, after one job has filled what was missing."""
        runtime = self._runtime
        for _ in range(_STATE_ATTEMPTS):
            found = self.state_cached(customer_id, entity)
            if isinstance(found, CustomerState):
                return found
            warmed = await runtime.run(
                lambda uow: self.state_in_job(uow, customer_id, entity), fill=True
            )
        return warmed

    def state_cached(self, customer_id: str, entity: str | None) -> CustomerState | CacheMiss:
        """The state from memory alone, with the revision it is exact at, or what it lacks.

        The projector applies effects on the store's thread while this reads on the event
        loop's: the effect counters around the reads say whether one was applied meanwhile."""
        cache = self._runtime.cache
        ended, revision = cache.ended, cache.revision
        if cache.begun != ended:
            return _MOVING
        snapshot = self._runtime.snapshots.lookup(customer_id)
        if snapshot is False:
            return _SNAPSHOT
        assert not isinstance(snapshot, bool)
        catalog = self._runtime.catalog.current
        now = self._runtime.clock.now()
        answers = []
        for feature in catalog.features.values():
            answer = _evaluate(
                catalog, snapshot, customer_id, feature.id, entity, None, now, None, None,
                _cached_entity,
            )  # fmt: skip
            if isinstance(answer, CacheMiss):
                return answer
            answers.append(answer)
        pools: list[PoolState] = []
        valid_until = None
        if snapshot is not None:
            valid_until = snapshot.derived_for(catalog, now).valid_until
            for currency in _currencies(answers):
                figures = snapshot.pools[currency]  # present: the answers read it
                held = reserved_credits(snapshot.holds.values(), currency, now)
                pools.append(_pool_state(currency, figures.balance, held, figures.overdraft_limit))
                valid_until = _earliest(valid_until, figures.valid_until)
            for hold in snapshot.holds.values():
                if hold.holds(now):
                    valid_until = _earliest(valid_until, hold.expires_at)
        if cache.begun != ended or cache.ended != ended:
            return _MOVING
        return _state(customer_id, entity, revision, now, valid_until, answers, pools)

    def state_in_job(self, uow: UnitOfWork, customer_id: str, entity: str | None) -> CustomerState:
        """The state read in a job, filling the cache: exact, but at no one revision."""
        runtime = self._runtime
        snapshot = runtime.snapshot_in(uow, customer_id)
        catalog, now = runtime.catalog_in(uow), runtime.clock.now()
        pools: dict[str, PoolState] = {}
        credit_lookup = self._credit_lookup(uow, customer_id, now, pools)
        find_entity = self._entity_lookup(uow)
        answers = []
        for feature in catalog.features.values():
            answer = _evaluate(
                catalog, snapshot, customer_id, feature.id, entity, None, now, uow,
                credit_lookup, find_entity,
            )  # fmt: skip
            assert isinstance(answer, CheckAnswer)
            answers.append(answer)
        in_order = [pools[currency] for currency in _currencies(answers)]
        return _state(customer_id, entity, None, now, None, answers, in_order)

    def _credit_lookup(
        self,
        uow: UnitOfWork,
        customer: str,
        now: datetime,
        pools: dict[str, PoolState] | None = None,
    ) -> CreditLookup:
        """The pool's figures as a check in this job sees them, settled and saved; each
        pool's state is also kept in ``pools`` when given."""
        credits, runtime = self._credits, self._runtime

        def figures(currency: str) -> CreditFigures:
            pool = credits.settled_pool(uow, customer, currency, now)
            credits.save(uow, customer, currency, pool, now)
            limit = credits.overdraft_limit(uow, customer, currency, now)
            held = reserved_credits(runtime.live_holds(uow, customer, now), currency, now)
            if pools is not None:
                pools[currency] = _pool_state(currency, pool.balance, held, limit)
            return CreditFigures(currency, pool.available(held), limit)

        return figures

    def _entity_lookup(self, uow: UnitOfWork) -> EntityLookup:
        """The entity as this job sees it, read once however many features ask."""
        runtime = self._runtime
        found: dict[str, EntityAt | None] = {}

        def find(snapshot: CustomerSnapshot, entity: str) -> EntityAt | None:
            if entity not in found:
                found[entity] = runtime.entity_in(uow, snapshot, entity)
            return found[entity]

        return find


def _evaluate(
    catalog: Catalog,
    snapshot: CustomerSnapshot | None,
    customer_id: str,
    feature_id: str,
    entity: str | None,
    requested: Micros | None,
    now: datetime,
    uow: UnitOfWork | None,
    credit_lookup: CreditLookup | None,
    find_entity: EntityLookup,
) -> CheckAnswer | CacheMiss:
    """The check decision. Usage comes from ``uow`` when given (and fills the cache), else from
    the snapshot."""
    feature: Feature | None = catalog.features.get(feature_id)
    kind = feature.kind if feature else None
    admission = admission_denial(snapshot, feature)
    if admission is not None:
        known_kind = None if admission is DenialReason.FEATURE_NOT_FOUND else kind
        return denied(customer_id, feature_id, entity, admission, known_kind, requested)
    assert snapshot is not None
    assert feature is not None
    found: EntityAt | None = None
    if entity is not None:
        looked_up = find_entity(snapshot, entity)
        if isinstance(looked_up, NotLoaded):
            return _PATH
        if looked_up is None:
            reason = DenialReason.ENTITY_NOT_FOUND
            return denied(customer_id, feature_id, entity, reason, kind, requested)
        found = looked_up
    at = snapshot.derived_for(catalog, now).feature_at(snapshot, feature, now)
    offer, spec = at.offer, at.spec
    if offer is None:
        assert at.denial is not None
        return denied(customer_id, feature_id, entity, at.denial, kind, requested)
    window = None
    used = reserved = 0
    budgets: list[BudgetFigures] = []
    if isinstance(spec, MeteredSpec):
        window, key = at.window, at.key
        assert window is not None
        assert key is not None
        slots: list[BudgetSlot] = []
        if found is not None:
            currency = spec.credit_cost.currency if spec.credit_cost is not None else None
            slots = found.budgets(feature_id, currency).slots
        if uow is not None:
            period = window.period
            used = uow.usage.window_usage(customer_id, feature_id, period.start, period.end)
            uow.fill(WindowLoaded(customer_id, key, used))
            live = uow.reservations.live(customer_id, now)
            reserved = reserved_usage(live, feature_id, now)
            budgets = standings_in_job(uow, customer_id, slots, live, now)
            for slot, standing in zip(slots, budgets, strict=True):
                spent = standing.standing.usage
                uow.fill(BudgetWindowLoaded(customer_id, slot.window_at(now)[1], spent))
        else:
            cached = snapshot.windows.get(key)
            cached_budgets = _cached_budgets(snapshot, slots, now)
            if cached is None or cached_budgets is None:
                return _WINDOWS
            budgets = cached_budgets
            used = cached
            if snapshot.holds:
                reserved = reserved_usage(snapshot.holds.values(), feature_id, now)
    credits = None
    if isinstance(spec, MeteredSpec) and spec.credit_cost is not None:
        currency = spec.credit_cost.currency
        if credit_lookup is not None:
            credits = credit_lookup(currency)
        else:
            # From memory while the pool's figures hold: no grant has entered or left since
            # they were saved, and no period's block has come due.
            figures = snapshot.pools.get(currency)
            if figures is None or not figures.holds_at(catalog, now):
                return _POOL
            held = reserved_credits(snapshot.holds.values(), currency, now)
            credits = CreditFigures(currency, figures.balance - held, figures.overdraft_limit)
    return answer_for(
        customer_id,
        feature_id,
        entity,
        offer,
        kind=feature.kind,
        window=window,
        used=used,
        reserved=reserved,
        requested=requested,
        credits=credits,
        budgets=budgets,
        source=at.source,
    )


def _cached_budgets(
    snapshot: CustomerSnapshot, slots: list[BudgetSlot], now: datetime
) -> list[BudgetFigures] | None:
    """Where each budget stands, from the snapshot; None when it lacks a window."""
    figures = []
    holds = snapshot.holds
    for slot in slots:
        view, key = slot.window_at(now)
        usage = snapshot.budget_windows.get(key)
        if usage is None:
            return None
        held = held_for(slot.budget, holds.values(), now) if holds else 0
        figures.append(slot.figures(view, key, usage, held))
    return figures


def _state(
    customer: str,
    entity: str | None,
    revision: int | None,
    now: datetime,
    valid_until: datetime | None,
    answers: list[CheckAnswer],
    pools: list[PoolState],
) -> CustomerState:
    return CustomerState(
        customer=customer,
        entity=entity,
        revision=revision,
        now=format_instant(now),
        valid_until=None if valid_until is None else format_instant(valid_until),
        answers=answers,
        pools=pools,
    )


def _currencies(answers: list[CheckAnswer]) -> list[str]:
    """The currencies the answers' features are priced in, each once, in order."""
    return list(dict.fromkeys(a.credits["currency"] for a in answers if a.credits is not None))


def _pool_state(
    currency: str, balance: Micros, held: Micros, overdraft_limit: Micros | None
) -> PoolState:
    limit = None if overdraft_limit is None else to_json_number(overdraft_limit)
    return PoolState(currency, to_json_number(balance), to_json_number(held), limit)


def _earliest(first: datetime | None, second: datetime | None) -> datetime | None:
    if first is None:
        return second
    return first if second is None else min(first, second)
