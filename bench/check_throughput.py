"""Throughput of ``POST /v1/check`` against a bare Starlette endpoint, measured with wrk.

The script starts Allotment (``allotment serve``) on a fresh SQLite file in a temporary
directory, seeds a catalog and customers through the HTTP API, checks that sample answers are
what the seeded data says, warms the cache, and runs wrk against ``POST /v1/check``, rotating
over every customer and a mix of features. In the same run it starts ``bench/baseline_app.py``
(one Starlette route answering a constant body of the same size, served by uvicorn with the same
options) and runs the same load against it. The two are measured one after the other, never at
once: on a two-core machine wrk takes one core and the server the other.

    uv run python bench/check_throughput.py [--duration 10] [--connections 32] [--customers 200]
        [--before /tmp/allotment-before]

With ``--before TREE`` the ``allotment serve`` of another checkout (a git worktree of an
earlier commit, synced with ``uv sync``) is seeded and measured too, in the same rounds, so that
one run compares the code before and after a change; ``--tree TREE`` picks the checkout under
test the same way (by default, the allotment this interpreter runs).

Every server is stopped at the end whatever happens, every step has a time limit, and
everything listens on 127.0.0.1 only. This is a measurement, never a test: nothing in the test
suite times anything.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx

HOST = "127.0.0.1"
ADMIN_KEY = "bench-admin-key-" + os.urandom(8).hex()
BENCH_DIR = Path(__file__).resolve().parent
STARTUP_TIMEOUT = 30.0
REQUEST_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
CHECK_PATH = "/v1/check"

# What each seeded customer is sent during the load, and what it must answer: (feature,
# requested, has_access, winning source type, the resolved limit or value).
# Every customer holds: a paid "starter" subscription with the "extra-requests" add-on, a trial
# of "pro" (which inherits from "starter") and a promotion of 2000 ai-requests a month.
VARIANTS: tuple[tuple[str, int | None, bool, str, int | None], ...] = (
    ("sso", None, True, "trial", None),  # only pro grants sso
    ("seats", 5, True, "trial", 10),  # pro's 10 beat starter's 3
    ("ai-requests", 1, True, "promotion", 2000),  # 2000 beat 1000 (pro) and 100+500 (starter)
    ("seats", 20, False, "trial", 10),  # more than the value: usage_limit_exceeded
    ("ai-requests", 5000, False, "promotion", 2000),  # more than the limit
)
GRANTED_SHARE = sum(1 for v in VARIANTS if v[2]) / len(VARIANTS)


class BenchError(Exception):
    """The benchmark could not run or its answers were wrong."""


class _Deadline(BaseException):
    """The whole run took longer than its budget (raised from SIGALRM)."""


_T = TypeVar("_T")


def run_within(budget: float, measure: Callable[[], _T]) -> _T | None:
    """``measure()`` under a deadline of ``budget`` seconds (SIGALRM), SIGTERM ending it with
    its clean-ups run; None, after saying why on stderr, when it failed or ran out of time."""

    def on_alarm(signum: int, frame: object) -> None:
        raise _Deadline(f"the benchmark ran longer than its {budget:.0f}s budget")

    def on_term(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGALRM, on_alarm)
    signal.signal(signal.SIGTERM, on_term)
    signal.alarm(int(budget))
    try:
        return measure()
    except (BenchError, _Deadline, httpx.HTTPError, sqlite3.Error) as error:
        print(f"benchmark failed: {type(error).__name__}: {error}", file=sys.stderr)
        return None
    finally:
        signal.alarm(0)


# --- Servers ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def allotment_command(tree: Path | None = None) -> list[str]:
    """``allotment`` of checkout ``tree`` (its ``.venv``), or of this interpreter's environment."""
    if tree is not None:
        script = tree / ".venv" / "bin" / "allotment"
        if not script.exists():
            raise BenchError(f"{script} is missing: run `uv sync` in {tree} first")
        return [str(script)]
    script = Path(sys.executable).parent / "allotment"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from allotment.cli import main; main()"]


@dataclass(frozen=True)
class Tree:
    """A checkout whose ``allotment serve`` is measured.

    ``name`` keys the results (``allotment`` for the one under test, ``before`` for the one it
    is compared with); ``path`` is None for the allotment this interpreter runs.
    """

    name: str
    path: Path | None
    commit: str

    def command(self) -> list[str]:
        return allotment_command(self.path)


