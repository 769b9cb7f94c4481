"""The catalog as one document: GET /v1/catalog exports it, PUT /v1/catalog applies one (or
dry-runs it) in one transaction, answering what changed and refusing a document with any problem
as a whole."""

from __future__ import annotations

import copy
from typing import Any

import msgspec
import pytest

from allotment.demo import demo_catalog
from tests.conftest import Api, define_catalog, new_customer

START = "2030-01-10T00:00:00Z"
PERIOD_END = "2030-02-10T00:00:00Z"

# What GET /v1/catalog answers for define_catalog's objects: definitions with defaults filled in.
EXPORTED_PLANS: dict[str, Any] = {
    "starter": {
        "product": "coder",
        "name": "Starter",
        "parent": None,
        "trial_days": None,
        "billing_period": "month",
        "entitlements": {
            "seats": {"value": 3},
            "ai-requests": {"limit": 100, "reset": "day", "enforcement": "hard"},
        },
        "credits": {},
    },
    "team": {
        "product": "coder",
        "name": "Team",
        "parent": "starter",
        "trial_days": None,
        "billing_period": "month",
        "entitlements": {
            "seats": {"value": 10},
            "ai-requests": {"limit": 1000, "reset": "month", "enforcement": "hard"},
        },
        "credits": {},
    },
    "enterprise": {
        "product": "coder",
        "name": "Enterprise",
        "parent": "team",
        "trial_days": 14,
        "billing_period": "month",
        "entitlements": {
            "sso": {},
            "seats": {"value": None},
            "ai-requests": {"limit": 20000, "reset": "month", "enforcement": "soft"},
        },
        "credits": {},
    },
}
EXPORTED_ADDONS: dict[str, Any] = {
    "extra-requests": {
        "product": "coder",
        "name": "Extra requests",
        "entitlements": {
            "ai-requests": {
                "limit": 500,
                "reset": "month",
                "enforcement": "hard",
                "mode": "increment",
            }
        },
        "credits": {},
    },
    "big-team": {
        "product": "coder",
        "name": "Big team",
        "entitlements": {"seats": {"value": 50, "mode": "override"}},
        "credits": {},
    },
}
SERVER_MADE = {"id", "version", "status", "published_at", "parent_version", "subscriptions"}

# The demo's catalog file (src/allotment/demo_catalog.yaml), as GET /v1/catalog exports it: JSON
# numbers, which the client reads as floats.
DEMO = msgspec.json.decode(msgspec.json.Encoder(decimal_format="number").encode(demo_catalog()))


@pytest.fixture
def coder(api: Api) -> Api:
    """define_catalog's catalog, with the test clock at START."""
    api.post("/v1/test/clock", {"now": START}, 200)
    define_catalog(api)
    return api


def unchanged(kind: str, object_id: str, version: int | None = None) -> dict[str, Any]:
    change: dict[str, Any] = {"kind": kind, "id": object_id, "action": "unchanged"}
    if version is not None:
        change["version"] = version
    return {**change, "fields": [], "diff": {}}


def change_of(
    kind: str,
    object_id: str,
    action: str,
    version: int | None = None,
    diff: dict[str, tuple[Any, Any]] | None = None,
) -> dict[str, Any]:
    change: dict[str, Any] = {"kind": kind, "id": object_id, "action": action}
    if version is not None:
        change["version"] = version
    diff = diff or {}
    fields = {path: {"from": was, "to": now} for path, (was, now) in diff.items()}
    return {**change, "fields": list(diff), "diff": fields}


def apply(api: Api, document: Any, *, dry_run: bool = False, expect: int = 200) -> Any:
    path = "/v1/catalog?dry_run=true" if dry_run else "/v1/catalog"
    return api.put(path, document, expect)


def error(api: Api, method: str, path: str, body: Any = None, **kwargs: Any) -> tuple[int, Any]:
    status, answer = api.status(method, path, body, **kwargs)
    return status, answer["error"]


