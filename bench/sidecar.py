"""The sidecar (``allotment sidecar``) against the service it fronts: check throughput over
loopback, how soon a write reaches its answers, and its memory.

The script starts ``allotment serve`` on a fresh SQLite file in a temporary directory, seeds
through the HTTP API a plan with three features and ``--customers`` customers on it (as
``sdk_check.py`` does), makes a server-scope key, and starts ``allotment sidecar`` on it
(``--upstream`` the service, that key, a buffer file in the temporary directory), waiting for
its ``/readyz`` (the change feed live). Then:

1. Memory: the sidecar's RSS (``VmRSS`` of ``/proc/<pid>/status``) right after it is ready,
   then after checking every customer's three features through it and idling 5 s.
2. It asserts that the sidecar's answers equal the service's ``POST /v1/check`` (without the
   sidecar-only ``data_age``) for sample customers.
3. For each of ``--rounds`` rounds, wrk (``-t1 -c32 --latency``, after an unmeasured warm-up)
   against ``bench/baseline_app.py`` (the floor, as in ``check_throughput.py``), the service's
   own ``POST /v1/check`` (the bare endpoint, answering from its memory) and the sidecar's,
   one after the other, never two at once; the Lua script rotates over every customer with
   five checks each. After each run: no non-2xx or socket error, and the checks counted (the
   service's ``allotment_decisions_total``, the sidecar's cache hits and misses) match wrk's,
   the sidecar reading nothing from the service and answering nothing from its fallback.
4. In each round, ``POST /v1/usage`` to the service directly (admin key) for a cached
   customer; from its answer, the sidecar's ``POST /v1/check`` until it shows the new
   ``current_usage``: the write-to-answer lag through the sidecar's change feed.

    uv run --locked python bench/sidecar.py [--rounds 3] [--duration 10] [--json]

Every server is stopped and the temporary directory removed whatever happens; every step has
a time limit, and the run a budget. This is a measurement, never a test.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
from check_throughput import (
    ADMIN_KEY,
    BENCH_DIR,
    CHECK_PATH,
    HOST,
    REQUEST_TIMEOUT,
    BenchError,
    Server,
    Tree,
    WrkResult,
    allotment_command,
    check_decisions,
    describe_tree,
    free_port,
    machine_description,
    pinned,
    run_within,
    run_wrk,
    start_server,
    start_tree,
    wait_ready,
    write_wrk_script,
)
from sdk_check import (
    FEATURES,
    LAG_CUSTOMER,
    LAG_TARGET_P99_MS,
    SEATS,
    Figures,
    compare_with_service,
    customer_id,
    fmt_us,
    lag_figures,
    measure_lag,
    median_figures,
    say,
    seed,
    server_key,
    servers_and_tempdir,
    service_check,
    wire,
)

# The load: every customer with each of these checks, (feature, requested); four in five are
# granted, and (seats, SEATS + 10) is denied with usage_limit_exceeded.
LOAD_VARIANTS: tuple[tuple[str, int | None], ...] = (
    ("sso", None),
    ("seats", 5),
    ("ai-requests", 1),
    ("seats", SEATS + 10),
    ("ai-requests", None),
)
GRANTED_SHARE = 4 / 5
TARGET_RATIO = 0.5  # the sidecar's requests/s over the bare endpoint's
IDLE_SECONDS = 5.0
LABELS = {
    "baseline": "bare Starlette endpoint (floor)",
    "service": "service POST /v1/check (bare endpoint)",
    "sidecar": "sidecar POST /v1/check",
}


def rss_kib(pid: int) -> tuple[int, int]:
    """``VmRSS`` and ``VmHWM`` (peak) of ``pid`` in KiB, from ``/proc/<pid>/status``."""
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0])
    return fields["VmRSS"], fields["VmHWM"]


def load_bodies(customers: Sequence[str]) -> list[str]:
    """Every (customer, variant) once; consecutive requests change customer and feature."""
    bodies = []
    for k in range(len(LOAD_VARIANTS)):
        for index, customer in enumerate(customers):
            feature, requested = LOAD_VARIANTS[(index + k) % len(LOAD_VARIANTS)]
            body: dict[str, Any] = {"customer": customer, "feature": feature}
            if requested is not None:
                body["requested"] = requested
            bodies.append(json.dumps(body, separators=(",", ":")))
    return bodies


_SIDECAR_METRIC = re.compile(r"^allotment_sidecar_(\w+?)(?:_total)?\s+(\S+)$")


def sidecar_counters(http: httpx.Client) -> dict[str, float]:
    """The sidecar's unlabelled counters and gauges from its ``/metrics``."""
    response = http.get("/metrics")
    if response.status_code != 200:
        raise BenchError(f"sidecar /metrics: {response.status_code} {response.text}")
    counters = {}
    for line in response.text.splitlines():
        match = _SIDECAR_METRIC.match(line)
        if match is not None:
            counters[match[1]] = float(match[2])
    return counters