def tree_root(path: Path | None) -> Path | None:
    """The checkout ``path``, or the one this interpreter imports ``allotment`` from."""
    if path is not None:
        return path
    spec = importlib.util.find_spec("allotment")  # finds the package without importing it
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).resolve().parents[2]  # <tree>/src/allotment/__init__.py


def describe_tree(path: Path | None) -> str:
    """The checkout's commit, and whether its ``src`` differs from that commit."""
    root = tree_root(path)
    if root is None:
        return "unknown"

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, check=False
        )
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD") or str(root)
    if git("status", "--porcelain", "--", "src"):
        commit += " + uncommitted src changes"
    return commit


def trees(args: argparse.Namespace) -> list[Tree]:
    """The allotment under test, then the one given by ``--before`` if any."""
    found = [Tree("allotment", args.tree, describe_tree(args.tree))]
    if args.before is not None:
        found.append(Tree("before", args.before, describe_tree(args.before)))
    return found


def tree_labels(trees: Sequence[Tree], what: str) -> dict[str, str]:
    """Table labels for each tree's allotment, with its commit when two are compared."""
    if len(trees) == 1:
        return {trees[0].name: f"allotment {what}"}
    return {
        tree.name: f"allotment {what} ({'before, ' if tree.name == 'before' else ''}{tree.commit})"
        for tree in trees
    }


def pinned(command: list[str], cpu: int | None) -> list[str]:
    if cpu is None:
        return command
    return ["taskset", "-c", str(cpu), *command]


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.process.poll() is not None:
            print(
                f"{self.name} had already exited with {self.process.returncode}; its log ends:\n"
                f"{self.log_tail()}",
                file=sys.stderr,
            )
            return
        self.process.send_signal(signal.SIGINT)  # uvicorn shuts down cleanly on SIGINT
        try:
            self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(STOP_TIMEOUT)


def start_server(
    name: str, command: list[str], port: int, log: Path, env: dict[str, str]
) -> Server:
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # a Ctrl-C reaches only this script, which stops it
        )
    return Server(name, process, port, log)


def wait_ready(server: Server, method: str, path: str) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    with httpx.Client(base_url=server.url, timeout=2.0) as client:
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                raise BenchError(
                    f"{server.name} exited with {server.process.returncode}:\n{server.log_tail()}"
                )
            with contextlib.suppress(httpx.TransportError):
                if client.request(method, path).status_code == 200:
                    return
            time.sleep(0.1)
    raise BenchError(f"{server.name} was not ready in {STARTUP_TIMEOUT:.0f}s:\n{server.log_tail()}")


def start_tree(
    tree: Tree,
    database: Path,
    workdir: Path,
    server_cpu: int | None,
    env: dict[str, str],
    servers: list[Server],
) -> Server:
    """``allotment serve`` from ``tree`` on ``database``: started, added to ``servers`` (so
    that it is stopped with them) and answering ``/livez``."""
    port = free_port()
    serve = [*tree.command(), "serve", "--db", str(database)]
    serve += ["--host", HOST, "--port", str(port), "--log-level", "warning"]
    log = workdir / f"{tree.name}.log"
    server = start_server(tree.name, pinned(serve, server_cpu), port, log, env)
    servers.append(server)
    wait_ready(server, "GET", "/livez")
    return server


def lua_key_counter() -> list[str]:
    """Lua lines giving each wrk thread a number and a request counter, and taking a key
    prefix from the script's first argument: ``prefix-thread-counter`` is unique per run."""
    return [
        "local threads = 0",
        "thread_number = 0",
        'local prefix = "bench"',
        "local counter = 0",
        "setup = function(thread)",
        "  threads = threads + 1",
        '  thread:set("thread_number", threads)',
        "end",
        "init = function(args)",
        "  if args[1] then prefix = args[1] end",
        "end",
    ]


@contextlib.contextmanager
def running(servers: list[Server]) -> Iterator[None]:
    """Stop every server started into ``servers``, whatever happens."""
    try:
        yield
    finally:
        for server in servers:
            try:
                server.stop()
            except Exception as error:  # keep stopping the others
                print(f"could not stop {server.name}: {error}", file=sys.stderr)


# --- Seeding and verification ----------------------------------------------------------------


def customer_id(index: int) -> str:
    return f"bench-{index:04d}"


