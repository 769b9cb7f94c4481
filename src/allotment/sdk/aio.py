"""``AsyncClient``: the same client for asyncio code.

It wraps a :class:`~allotment.sdk.client.Client` (one cache, one stream, one buffer): a check
the cache answers is answered at once, on the event loop; anything that needs the network runs
in a worker thread, so the loop never waits on a socket.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

from allotment.sdk.client import Client, QuantityIn
from allotment.sdk.fallback import FallbackValue
from allotment.sdk.results import CheckResult, UsageReport

P = ParamSpec("P")
T = TypeVar("T")


class AsyncClient:
    """``AsyncClient(base_url, api_key=..., ...)`` takes ``Client``'s arguments. Every method
    of ``Client`` is here as a coroutine; ``client`` is the synchronous one underneath."""

    def __init__(self, base_url: str, **options: Any) -> None:
        self.client = Client(base_url, **options)

    async def check(
        self,
        customer: str,
        feature: str,
        *,
        entity: str | None = None,
        requested: QuantityIn | None = None,
        fallback: FallbackValue | None = None,
    ) -> CheckResult:
        hot = self.client.cache.hot((customer, feature, entity, requested))
        if hot is not None:
            self.client.cache.stats.hits += 1
            return hot
        return await asyncio.to_thread(
            self.client.check,
            customer,
            feature,
            entity=entity,
            requested=requested,
            fallback=fallback,
        )

    async def report_usage(self, *args: Any, **kwargs: Any) -> UsageReport:
        return await asyncio.to_thread(self.client.report_usage, *args, **kwargs)

    async def wait_until_ready(self, timeout: float) -> bool:
        return await asyncio.to_thread(self.client.wait_until_ready, timeout)

    async def close(self, timeout: float = 5.0) -> None:
        await asyncio.to_thread(self.client.close, timeout)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        await self.close()

    def __getattr__(self, name: str) -> Callable[..., Any]:
        """Every other method of ``Client`` (credits, reservations, admin calls), awaited in
        a worker thread."""
        method = getattr(self.client, name)
        if not callable(method) or name.startswith("_"):
            raise AttributeError(name)

        @functools.wraps(method)
        async def call(*args: Any, **kwargs: Any) -> Any:
            return await asyncio.to_thread(method, *args, **kwargs)

        return call