# --- Main ------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="The sidecar: check throughput against the bare endpoint, write-to-answer "
        "lag, memory."
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument("--rounds", type=int, default=3, help="measurements of each figure")
    parser.add_argument(
        "--warmup", type=float, default=2.0, help="seconds of unmeasured wrk load before each run"
    )
    parser.add_argument("--customers", type=int, default=1000, help="seeded customers")
    parser.add_argument("--samples", type=int, default=500, help="write-lag samples per round")
    parser.add_argument(
        "--load-customers",
        type=int,
        help="customers the wrk load rotates over (default: all): with fewer distinct checks, "
        "more of them reuse an answer the sidecar built less than 1 s before",
    )
    parser.add_argument(
        "--pin", action="store_true", help="pin wrk to CPU 0 and the servers to CPU 1 (taskset)"
    )
    parser.add_argument("--wrk", default=shutil.which("wrk") or "/usr/bin/wrk")
    parser.add_argument("--show-wrk", action="store_true", help="print wrk's own output too")
    parser.add_argument("--budget", type=float, help="seconds the whole run may take")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = parser.parse_args(argv)
    if args.duration <= 0 or args.connections < 1 or args.rounds < 1 or args.warmup < 0:
        parser.error("--duration, --connections and --rounds must be positive, --warmup not <0")
    if args.customers < 1 or args.samples < 1:
        parser.error("--customers and --samples must be positive")
    if args.load_customers is None:
        args.load_customers = args.customers
    if not 1 <= args.load_customers <= args.customers:
        parser.error("--load-customers must be between 1 and --customers")
    if not (Path(args.wrk).is_file() and os.access(args.wrk, os.X_OK)):
        parser.error(
            f"wrk not found at {args.wrk}: install it (Debian: apt-get install wrk) or pass --wrk"
        )
    if args.pin and (shutil.which("taskset") is None or (os.cpu_count() or 1) < 2):
        parser.error("--pin needs taskset and at least two CPUs")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    machine = machine_description()
    budget = args.budget or (
        300
        + args.customers * 0.06
        + args.rounds * (3 * (args.duration + args.warmup + 45) + args.samples * 0.1 + 30)
    )
    results = run_within(budget, lambda: run(args))
    if results is None:
        return 1
    results["machine"] = machine
    results["tree"] = describe_tree(None)
    if args.json:
        print(json.dumps(_jsonable(results), indent=2))
    else:
        report(args, results)
    return 0