def call(client: httpx.Client, method: str, path: str, body: Any, expect: int) -> Any:
    response = client.request(method, path, json=body)
    if response.status_code != expect:
        raise BenchError(f"{method} {path}: {response.status_code} {response.text}")
    return response.json() if response.content else None


def seed(client: httpx.Client, customers: int) -> None:
    put = "PUT"
    call(client, put, "/v1/features/sso", {"name": "SSO", "kind": "boolean"}, 201)
    call(client, put, "/v1/features/seats", {"name": "Seats", "kind": "numeric"}, 201)
    call(client, put, "/v1/features/ai-requests", {"name": "AI requests", "kind": "metered"}, 201)
    call(client, put, "/v1/products/coder", {"name": "Coder"}, 201)
    starter = {
        "product": "coder",
        "name": "Starter",
        "entitlements": {
            "seats": {"value": 3},
            "ai-requests": {"limit": 100, "reset": "day", "enforcement": "hard"},
        },
    }
    call(client, put, "/v1/plans/starter", starter, 201)
    pro = {
        "product": "coder",
        "name": "Pro",
        "parent": "starter",
        "trial_days": 14,
        "entitlements": {
            "sso": {},
            "seats": {"value": 10},
            "ai-requests": {"limit": 1000, "reset": "month", "enforcement": "hard"},
        },
    }
    call(client, put, "/v1/plans/pro", pro, 201)
    extra = {
        "product": "coder",
        "name": "Extra requests",
        "entitlements": {"ai-requests": {"limit": 500, "mode": "increment"}},
    }
    call(client, put, "/v1/addons/extra-requests", extra, 201)
    promotion_ends = (datetime.now(UTC) + timedelta(days=60)).strftime("%Y-%m-%dT%H:%M:%SZ")
    for index in range(customers):
        customer = f"/v1/customers/{customer_id(index)}"
        call(client, put, customer, {"name": f"Bench customer {index}"}, 201)
        paid = {"plan": "starter", "addons": [{"id": "extra-requests", "quantity": 1}]}
        call(client, "POST", f"{customer}/subscriptions", paid, 201)
        call(client, "POST", f"{customer}/subscriptions", {"plan": "pro", "trial": True}, 201)
        promotion = {
            "feature": "ai-requests",
            "limit": 2000,
            "reset": "month",
            "enforcement": "hard",
            "ends_at": promotion_ends,
            "reason": "benchmark",
        }
        call(client, "POST", f"{customer}/promotions", promotion, 201)


def check_body(customer: str, feature: str, requested: int | None) -> dict[str, Any]:
    body: dict[str, Any] = {"customer": customer, "feature": feature}
    if requested is not None:
        body["requested"] = requested
    return body


def load_bodies(customers: int) -> list[str]:
    """Every (customer, variant) once; consecutive requests change customer and feature."""
    bodies = []
    for k in range(len(VARIANTS)):
        for index in range(customers):
            feature, requested, *_ = VARIANTS[(index + k) % len(VARIANTS)]
            body = check_body(customer_id(index), feature, requested)
            bodies.append(json.dumps(body, separators=(",", ":")))
    return bodies


def verify_answers(client: httpx.Client, customers: int) -> int:
    """Assert that sample checks answer what the seeded data says; return how many were made."""
    sample = sorted(
        {0, min(1, customers - 1), customers // 2, customers - 1, *range(0, customers, 17)}
    )
    made = 0
    for index in sample:
        for feature, requested, has_access, source, amount in VARIANTS:
            answer = call(
                client, "POST", CHECK_PATH, check_body(customer_id(index), feature, requested), 200
            )
            made += 1
            problems = []
            if answer["has_access"] is not has_access:
                problems.append(f"has_access {answer['has_access']}, expected {has_access}")
            if not has_access and answer["access_denied_reason"] != "usage_limit_exceeded":
                problems.append(f"reason {answer['access_denied_reason']}")
            if (answer["source"] or {}).get("type") != source:
                problems.append(f"source {answer['source']}, expected {source}")
            resolved = answer["value"] if feature == "seats" else answer["usage_limit"]
            if amount is not None and resolved != amount:
                problems.append(f"limit/value {resolved}, expected {amount}")
            if problems:
                raise BenchError(f"check {customer_id(index)}/{feature}: {'; '.join(problems)}")
    missing = call(client, "POST", CHECK_PATH, check_body("bench-nobody", "sso", None), 200)
    if missing["has_access"] or missing["access_denied_reason"] != "customer_not_found":
        raise BenchError(f"unknown customer answered {missing}")
    return made + 1


def warm(client: httpx.Client, bodies: Sequence[str]) -> None:
    """Send every load body once: snapshots, resolutions and usage windows are then cached."""
    for body in bodies:
        response = client.post(
            CHECK_PATH, content=body, headers={"content-type": "application/json"}
        )
        if response.status_code != 200:
            raise BenchError(f"warm-up check {body}: {response.status_code} {response.text}")


_DECISION = re.compile(r"^allotment_decisions_total\{(?P<labels>[^}]*)\}\s+(?P<value>\S+)$")


def check_decisions(client: httpx.Client) -> dict[str, float]:
    """Checks answered so far by outcome, from the server's /metrics."""
    counts: dict[str, float] = {}
    for line in client.get("/metrics").text.splitlines():
        match = _DECISION.match(line)
        if match is None:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match["labels"]))
        if labels.get("route") == "check":
            counts[labels["outcome"]] = counts.get(labels["outcome"], 0) + float(match["value"])
    return counts


