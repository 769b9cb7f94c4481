"""The entity tree a snapshot holds: only the paths requests have read, each exact.

Nodes come in a path at a time (what the store read for one entity), a write drops one node,
and every path computed from the nodes is computed again after any write (a move changes the
paths of a whole subtree). A path with a node missing is not guessed: the store is asked.
"""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from allotment.domain.budgets import Budget, BudgetKind, budgets_on_path
from allotment.domain.catalog import Enforcement
from allotment.domain.entities import MAX_ENTITY_DEPTH, Entity
from allotment.domain.periods import ResetPeriod
from allotment.service.entity_tree import (
    MAX_ABSENT_ENTITIES,
    NOT_LOADED,
    EntityAt,
    EntityNode,
    EntityTree,
    PathBudgets,
    located_in,
    nodes_of,
)

T0 = datetime(2026, 11, 24, 10, 30, tzinfo=UTC)


def node(entity_id: str, parent: str | None = None, *budgets: Budget) -> EntityNode:
    (found,) = nodes_of([Entity(entity_id, parent, None, None, T0)], budgets)
    return found


def budget(entity: str, target: str, kind: BudgetKind = BudgetKind.FEATURE) -> Budget:
    return Budget(entity, target, kind, 10, ResetPeriod.DAY, Enforcement.HARD, T0)


# dept ── team ── agent        ops ── bot
DEPT = node("dept", None, budget("dept", "calls"), budget("dept", "credits", BudgetKind.CURRENCY))
TEAM = node("team", "dept", budget("team", "calls"), budget("team", "tokens"))
AGENT = node("agent", "team", budget("agent", "credits", BudgetKind.CURRENCY))
OPS = node("ops")
BOT = node("bot", "ops")


def loaded(*paths: list[EntityNode]) -> EntityTree:
    tree = EntityTree()
    for path in paths:
        tree.install(path[0].entity.id, path)
    return tree


def test_a_path_is_the_entity_and_its_ancestors_nearest_first() -> None:
    tree = loaded([AGENT, TEAM, DEPT], [BOT, OPS])
    assert tree.walk("agent") == [AGENT, TEAM, DEPT]
    assert tree.walk("team") == [TEAM, DEPT]  # part of a path read for another entity
    assert tree.walk("bot") == [BOT, OPS]
    found = tree.lookup("agent", "calls", "credits")
    assert isinstance(found, PathBudgets)
    assert found.path == ("agent", "team", "dept")


def test_the_budgets_on_a_path_are_its_feature_and_currency_ones_nearest_first() -> None:
    tree = loaded([AGENT, TEAM, DEPT])
    found = tree.lookup("agent", "calls", "credits")
    assert isinstance(found, PathBudgets)
    assert [(s.budget.entity, s.budget.target) for s in found.slots] == [
        ("agent", "credits"),
        ("team", "calls"),
        ("dept", "calls"),
        ("dept", "credits"),
    ]
    tokens = tree.lookup("agent", "tokens", None)
    assert isinstance(tokens, PathBudgets)
    assert [(s.budget.entity, s.budget.target) for s in tokens.slots] == [("team", "tokens")]


def test_a_path_read_twice_is_the_same_object_so_its_slots_keep_their_windows() -> None:
    tree = loaded([AGENT, TEAM, DEPT])
    assert tree.lookup("agent", "calls", None) is tree.lookup("agent", "calls", None)
    at = located_in(tree, "agent")
    assert isinstance(at, EntityAt)
    assert at.budgets("calls", None) is tree.lookup("agent", "calls", None)
    assert at.path == ("agent", "team", "dept")


def test_an_entity_never_read_or_a_path_with_a_node_missing_is_not_loaded() -> None:
    tree = loaded([TEAM, DEPT])
    assert tree.walk("agent") is NOT_LOADED
    assert tree.lookup("agent", "calls", None) is NOT_LOADED
    tree = loaded([AGENT, TEAM, DEPT])
    tree.forget("team")
    assert tree.walk("agent") is NOT_LOADED
    assert tree.walk("dept") == [DEPT]


def test_an_entity_the_store_does_not_have_is_known_absent_until_it_is_written() -> None:
    tree = loaded()
    tree.install("ghost", [])
    assert tree.walk("ghost") is None
    assert tree.lookup("ghost", "calls", None) is None
    tree.forget("ghost")  # created since
    assert tree.walk("ghost") is NOT_LOADED


def test_absent_entities_are_remembered_up_to_a_bound() -> None:
    tree = loaded()
    for n in range(MAX_ABSENT_ENTITIES + 10):
        tree.install(f"ghost-{n}", [])
    assert tree.walk("ghost-0") is None
    assert tree.walk(f"ghost-{MAX_ABSENT_ENTITIES + 5}") is NOT_LOADED