def _jsonable(value: Any) -> Any:
    if isinstance(value, Figures | WrkResult):
        value = {k: v for k, v in value.__dict__.items() if k != "output"}
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def run(args: argparse.Namespace) -> dict[str, Any]:
    server_cpu = 1 if args.pin else None
    customers = [customer_id(i) for i in range(args.customers)]
    with servers_and_tempdir("allotment-sidecar-bench-") as (workdir, servers):
        env = {k: v for k, v in os.environ.items() if not k.startswith("ALLOTMENT_")}
        env["ALLOTMENT_ADMIN_KEY"] = ADMIN_KEY
        tree = Tree("service", None, "")
        service = start_tree(tree, workdir / "bench.db", workdir, server_cpu, env, servers)
        admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
        with httpx.Client(base_url=service.url, headers=admin, timeout=REQUEST_TIMEOUT) as api:
            started = time.monotonic()
            seed(api, [*customers, LAG_CUSTOMER])
            say(f"seeded {args.customers + 1} customers in {time.monotonic() - started:.1f}s")
            key = server_key(api, "sidecar-bench")

            port = free_port()
            command = [*allotment_command(), "sidecar", "--upstream", service.url]
            command += ["--api-key", key, "--host", HOST, "--port", str(port)]
            command += ["--buffer", str(workdir / "sidecar-buffer.db"), "--log-level", "warning"]
            sidecar = start_server(
                "sidecar", pinned(command, server_cpu), port, workdir / "sidecar.log", env
            )
            servers.append(sidecar)
            started = time.monotonic()
            wait_ready(sidecar, "GET", "/readyz")
            say(f"sidecar ready (change feed live) in {time.monotonic() - started:.1f}s")

            baseline_port = free_port()
            bare = [sys.executable, str(BENCH_DIR / "baseline_app.py")]
            bare += ["--host", HOST, "--port", str(baseline_port), "--log-level", "warning"]
            baseline = start_server(
                "baseline", pinned(bare, server_cpu), baseline_port, workdir / "baseline.log", env
            )
            servers.append(baseline)
            wait_ready(baseline, "POST", CHECK_PATH)

            with httpx.Client(base_url=sidecar.url, timeout=REQUEST_TIMEOUT) as side:
                results = measure(args, api, side, service, sidecar, baseline, customers)
                results["sidecar_log_tail"] = sidecar.log_tail(10)
                return results