# --- wrk -------------------------------------------------------------------------------------


def lua_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_wrk_script(path: Path, bodies: Sequence[str], key: str) -> None:
    """A script sending ``bodies`` round-robin, each request formatted once in init()."""
    lines = [
        "-- Generated by bench/check_throughput.py: POST /v1/check, bodies round-robin.",
        "local bodies = {",
        *(f"  {lua_string(body)}," for body in bodies),
        "}",
        "local headers = {",
        f'  ["Authorization"] = {lua_string("Bearer " + key)},',
        '  ["Content-Type"] = "application/json",',
        "}",
        "local requests = {}",
        "local count = 0",
        "local next_index = 0",
        "init = function(args)",
        "  for i, body in ipairs(bodies) do",
        f'    requests[i] = wrk.format("POST", "{CHECK_PATH}", headers, body)',
        "  end",
        "  count = #requests",
        "end",
        "request = function()",
        "  next_index = next_index % count + 1",
        "  return requests[next_index]",
        "end",
    ]
    path.write_text("\n".join(lines) + "\n")


@dataclass
class WrkResult:
    target: str
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    socket_errors: int
    output: str
    wall_seconds: float = 0.0
    server_cpu_seconds: float = 0.0  # user + system time of the server process during the run
    wrk_cpu_seconds: float = 0.0

    @property
    def server_cpu_us_per_request(self) -> float:
        return 1e6 * self.server_cpu_seconds / self.requests if self.requests else 0.0

    @property
    def server_busy(self) -> float:
        return self.server_cpu_seconds / self.wall_seconds if self.wall_seconds else 0.0

    @property
    def wrk_busy(self) -> float:
        return self.wrk_cpu_seconds / self.wall_seconds if self.wall_seconds else 0.0


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def _to_ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if match is None:
        raise BenchError(f"cannot read wrk time {text!r}")
    return float(match[1]) * _UNITS_MS[match[2]]


def parse_wrk(target: str, output: str) -> WrkResult:
    def find(pattern: str) -> re.Match[str]:
        match = re.search(pattern, output, re.MULTILINE)
        if match is None:
            raise BenchError(f"wrk output has no {pattern!r}:\n{output}")
        return match

    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    return WrkResult(
        target=target,
        requests_per_second=float(find(r"^Requests/sec:\s+([\d.]+)")[1]),
        p50_ms=_to_ms(find(r"^\s+50%\s+(\S+)")[1]),
        p99_ms=_to_ms(find(r"^\s+99%\s+(\S+)")[1]),
        requests=int(find(r"^\s+(\d+) requests in")[1]),
        non_2xx=int(non_2xx[1]) if non_2xx else 0,
        socket_errors=sum(int(n) for n in errors.groups()) if errors else 0,
        output=output,
    )


def process_cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a running process (all its threads), from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # After the command name: state is field 3 of stat(5), utime 14 and stime 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_wrk(
    wrk: str,
    target: str,
    server: Server,
    script: Path,
    *,
    duration: float,
    connections: int,
    cpu: int | None,
    path: str = CHECK_PATH,
    script_args: Sequence[str] = (),
) -> WrkResult:
    """One wrk run of ``script`` against ``path``; ``script_args`` go to the script."""
    command = [wrk, "-t1", f"-c{connections}", f"-d{duration:g}s", "--timeout", "5s"]
    command += ["--latency", "-s", str(script), server.url + path]
    if script_args:
        command += ["--", *script_args]
    return measure_wrk(target, server, pinned(command, cpu), duration)