def versions_of(api: Api) -> dict[str, int]:
    plans = {p["id"]: p["version"] for p in api.get("/v1/plans")["data"]}
    addons = {a["id"]: a["version"] for a in api.get("/v1/addons")["data"]}
    return {**plans, **addons}


def set_clock(api: Api, now: str) -> None:
    assert api.post("/v1/test/clock", {"now": now}, 200) == {"now": now}


# ------------------------------------------------------------------ export


def test_the_export_is_every_latest_definition_without_server_made_fields(coder: Api) -> None:
    coder.put("/v1/currencies/ai-credits", {"name": "Credits", "unit": "credit"}, 201)
    exported = coder.get("/v1/catalog")
    assert exported == {
        "features": {
            "sso": {"name": "SSO", "kind": "boolean", "unit": None},
            "seats": {"name": "Seats", "kind": "numeric", "unit": None},
            "ai-requests": {"name": "Requests", "kind": "metered", "unit": None},
        },
        "currencies": {
            "ai-credits": {
                "name": "Credits",
                "unit": "credit",
                "burn_order": ["priority", "expiry", "promotional_first", "created"],
            }
        },
        "products": {"coder": {"name": "Coder"}},
        "plans": EXPORTED_PLANS,
        "addons": EXPORTED_ADDONS,
    }
    for section in exported.values():
        for definition in section.values():
            assert not SERVER_MADE & set(definition), definition

    # The latest version, whatever its status.
    team = copy.deepcopy(EXPORTED_PLANS["team"])
    team["entitlements"]["ai-requests"]["limit"] = 2000
    coder.put("/v1/plans/team", team, 200)
    coder.delete("/v1/addons/big-team", 200)
    again = coder.get("/v1/catalog")
    assert again["plans"]["team"] == team
    assert again["plans"]["enterprise"] == EXPORTED_PLANS["enterprise"]
    assert again["addons"]["big-team"] == EXPORTED_ADDONS["big-team"]


def test_applying_the_export_changes_nothing(coder: Api) -> None:
    coder.put("/v1/plans/team", EXPORTED_PLANS["team"] | {"name": "Team 2"}, 200)
    exported = coder.get("/v1/catalog")
    versions = versions_of(coder)
    assert versions == {
        "starter": 1,
        "team": 2,
        "enterprise": 2,
        "extra-requests": 1,
        "big-team": 1,
    }
    answer = apply(coder, exported)
    assert answer == {
        "dry_run": False,
        "changes": [
            unchanged("feature", "sso"),
            unchanged("feature", "seats"),
            unchanged("feature", "ai-requests"),
            unchanged("product", "coder"),
            unchanged("plan", "starter", 1),
            unchanged("plan", "team", 2),
            unchanged("plan", "enterprise", 2),
            unchanged("addon", "extra-requests", 1),
            unchanged("addon", "big-team", 1),
        ],
    }
    assert versions_of(coder) == versions
    assert coder.get("/v1/catalog") == exported
    assert len(coder.get("/v1/plans/team/versions")["data"]) == 2


def test_an_empty_document_changes_nothing(coder: Api) -> None:
    assert apply(coder, {}) == {"dry_run": False, "changes": []}
    assert apply(coder, {"plans": {}}, dry_run=True) == {"dry_run": True, "changes": []}
    assert coder.put("/v1/catalog?dry_run=false", {}, 200) == {"dry_run": False, "changes": []}


# ------------------------------------------------------------------ apply and dry run


def _changed_document(api: Api) -> dict[str, Any]:
    """The export with: a new feature, a product renamed, starter's seats 3 -> 4 (team and
    enterprise follow), enterprise's own limit 20000 -> 30000, a new plan, an add-on renamed."""
    document = api.get("/v1/catalog")
    document["features"]["audit-log"] = {"name": "Audit log", "kind": "boolean"}
    document["products"]["coder"]["name"] = "Coder 2"
    document["plans"]["starter"]["entitlements"]["seats"]["value"] = 4
    document["plans"]["enterprise"]["entitlements"]["ai-requests"]["limit"] = 30000
    document["plans"]["solo"] = {
        "product": "coder",
        "name": "Solo",
        "entitlements": {"audit-log": {}},
    }
    document["addons"]["extra-requests"]["name"] = "More requests"
    return document


