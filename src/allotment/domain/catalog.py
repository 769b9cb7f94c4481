"""The catalog: features, currencies, products, plans and add-ons, and the rules that keep it whole.

Everything here is immutable. A change to the catalog builds a new :class:`Catalog` through the
``with_*`` methods, which validate the change against the rest of the catalog first, so a
``Catalog`` value is always consistent and readers never re-validate it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, TypeVar

from allotment.domain.errors import Conflict, InvalidRequest
from allotment.domain.ids import require_client_id
from allotment.domain.periods import ResetPeriod
from allotment.domain.quantities import Micros, parse_quantity, to_json_number

_E = TypeVar("_E", bound=StrEnum)


class FeatureKind(StrEnum):
    """A feature is granted or not (boolean), has a value (numeric), or is counted (metered)."""

    BOOLEAN = "boolean"
    NUMERIC = "numeric"
    METERED = "metered"


class Enforcement(StrEnum):
    """A hard limit refuses what would pass it; a soft one only reports."""

    HARD = "hard"
    SOFT = "soft"


class AddonMode(StrEnum):
    """An add-on's spec adds to the plan's, times its quantity, or replaces it."""

    INCREMENT = "increment"
    OVERRIDE = "override"


class CreditCategory(StrEnum):
    """Credits paid for, or given away."""

    PAID = "paid"
    PROMOTIONAL = "promotional"


BURN_ORDER_KEYS = frozenset(
    {
        "priority",
        "expiry",
        "promotional_first",
        "paid_first",
        "created",
        "cheapest_first",
        "costliest_first",
    }
)
DEFAULT_BURN_ORDER = ("priority", "expiry", "promotional_first", "created")
BILLING_PERIODS = (ResetPeriod.MONTH, ResetPeriod.YEAR)
MAX_TRIAL_DAYS = 3650
MAX_PLAN_DEPTH = 16  # the longest chain of plans inheriting from one another


@dataclass(frozen=True, slots=True)
class Feature:
    id: str
    name: str
    kind: FeatureKind
    unit: str | None = None


@dataclass(frozen=True, slots=True)
class Currency:
    id: str
    name: str
    unit: str | None = None
    burn_order: tuple[str, ...] = DEFAULT_BURN_ORDER
    # ``credits.low`` fires when a pool's available credits fall below it; None: never.
    low_balance_threshold: Micros | None = None


@dataclass(frozen=True, slots=True)
class Product:
    id: str
    name: str


@dataclass(frozen=True, slots=True)
class CreditCost:
    currency: str
    per_unit: Micros


@dataclass(frozen=True, slots=True)
class BooleanSpec:
    """Access to a boolean feature: its presence grants it."""


@dataclass(frozen=True, slots=True)
class NumericSpec:
    value: Micros | None  # None: unlimited


@dataclass(frozen=True, slots=True)
class MeteredSpec:
    limit: Micros | None  # None: unlimited
    reset: ResetPeriod = ResetPeriod.MONTH
    enforcement: Enforcement = Enforcement.HARD
    credit_cost: CreditCost | None = None


Spec = BooleanSpec | NumericSpec | MeteredSpec
_SPEC_TYPES: dict[FeatureKind, type[Spec]] = {
    FeatureKind.BOOLEAN: BooleanSpec,
    FeatureKind.NUMERIC: NumericSpec,
    FeatureKind.METERED: MeteredSpec,
}


@dataclass(frozen=True, slots=True)
class AddonEntitlement:
    spec: Spec
    mode: AddonMode


@dataclass(frozen=True, slots=True)
class RecurringCredits:
    """Credits a plan or add-on grants at subscription start and at every period after it."""

    amount: Micros
    every: ResetPeriod
    category: CreditCategory
    cost_basis: Micros
    overdraft_limit: Micros | None  # 0: hard; None: soft without bound


@dataclass(frozen=True, slots=True)
class Plan:
    """One version of a plan: its own definition, and where it stands among the versions.

    ``parent_version`` is the version of the parent this one folded in when it was published:
    a version never changes afterwards, whatever happens to its parent."""

    id: str
    product: str
    name: str
    parent: str | None = None
    trial_days: int | None = None
    billing_period: ResetPeriod = ResetPeriod.MONTH
    entitlements: Mapping[str, Spec] = field(default_factory=dict)
    credits: Mapping[str, RecurringCredits] = field(default_factory=dict)
    version: int = 1
    parent_version: int | None = None
    published_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Addon:
    """One version of an add-on."""

    id: str
    product: str
    name: str
    entitlements: Mapping[str, AddonEntitlement] = field(default_factory=dict)
    credits: Mapping[str, RecurringCredits] = field(default_factory=dict)
    version: int = 1
    published_at: datetime | None = None


Versioned = TypeVar("Versioned", Plan, Addon)


def same_definition(a: Versioned, b: Versioned) -> bool:
    """Whether two versions define the same thing, wherever they stand among the versions.
    Both were parsed with defaults filled in, so this compares definitions after defaults; the
    order of entitlements and credits does not count."""
    unversioned = {"version": 1, "published_at": None}
    if isinstance(a, Plan):
        unversioned["parent_version"] = None
    return replace(a, **unversioned) == replace(b, **unversioned)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# Parsing specs: the shape of a spec depends on the kind of the feature it is for.

_SPEC_FIELDS = {
    FeatureKind.BOOLEAN: frozenset(),
    FeatureKind.NUMERIC: frozenset({"value"}),
    FeatureKind.METERED: frozenset({"limit", "reset", "enforcement", "credit_cost"}),
}


def parse_spec(feature: Feature, fields: Mapping[str, Any], where: str) -> Spec:
    """Build the spec for ``feature`` from decoded JSON ``fields``; ``where`` names it in errors."""
    allowed = _SPEC_FIELDS[feature.kind]
    unexpected = sorted(set(fields) - allowed)
    if unexpected:
        raise InvalidRequest(
            f"{where}: {', '.join(unexpected)} does not fit {feature.kind} feature {feature.id!r}"
            f" (allowed: {', '.join(sorted(allowed)) or 'nothing'}).",
            {"field": where, "feature": feature.id},
        )
    if feature.kind is FeatureKind.BOOLEAN:
        return BooleanSpec()
    if feature.kind is FeatureKind.NUMERIC:
        if "value" not in fields:
            raise InvalidRequest(f"{where}.value is required (a number, or null for unlimited).")
        return NumericSpec(value=optional_quantity(fields["value"], f"{where}.value"))
    if "limit" not in fields:
        raise InvalidRequest(f"{where}.limit is required (a number, or null for unlimited).")
    return MeteredSpec(
        limit=optional_quantity(fields["limit"], f"{where}.limit"),
        reset=parse_enum(ResetPeriod, fields.get("reset", ResetPeriod.MONTH), f"{where}.reset"),
        enforcement=parse_enum(
            Enforcement, fields.get("enforcement", Enforcement.HARD), f"{where}.enforcement"
        ),
        credit_cost=_credit_cost(fields.get("credit_cost"), f"{where}.credit_cost"),
    )


def spec_to_document(spec: Spec) -> dict[str, Any]:
    """The JSON form of a spec, as it was given (quantities as exact numbers)."""
    if isinstance(spec, BooleanSpec):
        return {}
    if isinstance(spec, NumericSpec):
        return {"value": optional_number(spec.value)}
    document: dict[str, Any] = {
        "limit": optional_number(spec.limit),
        "reset": spec.reset.value,
        "enforcement": spec.enforcement.value,
    }
    if spec.credit_cost is not None:
        document["credit_cost"] = {
            "currency": spec.credit_cost.currency,
            "per_unit": to_json_number(spec.credit_cost.per_unit),
        }
    return document


def parse_recurring_credits(fields: Mapping[str, Any], where: str) -> RecurringCredits:
    allowed = {"amount", "every", "category", "cost_basis", "overdraft_limit"}
    unexpected = sorted(set(fields) - allowed)
    if unexpected:
        raise InvalidRequest(f"{where}: unknown field {', '.join(unexpected)}.")
    if "amount" not in fields:
        raise InvalidRequest(f"{where}.amount is required.")
    every = parse_enum(ResetPeriod, fields.get("every", ResetPeriod.MONTH), f"{where}.every")
    if every is ResetPeriod.NEVER:
        raise InvalidRequest(f"{where}.every must be a period that recurs, not 'never'.")
    overdraft = fields.get("overdraft_limit", 0)
    return RecurringCredits(
        amount=parse_quantity(fields["amount"], f"{where}.amount"),
        every=every,
        category=parse_enum(CreditCategory, fields.get("category", "paid"), f"{where}.category"),
        cost_basis=parse_quantity(fields.get("cost_basis", 0), f"{where}.cost_basis"),
        overdraft_limit=optional_quantity(overdraft, f"{where}.overdraft_limit"),
    )


def recurring_credits_to_document(credits: RecurringCredits) -> dict[str, Any]:
    return {
        "amount": to_json_number(credits.amount),
        "every": credits.every.value,
        "category": credits.category.value,
        "cost_basis": to_json_number(credits.cost_basis),
        "overdraft_limit": optional_number(credits.overdraft_limit),
    }


def optional_quantity(value: Any, where: str) -> Micros | None:
    return None if value is None else parse_quantity(value, where)


def optional_number(micros: Micros | None) -> int | Decimal | None:
    return None if micros is None else to_json_number(micros)


def parse_enum(enum: type[_E], value: Any, where: str) -> _E:
    try:
        return enum(value)
    except ValueError:
        choices = ", ".join(repr(member.value) for member in enum)
        raise InvalidRequest(f"{where} must be one of {choices}.", {"field": where}) from None


def _credit_cost(value: Any, where: str) -> CreditCost | None:
    if value is None:
        return None
    if not isinstance(value, Mapping) or set(value) != {"currency", "per_unit"}:
        raise InvalidRequest(f"{where} must be {{'currency', 'per_unit'}}.", {"field": where})
    currency = value["currency"]
    if not isinstance(currency, str):
        raise InvalidRequest(f"{where}.currency must be a currency id.", {"field": where})
    return CreditCost(
        currency=require_client_id(currency, f"{where}.currency"),
        per_unit=parse_quantity(value["per_unit"], f"{where}.per_unit"),
    )


# --------------------------------------------------------------------------------------------
# The catalog as one consistent value.


def _empty() -> dict[str, Any]:
    return {}


@dataclass(frozen=True, slots=True)
class Catalog:
    """Every catalog object, validated together.

    Plans and add-ons are versioned: ``plans`` and ``addons`` hold the latest version of each (in
    creation order), ``plan_versions`` and ``addon_versions`` every version, oldest first (the
    version ``n`` at index ``n - 1``). ``inherited`` holds each plan version's entitlements with
    its parent chain folded in as it stood at publication: computed once, never again."""

    features: Mapping[str, Feature] = field(default_factory=_empty)
    currencies: Mapping[str, Currency] = field(default_factory=_empty)
    products: Mapping[str, Product] = field(default_factory=_empty)
    plans: Mapping[str, Plan] = field(default_factory=_empty)
    addons: Mapping[str, Addon] = field(default_factory=_empty)
    plan_versions: Mapping[str, tuple[Plan, ...]] = field(default_factory=_empty)
    addon_versions: Mapping[str, tuple[Addon, ...]] = field(default_factory=_empty)
    inherited: Mapping[tuple[str, int], Mapping[str, Spec]] = field(default_factory=dict)
    archived: frozenset[tuple[str, str]] = frozenset()  # ("plan" | "addon", id)

    # ------------------------------------------------------------------ reading versions

    def plan_entitlements(self, plan_id: str, version: int | None = None) -> Mapping[str, Spec]:
        """A plan version's entitlements, inheritance included (the latest without one, or when
        this catalog has not heard of that version yet: see :meth:`plan_for`)."""
        found = None if version is None else self.inherited.get((plan_id, version))
        if found is None:
            return self.inherited[(plan_id, self.plans[plan_id].version)]
        return found

    def plan_at(self, plan_id: str, version: int) -> Plan | None:
        versions = self.plan_versions.get(plan_id, ())
        return versions[version - 1] if 0 < version <= len(versions) else None

    def addon_at(self, addon_id: str, version: int) -> Addon | None:
        versions = self.addon_versions.get(addon_id, ())
        return versions[version - 1] if 0 < version <= len(versions) else None

    def plan_for(self, plan_id: str, version: int) -> Plan:
        """The version a subscription names, or the latest this catalog knows when it does not
        know that one yet: a process that reads a subscription another process put on a version
        it just published answers with the newest it has until it follows the publication (a
        few milliseconds), rather than fail."""
        return self.plan_at(plan_id, version) or self.plans[plan_id]

    def addon_for(self, addon_id: str, version: int) -> Addon | None:
        """The same for an add-on entry (None only for an add-on this catalog lacks)."""
        return self.addon_at(addon_id, version) or self.addons.get(addon_id)

    def is_archived(self, kind: str, object_id: str) -> bool:
        return (kind, object_id) in self.archived

    # ------------------------------------------------------------------ unversioned objects

    def with_feature(self, feature: Feature) -> Catalog:
        if feature.id in self.currencies:
            raise Conflict(
                f"{feature.id!r} is already a currency; features and currencies share ids.",
                {"id": feature.id},
            )
        current = self.features.get(feature.id)
        if current is not None and current.kind is not feature.kind:
            # Plans, add-ons, promotions and overrides hold specs shaped by the kind.
            raise Conflict(
                f"feature {feature.id!r} is {current.kind}; a feature's kind cannot change.",
                {"feature": feature.id},
            )
        return replace(self, features={**self.features, feature.id: feature})

    def with_currency(self, currency: Currency) -> Catalog:
        if currency.id in self.features:
            raise Conflict(
                f"{currency.id!r} is already a feature; features and currencies share ids.",
                {"id": currency.id},
            )
        return replace(self, currencies={**self.currencies, currency.id: currency})

    def with_product(self, product: Product) -> Catalog:
        return replace(self, products={**self.products, product.id: product})

    # ------------------------------------------------------------------ publishing versions

    def with_plan(self, plan: Plan, at: datetime | None = None) -> Catalog:
        """The catalog with ``plan``'s definition published (see :meth:`publish_plans`)."""
        return self.publish_plans([plan], at)[0]

    def with_addon(self, addon: Addon, at: datetime | None = None) -> Catalog:
        return self.publish_addon(addon, at)[0]

    def publish_plans(
        self, definitions: Sequence[Plan], at: datetime | None
    ) -> tuple[Catalog, list[Plan]]:
        """Publish each definition that differs from its plan's latest version, and a new
        version of every plan below one (its own definition unchanged), so that children follow
        their parent for new subscribers. Each affected plan gets exactly one new version,
        parents before children; a definition equal to the latest publishes nothing.

        Returns the catalog and the versions published, in that order. A plan named here that
        publishes is active again; one republished for its parent keeps its status."""
        proposed = dict(self.plans)
        changed: list[str] = []
        for plan in definitions:
            latest = self.plans.get(plan.id)
            if latest is not None and same_definition(latest, plan):
                continue
            if latest is not None:
                _require_same_product("plan", latest.product, plan)
            proposed[plan.id] = plan
            changed.append(plan.id)
        if not changed:
            return self, []
        staged = replace(self, plans=proposed)
        for plan_id in _parents_first(proposed, changed):
            staged._check_plan(proposed[plan_id])
        children = _children_of(proposed)
        affected = _parents_first(proposed, _with_descendants(children, changed))
        plans, versions, inherited = dict(proposed), dict(self.plan_versions), dict(self.inherited)
        published: list[Plan] = []
        for plan_id in affected:
            definition = proposed[plan_id]
            parent = definition.parent
            plan = replace(
                definition,
                version=len(versions.get(plan_id, ())) + 1,
                parent_version=None if parent is None else plans[parent].version,
                published_at=at,
            )
            plans[plan_id] = plan
            versions[plan_id] = (*versions.get(plan_id, ()), plan)
            inherited[(plan_id, plan.version)] = _folded(plan, inherited)
            published.append(plan)
        archived = self.archived - {("plan", plan_id) for plan_id in changed}
        catalog = replace(
            self, plans=plans, plan_versions=versions, inherited=inherited, archived=archived
        )
        return catalog, published

    def publish_addon(self, addon: Addon, at: datetime | None) -> tuple[Catalog, Addon | None]:
        """Publish ``addon``'s definition as a new version unless it equals the latest; the
        version published, if any. An add-on that publishes is active again."""
        latest = self.addons.get(addon.id)
        if latest is not None and same_definition(latest, addon):
            return self, None
        if latest is not None:
            _require_same_product("add-on", latest.product, addon)
        self._check_product(addon.product, f"add-on {addon.id!r}")
        for feature_id, entitlement in addon.entitlements.items():
            self._check_spec(feature_id, entitlement.spec, f"add-on {addon.id!r}")
        self._check_currencies(addon.credits, f"add-on {addon.id!r}")
        history = self.addon_versions.get(addon.id, ())
        published = replace(addon, version=len(history) + 1, published_at=at)
        catalog = replace(
            self,
            addons={**self.addons, addon.id: published},
            addon_versions={**self.addon_versions, addon.id: (*history, published)},
            archived=self.archived - {("addon", addon.id)},
        )
        return catalog, published

    def with_archived(self, kind: str, object_id: str, archived: bool) -> Catalog:
        key = (kind, object_id)
        return replace(self, archived=self.archived | {key} if archived else self.archived - {key})

    # ------------------------------------------------------------------ installing stored versions

    def with_plan_histories(
        self, histories: Mapping[str, tuple[Plan, ...]], archived: Iterable[str] = ()
    ) -> Catalog:
        """Install stored plans, every version as it was published (nothing is validated or
        published again): at load, and when another process published them."""
        plans = {**self.plans, **{plan_id: h[-1] for plan_id, h in histories.items()}}
        versions = {**self.plan_versions, **histories}
        inherited = dict(self.inherited)
        for history in histories.values():
            for plan in history:
                inherited.pop((plan.id, plan.version), None)

        def fold(plan: Plan) -> Mapping[str, Spec]:
            key = (plan.id, plan.version)
            if key not in inherited:
                if plan.parent is not None and plan.parent_version is not None:
                    fold(versions[plan.parent][plan.parent_version - 1])
                inherited[key] = _folded(plan, inherited)
            return inherited[key]

        for history in histories.values():
            for plan in history:
                fold(plan)
        kept = {key for key in self.archived if not (key[0] == "plan" and key[1] in histories)}
        return replace(
            self,
            plans=plans,
            plan_versions=versions,
            inherited=inherited,
            archived=frozenset(kept | {("plan", plan_id) for plan_id in archived}),
        )

    def with_addon_history(
        self, addon_id: str, history: tuple[Addon, ...], archived: bool
    ) -> Catalog:
        catalog = replace(
            self,
            addons={**self.addons, addon_id: history[-1]},
            addon_versions={**self.addon_versions, addon_id: history},
        )
        return catalog.with_archived("addon", addon_id, archived)

    # ------------------------------------------------------------------ validation

    def feature_for(self, feature_id: str, where: str) -> Feature:
        """The feature a request body names, or a 400 that names it."""
        feature = self.features.get(feature_id)
        if feature is None:
            raise InvalidRequest(f"{where} names unknown feature {feature_id!r}.", {"field": where})
        return feature

    def _check_plan(self, plan: Plan) -> None:
        """Refuse ``plan`` (already among ``self.plans``) when it does not fit the rest."""
        self._check_product(plan.product, f"plan {plan.id!r}")
        if plan.parent is not None:
            parent = self.plans.get(plan.parent)
            if parent is None:
                raise InvalidRequest(
                    f"plan {plan.id!r} names unknown parent plan {plan.parent!r}.",
                    {"field": "parent"},
                )
            if parent.product != plan.product:
                raise InvalidRequest(
                    f"plan {plan.id!r} is in product {plan.product!r} but its parent "
                    f"{parent.id!r} is in product {parent.product!r}.",
                    {"field": "parent"},
                )
        for feature_id, spec in plan.entitlements.items():
            self._check_spec(feature_id, spec, f"plan {plan.id!r}")
        self._check_currencies(plan.credits, f"plan {plan.id!r}")
        children = _children_of(self.plans)
        _check_chain(self.plans, plan.id, children)
        for child in children.get(plan.id, []):
            if self.plans[child].product != plan.product:
                raise InvalidRequest(
                    f"plan {plan.id!r} cannot move to product {plan.product!r}: its child plan "
                    f"{child!r} is in product {self.plans[child].product!r}.",
                    {"field": "product"},
                )

    def _check_product(self, product_id: str, owner: str) -> None:
        if product_id not in self.products:
            raise InvalidRequest(
                f"{owner} names unknown product {product_id!r}.", {"field": "product"}
            )

    def _check_spec(self, feature_id: str, spec: Spec, owner: str) -> None:
        feature = self.feature_for(feature_id, f"{owner} entitlements.{feature_id}")
        if not isinstance(spec, _SPEC_TYPES[feature.kind]):
            raise InvalidRequest(
                f"{owner} gives {feature.kind} feature {feature_id!r} a spec of another kind.",
                {"feature": feature_id},
            )
        self._check_credit_cost(spec, owner)

    def _check_credit_cost(self, spec: Spec, owner: str) -> None:
        if isinstance(spec, MeteredSpec) and spec.credit_cost is not None:
            currency = spec.credit_cost.currency
            if currency not in self.currencies:
                raise InvalidRequest(
                    f"{owner} prices usage in unknown currency {currency!r}.",
                    {"field": "credit_cost"},
                )

    def _check_currencies(self, credits: Mapping[str, RecurringCredits], owner: str) -> None:
        for currency in credits:
            if currency not in self.currencies:
                raise InvalidRequest(
                    f"{owner} grants unknown currency {currency!r}.", {"field": "credits"}
                )


