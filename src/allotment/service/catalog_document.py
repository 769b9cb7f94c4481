"""The catalog as one document: ``GET /v1/catalog`` reads it, ``PUT /v1/catalog`` applies one.

A document names objects by kind and id, each with the definition its own ``PUT`` takes. It is
applied in one job, so in one transaction: every object is validated against the catalog as the
objects before it left it (features, currencies and products first, then plans, parents first,
then add-ons), and if any is refused nothing is written and the answer lists every problem.
Otherwise each object is created, changed (a plan or add-on by publishing its next version; a
plan's publication republishes every plan below it) or left as it is, and the answer says which,
with the fields that changed. A dry run does all of it but the writing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from allotment.domain import documents
from allotment.domain.catalog import Addon, Catalog, Plan, plan_depth
from allotment.domain.changes import CatalogChanged
from allotment.domain.errors import AllotmentError, InvalidRequest
from allotment.service.catalog import (
    DEFINITIONS,
    CatalogKind,
    history_change,
    objects,
    publish_plans,
    staged_object,
    store_changes,
    stored_definition,
)
from allotment.service.catalog_views import (
    CatalogApplied,
    CatalogChange,
    CatalogDocument,
    ChangeAction,
    FieldDiff,
)
from allotment.service.ports import UnitOfWork
from allotment.service.runtime import Runtime

Definitions = Mapping[CatalogKind, Mapping[str, Mapping[str, Any]]]
"""A document's objects: kind → id → definition (a ``PUT`` body as plain values)."""

UNVERSIONED = (CatalogKind.FEATURE, CatalogKind.CURRENCY, CatalogKind.PRODUCT)


@dataclass(frozen=True, slots=True)
class Problem:
    """Why one object of a document was refused."""

    kind: str
    id: str
    message: str


def catalog_document(catalog: Catalog) -> CatalogDocument:
    """The latest version of every object as its definition: what ``apply`` takes back."""
    sections = {
        kind: {i: DEFINITIONS[kind](found) for i, found in objects(catalog, kind).items()}
        for kind in CatalogKind
    }
    return CatalogDocument(
        features=sections[CatalogKind.FEATURE],
        currencies=sections[CatalogKind.CURRENCY],
        products=sections[CatalogKind.PRODUCT],
        plans=sections[CatalogKind.PLAN],
        addons=sections[CatalogKind.ADDON],
    )