EXPECTED_CHANGES = [
    unchanged("feature", "sso"),
    unchanged("feature", "seats"),
    unchanged("feature", "ai-requests"),
    change_of("feature", "audit-log", "create"),
    change_of("product", "coder", "update", diff={"name": ("Coder", "Coder 2")}),
    change_of("plan", "starter", "update", 2, {"entitlements.seats.value": (3, 4)}),
    change_of("plan", "team", "update", 2),  # republished for its parent: no fields
    change_of(
        "plan", "enterprise", "update", 2, {"entitlements.ai-requests.limit": (20000, 30000)}
    ),
    change_of("plan", "solo", "create", 1),
    change_of(
        "addon", "extra-requests", "update", 2, {"name": ("Extra requests", "More requests")}
    ),
    unchanged("addon", "big-team", 1),
]


def test_a_dry_run_answers_the_changes_and_changes_nothing(coder: Api) -> None:
    before = coder.get("/v1/catalog")
    answer = apply(coder, _changed_document(coder), dry_run=True)
    assert answer == {"dry_run": True, "changes": EXPECTED_CHANGES}
    assert coder.get("/v1/catalog") == before
    assert versions_of(coder) == {
        "starter": 1,
        "team": 1,
        "enterprise": 1,
        "extra-requests": 1,
        "big-team": 1,
    }
    assert coder.get("/v1/products/coder")["name"] == "Coder"
    assert coder.get("/v1/plans/starter")["entitlements"]["seats"] == {"value": 3}
    assert coder.status("GET", "/v1/features/audit-log")[0] == 404
    assert coder.status("GET", "/v1/plans/solo")[0] == 404


def test_an_apply_creates_updates_and_republishes(coder: Api) -> None:
    document = _changed_document(coder)
    coder.advance(60)
    answer = apply(coder, document)
    assert answer == {"dry_run": False, "changes": EXPECTED_CHANGES}
    assert versions_of(coder) == {
        "starter": 2,
        "team": 2,
        "enterprise": 2,
        "solo": 1,
        "extra-requests": 2,
        "big-team": 1,
    }
    team = coder.get("/v1/plans/team")
    enterprise = coder.get("/v1/plans/enterprise")
    assert (team["parent_version"], enterprise["parent_version"]) == (2, 2)
    assert team["published_at"] == "2030-01-10T00:01:00Z"
    assert enterprise["entitlements"]["ai-requests"]["limit"] == 30000
    assert coder.get("/v1/features/audit-log")["kind"] == "boolean"
    assert coder.get("/v1/products/coder")["name"] == "Coder 2"
    assert coder.get("/v1/addons/extra-requests")["name"] == "More requests"
    # A starter subscriber gets the new seats; a solo one the feature the document created.
    new_customer(coder, "acme", "starter")
    new_customer(coder, "globex", "solo")
    assert coder.check("acme", "seats")["value"] == 4
    assert coder.check("globex", "audit-log")["has_access"] is True
    # Exported again, the document is what was applied (defaults filled in).
    exported = coder.get("/v1/catalog")
    assert exported["plans"]["solo"] == {
        "product": "coder",
        "name": "Solo",
        "parent": None,
        "trial_days": None,
        "billing_period": "month",
        "entitlements": {"audit-log": {}},
        "credits": {},
    }
    assert apply(coder, exported)["changes"] == [
        unchanged("feature", "sso"),
        unchanged("feature", "seats"),
        unchanged("feature", "ai-requests"),
        unchanged("feature", "audit-log"),
        unchanged("product", "coder"),
        unchanged("plan", "starter", 2),
        unchanged("plan", "team", 2),
        unchanged("plan", "enterprise", 2),
        unchanged("plan", "solo", 1),
        unchanged("addon", "extra-requests", 2),
        unchanged("addon", "big-team", 1),
    ]


