"""Credit pools: grants, voids, debits, balances, the ledger and revenue.

Every operation is one store job: it loads the pool, writes whatever grant and expiry entries
are due by now (so figures are right without any background job), applies the change, and
stores the new entries with the grants and overdraft they changed, in one transaction. Jobs run
one at a time, so concurrent debits can never spend the same credit twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import TypeVar

import msgspec

from allotment.domain.budgets import NO_PATH, EntityPath
from allotment.domain.catalog import (
    Addon,
    Catalog,
    CreditCategory,
    Currency,
    Plan,
    RecurringCredits,
)
from allotment.domain.changes import CreditsChanged, Spend
from allotment.domain.credits import (
    MAX_GRANTED,
    EntryContext,
    EntryType,
    Grant,
    GrantStatus,
    Pool,
)
from allotment.domain.decision import PoolStanding, decide_consumption
from allotment.domain.errors import Conflict, InvalidRequest, NotFound
from allotment.domain.events import EventType
from allotment.domain.holdings import Holdings, Subscription, Versions, credit_sources
from allotment.domain.identifiers import new_id
from allotment.domain.periods import period_boundary, period_index
from allotment.domain.quantities import Micros, to_json_number
from allotment.domain.reservations import reserved_credits
from allotment.domain.resolution import DenialReason
from allotment.domain.timefmt import to_epoch_micros
from allotment.service import idempotency
from allotment.service.budgets import after_consuming, standings_in_job
from allotment.service.credit_views import (
    GrantView,
    LedgerEntryView,
    PoolBalance,
    PoolGrantViews,
    Revenue,
    grant_view,
    ledger_entry_view,
)
from allotment.service.entity_tree import BudgetSlot, EntityAt
from allotment.service.events import emit, grant_timer
from allotment.service.outcomes import (
    DEBIT_RECORD,
    GRANT_RECORD,
    DebitEntry,
    DebitOutcome,
    GrantOutcome,
    OutcomeRecord,
)
from allotment.service.ports import LedgerRecord, Page, UnitOfWork
from allotment.service.projector import PoolFiguresComputed
from allotment.service.runtime import Runtime
from allotment.service.snapshots import PoolFigures
from allotment.service.thresholds import budgets_reached, credits_moved

Outcome = TypeVar("Outcome")
MAX_PRIORITY = 1_000_000
RECURRING_PRIORITY = 50


@dataclass(frozen=True, slots=True)
class GrantRequest:
    amount: Micros
    category: CreditCategory
    idempotency_key: str
    cost_basis: Micros = 0
    priority: int = 50
    effective_at: datetime | None = None
    expires_at: datetime | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class DebitRequest:
    amount: Micros
    idempotency_key: str
    entity: str | None = None
    feature: str | None = None
    enforce: bool = True


class CreditService:
    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._views = PoolGrantViews()

    # ------------------------------------------------------------------ writes

    async def grant(self, customer: str, currency: str, request: GrantRequest) -> GrantOutcome:
        if request.amount <= 0:
            raise InvalidRequest("amount must be greater than zero.", {"field": "amount"})
        if not 0 <= request.priority <= MAX_PRIORITY:
            raise InvalidRequest(f"priority must be between 0 and {MAX_PRIORITY}.")
        route = f"credits/{currency}/grants"
        payload = idempotency.fingerprint(
            request.amount,
            request.category,
            request.cost_basis,
            request.priority,
            request.effective_at and to_epoch_micros(request.effective_at),
            request.expires_at and to_epoch_micros(request.expires_at),
            request.reason,
        )
        runtime = self._runtime

        def answer(uow: UnitOfWork, now: datetime) -> GrantOutcome:
            pool = self.settled_pool(uow, customer, currency, now)
            effective_at = request.effective_at or now
            if request.expires_at is not None and request.expires_at <= max(effective_at, now):
                raise InvalidRequest(
                    "expires_at must be after effective_at and in the future.",
                    {"field": "expires_at"},
                )
            grant = Grant(
                id=new_id("grant"),
                amount=request.amount,
                category=request.category,
                cost_basis=request.cost_basis,
                priority=request.priority,
                effective_at=effective_at,
                expires_at=request.expires_at,
                created_at=now,
                reason=request.reason,
            )
            pool.add_grant(grant, now, EntryContext(idempotency_key=request.idempotency_key))
            if pool.held_and_scheduled() > MAX_GRANTED:
                # Checked now, not when a later period's recurring block would fail every read.
                raise InvalidRequest(
                    f"amount: the pool's grants would hold more than"
                    f" {to_json_number(MAX_GRANTED)} {currency} together, the room a pool"
                    " keeps for its recurring credits aside.",
                    {"field": "amount"},
                )
            # Read before it is stored: a grant that pays back an overdraft as large as itself
            # ends at once, and leaves the pool when it is stored.
            view = grant_view(pool.grants[grant.id], now)
            self.save(uow, customer, currency, pool, now)
            # A grant that takes effect later enters the pool then, whether or not anything
            # touches it: its entry's saving sends ``credits.granted`` and sets its expiry's
            # timer, as it does now for one in effect already.
            if effective_at > now:
                kind = EventType.CREDITS_GRANTED
                grant_timer(uow, customer, currency, grant.id, effective_at, kind)
            return GrantOutcome(**msgspec.structs.asdict(view), replayed=False)

        key = request.idempotency_key
        return await runtime.run(
            lambda uow: self._once(uow, customer, route, key, payload, answer, GRANT_RECORD)
        )

    async def void(self, customer: str, currency: str, grant_id: str) -> GrantView:
        runtime = self._runtime

        def job(uow: UnitOfWork) -> GrantView:
            now = runtime.clock.now()
            pool = self.settled_pool(uow, customer, currency, now)
            # A grant that ended is not in the pool: voided or expired (409 below), or used up,
            # which a void still marks; read back by id, it rejoins the pool for the void.
            grant = pool.grants.get(grant_id) or uow.ledger.get_grant(customer, currency, grant_id)
            if grant is None:
                raise NotFound(f"no grant {grant_id} in this pool.", {"grant": grant_id})
            status = grant.status(now)
            if status in (GrantStatus.VOIDED, GrantStatus.EXPIRED):
                raise Conflict(f"grant {grant_id} is {status}.", {"grant": grant_id})
            if grant_id not in pool.grants:
                pool.include(grant)
            pool.void(grant_id, now)
            voided = pool.grants[grant_id]  # it ends: stored, it leaves the pool
            self.save(uow, customer, currency, pool, now)
            return grant_view(voided, now)

        return await runtime.run(job)

    async def debit(self, customer: str, currency: str, request: DebitRequest) -> DebitOutcome:
        if request.amount <= 0:
            raise InvalidRequest("amount must be greater than zero.", {"field": "amount"})
        route = f"credits/{currency}/debits"
        payload = idempotency.fingerprint(
            request.amount, request.entity, request.feature, request.enforce
        )
        runtime = self._runtime

        def answer(uow: UnitOfWork, now: datetime) -> DebitOutcome:
            if request.feature is not None:
                runtime.catalog_in(uow).feature_for(request.feature, "feature")
            reason: DenialReason | None
            snapshot = runtime.snapshot_in(uow, customer)
            found = None
            if snapshot is not None and request.entity is not None:
                found = runtime.entity_in(uow, snapshot, request.entity)
                if found is not None:
                    # Holds in their order: the budgets on the path, then the pool.
                    uow.hold_budgets(customer, found.path)
            pool = self.settled_pool(uow, customer, currency, now)
            if snapshot is not None and snapshot.archived:
                reason = DenialReason.CUSTOMER_ARCHIVED
            elif snapshot is not None and request.entity is not None and found is None:
                reason = DenialReason.ENTITY_NOT_FOUND
            else:
                reason = self._debit(uow, found, customer, currency, pool, request, now)
            records = self.save(uow, customer, currency, pool, now)
            return DebitOutcome(
                applied=reason is None,
                replayed=False,
                access_denied_reason=reason,
                balance=to_json_number(pool.balance),
                entries=[
                    DebitEntry(r.entry.grant, to_json_number(r.entry.amount))
                    for r in records
                    if r.entry.type is EntryType.DEBIT
                    and r.entry.idempotency_key == request.idempotency_key
                ],
            )

        key = request.idempotency_key
        return await runtime.run(
            lambda uow: self._once(uow, customer, route, key, payload, answer, DEBIT_RECORD)
        )

    def _debit(
        self,
        uow: UnitOfWork,
        entity: EntityAt | None,
        customer: str,
        currency: str,
        pool: Pool,
        request: DebitRequest,
        now: datetime,
    ) -> DenialReason | None:
        """Debit the pool unless a hard budget on the entity's path, or the pool's own limit,
        refuses (when enforced); the reason it was refused, if it was."""
        runtime = self._runtime
        live = runtime.live_holds(uow, customer, now)
        path: EntityPath = NO_PATH
        on_path: list[BudgetSlot] = []
        if entity is not None:
            along = entity.budgets(None, currency)
            path, on_path = along.path, along.slots
        budgets = standings_in_job(uow, customer, on_path, live, now) if on_path else []
        if request.enforce:
            reason = decide_consumption(
                units=None,
                credits=request.amount,
                budgets=(figures.standing for figures in budgets),
                pool=PoolStanding(
                    pool.available(reserved_credits(live, currency, now)),
                    self.overdraft_limit(uow, customer, currency, now),
                ),
            )
            if reason is not None:
                return reason
        context = EntryContext(request.idempotency_key, request.entity, request.feature, path)
        order = _currency(runtime.catalog_in(uow), currency).burn_order
        pool.debit(request.amount, order, now, context)
        if budgets:
            after = after_consuming(budgets, 0, request.amount, now)
            budgets_reached(uow, customer, budgets, after, now)
        return None

    # ------------------------------------------------------------------ reads

    async def balance(self, customer: str, currency: str) -> PoolBalance:
        runtime = self._runtime

        def job(uow: UnitOfWork) -> PoolBalance:
            now = runtime.clock.now()
            pool = self.settled_pool(uow, customer, currency, now)
            self.save(uow, customer, currency, pool, now)
            limit = self.overdraft_limit(uow, customer, currency, now)
            reserved = reserved_credits(runtime.live_holds(uow, customer, now), currency, now)
            return PoolBalance(
                balance=to_json_number(pool.balance),
                reserved=to_json_number(reserved),
                available=to_json_number(pool.available(reserved)),
                overdraft=to_json_number(pool.overdraft),
                overdraft_limit=None if limit is None else to_json_number(limit),
                # The live grants, oldest first: the pool holds no other (ended ones are in
                # ``grants``, a page at a time), so this costs the same however long its history.
                grants=self._views.views((customer, currency), pool.grants.values(), now),
            )

        return await runtime.run(job)

    async def grants(
        self,
        customer: str,
        currency: str,
        after: str | None,
        limit: int,
        status: GrantStatus | None = None,
    ) -> Page[GrantView]:
        """Every grant of the pool, ended ones included, oldest first; with ``status``, those
        that have it now."""
        runtime = self._runtime

        def job(uow: UnitOfWork) -> Page[GrantView]:
            now = runtime.clock.now()
            # Settled first, so that each grant's row holds what is due by now.
            pool = self.settled_pool(uow, customer, currency, now)
            self.save(uow, customer, currency, pool, now)
            page = uow.ledger.list_grants(customer, currency, after, limit, status, now)
            return Page([grant_view(g, now) for g in page.items], page.next_cursor)

        return await runtime.run(job)

    async def ledger(
        self, customer: str, currency: str, after: str | None, limit: int
    ) -> Page[LedgerEntryView]:
        runtime = self._runtime

        def job(uow: UnitOfWork) -> Page[LedgerEntryView]:
            now = runtime.clock.now()
            pool = self.settled_pool(uow, customer, currency, now)
            self.save(uow, customer, currency, pool, now)
            page = uow.ledger.list_entries(customer, currency, after, limit)
            return Page([ledger_entry_view(r) for r in page.items], page.next_cursor)

        return await runtime.run(job)

    async def revenue(self, customer: str, currency: str) -> Revenue:
        runtime = self._runtime

        def job(uow: UnitOfWork) -> Revenue:
            now = runtime.clock.now()
            pool = self.settled_pool(uow, customer, currency, now)
            self.save(uow, customer, currency, pool, now)
            # Kept in step with every entry the pool writes (and stored with it), not replayed.
            figures = pool.revenue.figures()
            return Revenue(
                deferred=figures.deferred,
                recognized=figures.recognized,
                breakage=figures.breakage,
            )

        return await runtime.run(job)

    # ------------------------------------------------------------------ helpers

    def _once(
        self,
        uow: UnitOfWork,
        customer: str,
        route: str,
        key: str,
        payload: bytes,
        answer: Callable[[UnitOfWork, datetime], Outcome],
        record: OutcomeRecord[Outcome],
    ) -> Outcome:
        now = self._runtime.clock.now()
        return idempotency.once(
            uow, customer, route, key, payload, now, lambda: answer(uow, now), record
        )

    def settled_pool(self, uow: UnitOfWork, customer: str, currency: str, now: datetime) -> Pool:
        """The pool with every entry due by ``now`` written: blocks owed by plans and add-ons,
        grants that took effect, grants that expired. The job holds the pool from here on."""
        runtime = self._runtime
        uow.hold_pool(customer, currency)
        snapshot = runtime.snapshot_in(uow, customer)
        if snapshot is None:
            raise NotFound(f"no customer {customer!r}.", {"customer": customer})
        catalog = runtime.catalog_in(uow)
        order = _currency(catalog, currency).burn_order
        pool = uow.ledger.load_pool(customer, currency)
        pool.burn_order = order

        def known(grant_id: str) -> bool:
            return grant_id in pool.grants or uow.ledger.grant_exists(customer, currency, grant_id)

        owed = recurring_grants(catalog, customer, snapshot.holdings, currency, now, known)
        for grant, context in list(owed):
            pool.include(grant, context)
        pool.settle(now)
        return pool

    def save(
        self,
        uow: UnitOfWork,
        customer: str,
        currency: str,
        pool: Pool,
        now: datetime,
        *,
        released: Micros = 0,
    ) -> list[LedgerRecord]:
        """Store the pool's new entries and, once committed, its figures in the snapshot.

        ``released`` is what a hold ended by this job held until then (a committed
        reservation): available before the entries was lower by that much."""
        runtime = self._runtime
        records = uow.ledger.save_pool(customer, currency, pool)
        catalog = runtime.catalog_in(uow)
        snapshot = runtime.snapshot_in(uow, customer)
        horizons = [pool.horizon(now)]
        if snapshot is not None:
            horizons.append(next_recurring_block(catalog, snapshot.holdings, currency, now))
        due = [instant for instant in horizons if instant is not None]
        figures = PoolFigures(
            catalog=catalog,
            balance=pool.balance,
            overdraft_limit=self.overdraft_limit(uow, customer, currency, now),
            valid_until=min(due) if due else None,
        )
        if not records:
            uow.fill(PoolFiguresComputed(customer, currency, figures))
            return records
        spends = tuple(
            Spend(record.entry.entity_path, record.entry.at, -record.entry.amount)
            for record in records
            if record.entry.entity_path and record.entry.type is EntryType.DEBIT
        )
        uow.record(
            CreditsChanged(
                customer,
                currency,
                figures.balance,
                figures.overdraft_limit,
                figures.valid_until,
                spends,
            )
        )
        self._events(uow, customer, currency, pool, records, now, released)
        return records

    def _events(
        self,
        uow: UnitOfWork,
        customer: str,
        currency: str,
        pool: Pool,
        records: Sequence[LedgerRecord],
        now: datetime,
        released: Micros,
    ) -> None:
        """The events of the entries just stored: grants, expiries, and a fall below the
        currency's low-balance threshold or to zero (from the figures the job has)."""
        for record in records:
            entry = record.entry
            if entry.grant is None or entry.type not in (EntryType.GRANT, EntryType.EXPIRY):
                continue
            grant = pool.grants.get(entry.grant) or uow.ledger.get_grant(
                customer, currency, entry.grant
            )
            if grant is None:
                continue
            view = grant_view(grant, now)
            if entry.type is EntryType.GRANT:
                emit(
                    uow,
                    EventType.CREDITS_GRANTED,
                    customer,
                    {"currency": currency, **msgspec.structs.asdict(view)},
                    now,
                )
                if grant.expires_at is not None and grant.expires_at > now:
                    grant_timer(uow, customer, currency, grant.id, grant.expires_at)
            else:
                data = {
                    "currency": currency,
                    "grant": view,
                    "amount": to_json_number(-entry.amount),
                }
                emit(uow, EventType.CREDITS_EXPIRED, customer, data, now)
        before = pool.balance - sum(record.entry.amount for record in records)
        if pool.balance < before:
            reserved = reserved_credits(self._runtime.live_holds(uow, customer, now), currency, now)
            threshold = _currency(self._runtime.catalog_in(uow), currency).low_balance_threshold
            credits_moved(
                uow,
                customer,
                currency,
                threshold,
                before - reserved - released,
                pool.balance - reserved,
                pool.balance,
                now,
            )

    def overdraft_limit(
        self, uow: UnitOfWork, customer: str, currency: str, now: datetime
    ) -> Micros | None:
        """The most generous setting of the customer's active subscriptions; 0 when none."""
        runtime = self._runtime
        snapshot = runtime.snapshot_in(uow, customer)
        if snapshot is None:
            return 0
        catalog = runtime.catalog_in(uow)
        limits: list[Micros | None] = []
        for subscription in snapshot.holdings.subscriptions:
            if not subscription.is_active(now):
                continue
            sources = credit_sources(catalog, subscription, now)
            limits += [s[currency].overdraft_limit for s, _ in sources if currency in s]
        if not limits:
            return 0
        if any(limit is None for limit in limits):
            return None
        return max(limit for limit in limits if limit is not None)


