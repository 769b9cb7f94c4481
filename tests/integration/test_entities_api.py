"""The tree of entities under a customer, and entities in checks, usage and debits."""

from __future__ import annotations

import sqlite3

import pytest

from tests.conftest import Api, define_catalog, new_customer

TREE = "/v1/customers/acme/entities"


@pytest.fixture
def acme(api: Api) -> Api:
    define_catalog(api)
    new_customer(api, "acme", "team")
    return api


def test_entities_form_a_tree(acme: Api) -> None:
    created = acme.put(f"{TREE}/eng", {"kind": "department", "name": "Engineering"}, 201)
    assert created == {
        "id": "eng",
        "parent": None,
        "kind": "department",
        "name": "Engineering",
        "children": [],
        "budgets": [],
        "created_at": created["created_at"],
    }
    acme.put(f"{TREE}/team-a", {"parent": "eng", "kind": "team"}, 201)
    acme.put(f"{TREE}/agent-7", {"parent": "team-a", "kind": "agent"}, 201)
    assert acme.get(f"{TREE}/eng")["children"] == ["team-a"]
    assert acme.get(f"{TREE}/team-a")["children"] == ["agent-7"]
    # Re-parenting moves the subtree.
    acme.put(f"{TREE}/ops", {"kind": "department"}, 201)
    moved = acme.put(f"{TREE}/team-a", {"parent": "ops", "kind": "team"}, 200)
    assert moved["parent"] == "ops"
    assert acme.get(f"{TREE}/eng")["children"] == []


def test_cycles_unknown_parents_and_other_customers_parents_are_400(acme: Api) -> None:
    acme.put(f"{TREE}/a", {}, 201)
    acme.put(f"{TREE}/b", {"parent": "a"}, 201)
    status, body = acme.status("PUT", f"{TREE}/a", {"parent": "b"})
    assert (status, "cycle" in body["error"]["message"]) == (400, True)
    assert acme.status("PUT", f"{TREE}/a", {"parent": "a"})[0] == 400
    assert acme.status("PUT", f"{TREE}/c", {"parent": "ghost"})[0] == 400
    new_customer(acme, "globex", "team")
    acme.put("/v1/customers/globex/entities/theirs", {}, 201)
    assert acme.status("PUT", f"{TREE}/c", {"parent": "theirs"})[0] == 400
    assert acme.get(f"{TREE}/a")["parent"] is None


def test_depth_is_bounded(acme: Api) -> None:
    acme.put(f"{TREE}/e0", {}, 201)
    for n in range(1, 16):
        acme.put(f"{TREE}/e{n}", {"parent": f"e{n - 1}"}, 201)
    status, body = acme.status("PUT", f"{TREE}/e16", {"parent": "e15"})
    assert status == 400
    assert "at most 16" in body["error"]["message"]


def test_a_leaf_can_be_deleted_but_not_a_parent(acme: Api) -> None:
    acme.put(f"{TREE}/team", {}, 201)
    acme.put(f"{TREE}/agent", {"parent": "team"}, 201)
    status, body = acme.status("DELETE", f"{TREE}/team")
    assert (status, body["error"]["code"]) == (409, "conflict")
    assert acme.delete(f"{TREE}/agent", 200)["deleted"] is True
    acme.delete(f"{TREE}/team", 200)
    assert acme.status("GET", f"{TREE}/team")[0] == 404
    assert acme.status("GET", "/v1/customers/ghost/entities/x")[0] == 404


@pytest.mark.sqlite_file
def test_a_known_entity_is_checked_and_its_usage_recorded(acme: Api) -> None:
    assert acme.check("acme", "seats", entity="agent-7")["access_denied_reason"] == (
        "entity_not_found"
    )
    acme.put(f"{TREE}/agent-7", {"kind": "agent"}, 201)
    answer = acme.check("acme", "ai-requests", entity="agent-7", requested=1)
    assert (answer["has_access"], answer["entity"], answer["budgets"]) == (True, "agent-7", [])
    used = acme.usage("acme", "ai-requests", 5, "u1", entity="agent-7", enforce=True)
    assert (used["recorded"], used["current_usage"]) == (True, 5)
    with sqlite3.connect(acme.database) as db:
        assert db.execute("SELECT entity FROM usage_events").fetchall() == [("agent-7",)]
    acme.delete(f"{TREE}/agent-7", 200)
    assert acme.check("acme", "seats", entity="agent-7")["access_denied_reason"] == (
        "entity_not_found"
    )