def measure(
    args: argparse.Namespace,
    api: httpx.Client,
    side: httpx.Client,
    service: Server,
    sidecar: Server,
    baseline: Server,
    customers: list[str],
) -> dict[str, Any]:
    wrk_cpu = 0 if args.pin else None
    pid = sidecar.process.pid
    memory: dict[str, float] = {}
    memory["rss_at_start_kib"], _ = rss_kib(pid)

    def sidecar_check(customer: str, feature: str, requested: int | None) -> dict[str, Any]:
        body: dict[str, Any] = {"customer": customer, "feature": feature}
        if requested is not None:
            body["requested"] = requested
        response = side.post(CHECK_PATH, json=body)
        if response.status_code != 200:
            raise BenchError(f"sidecar check {body}: {response.status_code} {response.text}")
        answer: dict[str, Any] = response.json()
        if "data_age" not in answer or answer.get("is_fallback"):
            raise BenchError(f"sidecar check {body}: no data_age, or a fallback: {answer}")
        return wire(answer)

    # Memory with every customer cached.
    started = time.monotonic()
    for customer in customers:
        for feature in FEATURES:
            sidecar_check(customer, feature, None)
    say(
        f"checked {len(customers)} customers through the sidecar in "
        f"{time.monotonic() - started:.1f}s"
    )
    counters = sidecar_counters(side)
    if counters.get("cached_entries") != len(customers):
        raise BenchError(f"the sidecar caches {counters.get('cached_entries')} customers")
    time.sleep(IDLE_SECONDS)
    memory["rss_cached_idle_kib"], memory["hwm_cached_idle_kib"] = rss_kib(pid)
    memory["cached_entries"] = counters["cached_entries"]
    say(
        f"sidecar RSS: {memory['rss_at_start_kib'] / 1024:.1f} MiB at start, "
        f"{memory['rss_cached_idle_kib'] / 1024:.1f} MiB with {len(customers)} customers "
        f"cached, after {IDLE_SECONDS:g}s idle"
    )
    for feature in FEATURES:  # the write-lag customer, cached before its samples
        sidecar_check(LAG_CUSTOMER, feature, None)

    compared = compare_with_service(sidecar_check, api, customers, lambda c: 0)
    say(f"verified {compared} sidecar answers against the service's POST /v1/check")

    # Every load body once through the service and the sidecar: caches warm, answers right.
    bodies = load_bodies(customers[: args.load_customers])
    for body in bodies:
        for client in (api, side):
            response = client.post(
                CHECK_PATH, content=body, headers={"content-type": "application/json"}
            )
            if response.status_code != 200:
                raise BenchError(f"warm-up check {body}: {response.status_code} {response.text}")
    script = sidecar.log.parent / "check.lua"
    key = api.headers["Authorization"].removeprefix("Bearer ")
    write_wrk_script(script, bodies, key)

    targets = [("baseline", baseline), ("service", service), ("sidecar", sidecar)]
    wrk_results: dict[str, list[WrkResult]] = {name: [] for name, _ in targets}
    hits: list[float] = []
    lag_rounds: dict[str, list[Figures]] = {}
    lag_posts = 0
    for number in range(1, args.rounds + 1):
        for name, server in targets:
            result, share = load(args, name, server, script, wrk_cpu)
            wrk_results[name].append(result)
            if share is not None:
                hits.append(share)
            for each in (service, sidecar, baseline):
                if each.process.poll() is not None:
                    raise BenchError(f"{each.name} died:\n{each.log_tail()}")
            say(
                f"round {number} {name}: {result.requests_per_second:,.0f} req/s, "
                f"p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms, server "
                f"{result.server_cpu_us_per_request:.1f} us CPU/request "
                f"({result.server_busy:.0%} busy), wrk {result.wrk_busy:.0%} busy"
                + ("" if share is None else f", cache hits {share:.1%}")
            )
        found = measure_lag(
            api,
            LAG_CUSTOMER,
            args.samples,
            lambda: sidecar_check(LAG_CUSTOMER, "ai-requests", None)["current_usage"],
            f"sidecar-lag-{number}",
        )
        lag_posts += args.samples
        for name, value in lag_figures(found).items():
            lag_rounds.setdefault(name, []).append(value)
        lag = lag_figures(found)["from_answer"]
        say(
            f"round {number} write->sidecar: p50 {fmt_us(lag.p50)} p99 {fmt_us(lag.p99)} "
            f"({found.missed} missed, {found.seen_at_once} seen at the first poll)"
        )

    lag_usage = service_check(api, LAG_CUSTOMER, "ai-requests", None)["current_usage"]
    if lag_usage != lag_posts:
        raise BenchError(f"{LAG_CUSTOMER}: usage {lag_usage} on the service, {lag_posts} sent")
    deadline = time.monotonic() + 15
    compared += compare_with_service(sidecar_check, api, customers, lambda c: 0, deadline=deadline)
    memory["rss_after_load_kib"], memory["hwm_after_load_kib"] = rss_kib(pid)
    final = sidecar_counters(side)
    return {
        "rounds": args.rounds,
        "customers": args.customers,
        "memory": memory,
        "compared_answers": compared,
        "wrk": wrk_results,
        "cache_hit_share": hits,
        "lag": {name: median_figures(values) for name, values in lag_rounds.items()},
        "lag_each_round": lag_rounds,
        "sidecar_counters": final,
    }