def recurring_grants(
    catalog: Catalog,
    customer: str,
    holdings: Holdings,
    currency: str,
    now: datetime,
    known: Callable[[str], bool],
) -> Iterator[tuple[Grant, EntryContext]]:
    """The blocks that plans and add-ons owe for the period running now, not yet in the pool.

    A subscription's plan and each of its add-ons grant ``amount`` (x quantity) for every
    period of ``every`` counted from the subscription's anchor (which a replacement inherits),
    expiring at the period's end, priority 50. A block is made when the pool is first touched in
    its period and enters the ledger then; a period in which nothing touched the pool has no
    use to pay for, and grants nothing. Ids hash (customer, product, paid or trial, anchor,
    source, every, period, currency): replacing a subscription with the same plan mints nothing
    twice, while a new plan or a newly attached add-on grants its block at once.
    """
    for subscription in holdings.subscriptions:
        if not subscription.is_active(now):
            continue
        kind = "trial" if subscription.is_trial else "paid"
        anchor = subscription.anchor_at
        for source, credits, quantity in _blocks_due(catalog, subscription, currency, now):
            index = period_index(anchor, credits.every, now)
            key = msgspec.json.encode(
                [
                    customer,
                    subscription.product,
                    kind,
                    to_epoch_micros(anchor),
                    source,
                    credits.every.value,
                    index,
                    currency,
                ]
            )
            grant_id = "grant_" + hashlib.sha256(key).hexdigest()[:24]
            if known(grant_id):
                continue
            grant = Grant(
                id=grant_id,
                amount=credits.amount * quantity,
                category=credits.category,
                cost_basis=credits.cost_basis,
                priority=RECURRING_PRIORITY,
                effective_at=max(
                    period_boundary(anchor, credits.every, index), subscription.starts_at
                ),
                expires_at=period_boundary(anchor, credits.every, index + 1),
                created_at=now,
                reason=f"{source} credits of {subscription.id}, period {index + 1}",
            )
            yield grant, EntryContext(idempotency_key=f"{subscription.id}:{source}:{index}")


