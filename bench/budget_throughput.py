"""What budgets cost on the request path: checks and enforced usage with and without an entity.

The script starts Allotment (``allotment serve``) on a fresh SQLite file in a temporary
directory and seeds, through the HTTP API, one metered feature on a plan with a hard limit far
larger than any run can use. Every customer gets the same entity tree, four levels deep
(``dept`` > ``team`` > ``squad`` > ``agent``), with a hard budget on the feature at ``dept``,
``team`` and ``squad``, also far larger than any run can use. It then measures, with wrk and in
the same run, two operations in two variants each:

- ``POST /v1/check`` with ``requested`` 1, rotating over every seeded customer (so the check is
  answered from memory, as in ``check_throughput.py``): without an entity, and for ``agent``,
  whose check also reads the three budgets on its path;
- ``POST /v1/usage`` with ``enforce: true``, amount 1 and a new idempotency key per request
  (built in the wrk script as in ``debit_throughput.py``) on one hot customer: without an
  entity, and for ``agent``, whose usage is decided against, and counted for, the three budgets.

The variants of an operation are measured one after the other, never at once, and alternate
round by round (the order is reversed every other round) so that a burst of noise on this
two-core machine tends to hit both. The target is that the entity variant keeps at least 0.80
of the no-entity variant's requests per second ("within 20 %").

With ``--before TREE`` the ``allotment serve`` of another checkout (a git worktree of an
earlier commit, synced with ``uv sync``) runs beside it on its own fresh file, seeded and
checked the same way, and every run is made on both, one after the other (the order reversed
every other round): the report then compares each operation and variant before and after.

After every measured run the answers are checked: wrk must see no non-2xx response and no
socket error; the decisions the server counted (``/metrics``) must all be grants (checks) or
recordings (usage), as many as wrk counted plus at most the requests in flight when it stopped;
for usage, the events the run added to ``usage_events`` (read with ``sqlite3`` on the database
file) must match wrk's 2xx count the same way. At the end each budget's counter must equal the
usage recorded for the agent.

    uv run python bench/budget_throughput.py [--duration 10] [--connections 32] [--rounds 1]
        [--before /tmp/allotment-before]

The servers, ``Server`` handling, wrk measurement and reporting helpers are shared with
``bench/check_throughput.py``. The server is stopped at the end whatever happens, every step
has a time limit, and everything listens on 127.0.0.1 only. This is a measurement, never a
test: nothing in the test suite times anything.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import check_throughput
import httpx
from check_throughput import (
    CHECK_PATH,
    REQUEST_TIMEOUT,
    BenchError,
    Row,
    Server,
    Tree,
    WrkResult,
    add_load_options,
    call,
    check_load_options,
    customer_id,
    lua_string,
    machine_description,
    run_within,
    running,
    start_tree,
    summarize,
    table,
    trees,
)
from check_throughput import (
    write_wrk_script as write_check_script,
)

ADMIN_KEY = "bench-admin-key-" + os.urandom(8).hex()
USAGE_PATH = "/v1/usage"
FEATURE = "ai-requests"
LIMIT = 10**9  # units per month, for the plan and every budget: no run comes near it
AMOUNT = 1  # units per usage report
USAGE_CUSTOMER = "bench-usage"
# The tree under every customer, root first; the load names the last one.
TREE = ("dept", "team", "squad", "agent")
AGENT = TREE[-1]
BUDGETED = ("dept", "team", "squad")  # hard budgets on FEATURE
SETTLE_TIMEOUT = 10.0  # for the requests still in flight when wrk stops to be committed
TARGET_RATIO = 0.80  # the entity variant within 20 % of the no-entity variant

OPERATIONS = ("check", "usage")
VARIANTS = ("none", "entity")
OPERATION_LABELS = {"check": "POST /v1/check", "usage": "POST /v1/usage (enforce)"}
VARIANT_LABELS = {"none": "no entity", "entity": f"agent {len(TREE)} deep"}
# summarize() labels each row; the table below splits the label into two columns.
LABELS = {
    f"{op}/{variant}": f"{OPERATION_LABELS[op]} | {VARIANT_LABELS[variant]}"
    for op in OPERATIONS
    for variant in VARIANTS
}


def run_name(tree: str, name: str) -> str:
    """The results' key of run ``name`` (``operation/variant``) on ``tree``."""
    return name if tree == "allotment" else f"{tree}:{name}"


