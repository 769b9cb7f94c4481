"""Allotment: an entitlements runtime.

It answers, on every request, "may this run, and what does it cost?" from a customer's plan,
add-ons, trials, promotions and overrides. This package is the service and its Python SDK:
``from allotment import Client`` (``docs/sdk.md``); the SDK's public names are
``allotment.sdk.__all__``.
"""

from allotment import sdk
from allotment.sdk import *  # noqa: F403  (the SDK's public surface, listed once there)

__version__ = "0.1.0"

__all__ = [*sdk.__all__, "__version__"]
