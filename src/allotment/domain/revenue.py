"""Revenue of a pool: remaining, consumed and expired credits, each times its grant's cost basis.

Kept in step with each entry as :class:`RevenueTotals` (exact integers) and rebuilt from the
replayed ledger by :func:`revenue_totals`; answered as exact amounts of money.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, localcontext

from allotment.domain.entries import Replayed
from allotment.domain.grants import Grant
from allotment.domain.quantities import MICROS_PER_UNIT, Micros


@dataclass(frozen=True, slots=True)
class Revenue:
    deferred: Decimal
    recognized: Decimal
    breakage: Decimal


@dataclass(frozen=True, slots=True)
class RevenueTotals:
    """A pool's revenue in credits (micro-units) times cost basis (micro-units): exact integers,
    however large. ``deferred`` is what the grants hold, ``recognized`` what debits took from
    them (overdraft paybacks included: they pay for usage already made), ``breakage`` what
    expired; voided credits are none of the three. A projection of the ledger: the pool keeps it
    in step with each entry it writes, and :func:`revenue_totals` rebuilds it."""

    deferred: int = 0
    recognized: int = 0
    breakage: int = 0

    def figures(self) -> Revenue:
        return Revenue(_money(self.deferred), _money(self.recognized), _money(self.breakage))


def revenue_totals(grants: Mapping[str, Grant], replayed: Replayed) -> RevenueTotals:
    """Remaining, consumed and expired credits of the replayed ledger, each times their grant's
    cost basis (``grants``: every grant with an entry, ended ones included)."""
    deferred = recognized = breakage = 0
    for grant_id, grant in grants.items():
        basis = grant.cost_basis
        deferred += basis * replayed.remaining.get(grant_id, 0)
        recognized += basis * replayed.consumed.get(grant_id, 0)
        breakage += basis * replayed.expired.get(grant_id, 0)
    return RevenueTotals(deferred, recognized, breakage)


def revenue(grants: Mapping[str, Grant], replayed: Replayed) -> Revenue:
    """Remaining, consumed and expired credits, each times their grant's cost basis.

    Credits paid back to the overdraft count as consumed: they pay for usage already made.
    """
    return revenue_totals(grants, replayed).figures()


def _money(micro_micros: int) -> Decimal:
    """Credits in micro-units times cost basis in micro-units, as an exact amount of money."""
    with localcontext() as context:
        context.prec = 80
        value = Decimal(micro_micros).scaleb(-12)
        return Decimal(format(value.normalize(), "f")) if value else Decimal(0)


def money_per_credit(cost_basis: Micros) -> Decimal:
    return Decimal(cost_basis) / MICROS_PER_UNIT