def test_fields_name_a_spec_added_or_removed_whole(coder: Api) -> None:
    added = copy.deepcopy(EXPORTED_PLANS["team"])
    added["entitlements"]["sso"] = {}
    assert apply(coder, {"plans": {"team": added}})["changes"] == [
        change_of("plan", "team", "update", 2, {"entitlements.sso": (None, {})}),
        change_of("plan", "enterprise", "update", 2),
    ]
    # Stored order (seats, ai-requests, sso); both removed specs are named whole.
    removed = copy.deepcopy(EXPORTED_PLANS["team"])
    del removed["entitlements"]["ai-requests"]
    assert apply(coder, {"plans": {"team": removed}})["changes"] == [
        change_of(
            "plan",
            "team",
            "update",
            3,
            {
                "entitlements.ai-requests": (
                    {"limit": 1000, "reset": "month", "enforcement": "hard"},
                    None,
                ),
                "entitlements.sso": ({}, None),
            },
        ),
        change_of("plan", "enterprise", "update", 3),
    ]


def test_a_document_applies_its_objects_in_dependency_order(coder: Api) -> None:
    """A child listed before its new parent, both using a feature and a product the same
    document creates, and an add-on of that product."""
    document = {
        "plans": {
            "child": {
                "product": "studio",
                "name": "Child",
                "parent": "base",
                "entitlements": {"renders": {"limit": 50}},
            },
            "base": {
                "product": "studio",
                "name": "Base",
                "entitlements": {"renders": {"limit": 5}},
            },
        },
        "addons": {
            "boost": {
                "product": "studio",
                "name": "Boost",
                "entitlements": {"renders": {"limit": 10, "mode": "increment"}},
            }
        },
        "products": {"studio": {"name": "Studio"}},
        "features": {"renders": {"name": "Renders", "kind": "metered"}},
    }
    assert apply(coder, document)["changes"] == [
        change_of("feature", "renders", "create"),
        change_of("product", "studio", "create"),
        change_of("plan", "child", "create", 1),
        change_of("plan", "base", "create", 1),
        change_of("addon", "boost", "create", 1),
    ]
    child = coder.get("/v1/plans/child")
    assert (child["version"], child["parent"], child["parent_version"]) == (1, "base", 1)
    new_customer(coder, "acme")
    coder.post(
        "/v1/customers/acme/subscriptions",
        {"plan": "child", "addons": [{"id": "boost", "quantity": 2}]},
        201,
    )
    assert coder.check("acme", "renders")["usage_limit"] == 70


def test_an_archived_plan_in_a_document_stays_archived_until_it_changes(coder: Api) -> None:
    coder.delete("/v1/plans/enterprise", 200)
    plans = coder.get("/v1/catalog")["plans"]
    assert apply(coder, {"plans": plans})["changes"] == [
        unchanged("plan", "starter", 1),
        unchanged("plan", "team", 1),
        unchanged("plan", "enterprise", 1),
    ]
    assert coder.get("/v1/plans/enterprise")["status"] == "archived"
    plans["enterprise"]["name"] = "Enterprise 2"
    assert apply(coder, {"plans": {"enterprise": plans["enterprise"]}})["changes"] == [
        change_of("plan", "enterprise", "update", 2, {"name": ("Enterprise", "Enterprise 2")})
    ]
    assert coder.get("/v1/plans/enterprise")["status"] == "active"


# ------------------------------------------------------------------ refusals


