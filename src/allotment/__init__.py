"""Allotment: an entitlements runtime.

It answers, on every request, "may this run, and what does it cost?" from a customer's plan,
add-ons, trials, promotions and overrides. This package is the service and its Python SDK:
``from allotment import Client`` (``docs/sdk.md``).
"""

from allotment.sdk import (
    AllotmentClientError,
    ApiError,
    AsyncClient,
    BufferFull,
    CheckResult,
    Client,
    Fallback,
    InvalidReport,
    OfflinePolicy,
    Page,
    Reservation,
    ServiceUnavailable,
    UsageReport,
    UsageResult,
)

__version__ = "0.1.0"

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
    "__version__",
]