Counters = tuple[int, list[tuple[str, int]]]
"""The agent's recorded usage reports, and each budget's counter in reports."""


# --- Seeding and verification ----------------------------------------------------------------


def seed_customer(client: httpx.Client, customer: str) -> None:
    """The customer on the plan, its tree and a hard budget at each budgeted level."""
    path = f"/v1/customers/{customer}"
    call(client, "PUT", path, {"name": f"Bench customer {customer}"}, 201)
    call(client, "POST", f"{path}/subscriptions", {"plan": "bench"}, 201)
    parent = None
    for entity in TREE:
        call(client, "PUT", f"{path}/entities/{entity}", {"parent": parent}, 201)
        parent = entity
    budget = {"limit": LIMIT, "reset": "month", "enforcement": "hard"}
    for entity in BUDGETED:
        call(client, "PUT", f"{path}/entities/{entity}/budgets/{FEATURE}", budget, 201)


def seed(client: httpx.Client, customers: int) -> None:
    call(client, "PUT", f"/v1/features/{FEATURE}", {"name": "AI requests", "kind": "metered"}, 201)
    call(client, "PUT", "/v1/products/bench", {"name": "Bench"}, 201)
    plan = {
        "product": "bench",
        "name": "Bench",
        "entitlements": {FEATURE: {"limit": LIMIT, "reset": "month", "enforcement": "hard"}},
    }
    call(client, "PUT", "/v1/plans/bench", plan, 201)
    for index in range(customers):
        seed_customer(client, customer_id(index))
    seed_customer(client, USAGE_CUSTOMER)


def check_body(customer: str, variant: str) -> dict[str, Any]:
    body: dict[str, Any] = {"customer": customer, "feature": FEATURE, "requested": AMOUNT}
    if variant == "entity":
        body["entity"] = AGENT
    return body


def check_bodies(customers: int, variant: str) -> list[str]:
    return [
        json.dumps(check_body(customer_id(index), variant), separators=(",", ":"))
        for index in range(customers)
    ]


def expect_budgets(where: str, answer: dict[str, Any], variant: str, usage: int | None) -> None:
    """The answer lists the budgets on the agent's path, nearest first (none without entity)."""
    if variant == "none":
        if answer.get("budgets") != [] or answer.get("entity") is not None:
            raise BenchError(f"{where}: expected no entity and no budgets: {answer}")
        return
    expected = list(reversed(BUDGETED))
    budgets: list[dict[str, Any]] = answer.get("budgets") or []
    if answer.get("entity") != AGENT or [b.get("entity") for b in budgets] != expected:
        raise BenchError(f"{where}: expected the budgets of {expected}: {answer}")
    for budget in budgets:
        if budget["limit"] != LIMIT or budget["enforcement"] != "hard":
            raise BenchError(f"{where}: unexpected budget {budget}")
        if usage is not None and budget["usage"] != usage:
            raise BenchError(f"{where}: budget usage {budget['usage']}, expected {usage}")


