"""CPU time of ``POST /v1/check`` inside the application, without HTTP: what a change to the
check path costs, resolved finer than wrk can on a shared machine.

The script builds the app with ``create_app`` on a fresh SQLite file, seeds a catalog and 50
customers through the app itself, warms the cache, then calls the ASGI app directly (a prebuilt
scope, a body, a ``send`` that drops the answer) for 100 checks in a row, round after round,
and reports the thread CPU time per check: the minimum over the rounds (the least disturbed)
and the median. Every check is answered from memory, as in ``check_throughput.py``.

With ``--http`` each check goes in as the bytes of an HTTP/1.1 request, fed to the protocol
``allotment serve`` runs (uvicorn's httptools protocol, or the tree's own subclass of it) on a
transport that keeps what is written: uvicorn's parsing, its request cycle and its writing of
the answer are then measured too, still without a socket or a second process.

    uv run python bench/check_inprocess.py [--rounds 30] [--http] [--before /tmp/allotment-before]

With ``--before TREE`` the same measurement runs in ``TREE/.venv/bin/python`` too, alternating
with this checkout's run after run, so that noise on the machine hits both alike. This is a
measurement, never a test.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
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


class _Transport(asyncio.Transport):
    """A connection that keeps what the server writes to it."""

    def __init__(self) -> None:
        super().__init__()
        self.written = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += len(data)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        addresses = {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8080)}
        return addresses.get(name, default)

    def is_closing(self) -> bool:
        return False

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def _http_checker(app: Any) -> Any:
    """A function that sends one check's body through the tree's HTTP protocol and waits for
    its answer to be written."""
    import uvicorn
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    from uvicorn.server import ServerState

    protocol_class: Any = HttpToolsProtocol
    try:  # the protocol ``allotment serve`` runs, in the trees that choose their own
        served = importlib.import_module("allotment.api.protocol")
    except ImportError:
        pass
    else:
        if hasattr(served, "protocol_for"):
            protocol_class = served.protocol_for(app)
        else:
            protocol_class = served.BoundedHttpToolsProtocol
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    config.load()
    state = ServerState()
    protocol = protocol_class(config=config, server_state=state, app_state={})
    transport = _Transport()
    protocol.connection_made(transport)
    head = (
        "POST /v1/check HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {ADMIN_KEY}\r\nContent-Type: application/json\r\n"
    ).encode()

    async def check(body: bytes) -> None:
        written = transport.written
        protocol.data_received(head + b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        for task in list(state.tasks):
            await task
        if transport.written == written:
            raise SystemExit("a check was not answered")

    return check


async def _measure(rounds: int, http: bool) -> list[float]:
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

    if http:
        check = _http_checker(app)
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


def _child(rounds: int, http: bool) -> None:
    try:  # as uvicorn runs the server when uvloop is installed
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    per_check = asyncio.run(_measure(rounds, http))
    print(json.dumps(per_check))
    sys.stdout.flush()
    os._exit(0)  # the store's thread and the open file need no orderly goodbye here


def _run(python: Path, rounds: int, http: bool) -> list[float]:
    done = subprocess.run(
        [str(python), __file__, "--child", "--rounds", str(rounds)] + (["--http"] if http else []),
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
    parser.add_argument("--http", action="store_true", help="through uvicorn's HTTP protocol")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.rounds, args.http)
        return
    trees = {"this checkout": Path(sys.executable)}
    if args.before is not None:
        trees["before"] = args.before / ".venv" / "bin" / "python"
    results: dict[str, list[float]] = {name: [] for name in trees}
    for run in range(args.runs):
        for name, python in trees.items():
            per_check = _run(python, args.rounds, args.http)
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
