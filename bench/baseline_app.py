"""The baseline for the check benchmark: a bare Starlette endpoint answering a constant body.

One POST route on ``/v1/check`` returns a prebuilt JSON body the size and shape of a real
metered check result, served by uvicorn with the options ``allotment serve`` passes. It does no
authentication, no decoding and no resolution, and it does not read the request body: it is the
floor of what the framework and server cost per request, which the check path is compared to.

Run it alone with ``python bench/baseline_app.py --port 8099``.
"""

from __future__ import annotations

import argparse
import json

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

# A metered check result as Allotment writes it (same fields, similar size).
BODY = json.dumps(
    {
        "customer": "bench-0042",
        "feature": "ai-requests",
        "entity": None,
        "has_access": True,
        "access_denied_reason": None,
        "kind": "metered",
        "is_unlimited": False,
        "value": None,
        "usage_limit": 2000,
        "current_usage": 0,
        "reserved": 0,
        "remaining": 2000,
        "requested": 1,
        "enforcement": "hard",
        "reset_period": "month",
        "usage_period_start": "2026-11-24T10:00:00Z",
        "usage_period_end": "2026-12-24T10:00:00Z",
        "source": {"type": "promotion", "id": "promo_01JDX4G5M2K7T9W3Q8R6Y1Z0AB"},
        "budgets": [],
        "credits": None,
        "is_fallback": False,
    },
    separators=(",", ":"),
).encode()


async def check(request: Request) -> Response:
    return Response(BODY, media_type="application/json")


app = Starlette(routes=[Route("/v1/check", check, methods=["POST"])])


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8099)
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args()
    # The same options as `allotment serve` (src/allotment/cli.py).
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        access_log=False,
        lifespan="on",
    )


if __name__ == "__main__":
    main()