def verify_checks(client: httpx.Client, customers: int) -> int:
    """Sample checks of both variants answer what the seeded data says."""
    made = 0
    for index in sorted({0, customers // 2, customers - 1}):
        for variant in VARIANTS:
            where = f"check {customer_id(index)} {variant}"
            answer = call(client, "POST", CHECK_PATH, check_body(customer_id(index), variant), 200)
            made += 1
            if not answer["has_access"] or answer["usage_limit"] != LIMIT:
                raise BenchError(f"{where}: expected a grant under limit {LIMIT}: {answer}")
            expect_budgets(where, answer, variant, 0)
    body = {**check_body(customer_id(0), "entity"), "entity": "nobody"}
    missing = call(client, "POST", CHECK_PATH, body, 200)
    if missing["has_access"] or missing["access_denied_reason"] != "entity_not_found":
        raise BenchError(f"an unknown entity answered {missing}")
    return made + 1


def usage_body(variant: str, key: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "customer": USAGE_CUSTOMER,
        "feature": FEATURE,
        "amount": AMOUNT,
        "idempotency_key": key,
        "enforce": True,
    }
    if variant == "entity":
        body["entity"] = AGENT
    return body


def verify_usage(client: httpx.Client) -> None:
    """A report of each variant by hand, and a replay: recorded, counted for the budgets."""
    for variant in VARIANTS:
        body = usage_body(variant, f"bench-sample-{variant}")
        first = call(client, "POST", USAGE_PATH, body, 200)
        if first.get("recorded") is not True or first.get("replayed") is not False:
            raise BenchError(f"usage {variant}: the first report answered {first}")
        expect_budgets(f"usage {variant}", first, variant, AMOUNT)
        again = call(client, "POST", USAGE_PATH, body, 200)
        if again.get("replayed") is not True:
            raise BenchError(f"usage {variant}: the replay answered {again}")


def warm(client: httpx.Client, bodies: Sequence[str]) -> None:
    """Send every check body once: snapshots, resolutions and budget windows are then cached."""
    for body in bodies:
        response = client.post(
            CHECK_PATH, content=body, headers={"content-type": "application/json"}
        )
        if response.status_code != 200 or not response.json()["has_access"]:
            raise BenchError(f"warm-up check {body}: {response.status_code} {response.text}")


_DECISION = re.compile(r"^allotment_decisions_total\{(?P<labels>[^}]*)\}\s+(?P<value>\S+)$")


def decisions(client: httpx.Client, route: str) -> dict[str, float]:
    """Decisions of ``route`` made so far, by outcome, from the server's /metrics."""
    counts: dict[str, float] = {}
    for line in client.get("/metrics").text.splitlines():
        match = _DECISION.match(line)
        if match is None:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match["labels"]))
        if labels.get("route") == route:
            counts[labels["outcome"]] = counts.get(labels["outcome"], 0) + float(match["value"])
    return counts


def usage_events(database: Path, variant: str) -> tuple[int, int, int]:
    """The hot customer's events of the variant: their number, smallest and largest amount."""
    entity = "entity IS NULL" if variant == "none" else "entity = ?"
    uri = f"file:{database}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=10.0)) as connection:
        count, low, high = connection.execute(
            "SELECT COUNT(*), COALESCE(MIN(amount), 0), COALESCE(MAX(amount), 0)"
            f" FROM usage_events WHERE customer = ? AND feature = ? AND {entity}",
            (USAGE_CUSTOMER, FEATURE) + (() if variant == "none" else (AGENT,)),
        ).fetchone()
    return int(count), int(low), int(high)