def _require_same_product(label: str, product: str, changed: Plan | Addon) -> None:
    """A plan or add-on stays in its product: subscriptions to it belong to that product (one
    paid subscription per product), and a version in another would move them out of it."""
    if changed.product != product:
        raise Conflict(
            f"{label} {changed.id!r} is in product {product!r}; its product cannot change"
            " (make a new one in the other product instead).",
            {"id": changed.id, "product": product},
        )


def _folded(plan: Plan, inherited: Mapping[tuple[str, int], Mapping[str, Spec]]) -> dict[str, Spec]:
    """The version's own entitlements over those of the parent version it names."""
    if plan.parent is None or plan.parent_version is None:
        return dict(plan.entitlements)
    return {**inherited[(plan.parent, plan.parent_version)], **plan.entitlements}


def _children_of(plans: Mapping[str, Plan]) -> dict[str, list[str]]:
    children: dict[str, list[str]] = {}
    for plan in plans.values():
        if plan.parent is not None:
            children.setdefault(plan.parent, []).append(plan.id)
    return children


def _with_descendants(children: Mapping[str, list[str]], roots: Iterable[str]) -> list[str]:
    found: dict[str, None] = {}
    pending = list(roots)
    while pending:
        plan_id = pending.pop()
        if plan_id not in found:
            found[plan_id] = None
            pending.extend(children.get(plan_id, []))
    return list(found)


