"""The tree of entities under each customer: create, move, read and remove.

Each operation reads what it touches: the entity, its new ancestors when it moves, the height
of its subtree when it moves with children, its children's ids and its own budgets. None reads
the customer's whole tree.
"""

from __future__ import annotations

from allotment.domain.entities import Entity, check_placement, check_removable
from allotment.domain.errors import Conflict, NotFound
from allotment.domain.ids import require_client_id
from allotment.service.answers import BudgetFigures
from allotment.service.budgets import standings_in_job
from allotment.service.entity_tree import BudgetSlot
from allotment.service.entity_views import (
    DeletedEntity,
    EntityView,
    deleted_entity,
    entity_view,
)
from allotment.service.ports import UnitOfWork
from allotment.service.runtime import Runtime


class EntityService:
    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    async def put(
        self,
        customer_id: str,
        entity_id: str,
        *,
        parent: str | None,
        kind: str | None,
        name: str | None,
    ) -> tuple[EntityView, bool]:
        require_client_id(entity_id, "entity id")
        runtime = self._runtime

        def job(uow: UnitOfWork) -> tuple[EntityView, bool]:
            customer = uow.customers.get(customer_id)
            if customer is None:
                raise NotFound(f"no customer {customer_id!r}.", {"customer": customer_id})
            if customer.is_archived:
                raise Conflict(f"customer {customer_id!r} is archived.")
            existing = uow.entities.get(customer_id, entity_id)
            now = runtime.clock.now()
            entity = Entity(entity_id, parent, kind, name, existing.created_at if existing else now)
            if existing is None or existing.parent != parent:
                ancestors = [] if parent is None else uow.entities.path(customer_id, parent)
                height = 1 if existing is None else uow.entities.height(customer_id, entity_id)
                check_placement(entity, ancestors, height)
            uow.entities.save(customer_id, entity)
            runtime.entity_changed(uow, customer_id, entity_id)
            children = [] if existing is None else uow.entities.children(customer_id, entity_id)
            budgets = _budgets(runtime, uow, customer_id, entity_id)
            return entity_view(entity, children, budgets), existing is None

        return await runtime.run(job)

    async def get(self, customer_id: str, entity_id: str) -> EntityView:
        runtime = self._runtime

        def job(uow: UnitOfWork) -> EntityView:
            entity = _existing(uow, customer_id, entity_id)
            children = uow.entities.children(customer_id, entity_id)
            return entity_view(entity, children, _budgets(runtime, uow, customer_id, entity_id))

        return await runtime.run(job)

    async def delete(self, customer_id: str, entity_id: str) -> DeletedEntity:
        runtime = self._runtime

        def job(uow: UnitOfWork) -> DeletedEntity:
            entity = _existing(uow, customer_id, entity_id)
            check_removable(entity_id, uow.entities.children(customer_id, entity_id))
            budgets = _budgets(runtime, uow, customer_id, entity_id)
            uow.entities.delete(customer_id, entity_id)
            runtime.entity_changed(uow, customer_id, entity_id)
            return deleted_entity(entity, budgets)

        return await runtime.run(job)


def _existing(uow: UnitOfWork, customer_id: str, entity_id: str) -> Entity:
    """The entity; 404 for an unknown customer or entity."""
    if uow.customers.get(customer_id) is None:
        raise NotFound(f"no customer {customer_id!r}.", {"customer": customer_id})
    entity = uow.entities.get(customer_id, entity_id)
    if entity is None:
        raise NotFound(f"customer {customer_id!r} has no entity {entity_id!r}.")
    return entity


def _budgets(
    runtime: Runtime, uow: UnitOfWork, customer_id: str, entity_id: str
) -> list[BudgetFigures]:
    """The entity's own budgets with where each stands now."""
    own = uow.budgets.of_entities(customer_id, [entity_id])
    now = runtime.clock.now()
    holds = runtime.live_holds(uow, customer_id, now)
    return standings_in_job(uow, customer_id, [BudgetSlot(b) for b in own], holds, now)