def settled_events(database: Path, variant: str) -> int:
    """The event count once the requests in flight when wrk stopped are done: two readings."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    last = usage_events(database, variant)
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = usage_events(database, variant)
        if now == last:
            count, low, high = now
            if count and low != high:
                raise BenchError(f"usage events of {variant} have amounts {low} to {high}")
            return count
        last = now
    raise BenchError(f"usage_events was still growing {SETTLE_TIMEOUT:g}s after wrk stopped")


def check_budget_counters(database: Path) -> tuple[int, list[tuple[str, int]]]:
    """Each budget of the hot customer has counted exactly the usage recorded for the agent.

    Returns the agent's reports and each budget's counter, in reports of ``AMOUNT``.
    """
    uri = f"file:{database}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=10.0)) as connection:
        reports, recorded, per_report = connection.execute(
            "SELECT COUNT(*), COALESCE(SUM(amount), 0), COALESCE(MAX(amount), 1) FROM usage_events"
            " WHERE customer = ? AND feature = ? AND entity = ?",
            (USAGE_CUSTOMER, FEATURE, AGENT),
        ).fetchone()
        counters = dict(
            connection.execute(
                "SELECT entity, SUM(used) FROM budget_counters"
                " WHERE customer = ? AND kind = 'feature' AND target = ? GROUP BY entity",
                (USAGE_CUSTOMER, FEATURE),
            ).fetchall()
        )
    found = [(entity, int(counters.get(entity, -1))) for entity in BUDGETED]
    wrong = [(entity, used) for entity, used in found if used != recorded]
    if wrong:
        raise BenchError(f"budget counters {wrong}, expected {recorded} for each of {BUDGETED}")
    return int(reports), [(entity, used // per_report) for entity, used in found]


# --- wrk -------------------------------------------------------------------------------------


def write_usage_script(path: Path, variant: str, key: str) -> None:
    """A script reporting usage with a new idempotency key per request.

    The key is ``<prefix>-<thread>-<counter>``: the prefix is random and passed per wrk run
    (``wrk ... -- PREFIX``), the thread's number is set in ``setup`` and the counter counts the
    thread's requests.
    """
    head = json.dumps(usage_body(variant, "KEY"), separators=(",", ":"))
    before, after = head.split('"KEY"')
    lines = [
        "-- Generated by bench/budget_throughput.py: POST /v1/usage, a new idempotency key each.",
        "local headers = {",
        f'  ["Authorization"] = {lua_string("Bearer " + key)},',
        '  ["Content-Type"] = "application/json",',
        "}",
        "local threads = 0",
        "thread_number = 0",
        'local prefix = "bench"',
        "local counter = 0",
        f"local before = {lua_string(before)}",
        f"local after = {lua_string(after)}",
        "setup = function(thread)",
        "  threads = threads + 1",
        '  thread:set("thread_number", threads)',
        "end",
        "init = function(args)",
        "  if args[1] then prefix = args[1] end",
        "end",
        "request = function()",
        "  counter = counter + 1",
        "  local body = before .. string.format('\"%s-%d-%d\"', prefix, thread_number, counter)",
        "    .. after",
        f'  return wrk.format("POST", {lua_string(USAGE_PATH)}, headers, body)',
        "end",
    ]
    path.write_text("\n".join(lines) + "\n")


def run_wrk(
    args: argparse.Namespace,
    target: str,
    server: Server,
    script: Path,
    path: str,
    duration: float,
    cpu: int | None,
) -> WrkResult:
    return check_throughput.run_wrk(
        args.wrk,
        target,
        server,
        script,
        duration=duration,
        connections=args.connections,
        cpu=cpu,
        path=path,
        # The usage script's key prefix; the check script ignores it.
        script_args=["k" + os.urandom(6).hex()],
    )


# --- Measuring -------------------------------------------------------------------------------


@dataclass
class Verified:
    """What one measured run did, against what wrk saw."""

    target: str
    round_number: int
    wrk_2xx: int
    decisions: float  # granted checks or recorded usage, from /metrics
    events_added: int | None  # usage only


def measure(
    args: argparse.Namespace,
    operation: str,
    variant: str,
    server: Server,
    script: Path,
    database: Path,
    wrk_cpu: int | None,
    round_number: int,
) -> tuple[WrkResult, Verified]:
    """One warm-up and one measured wrk run, then the decisions (and events) are checked."""
    name = run_name(server.name, f"{operation}/{variant}")
    path = CHECK_PATH if operation == "check" else USAGE_PATH
    route, good = ("check", "granted") if operation == "check" else ("usage", "recorded")
    if args.warmup > 0:
        warm_run = run_wrk(args, name, server, script, path, args.warmup, wrk_cpu)
        if warm_run.non_2xx or warm_run.socket_errors:
            raise BenchError(f"{name} warm-up: {warm_run.non_2xx} non-2xx:\n{warm_run.output}")
    with httpx.Client(base_url=server.url, timeout=REQUEST_TIMEOUT) as plain:
        events_before = settled_events(database, variant) if operation == "usage" else 0
        before = decisions(plain, route)
        result = run_wrk(args, name, server, script, path, args.duration, wrk_cpu)
        events_after = settled_events(database, variant) if operation == "usage" else 0
        after = decisions(plain, route)
    if args.show_wrk:
        print(result.output, file=sys.stderr)
    if result.non_2xx or result.socket_errors:
        raise BenchError(
            f"{name}: {result.non_2xx} non-2xx responses, "
            f"{result.socket_errors} socket errors:\n{result.output}"
        )
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    made = sum(delta.values())
    verified = Verified(
        name,
        round_number,
        result.requests - result.non_2xx,
        delta.get(good, 0),
        events_after - events_before if operation == "usage" else None,
    )
    problems = []
    # wrk does not count the responses still in flight when it stops: at most one per connection.
    window = (verified.wrk_2xx, verified.wrk_2xx + args.connections)
    if any(count for outcome, count in delta.items() if outcome != good):
        problems.append(f"decisions other than {good}: {delta}")
    if not window[0] <= made <= window[1]:
        problems.append(f"the server counted {made:.0f} decisions, wrk {verified.wrk_2xx} 2xx")
    added = verified.events_added
    if added is not None and not window[0] <= added <= window[1]:
        problems.append(f"usage_events gained {added} rows, wrk counted {verified.wrk_2xx} 2xx")
    if problems:
        raise BenchError(f"{name}: {'; '.join(problems)}")
    return result, verified


@dataclass
class Served:
    """One tree's ``allotment serve`` and its database."""

    tree: Tree
    server: Server
    database: Path