def test_a_document_with_problems_is_400_naming_each_and_changes_nothing(coder: Api) -> None:
    before = coder.get("/v1/catalog")
    document = {
        "features": {
            "bad id!": {"name": "Bad", "kind": "boolean"},
            "seats": {"name": "Seats", "kind": "boolean"},  # was numeric
            "valid-one": {"name": "Valid", "kind": "boolean"},
        },
        "currencies": {"sso": {"name": "Clashes with a feature"}},
        "products": {"typed": {"name": 5}},
        "plans": {
            "team": EXPORTED_PLANS["team"] | {"name": "Team renamed"},  # valid alone
            "bad-feature": {"product": "coder", "name": "B", "entitlements": {"nope": {}}},
            "orphan": {"product": "coder", "name": "O", "parent": "ghost"},
            "loop-a": {"product": "coder", "name": "A", "parent": "loop-b"},
            "loop-b": {"product": "coder", "name": "B", "parent": "loop-a"},
        },
        "addons": {"new-addon": {"product": "coder", "name": "Valid add-on"}},
    }
    for dry_run in (True, False):
        status, refused = error(
            coder, "PUT", f"/v1/catalog?dry_run={str(dry_run).lower()}", document
        )
        assert (status, refused["code"]) == (400, "invalid_request")
        problems = refused["details"]["problems"]
        assert sorted((p["kind"], p["id"]) for p in problems) == [
            ("currency", "sso"),
            ("feature", "bad id!"),
            ("feature", "seats"),
            ("plan", "bad-feature"),
            ("plan", "loop-a"),
            ("plan", "loop-b"),
            ("plan", "orphan"),
            ("product", "typed"),
        ]
        messages = {(p["kind"], p["id"]): p["message"] for p in problems}
        assert "not a valid id" in messages[("feature", "bad id!")]
        assert "kind cannot change" in messages[("feature", "seats")]
        assert "share ids" in messages[("currency", "sso")]
        assert "$.name" in messages[("product", "typed")]
        assert "unknown feature 'nope'" in messages[("plan", "bad-feature")]
        assert "unknown parent plan 'ghost'" in messages[("plan", "orphan")]
        assert "cycle" in messages[("plan", "loop-a")]
        assert "cycle" in messages[("plan", "loop-b")]
        assert "8 problems" in refused["message"]
    # Nothing changed, not even the valid objects of the document.
    assert coder.get("/v1/catalog") == before
    assert coder.status("GET", "/v1/features/valid-one")[0] == 404
    assert coder.status("GET", "/v1/addons/new-addon")[0] == 404
    assert coder.get("/v1/plans/team")["version"] == 1
    assert coder.get("/v1/plans/enterprise")["version"] == 1
    assert coder.get("/v1/features/seats")["kind"] == "numeric"


def test_a_wrong_type_in_one_object_names_that_object(coder: Api) -> None:
    document = {
        "plans": {
            "typed": {"product": "coder", "name": "T", "trial_days": "x"},
            "fine": {"product": "coder", "name": "Fine"},
        }
    }
    status, refused = error(coder, "PUT", "/v1/catalog", document)
    assert (status, refused["code"]) == (400, "invalid_request")
    (problem,) = refused["details"]["problems"]
    assert (problem["kind"], problem["id"]) == ("plan", "typed")
    assert "$.trial_days" in problem["message"]
    assert coder.status("GET", "/v1/plans/fine")[0] == 404


@pytest.mark.parametrize("dry_run", ["maybe", "1", "yes", "True", ""])
def test_dry_run_is_true_or_false(coder: Api, dry_run: str) -> None:
    document = {"products": {"coder": {"name": "Renamed"}}}
    status, refused = error(coder, "PUT", f"/v1/catalog?dry_run={dry_run}", document)
    assert (status, refused["code"]) == (400, "invalid_request")
    assert coder.get("/v1/products/coder")["name"] == "Coder"


@pytest.mark.parametrize(
    "document",
    [
        {"widgets": {}},
        {"plans": []},
        {"plans": {"team": "Team"}},
        [],
        "catalog",
        None,
    ],
)
def test_a_document_that_is_not_a_catalog_is_400(coder: Api, document: Any) -> None:
    before = coder.get("/v1/catalog")
    status, refused = error(coder, "PUT", "/v1/catalog", document)
    assert (status, refused["code"]) == (400, "invalid_request")
    assert coder.get("/v1/catalog") == before