def measure_wrk(target: str, server: Server, command: list[str], duration: float) -> WrkResult:
    """Run wrk to the end and read its figures, with the CPU the server and wrk spent."""
    server_cpu = process_cpu_seconds(server.process.pid)
    wrk_cpu = children_cpu_seconds()  # wrk is the only child that ends (and is reaped) meanwhile
    started = time.monotonic()
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=duration + 30, check=False
        )
    except subprocess.TimeoutExpired as error:
        raise BenchError(f"wrk against {target} did not finish in {duration + 30:g}s") from error
    wall = time.monotonic() - started
    if done.returncode != 0:
        raise BenchError(f"wrk against {target} failed ({done.returncode}):\n{done.stderr}")
    result = parse_wrk(target, done.stdout)
    result.wall_seconds = wall
    result.server_cpu_seconds = process_cpu_seconds(server.process.pid) - server_cpu
    result.wrk_cpu_seconds = children_cpu_seconds() - wrk_cpu
    return result


# --- Reporting -------------------------------------------------------------------------------

LABELS = {"baseline": "bare Starlette endpoint", "allotment": "allotment POST /v1/check"}
# Allotment's check against the bare endpoint, in requests/s. The first issue asked for half;
# the change log's issue asks that it stay at or above 0.70.
TARGET_RATIO = 0.70


@dataclass
class Row:
    target: str
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    server_cpu_us: float
    server_busy: float
    wrk_busy: float


def summarize(
    target: str, results: Sequence[WrkResult], how: str, labels: Mapping[str, str] = LABELS
) -> Row:
    """The best round (by requests/s), or the median of each figure over the rounds."""
    best = max(results, key=lambda r: r.requests_per_second)
    chosen = [best] if how == "best" else list(results)
    median = statistics.median

    return Row(
        labels[target],
        median(r.requests_per_second for r in chosen),
        median(r.p50_ms for r in chosen),
        median(r.p99_ms for r in chosen),
        median(r.server_cpu_us_per_request for r in chosen),
        median(r.server_busy for r in chosen),
        median(r.wrk_busy for r in chosen),
    )


def table(rows: Sequence[Row], rate: str = "requests/s") -> str:
    lines = [
        f"| target | {rate} | p50 | p99 | server CPU/request | server CPU busy | wrk CPU busy |",
        "|---|---:|---:|---:|---:|---:|---:|",
        *(
            f"| {r.target} | {r.requests_per_second:,.0f} | {r.p50_ms:.2f} ms "
            f"| {r.p99_ms:.2f} ms | {r.server_cpu_us:.1f} us | {r.server_busy:.0%} "
            f"| {r.wrk_busy:.0%} |"
            for r in rows
        ),
    ]
    return "\n".join(lines)


def machine_description() -> str:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    nproc = subprocess.run(["nproc"], capture_output=True, text=True, check=False).stdout.strip()
    load = ""
    with contextlib.suppress(OSError):
        load = ", load average " + " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return (
        f"{platform.system()} {platform.release()}, {model or platform.machine()}, "
        f"nproc {nproc or os.cpu_count()}, Python {platform.python_version()}{load}"
    )