def run(
    args: argparse.Namespace, compared: Sequence[Tree]
) -> tuple[dict[str, list[WrkResult]], list[Verified], dict[str, Counters]]:
    server_cpu, wrk_cpu = (1, 0) if args.pin else (None, None)
    servers: list[Server] = []
    with tempfile.TemporaryDirectory(prefix="allotment-budget-bench-") as tmp, running(servers):
        workdir = Path(tmp)
        env = {k: v for k, v in os.environ.items() if not k.startswith("ALLOTMENT_")}
        env["ALLOTMENT_ADMIN_KEY"] = ADMIN_KEY
        bodies = {variant: check_bodies(args.customers, variant) for variant in VARIANTS}
        headers = {"Authorization": f"Bearer {ADMIN_KEY}"}

        served: list[Served] = []
        for tree in compared:
            database = workdir / f"{tree.name}.db"
            allotment = start_tree(tree, database, workdir, server_cpu, env, servers)
            with httpx.Client(
                base_url=allotment.url, headers=headers, timeout=REQUEST_TIMEOUT
            ) as api:
                started = time.monotonic()
                seed(api, args.customers)
                elapsed = time.monotonic() - started
                print(
                    f"{tree.name} ({tree.commit}): seeded {args.customers + 1} customers, each "
                    f"with {len(TREE)} entities and {len(BUDGETED)} budgets, in {elapsed:.1f}s",
                    file=sys.stderr,
                )
                verified = verify_checks(api, args.customers)
                verify_usage(api)
                print(
                    f"{tree.name}: verified {verified} sample checks and 4 usage reports",
                    file=sys.stderr,
                )
                for variant in VARIANTS:
                    warm(api, bodies[variant])
            served.append(Served(tree, allotment, database))

        scripts: dict[str, Path] = {}
        for variant in VARIANTS:
            scripts[f"check/{variant}"] = workdir / f"check-{variant}.lua"
            write_check_script(scripts[f"check/{variant}"], bodies[variant], ADMIN_KEY)
            scripts[f"usage/{variant}"] = workdir / f"usage-{variant}.lua"
            write_usage_script(scripts[f"usage/{variant}"], variant, ADMIN_KEY)

        results: dict[str, list[WrkResult]] = {
            run_name(each.tree.name, name): [] for each in served for name in LABELS
        }
        checks: list[Verified] = []
        for round_number in range(1, args.rounds + 1):
            # Every other round the entity variant (and the second tree) goes first, so drift
            # hits both alike.
            order = VARIANTS if round_number % 2 else tuple(reversed(VARIANTS))
            tree_order = served if round_number % 2 else list(reversed(served))
            for operation in OPERATIONS:
                for variant in order:
                    for each in tree_order:
                        name = f"{operation}/{variant}"
                        result, check = measure(
                            args,
                            operation,
                            variant,
                            each.server,
                            scripts[name],
                            each.database,
                            wrk_cpu,
                            round_number,
                        )
                        for server in servers:
                            if server.process.poll() is not None:
                                raise BenchError(f"{server.name} died:\n{server.log_tail()}")
                        results[check.target].append(result)
                        checks.append(check)
                        print(
                            f"round {round_number} {check.target}: "
                            f"{result.requests_per_second:,.0f} req/s, "
                            f"p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms, "
                            f"server {result.server_cpu_us_per_request:.1f} us CPU/request "
                            f"({result.server_busy:.0%} busy), wrk {result.wrk_busy:.0%} busy; "
                            f"{check.wrk_2xx} 2xx, {check.decisions:.0f} decisions"
                            + (
                                f", usage_events +{check.events_added}"
                                if check.events_added is not None
                                else ""
                            ),
                            file=sys.stderr,
                        )
        counters = {each.tree.name: check_budget_counters(each.database) for each in served}
    return results, checks, counters