def load(
    args: argparse.Namespace, name: str, server: Server, script: Path, wrk_cpu: int | None
) -> tuple[WrkResult, float | None]:
    """A warm-up and a measured wrk run against ``server``; the decisions it made checked.
    For the sidecar, also its ``cache_hits`` over hits and misses during the run."""
    if args.warmup > 0:
        run_wrk(
            args.wrk,
            name,
            server,
            script,
            duration=args.warmup,
            connections=args.connections,
            cpu=wrk_cpu,
        )
    with httpx.Client(base_url=server.url, timeout=REQUEST_TIMEOUT) as plain:
        before = _counted(name, plain)
        result = run_wrk(
            args.wrk,
            name,
            server,
            script,
            duration=args.duration,
            connections=args.connections,
            cpu=wrk_cpu,
        )
        after = _counted(name, plain)
    if args.show_wrk:
        print(result.output, file=sys.stderr)
    if result.non_2xx or result.socket_errors:
        raise BenchError(
            f"{name}: {result.non_2xx} non-2xx responses, {result.socket_errors} socket "
            f"errors:\n{result.output}"
        )
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    # wrk does not count the answers still in flight when it stops: a few per connection.
    slack = 2 * args.connections
    if name == "service":
        total = sum(delta.values())
        if not result.requests <= total <= result.requests + slack:
            raise BenchError(f"service counted {total:.0f} checks, wrk {result.requests}: {delta}")
        if any(delta[k] for k in set(delta) - {"granted", "usage_limit_exceeded"}):
            raise BenchError(f"unexpected decisions under load: {delta}")
        granted = delta.get("granted", 0) / total if total else 0
        if abs(granted - GRANTED_SHARE) > 0.02:
            raise BenchError(f"granted share {granted:.3f}, expected {GRANTED_SHARE}: {delta}")
        return result, None
    if name == "sidecar":
        total = delta.get("cache_hits", 0) + delta.get("cache_misses", 0)
        if not result.requests <= total <= result.requests + slack:
            raise BenchError(f"sidecar counted {total:.0f} checks, wrk {result.requests}: {delta}")
        for counter in ("cache_loads", "fallback_answers", "upstream_errors", "cache_dropped"):
            if delta.get(counter, 0):
                raise BenchError(f"sidecar under load: {counter} grew by {delta[counter]:.0f}")
        return result, (delta.get("cache_hits", 0) / total if total else math.nan)
    return result, None


def _counted(name: str, http: httpx.Client) -> dict[str, float]:
    if name == "service":
        return check_decisions(http)
    if name == "sidecar":
        return sidecar_counters(http)
    return {}


# --- Reporting -------------------------------------------------------------------------------