def test_malformed_json_is_400(coder: Api) -> None:
    response = coder.client.put(
        "/v1/catalog",
        content=b'{"plans": {',
        headers={"Authorization": f"Bearer {coder.key}", "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_request"


def test_only_an_admin_key_applies_and_a_server_key_reads(coder: Api) -> None:
    new_customer(coder, "acme")
    server = coder.post("/v1/api-keys", {"name": "server", "scope": "server"}, 201)["key"]
    client = coder.post(
        "/v1/api-keys", {"name": "web", "scope": "client", "customer": "acme"}, 201
    )["key"]
    before = coder.get("/v1/catalog")
    document = {"products": {"coder": {"name": "Renamed"}}}
    for key in (server, client):
        for path in ("/v1/catalog", "/v1/catalog?dry_run=true"):
            status, refused = error(coder, "PUT", path, document, key=key)
            assert (status, refused["code"]) == (403, "forbidden")
    assert coder.get("/v1/catalog", key=server) == before
    status, refused = error(coder, "GET", "/v1/catalog", key=client)
    assert (status, refused["code"]) == (403, "forbidden")
    assert error(coder, "GET", "/v1/catalog", key="wrong")[0] == 401
    assert coder.get("/v1/products/coder")["name"] == "Coder"


# ------------------------------------------------------------------ the worked example


def test_worked_example_raise_a_limit_from_export_to_migration(api: Api) -> None:
    """As a new user would: export, raise Team's limit in the document, dry-run, apply; the
    existing customer keeps its limit, a new one gets the new; migrate at period end."""
    set_clock(api, START)
    apply(api, DEMO)
    new_customer(api, "acme", "team")
    api.usage("acme", "ai-requests", 120, "acme-1")

    document = api.get("/v1/catalog")
    assert document == DEMO
    document["plans"]["team"]["entitlements"]["ai-requests"]["limit"] = 1500

    expected = [
        *(unchanged("feature", f) for f in DEMO["features"]),
        unchanged("currency", "ai-credits"),
        unchanged("product", "coder"),
        unchanged("plan", "starter", 1),
        change_of("plan", "team", "update", 2, {"entitlements.ai-requests.limit": (1000, 1500)}),
        change_of("plan", "enterprise", "update", 2),
        unchanged("addon", "extra-requests", 1),
        unchanged("addon", "seat-pack", 1),
    ]
    assert apply(api, document, dry_run=True) == {"dry_run": True, "changes": expected}
    assert api.get("/v1/plans/team")["version"] == 1
    assert apply(api, document) == {"dry_run": False, "changes": expected}
    assert api.get("/v1/plans/team")["version"] == 2

    # acme keeps what it bought; a new customer gets the new limit.
    assert api.check("acme", "ai-requests")["usage_limit"] == 1000
    new_customer(api, "globex", "team")
    assert api.check("globex", "ai-requests")["usage_limit"] == 1500

    migration = api.post("/v1/plans/team/migrations", {"at": "period_end"}, 201)
    assert (migration["from_versions"], migration["to_version"]) == ([1], 2)
    assert migration["subscriptions"] == 1  # globex is on version 2 already
    (waiting,) = api.get("/v1/customers/acme/subscriptions")["data"]
    assert (waiting["plan_version"], waiting["pending_version"]) == (1, 2)
    assert waiting["pending_at"] == waiting["current_period_end"] == PERIOD_END
    check = api.check("acme", "ai-requests")
    assert (check["usage_limit"], check["current_usage"]) == (1000, 120)

    set_clock(api, PERIOD_END)
    check = api.check("acme", "ai-requests")
    assert (check["usage_limit"], check["current_usage"]) == (1500, 0)
    (moved,) = api.get("/v1/customers/acme/subscriptions")["data"]
    assert moved["plan_version"] == 2
    assert "pending_version" not in moved
    versions = api.get("/v1/plans/team/versions")["data"]
    assert [(v["version"], v["subscriptions"]) for v in versions] == [(1, 0), (2, 2)]