def test_after_a_move_every_path_below_is_computed_again() -> None:
    tree = loaded([AGENT, TEAM, DEPT], [BOT, OPS])
    before = tree.lookup("agent", "calls", None)
    assert isinstance(before, PathBudgets)
    tree.forget("team")  # the team moved under ops
    tree.install("team", [node("team", "ops"), OPS])
    after = tree.lookup("agent", "calls", None)
    assert isinstance(after, PathBudgets)
    assert (before.path, after.path) == (("agent", "team", "dept"), ("agent", "team", "ops"))
    assert [s.budget.entity for s in after.slots] == []  # the team's budgets went with its node


def test_a_path_computed_while_a_write_lands_is_not_kept() -> None:
    """A reader takes the paths' dictionary before it reads nodes: what it computed from nodes
    a write changed meanwhile goes into a dictionary the write has already replaced."""
    tree = loaded([AGENT, TEAM, DEPT])
    stale_paths = tree._paths
    tree.forget("dept")
    stale_paths[("agent", "calls", None)] = PathBudgets(("agent", "team", "dept"), [], [])
    assert tree.lookup("agent", "calls", None) is NOT_LOADED


def test_a_chain_longer_than_a_tree_may_be_is_not_trusted() -> None:
    deepest = MAX_ENTITY_DEPTH  # e0 (a leaf) up to e16 (a root): one level too many
    chain = [node(f"e{n}", f"e{n + 1}" if n < deepest else None) for n in range(deepest + 1)]
    tree = loaded(chain)  # only a torn read could give this: the store refuses deeper trees
    assert tree.walk("e0") is NOT_LOADED
    assert tree.walk("e1") == chain[1:]


def test_every_path_through_a_node_shares_its_budgets_slots() -> None:
    """A budget's window is computed once per node, however many entities below it are read,
    and whether the path came from the snapshot or straight from the store."""
    tree = loaded([AGENT, TEAM, DEPT], [node("bot", "team"), TEAM, DEPT])
    agent, bot = tree.lookup("agent", "calls", None), tree.lookup("bot", "calls", None)
    assert isinstance(agent, PathBudgets)
    assert isinstance(bot, PathBudgets)
    assert agent.slots[0] is bot.slots[0] is TEAM.slots[0]
    from_store = EntityAt(PathBudgets.of([AGENT, TEAM, DEPT], None, None))
    assert from_store.budgets("calls", None).slots[0] is TEAM.slots[0]


def test_a_path_a_job_computed_is_kept_while_its_nodes_are_the_trees() -> None:
    tree = loaded([AGENT, TEAM, DEPT])
    computed = PathBudgets.of([AGENT, TEAM, DEPT], "calls", None)
    tree.keep("agent", "calls", None, computed)
    assert tree.lookup("agent", "calls", None) is computed
    # Read before the team changed: its team node is no longer the tree's.
    stale = PathBudgets.of([AGENT, node("team", "dept"), DEPT], "tokens", None)
    tree.keep("agent", "tokens", None, stale)
    assert tree.lookup("agent", "tokens", None) is not stale


def test_an_entity_read_from_the_store_hands_each_path_it_computes_to_keep() -> None:
    kept: list[tuple[str | None, str | None, PathBudgets]] = []
    at = EntityAt(
        PathBudgets.of([AGENT, TEAM, DEPT], None, None),
        keep=lambda f, c, found: kept.append((f, c, found)),
    )
    found = at.budgets("calls", "credits")
    assert kept == [("calls", "credits", found)]


def test_entity_at_without_a_tree_builds_its_budgets_from_its_nodes() -> None:
    at = EntityAt(PathBudgets.of([AGENT, TEAM, DEPT], None, None))
    assert at.path == ("agent", "team", "dept")
    assert [s.budget.target for s in at.budgets(None, "credits").slots] == ["credits", "credits"]


@settings(max_examples=200, deadline=None)
@given(
    owned=st.lists(
        st.lists(
            st.tuples(st.sampled_from(["calls", "tokens", "cr", "gems"]), st.booleans()),
            max_size=4,
            unique_by=lambda pair: pair[0],
        ),
        min_size=1,
        max_size=5,
    ),
    feature=st.sampled_from(["calls", "tokens", None]),
    currency=st.sampled_from(["cr", "gems", None]),
)
def test_a_path_orders_its_budgets_as_the_domain_rule_does(
    owned: list[list[tuple[str, bool]]], feature: str | None, currency: str | None
) -> None:
    """``PathBudgets.of`` picks the nodes' own slots in ``budgets_on_path``'s order."""
    ids = [f"e{n}" for n in range(len(owned))]
    nodes = [
        node(
            entity_id,
            ids[n + 1] if n + 1 < len(ids) else None,
            *(
                budget(
                    entity_id, target, BudgetKind.CURRENCY if is_currency else BudgetKind.FEATURE
                )
                for target, is_currency in owned[n]
            ),
        )
        for n, entity_id in enumerate(ids)
    ]
    by_entity = {n.entity.id: n.budgets for n in nodes}
    expected = budgets_on_path(by_entity, tuple(ids), feature, currency)
    found = PathBudgets.of(nodes, feature, currency)
    assert [slot.budget for slot in found.slots] == expected