def report(args: argparse.Namespace, results: dict[str, Any]) -> None:
    wrk: dict[str, list[WrkResult]] = results["wrk"]
    median = statistics.median
    print()
    print(f"machine: {results['machine']}")
    print(f"tree: {results['tree']}")
    print(
        f"load: wrk -t1 -c{args.connections} -d{args.duration:g}s --latency (after "
        f"{args.warmup:g}s unmeasured), {args.load_customers} customers x {len(LOAD_VARIANTS)} "
        f"checks round-robin, baseline, service and sidecar one after the other, median of "
        f"{args.rounds} round(s)"
        + (", pinned (wrk on CPU 0, servers on CPU 1)" if args.pin else "")
    )
    print()
    print(
        "| measurement | requests/s | p50 | p99 | server CPU/request | server CPU busy "
        "| wrk CPU busy | RSS | target |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    rows = {}
    for name in ("baseline", "service", "sidecar"):
        runs = wrk[name]
        rows[name] = {
            "rps": median(r.requests_per_second for r in runs),
            "p50": median(r.p50_ms for r in runs),
            "p99": median(r.p99_ms for r in runs),
            "cpu": median(r.server_cpu_us_per_request for r in runs),
            "busy": median(r.server_busy for r in runs),
            "wrk": median(r.wrk_busy for r in runs),
        }
    ratios = [
        s.requests_per_second / b.requests_per_second
        for s, b in zip(wrk["sidecar"], wrk["service"], strict=True)
    ]
    ratio = median(ratios)
    for name in ("baseline", "service", "sidecar"):
        r = rows[name]
        target = ""
        if name == "sidecar":
            verdict = "meets" if ratio >= TARGET_RATIO else "misses"
            target = f"sidecar/service >= {TARGET_RATIO:.2f}: {ratio:.2f}, {verdict}"
        print(
            f"| {LABELS[name]} | {r['rps']:,.0f} | {r['p50']:.2f} ms | {r['p99']:.2f} ms "
            f"| {r['cpu']:.1f} us | {r['busy']:.0%} | {r['wrk']:.0%} | - | {target} |"
        )
    lag = results["lag"]
    for key, label, judged in (
        ("from_answer", "write -> sidecar check, from the POST's answer", True),
        ("from_send", "write -> sidecar check, from the POST's sending", True),
        ("round_trip", "`POST /v1/usage` round trip (reference)", False),
    ):
        f: Figures = lag[key]
        verdict = ""
        if judged:
            met = "meets" if f.p99 <= LAG_TARGET_P99_MS * 1000 else "misses"
            verdict = f"p99 <= {LAG_TARGET_P99_MS:g} ms: {met}"
        print(f"| {label} | - | {fmt_us(f.p50)} | {fmt_us(f.p99)} | - | - | - | - | {verdict} |")
    memory = results["memory"]
    print(
        f"| sidecar memory right after start (ready, nothing checked) | - | - | - | - | - | - "
        f"| {memory['rss_at_start_kib'] / 1024:.1f} MiB | |"
    )
    print(
        f"| sidecar memory, {memory['cached_entries']:.0f} customers cached, {IDLE_SECONDS:g}s "
        f"idle | - | - | - | - | - | - | {memory['rss_cached_idle_kib'] / 1024:.1f} MiB | |"
    )
    print()
    listed = ", ".join(f"{r:.2f}" for r in ratios)
    print(f"sidecar/service requests/s, each round: {listed} (median {ratio:.2f})")
    by_cpu = rows["service"]["cpu"] / rows["sidecar"]["cpu"] if rows["sidecar"]["cpu"] else 0
    print(
        f"by server CPU per request, service/sidecar: {by_cpu:.2f}; sidecar/baseline "
        f"requests/s: {rows['sidecar']['rps'] / rows['baseline']['rps']:.2f}, "
        f"service/baseline: {rows['service']['rps'] / rows['baseline']['rps']:.2f}"
    )
    shares = results["cache_hit_share"]
    if shares:
        print(
            "sidecar cache hits over hits and misses during each run (its /metrics; what "
            "counts as a hit is the SDK's): " + ", ".join(f"{s:.1%}" for s in shares)
        )
    f = lag["from_answer"]
    print(
        f"write lag: max {fmt_us(f.max)}; {f.extra['polls']:.1f} polls per sample, "
        f"{f.extra['seen_at_once']:.0f} of {f.extra['samples']:.0f} seen at the first poll, "
        f"{f.extra['missed']:.0f} missed (median of rounds); each round p99: "
        + ", ".join(fmt_us(x.p99) for x in results["lag_each_round"]["from_answer"])
    )
    print(
        f"sidecar RSS after the load: {memory['rss_after_load_kib'] / 1024:.1f} MiB "
        f"(peak {memory['hwm_after_load_kib'] / 1024:.1f} MiB); {results['compared_answers']} "
        "answers compared with the service's"
    )
    counters = results["sidecar_counters"]
    print(
        "sidecar counters at the end: "
        + ", ".join(
            f"{k} {counters[k]:,.0f}"
            for k in (
                "cache_hits",
                "cache_misses",
                "cache_loads",
                "fallback_answers",
                "upstream_errors",
                "stream_connects",
                "cache_gaps",
                "cache_resets",
            )
            if k in counters
        )
    )
    for name in ("baseline", "service", "sidecar"):
        if rows[name]["wrk"] > 0.9:
            print(f"note: wrk used {rows[name]['wrk']:.0%} of a CPU against the {LABELS[name]}")
        if rows[name]["busy"] < 0.9:
            print(
                f"note: the {LABELS[name]} used only {rows[name]['busy']:.0%} of a CPU: it was "
                "not saturated"
            )


if __name__ == "__main__":
    sys.exit(main())