def report(
    args: argparse.Namespace, results: dict[str, list[WrkResult]], compared: Sequence[Tree]
) -> None:
    labels = {"baseline": LABELS["baseline"], **tree_labels(compared, "POST /v1/check")}
    names = ["baseline", *(tree.name for tree in compared)]
    print()
    print(f"machine: {machine_description()}")
    print(
        f"load: wrk -t1 -c{args.connections} -d{args.duration:g}s --latency, {args.customers} "
        f"customers x {len(VARIANTS)} checks round-robin, {args.rounds} round(s), "
        + ", ".join(names)
        + " alternating"
        + (", pinned (wrk on CPU 0, server on CPU 1)" if args.pin else "")
    )
    print()
    hows = ("median", "best") if args.rounds > 1 else ("median",)
    for how in hows:
        rows = {name: summarize(name, results[name], how, labels) for name in names}
        if args.rounds > 1:
            print(f"{how} of {args.rounds} rounds:\n")
        print(table(list(rows.values())))
        print()
        base = rows["baseline"]
        for tree in compared:
            row = rows[tree.name]
            ratio = row.requests_per_second / base.requests_per_second
            cpu_ratio = base.server_cpu_us / row.server_cpu_us if row.server_cpu_us else 0
            verdict = "meets" if ratio >= TARGET_RATIO else "misses"
            print(
                f"{row.target}/baseline: requests/s {ratio:.2f} ({verdict} the "
                f"{TARGET_RATIO:.2f} target); by server CPU per request {cpu_ratio:.2f}"
            )
        if "before" in rows:
            now, then = rows["allotment"], rows["before"]
            change = now.requests_per_second / then.requests_per_second
            print(
                f"allotment/before: requests/s {change:.2f}; server CPU per request "
                f"{now.server_cpu_us:.1f} us against {then.server_cpu_us:.1f} us"
            )
        print()
    if args.rounds > 1:
        for tree in compared:
            ratios = [
                a.requests_per_second / b.requests_per_second
                for b, a in zip(results["baseline"], results[tree.name], strict=True)
            ]
            listed = ", ".join(f"{r:.2f}" for r in ratios)
            print(
                f"{labels[tree.name]}/baseline, requests/s of each round: {listed} "
                f"(median {statistics.median(ratios):.2f})"
            )
    for row in (summarize(name, results[name], "median", labels) for name in names):
        if row.wrk_busy > 0.9:
            print(
                f"note: wrk used {row.wrk_busy:.0%} of a CPU against the {row.target}: "
                "the load generator may be what limits that figure"
            )
        if row.server_busy < 0.9:
            print(
                f"note: the {row.target} used only {row.server_busy:.0%} of a CPU: "
                "it was not saturated (other processes or wrk held the CPUs)"
            )


# --- Main ------------------------------------------------------------------------------------


def add_load_options(parser: argparse.ArgumentParser, connections: int) -> None:
    """The options every wrk benchmark here takes."""
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=connections, help="wrk connections")
    parser.add_argument("--rounds", type=int, default=1, help="measurements of each target")
    parser.add_argument(
        "--warmup", type=float, default=2.0, help="seconds of unmeasured wrk load before each run"
    )
    parser.add_argument(
        "--pin",
        action="store_true",
        help="pin wrk to CPU 0 and the servers to CPU 1 (taskset)",
    )
    parser.add_argument("--wrk", default=shutil.which("wrk") or "/usr/bin/wrk")
    parser.add_argument("--show-wrk", action="store_true", help="print wrk's own output too")
    parser.add_argument(
        "--tree",
        type=Path,
        help="the checkout whose `allotment serve` is measured (its .venv, made by `uv sync`); "
        "default: the allotment this interpreter runs",
    )
    parser.add_argument(
        "--before",
        type=Path,
        help="another checkout (e.g. a git worktree of an earlier commit, synced with `uv sync`) "
        "measured in the same run, alternating with the others, and compared",
    )