# --- Reporting -------------------------------------------------------------------------------


def ratio_table(rows: Sequence[Row], ratios: dict[str, float]) -> str:
    """``table`` with its label split into operation and variant, and the ratio column."""
    lines = table(rows).splitlines()
    header = lines[0].replace("| target |", "| operation | variant |", 1)
    header += f" entity/no entity, requests/s (target >= {TARGET_RATIO:.2f}) |"
    out = [header, "|---" + lines[1] + "---:|"]
    for row, line in zip(rows, lines[2:], strict=True):
        operation = row.target.split(" | ", 1)[0]
        if row.target.endswith(VARIANT_LABELS["entity"]):
            ratio = ratios[operation]
            verdict = "meets" if ratio >= TARGET_RATIO else "misses"
            line += f" {ratio:.2f} ({verdict}) |"
        else:
            line += " |"
        out.append(line)
    return "\n".join(out)


def before_after_table(
    results: dict[str, list[WrkResult]], compared: Sequence[Tree], how: str
) -> str:
    """Each operation and variant on the tree under test against the one before."""
    now, then = compared
    lines = [
        f"| operation | variant | requests/s {now.commit} | requests/s before {then.commit} "
        "| after/before | server CPU/request after | before |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for name, label in LABELS.items():
        after = summarize(name, results[name], how, LABELS)
        before = summarize(name, results[run_name("before", name)], how, LABELS)
        lines.append(
            f"| {label} | {after.requests_per_second:,.0f} | {before.requests_per_second:,.0f} "
            f"| {after.requests_per_second / before.requests_per_second:.2f} "
            f"| {after.server_cpu_us:.1f} us | {before.server_cpu_us:.1f} us |"
        )
    return "\n".join(lines)


def report(
    args: argparse.Namespace,
    results: dict[str, list[WrkResult]],
    checks: Sequence[Verified],
    counters: dict[str, Counters],
    compared: Sequence[Tree],
) -> None:
    print()
    print(f"machine: {machine_description()}")
    print(
        f"load: wrk -t1 -c{args.connections} -d{args.duration:g}s --latency, {args.rounds} "
        "round(s), the two variants of each operation alternating"
        + (", on each tree in turn" if len(compared) > 1 else "")
        + (", pinned (wrk on CPU 0, server on CPU 1)" if args.pin else "")
    )
    print(
        f"check: {args.customers} customers round-robin, requested {AMOUNT}; usage: one customer, "
        f"amount {AMOUNT}, enforce, a new idempotency key each; entity variant: "
        f"{' > '.join(TREE)} with hard budgets on {FEATURE} at {', '.join(BUDGETED)}"
    )
    hows = ("median", "best") if args.rounds > 1 else ("median",)
    for tree in compared:
        print()
        print(f"## allotment {'before, ' if tree.name == 'before' else ''}at {tree.commit}\n")
        runs = {name: run_name(tree.name, name) for name in LABELS}
        per_round = {
            op: [
                e.requests_per_second / n.requests_per_second
                for n, e in zip(
                    results[runs[f"{op}/none"]], results[runs[f"{op}/entity"]], strict=True
                )
            ]
            for op in OPERATIONS
        }
        for how in hows:
            rows = [summarize(name, results[runs[name]], how, LABELS) for name in LABELS]
            ratios = {
                OPERATION_LABELS[op]: rows[2 * i + 1].requests_per_second
                / rows[2 * i].requests_per_second
                for i, op in enumerate(OPERATIONS)
            }
            if args.rounds > 1:
                print(f"{how} of {args.rounds} rounds:\n")
            print(ratio_table(rows, ratios))
            print()
        for op in OPERATIONS:
            listed = ", ".join(f"{r:.2f}" for r in per_round[op])
            median = statistics.median(per_round[op])
            cpu = {
                v: statistics.median(
                    r.server_cpu_us_per_request for r in results[runs[f"{op}/{v}"]]
                )
                for v in VARIANTS
            }
            print(
                f"{OPERATION_LABELS[op]}: entity/no entity requests/s of each round {listed} "
                f"(median {median:.2f}, {'meets' if median >= TARGET_RATIO else 'misses'} the "
                f"{TARGET_RATIO:.2f} target); server CPU per request {cpu['entity']:.1f} us "
                f"against {cpu['none']:.1f} us (+{cpu['entity'] - cpu['none']:.1f} us, a ratio "
                f"of {cpu['none'] / cpu['entity'] if cpu['entity'] else 0:.2f})"
            )
    if len(compared) > 1:
        print()
        print("## after against before\n")
        for how in hows:
            if args.rounds > 1:
                print(f"{how} of {args.rounds} rounds:\n")
            print(before_after_table(results, compared, how))
            print()
        for name, label in LABELS.items():
            changes = [
                a.requests_per_second / b.requests_per_second
                for a, b in zip(results[name], results[run_name("before", name)], strict=True)
            ]
            listed = ", ".join(f"{r:.2f}" for r in changes)
            print(
                f"{label.replace(' | ', ', ')}: after/before requests/s of each round {listed} "
                f"(median {statistics.median(changes):.2f})"
            )
    print()
    print(
        "checked after each measured run: every response 2xx, every decision a grant (check) or "
        "a recording (usage); usage_events gained wrk's 2xx count plus the requests in flight:"
    )
    print()
    print("| round | run | wrk 2xx | decisions counted | usage_events added |")
    print("|---:|---|---:|---:|---:|")
    for check in checks:
        added = "" if check.events_added is None else f"{check.events_added:,}"
        print(
            f"| {check.round_number} | {check.target} | {check.wrk_2xx:,} "
            f"| {check.decisions:,.0f} | {added} |"
        )
    print()
    for tree in compared:
        reports, budgets = counters[tree.name]
        listed = ", ".join(f"{entity} {used:,}" for entity, used in budgets)
        print(
            f"at the end, on {tree.name} ({tree.commit}), {USAGE_CUSTOMER}'s agent had "
            f"{reports:,} usage reports recorded and each budget on its path had counted them "
            f"all (in reports of {AMOUNT}): {listed}"
        )
    for name in results:
        row = summarize(name, results[name], "median", {name: name})
        if row.wrk_busy > 0.9:
            print(f"note: wrk used {row.wrk_busy:.0%} of a CPU for {row.target}")
        if row.server_busy < 0.9:
            print(f"note: the server used only {row.server_busy:.0%} of a CPU for {row.target}")


# --- Main ------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Requests per second of check and enforced usage, with and without an "
        "entity four levels deep under hard budgets."
    )
    add_load_options(parser, connections=32)
    parser.add_argument("--customers", type=int, default=200, help="customers the checks rotate")
    args = parser.parse_args(argv)
    check_load_options(parser, args)
    if args.customers < 1:
        parser.error("--customers must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    compared = trees(args)
    # A budget for the whole run: seeding, start-ups, every wrk run and the stops.
    budget = len(compared) * (240 + args.customers * 0.5)
    budget += args.rounds * len(compared) * len(LABELS) * (args.duration + args.warmup + 45)

    outcome = run_within(budget, lambda: run(args, compared))
    if outcome is None:
        return 1
    report(args, *outcome, compared)
    return 0


if __name__ == "__main__":
    sys.exit(main())
