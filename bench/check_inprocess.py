"""CPU time of ``POST /v1/check`` inside the application, without HTTP: what a change to the
check path costs, resolved finer than wrk can on a shared machine.

The script builds the app with ``create_app`` on a fresh SQLite file, seeds a catalog and 50
customers through the app itself, warms the cache, then calls the ASGI app directly (a prebuilt
scope, a body, a ``send`` that drops the answer) for 100 checks in a row, round after round,
and reports the thread CPU time per check: the minimum over the rounds (the least disturbed)
and the median. Every check is answered from memory, as in ``check_throughput.py``.

    uv run python bench/check_inprocess.py [--rounds 30] [--before /tmp/allotment-before]

With ``--before TREE`` the same measurement runs in ``TREE/.venv/bin/python`` too, alternating
with this checkout's run after run, so that noise on the machine hits both alike. This is a
measurement, never a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ADMIN_KEY = "bench-admin-key"
CUSTOMERS = 50


async def _call(app: Any, method: str, path: str, body: Any) -> tuple[int, bytes]:
    payload = json.dumps(body).encode()
    scope = _scope(method, path)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": payload, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent[0]["status"], sent[1].get("body", b"")


def _scope(method: str, path: str) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"authorization", f"Bearer {ADMIN_KEY}".encode()),
            (b"content-type", b"application/json"),
        ],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8080),
    }


async def _measure(rounds: int) -> list[float]:
    from allotment.api.app import create_app
    from allotment.config import Settings

    directory = tempfile.mkdtemp(prefix="check-inprocess-")
    app = create_app(Settings(database_path=Path(directory) / "bench.db", admin_key=ADMIN_KEY))
    plan = {
        "product": "coder",
        "name": "Team",
        "entitlements": {"ai-requests": {"limit": 1000, "reset": "month"}, "sso": {}},
    }
    for path, body in [
        ("/v1/features/ai-requests", {"name": "Requests", "kind": "metered"}),
        ("/v1/features/sso", {"name": "SSO", "kind": "boolean"}),
        ("/v1/products/coder", {"name": "Coder"}),
        ("/v1/plans/team", plan),
    ]:
        status, answer = await _call(app, "PUT", path, body)
        assert status in (200, 201), answer
    for n in range(CUSTOMERS):
        status, answer = await _call(app, "PUT", f"/v1/customers/c{n}", {"name": "C"})
        assert status == 201, answer
        subscription = {"plan": "team"}
        status, answer = await _call(app, "POST", f"/v1/customers/c{n}/subscriptions", subscription)
        assert status == 201, answer
    bodies = [
        json.dumps(
            {"customer": f"c{n}", "feature": feature}
            | ({"requested": 5} if feature == "ai-requests" else {})
        ).encode()
        for n in range(CUSTOMERS)
        for feature in ("ai-requests", "sso")
    ]
    scope = _scope("POST", "/v1/check")

    async def drop(message: dict[str, Any]) -> None:
        pass

    async def check(body: bytes) -> None:
        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        await app(dict(scope), receive, drop)

    status, answer = await _call(app, "POST", "/v1/check", json.loads(bodies[0]))
    if status != 200 or b'"has_access":true' not in answer:
        raise SystemExit(f"the sample check answered {status} {answer!r}")
    for _ in range(20):  # warm: snapshots loaded, the interpreter's caches specialised
        for body in bodies:
            await check(body)
    per_check = []
    for _ in range(rounds):
        started = time.thread_time()
        for _ in range(10):
            for body in bodies:
                await check(body)
        per_check.append((time.thread_time() - started) / (10 * len(bodies)) * 1e6)
    return per_check


def _child(rounds: int) -> None:
    per_check = asyncio.run(_measure(rounds))
    print(json.dumps(per_check))
    sys.stdout.flush()
    os._exit(0)  # the store's thread and the open file need no orderly goodbye here


def _run(python: Path, rounds: int) -> list[float]:
    done = subprocess.run(
        [str(python), __file__, "--child", "--rounds", str(rounds)],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    result: list[float] = json.loads(done.stdout)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=30, help="rounds of 1,000 checks per run")
    parser.add_argument("--runs", type=int, default=4, help="runs of each tree, alternating")
    parser.add_argument("--before", type=Path, help="another checkout with a synced .venv")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.rounds)
        return
    trees = {"this checkout": Path(sys.executable)}
    if args.before is not None:
        trees["before"] = args.before / ".venv" / "bin" / "python"
    results: dict[str, list[float]] = {name: [] for name in trees}
    for run in range(args.runs):
        for name, python in trees.items():
            per_check = _run(python, args.rounds)
            results[name] += per_check
            print(f"run {run + 1} {name}: min {min(per_check):.2f} µs/check", file=sys.stderr)
    print("| tree | CPU per check, min | median | rounds |")
    print("|---|---:|---:|---:|")
    for name, values in results.items():
        median = statistics.median(values)
        print(f"| {name} | {min(values):.2f} µs | {median:.2f} µs | {len(values)} |")
    if "before" in results:
        difference = min(results["this checkout"]) - min(results["before"])
        print(f"\nthis checkout - before, by the minimum: {difference:+.2f} µs per check")


if __name__ == "__main__":
    main()
