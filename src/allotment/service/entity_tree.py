"""The part of a customer's entity tree that requests have read, kept in its snapshot.

A snapshot does not hold the customer's whole tree: a customer may have ten thousand agents,
and a request names one of them. A request for an entity reads its path (the entity and its
ancestors, at most ``MAX_ENTITY_DEPTH`` rows) and the budgets on it from the store, and the
projector installs those nodes (``TreeLoaded``). Later requests along any part of that path
are answered from memory. A write to an entity or its budgets drops that one node, and the
paths computed from the nodes (which a move changes for a whole subtree) are computed again,
each when next read: the cost of a request stays the depth of its path.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from allotment.domain.budgets import Budget, BudgetKind, EntityPath, Standing, pick_on_path
from allotment.domain.entities import MAX_ENTITY_DEPTH, Entity
from allotment.domain.quantities import Micros
from allotment.service.answers import BudgetFigures, PeriodView

# Entities known not to exist, kept per customer so that checks naming them do not each go to
# the store; bounded, since the names come from requests.
MAX_ABSENT_ENTITIES = 1_000

BudgetWindowKey = tuple[str, BudgetKind, str, int, int | None]
"""(entity, kind, target, window start, window end) with instants in epoch microseconds."""


def budget_window_key(budget: Budget, window: PeriodView) -> BudgetWindowKey:
    return (budget.entity, budget.kind, budget.target, window.start_micros, window.end_micros)


class NotLoaded(enum.Enum):
    """A node of the path is not in memory: the store must be asked."""

    NOT_LOADED = enum.auto()


NOT_LOADED = NotLoaded.NOT_LOADED


@dataclass(slots=True)
class BudgetSlot:
    """A budget as checks read it from one snapshot: its current window and the figures of
    the last check, reused while neither the window nor the usage has changed."""

    budget: Budget
    # Each attribute is replaced whole (never changed in part): threads may share a slot.
    window: tuple[PeriodView, BudgetWindowKey] | None = None
    last: tuple[Micros, Micros, BudgetWindowKey, BudgetFigures] | None = None

    def window_at(self, now: datetime) -> tuple[PeriodView, BudgetWindowKey]:
        current = self.window
        if current is None or not current[0].period.contains(now):
            view = PeriodView.of(self.budget.window(now))
            current = (view, budget_window_key(self.budget, view))
            self.window = current
        return current

    def figures(
        self, view: PeriodView, key: BudgetWindowKey, usage: Micros, held: Micros
    ) -> BudgetFigures:
        last = self.last
        if last is not None and last[0] == usage and last[1] == held and last[2] is key:
            return last[3]
        figures = BudgetFigures(Standing(self.budget, view.period, usage, held), view)
        self.last = (usage, held, key, figures)
        return figures


@dataclass(frozen=True, slots=True)
class EntityNode:
    """An entity as stored, with a slot for each of its own budgets: every path through the
    node, whatever feature or currency it is read for, shares the slots, so each budget's
    window is computed once while it lasts."""

    entity: Entity
    slots: tuple[BudgetSlot, ...]

    @property
    def budgets(self) -> tuple[Budget, ...]:
        return tuple(slot.budget for slot in self.slots)


def nodes_of(entities: Sequence[Entity], budgets: Iterable[Budget]) -> list[EntityNode]:
    """The nodes of a path read from the store: its entities and their budgets."""
    own: dict[str, list[BudgetSlot]] = {}
    for budget in budgets:
        own.setdefault(budget.entity, []).append(BudgetSlot(budget))
    return [EntityNode(entity, tuple(own.get(entity.id, ()))) for entity in entities]


def _budget_of(slot: BudgetSlot) -> Budget:
    return slot.budget


@dataclass(frozen=True, slots=True)
class PathBudgets:
    """Who a request for an entity counts for (the entity, then its ancestors) and the budgets
    along that path for its feature and currency, nearest first; with the nodes it was read
    from."""

    path: EntityPath
    slots: list[BudgetSlot]
    nodes: Sequence[EntityNode]

    @staticmethod
    def of(nodes: Sequence[EntityNode], feature: str | None, currency: str | None) -> PathBudgets:
        path = tuple(node.entity.id for node in nodes)
        if feature is None and currency is None:
            return PathBudgets(path, [], nodes)
        found = pick_on_path((node.slots for node in nodes), _budget_of, feature, currency)
        return PathBudgets(path, found, nodes)


@dataclass(frozen=True, slots=True)
class EntityAt:
    """An entity that exists, as one request sees it: its path, and the budgets along it for
    whichever feature and currency the request turns out to consume."""

    located: PathBudgets  # read for no feature and no currency: the path and its nodes
    tree: EntityTree | None = None  # the snapshot's, when the nodes came from it
    # Read from the store: hands each path computed to the projector, to keep beside the nodes.
    keep: Callable[[str | None, str | None, PathBudgets], None] | None = None

    @property
    def path(self) -> EntityPath:
        return self.located.path

    def budgets(self, feature: str | None, currency: str | None) -> PathBudgets:
        if self.tree is not None:
            # The snapshot's paths are computed once, each with the nodes' own slots.
            found = self.tree.lookup(self.located.path[0], feature, currency)
            if isinstance(found, PathBudgets):
                return found
        # Read from the store, or a write on the store's thread dropped a node since (a check
        # on the event loop): the nodes as they were read answer consistently.
        found = PathBudgets.of(self.located.nodes, feature, currency)
        if self.keep is not None:
            self.keep(feature, currency, found)
        return found


def located_in(tree: EntityTree, entity: str) -> EntityAt | NotLoaded | None:
    """The entity as the snapshot's tree holds it; None when it is known not to exist."""
    found = tree.lookup(entity, None, None)
    if found is None or isinstance(found, NotLoaded):
        return found
    return EntityAt(found, tree)


