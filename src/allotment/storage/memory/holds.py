"""Strict holds: the memory adapter checks the holds contract of ``UnitOfWork``.

A job holds what it will decide on and change, in one order and never back: a customer's usage,
then budget series (every entity of a path), then a credit pool. An adapter whose jobs run side
by side turns each hold into a row lock; taking them in that order is what keeps two jobs from
waiting on each other. The memory adapter runs jobs one at a time, so a hold costs nothing here,
but it records each and refuses

- a hold of an earlier kind once a later kind is held (:class:`HoldOrderError`): taking again
  something already held is no new lock, and is allowed whatever was taken since;
- a write of counters, pools or live reservations without its hold (:class:`MissingHoldError`).

Both are programming errors, not refusals of a request, so they are not ``AllotmentError``.
"""

from __future__ import annotations

from enum import IntEnum

from allotment.domain.budgets import EntityPath


class HoldOrderError(RuntimeError):
    """A job took a hold of an earlier kind after one of a later kind."""


class MissingHoldError(RuntimeError):
    """A job wrote what it must hold without holding it."""


class _Stage(IntEnum):
    NONE = 0
    USAGE = 1
    BUDGETS = 2
    POOL = 3


class Holds:
    """The holds one job took; ``strict`` makes the checks raise."""

    __slots__ = ("_budgets", "_pools", "_stage", "_usage", "strict")

    def __init__(self, strict: bool) -> None:
        self.strict = strict
        self._stage = _Stage.NONE
        self._usage: set[str] = set()
        self._budgets: set[tuple[str, str]] = set()
        self._pools: set[tuple[str, str]] = set()

    def take_usage(self, customer_id: str) -> None:
        if customer_id in self._usage:
            return
        self._advance(_Stage.USAGE, f"the usage of {customer_id!r}")
        self._usage.add(customer_id)

    def take_budgets(self, customer_id: str, path: EntityPath) -> None:
        wanted = {(customer_id, entity) for entity in path}
        if wanted <= self._budgets:
            return
        self._advance(_Stage.BUDGETS, f"the budgets of {customer_id!r} along {list(path)}")
        self._budgets |= wanted

    def take_pool(self, customer_id: str, currency: str) -> None:
        key = (customer_id, currency)
        if key in self._pools:
            return
        self._advance(_Stage.POOL, f"the {currency!r} pool of {customer_id!r}")
        self._pools.add(key)

    def require_usage(self, customer_id: str, write: str) -> None:
        if self.strict and customer_id not in self._usage:
            raise MissingHoldError(f"{write} needs hold_usage({customer_id!r}) first")

    def require_budgets(self, customer_id: str, path: EntityPath, write: str) -> None:
        if not self.strict:
            return
        missing = [entity for entity in path if (customer_id, entity) not in self._budgets]
        if missing:
            raise MissingHoldError(
                f"{write} needs hold_budgets({customer_id!r}, ...) covering {missing} first"
            )

    def require_pool(self, customer_id: str, currency: str, write: str) -> None:
        if self.strict and (customer_id, currency) not in self._pools:
            raise MissingHoldError(f"{write} needs hold_pool({customer_id!r}, {currency!r}) first")

    def _advance(self, stage: _Stage, what: str) -> None:
        if stage < self._stage:
            if self.strict:
                held = self._stage.name.lower()
                raise HoldOrderError(
                    f"holding {what} after a hold on {held}: usage, then budgets, then pools"
                )
            return
        self._stage = stage