def plan_depth(plans: Mapping[str, Plan], plan_id: str) -> int:
    """How many plans the chain from ``plan_id`` up through its parents holds (those in
    ``plans``); a parent cycle is refused, since it makes the chain endless."""
    seen = [plan_id]
    parent = plans[plan_id].parent
    while parent is not None and parent in plans:
        if parent in seen:
            cycle = " -> ".join([*seen, parent])
            raise InvalidRequest(f"plan parents form a cycle: {cycle}.", {"field": "parent"})
        seen.append(parent)
        parent = plans[parent].parent
    return len(seen)


def _parents_first(plans: Mapping[str, Plan], chosen: Iterable[str]) -> list[str]:
    """``chosen`` ordered so that a plan comes after every ancestor among them."""
    return sorted(chosen, key=lambda plan_id: plan_depth(plans, plan_id))


def _subtree(children: Mapping[str, list[str]], root: str) -> list[list[str]]:
    """The plans under ``root`` (itself included), level by level."""
    levels = [[root]]
    while True:
        below = [child for plan_id in levels[-1] for child in children.get(plan_id, [])]
        if not below:
            return levels
        levels.append(below)


def _check_chain(plans: Mapping[str, Plan], start: str, children: Mapping[str, list[str]]) -> None:
    """Refuse a parent cycle through ``start`` or a chain longer than MAX_PLAN_DEPTH."""
    seen = [start]
    parent = plans[start].parent
    while parent is not None:
        if parent in seen:
            chain = " -> ".join([*seen, parent])
            raise InvalidRequest(f"plan parents form a cycle: {chain}.", {"field": "parent"})
        seen.append(parent)
        parent = plans[parent].parent if parent in plans else None
    depth = len(seen) + len(_subtree(children, start)) - 1
    if depth > MAX_PLAN_DEPTH:
        raise InvalidRequest(
            f"plan {start!r} would sit in a chain of {depth} plans; at most {MAX_PLAN_DEPTH} "
            "plans may inherit from one another.",
            {"field": "parent"},
        )


def parse_burn_order(keys: list[str] | None) -> tuple[str, ...]:
    if keys is None:
        return DEFAULT_BURN_ORDER
    unknown = [key for key in keys if key not in BURN_ORDER_KEYS]
    if unknown:
        raise InvalidRequest(
            f"burn_order has unknown keys {', '.join(map(repr, unknown))}; "
            f"known keys: {', '.join(sorted(BURN_ORDER_KEYS))}.",
            {"field": "burn_order"},
        )
    if len(set(keys)) != len(keys):
        raise InvalidRequest("burn_order names a key twice.", {"field": "burn_order"})
    return tuple(keys)


def parse_trial_days(value: int | None, where: str = "trial_days") -> int | None:
    if value is not None and not 0 < value <= MAX_TRIAL_DAYS:
        raise InvalidRequest(f"{where} must be between 1 and {MAX_TRIAL_DAYS}.", {"field": where})
    return value


def parse_billing_period(value: str) -> ResetPeriod:
    period = parse_enum(ResetPeriod, value, "billing_period")
    if period not in BILLING_PERIODS:
        raise InvalidRequest(
            "billing_period must be 'month' or 'year'.", {"field": "billing_period"}
        )
    return period
