"""The two orders a credit pool keeps incrementally, so that work follows what changes, not size.

- :class:`BurnQueue`: the spendable grants in burn order, for debits;
- :class:`DueQueue`: the instants at which grants enter the ledger (``effective_at``) or leave
  it (``expires_at``) by themselves, for settling.

Both are heaps with lazy deletion: an item is pushed when a grant gains it and is dropped only
when it reaches the top and no longer stands for the grant as it is now. Keeping a heap in step
with a changed grant therefore costs a push at most, a debit costs log(live grants) per grant it
draws from, and settling costs log(live grants) per grant whose instant passed. Stale items are
swept out by rebuilding a heap once they outnumber the live ones (amortized: each was pushed
once).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from heapq import heapify, heappop, heappush
from typing import cast

from allotment.domain.grants import Grant, burn_fields, burn_key

BurnKey = tuple[object, ...]

_SLACK = 32  # stale items tolerated besides as many as there are live ones


class BurnQueue:
    """The spendable grants of a pool under one burn order, first to burn first.

    ``_keys`` holds the one key that stands for each spendable grant; a heap item that is not
    that very key (compared by identity) is stale.
    """

    __slots__ = ("_aside", "_heap", "_keys", "order")

    def __init__(self, order: tuple[str, ...], grants: Iterable[Grant]) -> None:
        self.order = order
        self._keys: dict[str, BurnKey] = {g.id: burn_key(g, order) for g in grants if g.spendable}
        self._heap = list(self._keys.values())
        heapify(self._heap)
        self._aside: list[BurnKey] = []

    def update(self, old: Grant | None, new: Grant) -> None:
        """Follow ``new``, which replaced ``old`` (None for a grant new to the pool)."""
        if not new.spendable:
            self.forget(new.id)
            return
        standing = self._keys.get(new.id)
        if standing is not None and old is not None and burn_fields(old) == burn_fields(new):
            return  # a debit changed what it holds, not its place
        key = burn_key(new, self.order)
        self._keys[new.id] = key
        heappush(self._heap, key)

    def forget(self, grant_id: str) -> None:
        if self._keys.pop(grant_id, None) is not None:
            self._compact()

    def first(self) -> str | None:
        """The id of the first grant to burn, or None when none is spendable."""
        heap, keys = self._heap, self._keys
        while heap:
            key = heap[0]
            grant_id = cast(str, key[-1])  # burn_key ends with the id
            if keys.get(grant_id) is key:
                return grant_id
            heappop(heap)
        return None

    def set_aside(self) -> None:
        """Pass over the first grant for this debit: it is not spendable at this instant (not
        yet effective, or past its expiry before the pool was settled)."""
        self._aside.append(heappop(self._heap))

    def restore(self) -> None:
        """Put back what the debit passed over."""
        for key in self._aside:
            heappush(self._heap, key)
        self._aside.clear()

    def _compact(self) -> None:
        if not self._aside and len(self._heap) > 2 * len(self._keys) + _SLACK:
            self._heap = list(self._keys.values())
            heapify(self._heap)


Due = tuple[datetime, int, str]
"""(instant, step, grant id): the grant enters the ledger (``ENTERS``) when ``instant`` (its
``effective_at``) has come, or leaves it (``LEAVES``) at ``instant`` (its ``expires_at``)."""

LEAVES = 0  # at one instant, blocks that end leave before blocks that begin enter
ENTERS = 1


class DueQueue:
    """Every instant at which a grant of the pool enters or leaves the ledger by itself."""

    __slots__ = ("_heap",)

    def __init__(self, grants: Iterable[Grant]) -> None:
        self._heap = [item for grant in grants for item in _pending(grant)]
        heapify(self._heap)

    def update(self, old: Grant | None, new: Grant) -> None:
        """Follow ``new``, which replaced ``old`` (None for a grant new to the pool)."""
        if (
            old is not None
            and old.effective_at == new.effective_at
            and old.expires_at == new.expires_at
            and (new.credited or not old.credited)
            and (new.expired or not old.expired)
            and (new.voided_at is not None or old.voided_at is None)
        ):
            return  # nothing it is due for is new: its items in the heap still stand
        for item in _pending(new):
            heappush(self._heap, item)

    def due(self, now: datetime, grants: Mapping[str, Grant]) -> list[Due]:
        """Take out every item due by ``now`` that still stands for its grant in ``grants``."""
        heap, found = self._heap, []
        while heap and heap[0][0] <= now:
            item = heappop(heap)
            grant = grants.get(item[2])
            if grant is not None and stands(grant, item):
                found.append(item)
        return found

    def first(self, grants: Mapping[str, Grant]) -> Due | None:
        """The earliest item that still stands (stale ones are dropped on the way)."""
        heap = self._heap
        while heap:
            item = heap[0]
            grant = grants.get(item[2])
            if grant is not None and stands(grant, item):
                return item
            heappop(heap)
        return None

    def compact(self, grants: Mapping[str, Grant]) -> None:
        if len(self._heap) > 2 * len(grants) + _SLACK:
            self._heap = [item for grant in grants.values() for item in _pending(grant)]
            heapify(self._heap)


def _pending(grant: Grant) -> list[Due]:
    if grant.voided_at is not None or grant.expired:
        return []
    items: list[Due] = []
    if not grant.credited:
        items.append((grant.effective_at, ENTERS, grant.id))
    if grant.expires_at is not None:
        items.append((grant.expires_at, LEAVES, grant.id))
    return items


def stands(grant: Grant, item: Due) -> bool:
    """Whether ``item`` is still due for ``grant`` as it is now."""
    instant, step, _ = item
    if grant.voided_at is not None or grant.expired:
        return False
    if step == ENTERS:
        return not grant.credited and grant.effective_at == instant
    return grant.expires_at == instant