def field_diff(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> dict[str, FieldDiff]:
    """Every field of ``new`` that differs from ``old``, by dotted path: into nested objects
    (``entitlements.seats.value``), whole for anything else (a list, a spec added or
    removed: ``entitlements.sso`` with ``null`` on the side that lacks it)."""
    found: dict[str, FieldDiff] = {}

    def walk(before: Mapping[str, Any], after: Mapping[str, Any], prefix: str) -> None:
        for name in dict.fromkeys([*before, *after]):
            path = f"{prefix}{name}"
            was, now = before.get(name), after.get(name)
            if isinstance(was, Mapping) and isinstance(now, Mapping) and name in before:
                walk(was, now, f"{path}.")
            elif name not in before or name not in after or was != now:
                found[path] = FieldDiff(was, now)

    walk(old or {}, new, "")
    return found


def _version(catalog: Catalog, kind: CatalogKind, object_id: str) -> int | None:
    if kind is CatalogKind.PLAN:
        return catalog.plans[object_id].version
    if kind is CatalogKind.ADDON:
        return catalog.addons[object_id].version
    return None


@dataclass(slots=True)
class _Application:
    """One document applied to a catalog: what it becomes, what to store, what to answer."""

    before: Catalog
    at: datetime
    staged: Catalog
    problems: list[Problem]
    stored: list[CatalogChanged]
    answer: list[CatalogChange]

    def add_plain(self, kind: CatalogKind, object_id: str, definition: Mapping[str, Any]) -> None:
        try:
            staged, changes = staged_object(self.staged, kind, object_id, definition, self.at)
        except AllotmentError as error:
            self.problems.append(Problem(kind.value, object_id, error.message))
            return
        self.staged = staged
        action = self._report(kind, object_id)
        if action != "unchanged":
            self.stored += changes

    def add_plans(self, definitions: Mapping[str, Mapping[str, Any]]) -> None:
        parsed: dict[str, Plan] = {}
        for plan_id, definition in definitions.items():
            try:
                parsed[plan_id] = documents.plan_from_document(plan_id, definition, self.staged)
            except AllotmentError as error:
                self.problems.append(Problem("plan", plan_id, error.message))
        proposed = {**self.staged.plans, **parsed}
        depths: dict[str, int] = {}
        for plan_id in parsed:
            try:
                depths[plan_id] = plan_depth(proposed, plan_id)
            except AllotmentError as error:
                self.problems.append(Problem("plan", plan_id, error.message))
        # Each plan alone, parents first, so that every refusal is named, not just the first.
        trial = self.staged
        for plan_id in sorted(depths, key=depths.__getitem__):
            try:
                trial, _ = trial.publish_plans([parsed[plan_id]], self.at)
            except AllotmentError as error:
                self.problems.append(Problem("plan", plan_id, error.message))
        if self.problems:
            return
        staged, changes = publish_plans(self.staged, list(parsed.values()), self.at)
        self.staged = staged
        self.stored += changes
        republished = [change.object_id for change in changes]
        for plan_id in dict.fromkeys([*parsed, *republished]):
            self._report(CatalogKind.PLAN, plan_id)

    def add_addon(self, addon_id: str, definition: Mapping[str, Any]) -> None:
        try:
            addon: Addon = documents.addon_from_document(addon_id, definition, self.staged)
            staged, published = self.staged.publish_addon(addon, self.at)
        except AllotmentError as error:
            self.problems.append(Problem("addon", addon_id, error.message))
            return
        self.staged = staged
        if published is not None:
            self.stored.append(history_change(staged, "addon", addon_id))
        self._report(CatalogKind.ADDON, addon_id)

    def _report(self, kind: CatalogKind, object_id: str) -> ChangeAction:
        old = stored_definition(self.before, kind, object_id)
        new = stored_definition(self.staged, kind, object_id)
        assert new is not None  # it was just staged
        diff = field_diff(old, new) if old is not None else {}
        version = _version(self.staged, kind, object_id)
        republished = (
            version is not None
            and old is not None
            and version != _version(self.before, kind, object_id)
        )
        action: ChangeAction = (
            "create" if old is None else "update" if diff or republished else "unchanged"
        )
        self.answer.append(
            CatalogChange(
                kind=cast(Any, kind.value),
                id=object_id,
                action=action,
                **({} if version is None else {"version": version}),
                fields=list(diff),
                diff=diff,
            )
        )
        return action


class CatalogDocumentService:
    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    def document(self) -> CatalogDocument:
        return catalog_document(self._runtime.catalog.current)

    async def apply(
        self, definitions: Definitions, *, dry_run: bool, refused: Sequence[Problem] = ()
    ) -> CatalogApplied:
        """Apply a document in one transaction (nothing, with ``dry_run``). ``refused`` are
        objects the caller could not even decode; with them, or with any object the catalog
        refuses, the answer is a 400 that lists every problem, and nothing changes."""
        runtime = self._runtime

        def job(uow: UnitOfWork) -> CatalogApplied:
            before = runtime.catalog_in(uow)
            now = runtime.clock.now()
            applied = _Application(before, now, before, list(refused), [], [])
            for kind in UNVERSIONED:
                for object_id, definition in definitions.get(kind, {}).items():
                    applied.add_plain(kind, object_id, definition)
            applied.add_plans(definitions.get(CatalogKind.PLAN, {}))
            for addon_id, definition in definitions.get(CatalogKind.ADDON, {}).items():
                applied.add_addon(addon_id, definition)
            if applied.problems:
                count = len(applied.problems)
                raise InvalidRequest(
                    f"the catalog document has {count} problem{'s' if count > 1 else ''};"
                    " nothing was changed.",
                    {"problems": [_problem(p) for p in applied.problems]},
                )
            if not dry_run and applied.stored:
                store_changes(runtime, uow, before, applied.staged, applied.stored, now)
            return CatalogApplied(dry_run=dry_run, changes=applied.answer)

        return await runtime.run(job)


def _problem(problem: Problem) -> dict[str, str]:
    return {"kind": problem.kind, "id": problem.id, "message": problem.message}
