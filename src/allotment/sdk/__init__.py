"""The Python SDK: ``Client`` and ``AsyncClient`` (``docs/sdk.md``)."""

from allotment.sdk.aio import AsyncClient
from allotment.sdk.buffer import BufferFull
from allotment.sdk.client import Client, OfflinePolicy, Reservation
from allotment.sdk.errors import AllotmentClientError, ApiError, InvalidReport, ServiceUnavailable
from allotment.sdk.fallback import Fallback
from allotment.sdk.results import CheckResult, Page, UsageReport, UsageResult

__all__ = [
    "AllotmentClientError",
    "ApiError",
    "AsyncClient",
    "BufferFull",
    "CheckResult",
    "Client",
    "Fallback",
    "InvalidReport",
    "OfflinePolicy",
    "Page",
    "Reservation",
    "ServiceUnavailable",
    "UsageReport",
    "UsageResult",
]
