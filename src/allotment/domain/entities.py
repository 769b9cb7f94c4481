"""A customer's tree of entities: departments, teams, seats, agents.

Usage and credit debits reported for an entity count for it, for every ancestor and for the
customer; budgets (per entity and feature or currency) build on this tree.

The rules here read only what a write touches: the entity's new ancestors (at most
``MAX_ENTITY_DEPTH`` of them) and, for an entity that already has children, the height of its
subtree. No rule reads the whole tree.
"""

from __future__ import annotations

from collections.abc import Sequence
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


def check_placement(entity: Entity, ancestors: Sequence[Entity], height: int) -> None:
    """Refuse an unknown parent, a cycle, or a tree deeper than MAX_ENTITY_DEPTH.

    ``ancestors`` are the stored chain from ``entity.parent`` up to its root, nearest first
    (empty for a root entity, or when the parent does not exist); ``height`` is the number of
    levels in the entity's stored subtree, itself included (1 for a new entity or a leaf).
    """
    if entity.parent is None:
        return
    chain = [entity.id]
    for ancestor in ancestors:
        chain.append(ancestor.id)
        if ancestor.id == entity.id:
            raise InvalidRequest(
                f"entity parents form a cycle: {' -> '.join(chain)}.", {"field": "parent"}
            )
    if entity.parent == entity.id:
        raise InvalidRequest(
            f"entity parents form a cycle: {entity.id} -> {entity.id}.", {"field": "parent"}
        )
    if not ancestors:
        raise InvalidRequest(
            f"parent: the customer has no entity {entity.parent!r}.", {"field": "parent"}
        )
    depth = 1 + len(ancestors) + height - 1
    if depth > MAX_ENTITY_DEPTH:
        raise InvalidRequest(
            f"entity {entity.id!r} would sit in a chain of {depth} entities; at most "
            f"{MAX_ENTITY_DEPTH} are allowed.",
            {"field": "parent"},
        )


def check_removable(entity_id: str, children: Sequence[str]) -> None:
    if children:
        raise Conflict(
            f"entity {entity_id!r} has children ({', '.join(children)}); remove them first.",
            {"children": list(children)},
        )
