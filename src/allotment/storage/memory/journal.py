"""The undo journal that makes each job of the memory adapter its own transaction.

Every write a job makes to the database's dicts and lists goes through the journal, which
remembers what it replaced. A job that raises is rolled back by undoing those writes in reverse;
a job that returns commits by forgetting them. Nothing is copied but what a job touches.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any, Final, TypeVar

K = TypeVar("K")
V = TypeVar("V")

_ABSENT: Final = object()
_APPENDED: Final = object()


class Journal:
    __slots__ = ("_undo",)

    def __init__(self) -> None:
        # (container, key, what it held before): _ABSENT for a key the write added,
        # _APPENDED for an item appended to a list.
        self._undo: list[tuple[Any, Any, object]] = []

    def put(self, table: MutableMapping[K, V], key: K, value: V) -> None:
        self._undo.append((table, key, table.get(key, _ABSENT)))
        table[key] = value

    def delete(self, table: MutableMapping[K, V], key: K) -> bool:
        """Remove ``key``; False when it was not there."""
        if key not in table:
            return False
        self._undo.append((table, key, table[key]))
        del table[key]
        return True

    def append(self, items: list[V], item: V) -> None:
        self._undo.append((items, None, _APPENDED))
        items.append(item)

    def child(self, table: MutableMapping[K, Any], key: K, empty: type[V]) -> V:
        """``table[key]``, made an empty ``empty()`` first when absent."""
        if key in table:
            found: V = table[key]
            return found
        made = empty()
        self.put(table, key, made)
        return made

    def rollback(self) -> None:
        """Undo every write since the last commit, newest first."""
        undo = self._undo
        while undo:
            container, key, previous = undo.pop()
            if previous is _APPENDED:
                container.pop()
            elif previous is _ABSENT:
                del container[key]
            else:
                container[key] = previous

    def commit(self) -> None:
        self._undo.clear()

    def __len__(self) -> int:
        return len(self._undo)
