"""The rules that turn the truth (usage events, ledger entries) into the figures decisions read.

Each rule exists once, here. The SQLite adapter keeps counters that follow them in step; the
memory adapter computes the same figures from the truth on every read; the contract suite
(``tests/contract``) checks that every adapter agrees with the truth.
"""

from __future__ import annotations

from allotment.domain.budgets import EntityPath
from allotment.domain.credits import Entry, EntryType, Grant, Pool
from allotment.domain.errors import InvalidRequest
from allotment.domain.quantities import MAX_COUNTER, Micros


def counter_overflow() -> InvalidRequest:
    return InvalidRequest(
        "usage in one period may not exceed 9.2 x 10^12 units; this report would pass it."
    )


def require_within_counter(value: int) -> None:
    """Refuse a figure a 64-bit counter cannot hold (SQLite would silently make it a float)."""
    if not -MAX_COUNTER <= value <= MAX_COUNTER:
        raise counter_overflow()


def require_pool_within_counter(pool: Pool, changed: list[Grant]) -> None:
    """Refuse to store a pool whose overdraft, a new entry's balance or a changed grant passes
    what a 64-bit column holds: every adapter stores them as such."""
    figures = [pool.overdraft, *(e.balance_after for e in pool.entries)]
    figures += [g.remaining for g in changed]
    if any(abs(figure) > MAX_COUNTER for figure in figures):
        raise InvalidRequest(
            "a credit pool's balance, overdraft or grant may not pass 9.2 x 10^12 credits;"
            " this request would."
        )


def counts_in(start: int, end: int | None, instant: int) -> bool:
    """Whether something at ``instant`` counts in the window [start, end) (epoch micros)."""
    return start <= instant and (end is None or instant < end)


def counts_for(path: EntityPath, entity: str) -> bool:
    """Whether consumption attributed to ``path`` counts for ``entity``'s budgets: the entity
    itself and every ancestor it had when the consumption was written."""
    return entity in path


def budget_spend(entry: Entry) -> Micros:
    """What a ledger entry counts for the currency budgets along its path: the credits a debit
    took (its amount is negative); nothing for any other entry."""
    if entry.type is EntryType.DEBIT and entry.entity_path:
        return -entry.amount
    return 0