def _blocks_due(
    catalog: Catalog, subscription: Subscription, currency: str, now: datetime
) -> Iterator[tuple[str, RecurringCredits, int]]:
    """Each plan's and add-on's recurring block of ``currency`` for the period running at
    ``now``: the block of the version the subscription was on when that period began. A
    migration therefore changes the credits from the next period that grants them, never in
    the period under way."""
    anchor = subscription.anchor_at
    plan_blocks = _owed_blocks(
        partial(catalog.plan_at, subscription.plan),
        subscription.plan_versions,
        currency,
        anchor,
        now,
    )
    for credits in plan_blocks:
        yield f"plan:{subscription.plan}", credits, 1
    for holding in subscription.addons:
        addon_blocks = _owed_blocks(
            partial(catalog.addon_at, holding.id), holding.versions, currency, anchor, now
        )
        for credits in addon_blocks:
            yield f"addon:{holding.id}", credits, holding.quantity


def _owed_blocks(
    version_of: Callable[[int], Plan | Addon | None],
    versions: Versions,
    currency: str,
    anchor: datetime,
    now: datetime,
) -> list[RecurringCredits]:
    """The blocks owed now of each version in the history: a version's block is owed when the
    holding was on that version as the block's period (of its own ``every``) began."""
    if not versions.moves:  # never migrated: its one version owes every period's block
        found = version_of(versions.first)
        credits = None if found is None else found.credits.get(currency)
        return [] if credits is None or credits.amount == 0 else [credits]
    owed = []
    for version in versions.held():
        found = version_of(version)
        credits = None if found is None else found.credits.get(currency)
        if credits is None or credits.amount == 0:
            continue
        began = period_boundary(anchor, credits.every, period_index(anchor, credits.every, now))
        if versions.at_period_start(began) == version:
            owed.append(credits)
    return owed


def next_recurring_block(
    catalog: Catalog, holdings: Holdings, currency: str, now: datetime
) -> datetime | None:
    """When the next period's recurring block of this currency is due, if any."""
    instants = []
    for subscription in holdings.subscriptions:
        if subscription.starts_at > now:
            instants.append(subscription.starts_at)
            continue
        if not subscription.is_active(now):
            continue
        # A move changes the overdraft limit the pool's figures hold.
        instants += [instant for instant in subscription.move_instants() if instant > now]
        for sources, _ in credit_sources(catalog, subscription, now):
            credits = sources.get(currency)
            if credits is not None and credits.amount:
                index = period_index(subscription.anchor_at, credits.every, now)
                instants.append(period_boundary(subscription.anchor_at, credits.every, index + 1))
    return min(instants) if instants else None


def _currency(catalog: Catalog, currency_id: str) -> Currency:
    currency = catalog.currencies.get(currency_id)
    if currency is None:
        raise NotFound(f"no currency {currency_id!r}.", {"currency": currency_id})
    return currency