def check_load_options(
    parser: argparse.ArgumentParser, args: argparse.Namespace, *, needs_wrk: bool = True
) -> None:
    """Refuse values of the options of ``add_load_options`` that cannot run."""
    if args.duration <= 0 or args.connections < 1 or args.rounds < 1:
        parser.error("--duration, --connections and --rounds must be positive")
    if args.warmup < 0:
        parser.error("--warmup must not be negative")
    if needs_wrk and not Path(args.wrk).exists():
        parser.error(f"wrk not found at {args.wrk} (Debian: apt-get install wrk)")
    if args.pin and (shutil.which("taskset") is None or (os.cpu_count() or 1) < 2):
        parser.error("--pin needs taskset and at least two CPUs")
    for option, tree in (("--tree", args.tree), ("--before", args.before)):
        if tree is not None and not (tree / ".venv" / "bin" / "allotment").exists():
            parser.error(f"{option} {tree}: no .venv/bin/allotment there (run `uv sync` in it)")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Requests per second of POST /v1/check against a bare Starlette endpoint."
    )
    add_load_options(parser, connections=32)
    parser.add_argument("--customers", type=int, default=200, help="seeded customers")
    args = parser.parse_args(argv)
    check_load_options(parser, args)
    if args.customers < 1:
        parser.error("--customers must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    compared = trees(args)
    # A budget for the whole run: seeding, start-ups, every wrk run and the stops.
    budget = 180 * len(compared)
    budget += args.rounds * (1 + len(compared)) * (args.duration + args.warmup + 45)

    results = run_within(budget, lambda: run(args, compared))
    if results is None:
        return 1
    report(args, results, compared)
    return 0


def run(args: argparse.Namespace, compared: Sequence[Tree]) -> dict[str, list[WrkResult]]:
    server_cpu, wrk_cpu = (1, 0) if args.pin else (None, None)
    servers: list[Server] = []
    with tempfile.TemporaryDirectory(prefix="allotment-bench-") as tmp, running(servers):
        workdir = Path(tmp)
        env = {k: v for k, v in os.environ.items() if not k.startswith("ALLOTMENT_")}
        env["ALLOTMENT_ADMIN_KEY"] = ADMIN_KEY

        bodies = load_bodies(args.customers)
        headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
        targets: list[tuple[str, Server]] = []
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
                    f"{tree.name} ({tree.commit}): seeded {args.customers} customers in "
                    f"{elapsed:.1f}s",
                    file=sys.stderr,
                )
                verified = verify_answers(api, args.customers)
                print(f"{tree.name}: verified {verified} sample answers", file=sys.stderr)
                warm(api, bodies)
            targets.append((tree.name, allotment))

        script = workdir / "check.lua"
        write_wrk_script(script, bodies, ADMIN_KEY)

        baseline_port = free_port()
        bare = [sys.executable, str(BENCH_DIR / "baseline_app.py")]
        bare += ["--host", HOST, "--port", str(baseline_port), "--log-level", "warning"]
        baseline = start_server(
            "baseline", pinned(bare, server_cpu), baseline_port, workdir / "baseline.log", env
        )
        servers.append(baseline)
        wait_ready(baseline, "POST", CHECK_PATH)
        targets.insert(0, ("baseline", baseline))

        results: dict[str, list[WrkResult]] = {name: [] for name, _ in targets}
        for round_number in range(1, args.rounds + 1):
            for name, server in targets:
                result = measure(args, name, server, script, wrk_cpu)
                for each in servers:
                    if each.process.poll() is not None:
                        raise BenchError(f"{each.name} died:\n{each.log_tail()}")
                results[name].append(result)
                print(
                    f"round {round_number} {name}: {result.requests_per_second:,.0f} req/s, "
                    f"p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms, "
                    f"server {result.server_cpu_us_per_request:.1f} us CPU/request "
                    f"({result.server_busy:.0%} busy), wrk {result.wrk_busy:.0%} busy",
                    file=sys.stderr,
                )
    return results


def measure(
    args: argparse.Namespace, name: str, server: Server, script: Path, wrk_cpu: int | None
) -> WrkResult:
    """One warm-up and one measured wrk run; for Allotment, the decisions are checked too."""
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
        before = check_decisions(plain) if name != "baseline" else {}
        result = run_wrk(
            args.wrk,
            name,
            server,
            script,
            duration=args.duration,
            connections=args.connections,
            cpu=wrk_cpu,
        )
        after = check_decisions(plain) if name != "baseline" else {}
    if args.show_wrk:
        print(result.output, file=sys.stderr)
    if result.non_2xx or result.socket_errors:
        raise BenchError(
            f"{name}: {result.non_2xx} non-2xx responses, "
            f"{result.socket_errors} socket errors:\n{result.output}"
        )
    if name != "baseline":
        check_load_outcomes(before, after, result, args.connections)
    return result


def check_load_outcomes(
    before: dict[str, float], after: dict[str, float], result: WrkResult, connections: int
) -> None:
    """The decisions made under load match the mix sent: real answers, not errors."""
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    total = sum(delta.values())
    # wrk does not count responses still in flight when it stops: allow a few per connection.
    if not result.requests <= total <= result.requests + 2 * connections:
        raise BenchError(f"server counted {total:.0f} checks, wrk {result.requests}: {delta}")
    unexpected = set(delta) - {"granted", "usage_limit_exceeded"}
    if any(delta[k] for k in unexpected):
        raise BenchError(f"unexpected decisions under load: {delta}")
    granted = delta.get("granted", 0) / total if total else 0
    if abs(granted - GRANTED_SHARE) > 0.02:
        raise BenchError(f"granted share {granted:.3f}, expected {GRANTED_SHARE:.3f}: {delta}")


if __name__ == "__main__":
    sys.exit(main())
