"""A customer's tree of entities: departments, teams, seats, agents.

Usage and credit debits reported for an entity count for it, for every ancestor and for the
customer; budgets (per entity and feature or currency) build on this tree.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from allotment.domain.errors import Conflict, InvalidRequest

MAX_ENTITY_DEPTH = 16  # the longest chain from a root entity down to a leaf


@dataclass(frozen=True, slots=True)
class Entity:
    id: str
    parent: str | None
    kind: str | None
    name: str | None
    created_at: datetime


def path_to_root(entities: Mapping[str, Entity], entity_id: str) -> list[str]:
    """``entity_id`` and its ancestors, nearest first."""
    path = [entity_id]
    parent = entities[entity_id].parent
    while parent is not None:
        path.append(parent)
        parent = entities[parent].parent
    return path


def children_of(entities: Mapping[str, Entity], entity_id: str) -> list[str]:
    return [e.id for e in entities.values() if e.parent == entity_id]


def check_placement(entities: Mapping[str, Entity], entity: Entity) -> None:
    """Refuse an unknown parent, a cycle, or a tree deeper than MAX_ENTITY_DEPTH."""
    if entity.parent is None:
        placed = {**entities, entity.id: entity}
    else:
        if entity.parent not in entities and entity.parent != entity.id:
            raise InvalidRequest(
                f"parent: the customer has no entity {entity.parent!r}.", {"field": "parent"}
            )
        placed = {**entities, entity.id: entity}
        seen = [entity.id]
        parent: str | None = entity.parent
        while parent is not None:
            if parent in seen:
                chain = " -> ".join([*seen, parent])
                raise InvalidRequest(f"entity parents form a cycle: {chain}.", {"field": "parent"})
            seen.append(parent)
            parent = placed[parent].parent
    depth = len(path_to_root(placed, entity.id)) + _height(placed, entity.id) - 1
    if depth > MAX_ENTITY_DEPTH:
        raise InvalidRequest(
            f"entity {entity.id!r} would sit in a chain of {depth} entities; at most "
            f"{MAX_ENTITY_DEPTH} are allowed.",
            {"field": "parent"},
        )


def check_removable(entities: Mapping[str, Entity], entity_id: str) -> None:
    children = children_of(entities, entity_id)
    if children:
        raise Conflict(
            f"entity {entity_id!r} has children ({', '.join(children)}); remove them first.",
            {"children": children},
        )


def _height(entities: Mapping[str, Entity], entity_id: str) -> int:
    """Levels in the subtree of ``entity_id``, itself included."""
    level, height = [entity_id], 0
    while level:
        height += 1
        level = [e.id for e in entities.values() if e.parent in level]
    return height
