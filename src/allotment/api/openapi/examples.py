"""Example requests for the main routes, on the demo's catalog and customers (``demo.py``,
``demo_catalog.yaml``): each works against a server loaded with ``allotment demo``, which a test
checks."""

from __future__ import annotations

from allotment import demo
from allotment.api.described import Example

# Acme's review agent (engineering > platform > agent-7) spends agent requests and model credits.
_ACME = "acme"
_AGENT = "agent-7"
_REQUESTS = "ai-requests"
_TOKENS = "model-tokens"
_CREDITS = "ai-credits"
_POOL = {"customer": _ACME, "currency": _CREDITS}
_DEMO_CATALOG = demo.demo_catalog()

CHECK = Example(
    "May Acme's review agent make one more agent request?",
    body={"customer": _ACME, "feature": _REQUESTS, "entity": _AGENT, "requested": 1},
)
USAGE = Example(
    "Record one agent request, refusing it past a hard limit or budget",
    body={
        "customer": _ACME,
        "feature": _REQUESTS,
        "entity": _AGENT,
        "amount": 1,
        "idempotency_key": "run-8812-step-3",
        "enforce": True,
    },
)
DEBIT = Example(
    "Charge 12.5 credits for the model tokens of one run",
    path=_POOL,
    body={
        "amount": 12.5,
        "feature": _TOKENS,
        "entity": _AGENT,
        "idempotency_key": "run-8812-tokens",
    },
)
GRANT = Example(
    "Grant 500 promotional credits, burned before the plan's",
    path=_POOL,
    body={
        "amount": 500,
        "category": "promotional",
        "priority": 10,
        "reason": "Launch week bonus",
        "idempotency_key": "launch-week-bonus",
    },
)
RESERVE = Example(
    "Hold 20,000 model tokens (20 credits) for a run of five minutes at most",
    body={
        "customer": _ACME,
        "feature": _TOKENS,
        "entity": "agent-9",
        "amount": 20000,
        "ttl_seconds": 300,
        "idempotency_key": "run-8813-tokens",
    },
)
FEATURE = Example(
    "The demo's metered feature",
    path={"id": _REQUESTS},
    body=_DEMO_CATALOG["features"][_REQUESTS],
)
PLAN = Example("The demo's Team plan", path={"id": "team"}, body=_DEMO_CATALOG["plans"]["team"])
CUSTOMER = Example(
    "A workspace of the demo",
    path={"customer": "globex"},
    body={"name": "Globex (Starter)", "metadata": {"demo": True}},
)
SUBSCRIBE = Example(
    "Globex moves to Team with one pack of extra requests",
    path={"customer": "globex"},
    body={"plan": "team", "addons": [{"id": "extra-requests", "quantity": 1}]},
)
ENTITY = Example(
    "Acme's review agent, under the platform team",
    path={"customer": _ACME, "entity": _AGENT},
    body={"parent": "platform", "kind": "agent", "name": "Review agent"},
)
BUDGET = Example(
    "At most 50 agent requests a day for the review agent",
    path={"customer": _ACME, "entity": _AGENT, "target": _REQUESTS},
    body={"limit": 50, "reset": "day", "enforcement": "hard"},
)