class EntityTree:
    """The nodes of one customer's tree that requests have read, and what follows from them.

    Its nodes are written only by the projector, on the store's thread; checks on the event
    loop read them too, and add the paths they compute (derived, never truth). Every write is
    one atomic dictionary or set operation, and the paths computed from the nodes live in a
    dictionary that a write replaces whole: a reader takes that dictionary before it reads any
    node, so a path it computed from nodes a write has since changed lands in a dictionary
    nobody reads any more; and a walk during which a node was dropped is not used at all.
    """

    __slots__ = ("_absent", "_forgotten", "_nodes", "_paths")

    def __init__(self) -> None:
        self._nodes: dict[str, EntityNode] = {}
        self._absent: set[str] = set()
        self._paths: dict[tuple[str, str | None, str | None], PathBudgets] = {}
        # Nodes dropped so far: a walk that saw it move read nodes of two states.
        self._forgotten = 0

    def walk(self, entity: str) -> list[EntityNode] | NotLoaded | None:
        """The nodes from ``entity`` up to its root; None when it is known not to exist."""
        if entity in self._absent:
            return None
        nodes, forgotten = self._nodes, self._forgotten
        chain: list[EntityNode] = []
        current: str | None = entity
        while current is not None:
            node = nodes.get(current)
            if node is None or len(chain) == MAX_ENTITY_DEPTH:
                return NOT_LOADED
            chain.append(node)
            current = node.entity.parent
        if self._forgotten != forgotten:  # a write landed meanwhile (checks on the event loop)
            return NOT_LOADED
        return chain

    def lookup(
        self, entity: str, feature: str | None, currency: str | None
    ) -> PathBudgets | NotLoaded | None:
        """The entity's path and budgets; None when it is known not to exist."""
        paths = self._paths  # first: see the class's docstring
        key = (entity, feature, currency)
        found = paths.get(key)
        if found is not None:
            return found
        chain = self.walk(entity)
        if chain is None or isinstance(chain, NotLoaded):
            return chain
        found = PathBudgets.of(chain, feature, currency)
        paths[key] = found
        return found

    def __len__(self) -> int:
        return len(self._nodes)

    # Called by the projector only.

    def install(self, entity: str, nodes: Sequence[EntityNode]) -> None:
        """What the store held for ``entity``'s path (nothing: the entity does not exist)."""
        if not nodes:
            if len(self._absent) < MAX_ABSENT_ENTITIES:
                self._absent.add(entity)
            return
        for node in nodes:
            # A node already here is current (any change drops it first, in commit order):
            # it stays, with the slots and paths that share it.
            self._nodes.setdefault(node.entity.id, node)

    def keep(
        self, entity: str, feature: str | None, currency: str | None, found: PathBudgets
    ) -> None:
        """A path a job computed from the nodes it read, kept while they are the tree's: as it
        is when they are the same nodes, computed again from the tree's when they are equal
        ones (installed by an earlier fill, with their own slots)."""
        nodes = self._nodes
        kept = [nodes.get(node.entity.id) for node in found.nodes]
        if all(mine is node for mine, node in zip(kept, found.nodes, strict=True)):
            self._paths[(entity, feature, currency)] = found
        elif all(
            mine is not None and mine.entity == node.entity and mine.budgets == node.budgets
            for mine, node in zip(kept, found.nodes, strict=True)
        ):
            self.lookup(entity, feature, currency)

    def forget(self, entity: str) -> None:
        """The entity, its place or its budgets changed: its node goes, and every computed
        path with it (a move changes the paths of its whole subtree)."""
        self._nodes.pop(entity, None)
        self._forgotten += 1
        self._absent.discard(entity)
        self._paths = {}
